//! What becomes of an origin's answer.

use edge_cache::Stored;
use edge_router::facts::Endpoint;
use edge_router::wire::{CacheFill, CacheStatus, Event, Explain, Forward, ForwardBody, RuleRef};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::*;
use crate::entry::Entry;
use crate::test_support::{self, h};

const NOW: u64 = 1_700_000_000_000;

fn forward(fill: Option<CacheFill>, body: ForwardBody) -> Forward {
    Forward { fill, rule: RuleRef::Passthrough, cache: CacheStatus::Miss, ..test_support::forward(body) }
}

fn explain() -> Explain {
    Explain {
        node: "a".into(),
        rule: "passthrough".into(),
        attempts: 1,
        country: "XX".into(),
        model: None,
        difficulty: None,
        cache: CacheStatus::Miss,
        panic: false,
        ratelimit: Default::default(),
    }
}

/// A client's request for `/v1/files`.
fn request(method: Method, client: HeaderMap) -> http::request::Parts {
    let (mut parts, ()) =
        http::Request::builder().method(method).uri("/v1/files").body(()).expect("a request").into_parts();
    parts.headers = client;
    parts
}

fn attempt(request: &http::request::Parts, node_has_key: bool) -> Attempt<'_> {
    Attempt {
        request,
        endpoint: Endpoint::Other,
        api: edge_router::config::Api::OpenAi,
        node_has_key,
        sent_ms: NOW - 100,
        restore_model: None,
        max_entry: 1 << 20,
        restore_pii: None,
    }
}

/// No stale entry.
const FRESH: Option<Stale<Entry>> = None;

fn http_fill() -> Option<CacheFill> {
    Some(CacheFill { key: "http/a/v1/files".into(), ttl_s: 0, estimated_tokens: 0, http: true })
}

fn stale_entry() -> Entry {
    Entry {
        status: StatusCode::OK,
        headers: h(&[("etag", "\"v1\""), ("cache-control", "max-age=0"), ("x-version", "1")]),
        node: "a".into(),
        model: None,
        stored_ms: NOW - 60_000,
        expires_ms: u64::MAX,
        tokens: 0,
        http: Some(Stored { vary: Vec::new(), response_ms: NOW - 60_000, initial_age_s: 0, lifetime_s: 0 }),
    }
}

#[test]
fn rfc9110_10_2_3_a_retry_after_date_reaches_the_router_as_seconds() {
    let date = edge_cache::fields::fmt_http_date(NOW / 1000 + 42);
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", HeaderValue::from_str(&date).expect("a date"));
    let event = head_event(7, StatusCode::SERVICE_UNAVAILABLE, &headers, NOW);
    assert_eq!(event, Event::ResponseHead { id: 7, status: 503, retry_after_s: Some(42), now_ms: NOW });
    let ok = head_event(7, StatusCode::OK, &headers, NOW);
    assert!(matches!(ok, Event::ResponseHead { retry_after_s: None, .. }), "only a 429 or 503 pauses a node");
}

#[test]
fn a_storable_get_is_captured_and_a_head_or_a_private_answer_is_not() {
    let client = HeaderMap::new();
    let cacheable = h(&[("cache-control", "max-age=60")]);
    let get = plan(
        &attempt(&request(Method::GET, client.clone()), false),
        &forward(http_fill(), ForwardBody::Original),
        FRESH,
        &explain(),
        StatusCode::OK,
        &cacheable,
        NOW,
    );
    assert!(matches!(get, Plan::Deliver(Delivery { capture: Some(_), .. })));
    let head = plan(
        &attempt(&request(Method::HEAD, client.clone()), false),
        &forward(http_fill(), ForwardBody::Original),
        FRESH,
        &explain(),
        StatusCode::OK,
        &cacheable,
        NOW,
    );
    assert!(matches!(head, Plan::Deliver(Delivery { capture: None, .. })), "a HEAD has no body to keep");
    let private = h(&[("cache-control", "private, max-age=60")]);
    let p = plan(
        &attempt(&request(Method::GET, client.clone()), false),
        &forward(http_fill(), ForwardBody::Original),
        FRESH,
        &explain(),
        StatusCode::OK,
        &private,
        NOW,
    );
    assert!(matches!(p, Plan::Deliver(Delivery { capture: None, .. })));
}

#[test]
fn rfc9111_3_5_the_nodes_key_makes_the_request_authorized_and_the_clients_does_not() {
    let client = h(&[("authorization", "Bearer client")]);
    let plain = h(&[("cache-control", "max-age=60")]);
    let f = forward(http_fill(), ForwardBody::Original);
    let with_key =
        plan(&attempt(&request(Method::GET, client.clone()), true), &f, FRESH, &explain(), StatusCode::OK, &plain, NOW);
    assert!(matches!(with_key, Plan::Deliver(Delivery { capture: None, .. })), "the node's key: needs public");
    let without = plan(
        &attempt(&request(Method::GET, client.clone()), false),
        &f,
        FRESH,
        &explain(),
        StatusCode::OK,
        &plain,
        NOW,
    );
    assert!(matches!(without, Plan::Deliver(Delivery { capture: Some(_), .. })), "the client's key stayed at the edge");
    // A Bedrock node's requests are all signed: `Authorization` went with them.
    let request = request(Method::GET, client.clone());
    let signed = Attempt { api: edge_router::config::Api::Bedrock, ..attempt(&request, false) };
    let p = plan(&signed, &f, FRESH, &explain(), StatusCode::OK, &plain, NOW);
    assert!(matches!(p, Plan::Deliver(Delivery { capture: None, .. })), "signed: needs public");
}

#[test]
fn rfc9111_4_3_4_a_304_freshens_the_stale_entry() {
    let entry = stale_entry();
    let client = HeaderMap::new();
    let not_modified = h(&[
        ("cache-control", "max-age=30"),
        ("x-version", "2"),
        ("connection", "keep-alive, x-hop"),
        ("keep-alive", "timeout=5"),
        ("x-hop", "1"),
    ]);
    let get = request(Method::GET, client.clone());
    let (a, f) = (attempt(&get, false), forward(http_fill(), ForwardBody::Original));
    let revalidate = |not_modified: &HeaderMap| {
        let stale = Some(Stale { entry: &entry, if_error: false });
        plan(&a, &f, stale, &explain(), StatusCode::NOT_MODIFIED, not_modified, NOW)
    };
    let Plan::Revalidated { fresh, keep, .. } = revalidate(&not_modified) else { panic!("a 304 revalidates") };
    assert!(keep);
    assert_eq!(fresh.headers.get("x-version").map(HeaderValue::as_bytes), Some(&b"2"[..]));
    assert_eq!(fresh.http.as_ref().map(|s| s.lifetime_s), Some(30));
    for hop in ["connection", "keep-alive", "x-hop"] {
        assert!(!fresh.headers.contains_key(hop), "the 304's {hop} is its connection's, not the entry's");
    }
    assert_eq!(fresh.stored_ms, NOW);
    // A 304 that makes it private: served, not kept (§5.2.2.7).
    let private = h(&[("cache-control", "private, max-age=30")]);
    assert!(matches!(revalidate(&private), Plan::Revalidated { keep: false, .. }), "a private 304 is not kept");
}

#[test]
fn rfc5861_4_a_5xx_is_answered_by_the_stale_entry_only_when_stale_if_error_allows() {
    let entry = stale_entry();
    let client = HeaderMap::new();
    let f = forward(http_fill(), ForwardBody::Original);
    let get = request(Method::GET, client.clone());
    let a = attempt(&get, false);
    let answer = |status, if_error| {
        plan(&a, &f, Some(Stale { entry: &entry, if_error }), &explain(), status, &HeaderMap::new(), NOW)
    };
    assert!(matches!(answer(StatusCode::BAD_GATEWAY, true), Plan::ServeStale(_)));
    assert!(matches!(answer(StatusCode::BAD_GATEWAY, false), Plan::Deliver(_)));
    assert!(matches!(answer(StatusCode::NOT_FOUND, true), Plan::Deliver(_)));
}

#[test]
fn an_answer_to_a_rewritten_request_gets_the_requested_model_back_when_asked() {
    let client = HeaderMap::new();
    let post = request(Method::POST, client.clone());
    let mut a = attempt(&post, false);
    a.endpoint = Endpoint::ChatCompletions;
    a.restore_model = Some("gpt-4o");
    let sse = h(&[("content-type", "text/event-stream")]);
    let rewritten = forward(None, ForwardBody::RewriteModel("llama".into()));
    let p = plan(&a, &rewritten, FRESH, &explain(), StatusCode::OK, &sse, NOW);
    assert!(matches!(p, Plan::Deliver(Delivery { sse: true, transform: Some(_), .. })));
    let kept = plan(&a, &forward(None, ForwardBody::Original), FRESH, &explain(), StatusCode::OK, &sse, NOW);
    assert!(matches!(kept, Plan::Deliver(Delivery { transform: None, .. })), "nothing was rewritten");
}

#[test]
fn an_answer_with_personal_values_to_restore_is_restored_and_never_stored() {
    use edge_router::pii::{Detector, Mode, Vault, protect_request};
    let post = request(Method::POST, HeaderMap::new());
    let mut a = attempt(&post, false);
    a.endpoint = Endpoint::ChatCompletions;
    let ai_fill = Some(CacheFill { key: "ai/k".into(), ttl_s: 60, estimated_tokens: 0, http: false });
    let json = h(&[("content-type", "application/json")]);
    let stored =
        plan(&a, &forward(ai_fill.clone(), ForwardBody::Original), FRESH, &explain(), StatusCode::OK, &json, NOW);
    assert!(matches!(stored, Plan::Deliver(Delivery { capture: Some(_), transform: None, .. })));
    let mut vault = Vault::new();
    let body = br#"{"messages":[{"role":"user","content":"mail jane@example.com"}]}"#;
    protect_request(body, &Detector::default(), Mode::Pseudonymize, &mut vault);
    a.restore_pii = Some(std::sync::Arc::new(vault));
    let restored = plan(&a, &forward(ai_fill, ForwardBody::Original), FRESH, &explain(), StatusCode::OK, &json, NOW);
    let Plan::Deliver(Delivery { capture: None, transform: Some(mut t), .. }) = restored else {
        panic!("restored, and not kept")
    };
    let answer = br#"{"choices":[{"index":0,"message":{"content":"wrote [EMAIL_1]"}}]}"#;
    let out = crate::test_support::feed(t.as_mut(), answer, &[9]);
    assert_eq!(out, br#"{"choices":[{"index":0,"message":{"content":"wrote jane@example.com"}}]}"#);
}

#[test]
fn rfc9110_7_6_1_hop_by_hop_fields_go_and_the_explanation_comes() {
    let mut headers = h(&[
        ("connection", "Close, X-Hop"),
        ("connection", "x-other, Keep-Alive"),
        ("x-hop", "1"),
        ("x-other", "2"),
        ("keep-alive", "5"),
        ("upgrade", "h2c"),
        ("te", "trailers"),
        ("proxy-connection", "keep-alive"),
        ("content-length", "9"),
        ("x-edge-node", "spoofed"),
        ("etag", "\"e\""),
    ]);
    deliver_head(&mut headers, &explain(), true);
    let mut names: Vec<&str> = headers.keys().map(http::HeaderName::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["etag", "x-edge-attempts", "x-edge-cache", "x-edge-country", "x-edge-node", "x-edge-rule"]);
    assert_eq!(headers["x-edge-node"], "a", "the origin cannot set the explanation");
    // RFC 9112 §6.3: a chunked message's length, if it has one too, does not go on.
    let mut both = h(&[("transfer-encoding", "chunked"), ("content-length", "10"), ("etag", "\"e\"")]);
    deliver_head(&mut both, &explain(), false);
    assert!(!both.contains_key("content-length") && !both.contains_key("transfer-encoding"), "{both:?}");
    let mut length = h(&[("content-length", "10")]);
    deliver_head(&mut length, &explain(), false);
    assert_eq!(length["content-length"], "10", "a length alone stays");
}

#[test]
fn rfc9111_4_4_a_successful_unsafe_passthrough_request_invalidates() {
    let client = HeaderMap::new();
    let post = request(Method::POST, client.clone());
    let a = attempt(&post, false);
    let keys = invalidated(&a, "a", StatusCode::CREATED, &h(&[("location", "/v1/files/x")]));
    assert_eq!(keys, ["http/a/v1/files", "http/a/v1/files/x"]);
    assert!(
        invalidated(&attempt(&request(Method::GET, client.clone()), false), "a", StatusCode::OK, &HeaderMap::new())
            .is_empty()
    );
    let mut api = attempt(&post, false);
    api.endpoint = Endpoint::ChatCompletions;
    assert!(invalidated(&api, "a", StatusCode::OK, &HeaderMap::new()).is_empty(), "API calls cache nothing by URI");
}
