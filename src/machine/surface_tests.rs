//! The OpenAI surface beyond chat: the model list the router answers, and
//! response objects reached on the node that holds them.

use super::*;
use crate::wire::{Forward, RequestBody};

fn router(yaml: &str) -> Router {
    Router::new(RouterConfig::load("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")))
}

const FLEET: &str = "nodes:
  - {id: edge-1, type: edge, host: \"http://e\", models: [tiny, small], capabilities: [small_models]}
  - {id: cloud-1, type: cloud, host: \"http://c\", provider: openai, models: [small, gpt-4o]}
  - {id: any, type: cloud, host: \"http://a\"}
  - {id: claude, type: cloud, host: \"http://c\", provider: anthropic, models: [claude-haiku]}
routing:
  rules:
    - {match: {model: auto}, target: edge-1}
";

fn event(id: u64, method: &str, target: &str, body: &str) -> Event {
    event_from("US", id, method, target, body)
}

/// A request from a client in `country`.
fn event_from(country: &str, id: u64, method: &str, target: &str, body: &str) -> Event {
    Event::Request {
        id,
        method: method.into(),
        target: target.into(),
        headers: vec![Header::new("content-type", "application/json")],
        country: Some(country.into()),
        client: None,
        body: if body.is_empty() { RequestBody::Streamed } else { RequestBody::Buffered(body.as_bytes().to_vec()) },
        now_ms: 1_000,
        random: 0,
        key_sha256: None,
        body_facts: None,
        token: None,
        fleet: None,
    }
}

fn answered(action: Action) -> (u16, serde_json::Value, Vec<Header>) {
    let Action::Respond { status, headers, body } = action else { panic!("the router should answer: {action:?}") };
    (status, serde_json::from_slice(&body).expect("JSON"), headers)
}

fn forward_of(action: Action) -> Forward {
    let Action::Forward(f) = action else { panic!("expected a forward: {action:?}") };
    f
}

#[test]
fn the_model_list_is_every_nodes_models_and_auto_in_openais_shape() {
    let mut r = router(FLEET);
    let (status, list, headers) = answered(r.handle(event(1, "GET", "/v1/models", "")));
    assert_eq!(status, 200);
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["tiny", "small", "gpt-4o", "claude-haiku", "auto"], "each once, in config order");
    let (status, one, _) = answered(r.handle(event(4, "GET", "/v1/models/claude%2Dhaiku", "")));
    assert_eq!((status, one["id"].as_str()), (200, Some("claude-haiku")), "escapes are decoded");
    let gpt = &list["data"][2];
    assert_eq!(
        (gpt["object"].as_str(), gpt["owned_by"].as_str(), gpt["created"].as_u64()),
        (Some("model"), Some("openai"), Some(0))
    );
    assert_eq!(list["data"][0]["owned_by"], "edge-1", "a node without a provider owns by its id");
    assert!(headers.iter().any(|h| h.name == "x-edge-rule" && h.value == b"models"));
    let (status, one, _) = answered(r.handle(event(2, "GET", "/v1/models/gpt-4o", "")));
    assert_eq!((status, one["id"].as_str()), (200, Some("gpt-4o")));
    let (status, missing, _) = answered(r.handle(event(3, "GET", "/v1/models/gpt-5", "")));
    assert_eq!(status, 404);
    assert!(missing["error"]["message"].as_str().unwrap().contains("`gpt-5`"), "{missing}");
    assert_eq!(r.open_exchanges(), 0, "nothing was forwarded");
}

#[test]
fn responses_are_routed_by_the_rules_like_chat_and_never_cached() {
    let mut r = router(FLEET);
    let body = r#"{"model":"auto","input":[{"role":"user","content":"hi"}],"instructions":"be brief"}"#;
    let f = forward_of(r.handle(event(1, "POST", "/v1/responses", body)));
    assert_eq!(r.config().nodes[f.node as usize].id, "edge-1");
    assert_eq!(f.body, crate::wire::ForwardBody::RewriteModel("tiny".into()), "auto picked the small model");
    assert!(f.fill.is_none(), "a response object is state on its node: not cached");
    let f =
        forward_of(r.handle(event(2, "POST", "/v1/responses", r#"{"model":"gpt-4o","input":"hi","temperature":0}"#)));
    assert_eq!(r.config().nodes[f.node as usize].id, "cloud-1");
}

#[test]
fn a_continuation_goes_to_the_node_that_holds_what_it_continues() {
    let mut r = router(FLEET);
    let body = r#"{"model":"gpt-4o","input":"more","previous_response_id":"resp_9~edge-1"}"#;
    let f = forward_of(r.handle(event(1, "POST", "/v1/responses", body)));
    assert_eq!((r.config().nodes[f.node as usize].id.as_str(), f.rule), ("edge-1", RuleRef::Affinity));
    assert!(!f.fallback, "the state is on that node only: no fallback");
    // An id the router did not tag is routed like any request.
    let f = forward_of(r.handle(event(
        2,
        "POST",
        "/v1/responses",
        r#"{"model":"gpt-4o","previous_response_id":"resp_9"}"#,
    )));
    assert_eq!(r.config().nodes[f.node as usize].id, "cloud-1");
    // The id in a path: retrieve, cancel, list input items, delete.
    for (id, method, target) in [
        (3, "GET", "/v1/responses/resp_9~cloud-1"),
        (4, "POST", "/v1/responses/resp_9~cloud-1/cancel"),
        (5, "GET", "/v1/responses/resp_9~cloud-1/input_items?limit=2"),
        (6, "DELETE", "/v1/responses/resp_9~cloud-1"),
    ] {
        let f = forward_of(r.handle(event(id, method, target, "")));
        assert_eq!((r.config().nodes[f.node as usize].id.as_str(), f.rule), ("cloud-1", RuleRef::Affinity), "{target}");
    }
    let (status, gone, _) = answered(r.handle(event(7, "GET", "/v1/responses/resp_9~retired", "")));
    assert_eq!(status, 404);
    assert!(
        gone["error"]["message"].as_str().unwrap().contains("`retired`, which this router no longer has"),
        "{gone}"
    );
    // An id without the router's tag is the passthrough node's (none here: 404).
    let (status, foreign, _) = answered(r.handle(event(8, "GET", "/v1/responses/resp_9", "")));
    assert_eq!((status, foreign["error"]["type"].as_str()), (404, Some("not_found_error")), "{foreign}");
    // A tag may not pin a request to a node that cannot serve it.
    let (status, _, _) = answered(r.handle(event(9, "GET", "/v1/responses/resp_9~claude", "")));
    assert_eq!(status, 404, "claude speaks Anthropic's API, which holds no response objects");
    let chat = r#"{"model":"gpt-4o","messages":[],"previous_response_id":"resp_9~edge-1"}"#;
    let f = forward_of(r.handle(event(10, "POST", "/v1/chat/completions", chat)));
    assert_eq!(
        (r.config().nodes[f.node as usize].id.as_str(), f.rule),
        ("cloud-1", RuleRef::Default),
        "chat ignores the field"
    );
}

#[test]
fn a_held_response_stays_within_its_jurisdiction() {
    let yaml = "residency: {jurisdictions: {EU: [EU]}}\nnodes:\n  - {id: us, type: cloud, host: \"http://u\"}\n  - {id: eu, type: cloud, host: \"http://e\", data_residency: EU}\n";
    let mut r = router(yaml);
    let (status, _, _) = answered(r.handle(event_from("DE", 1, "GET", "/v1/responses/resp_1~us", "")));
    assert_eq!(status, 503, "an EU client's request never reaches a US node, even for a response held there");
}
