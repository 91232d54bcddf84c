//! The router's unit and property tests.

use proptest::prelude::{Just, Strategy as _, any, prop, prop_assert, prop_oneof, proptest};

use origin_fallback::RetryType;

use super::*;
use crate::auth::presented_key;
use crate::facts::{BodyFacts, parse_body};
use crate::hop::never_forwarded;
use crate::wire::{Forward, ForwardBody, Usage};

fn router(yaml: &str) -> Router {
    Router::new(RouterConfig::load("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")))
}

fn request(id: u64, country: &str, model: &str, random: u64) -> Event {
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    Event::Request {
        id,
        method: "POST".into(),
        target: "/v1/chat/completions".into(),
        headers: vec![Header::new("content-type", "application/json")],
        country: Some(country.into()),
        client: None,
        body: crate::wire::RequestBody::Buffered(body.into_bytes()),
        now_ms: 1_000,
        random,
        key_sha256: None,
        body_facts: None,
        token: None,
        fleet: None,
    }
}

/// Handles `event`; the id of the node it is forwarded to, if it is.
fn forwarded(r: &mut Router, event: Event) -> Option<&str> {
    let action = r.handle(event);
    forward_id(r, &action)
}

#[test]
fn finishing_releases_the_capacity_slot() {
    let mut r = router("nodes:\n  - {id: a, type: local, host: \"http://a\", max_concurrent: 1}\n");
    assert_eq!(forwarded(&mut r, request(1, "US", "m", 0)), Some("a"));
    assert_eq!(r.in_flight(), &[1]);
    let Action::Respond { status, .. } = r.handle(request(2, "US", "m", 0)) else { panic!("expected a refusal") };
    assert_eq!(status, 429);
    assert!(matches!(
        r.handle(Event::ResponseHead { id: 1, status: 200, retry_after_s: None, now_ms: 1_050 }),
        Action::Deliver { .. }
    ));
    r.handle(Event::Finished { id: 1, usage: None, now_ms: 1_100 });
    assert_eq!((r.in_flight(), r.open_exchanges()), (vec![0], 0));
}

#[test]
fn abandoned_exchanges_are_reaped_on_tick() {
    let mut r = router("nodes:\n  - {id: a, type: local, host: \"http://a\"}\n");
    r.handle(request(1, "US", "m", 0));
    r.handle(Event::Tick { now_ms: 1_000 + ABANDONED_AFTER_MS });
    assert_eq!(r.open_exchanges(), 1, "not yet abandoned");
    r.handle(Event::Tick { now_ms: 1_001 + ABANDONED_AFTER_MS });
    assert_eq!((r.open_exchanges(), r.in_flight()), (0, vec![0]));
}

#[test]
fn a_key_digest_from_the_host_stands_in_for_hashing_the_presented_key() {
    let digest = crate::auth::key_digest(b"sk-team-a");
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut r = router(&format!(
        "nodes:\n  - {{id: a, type: local, host: \"http://a\"}}\nauth:\n  required: true\n  keys:\n    - {{sha256: \"{hex}\", tier: vip, tenant: acme}}\n"
    ));
    let keyed = |id: u64, header: Option<&str>, key_sha256: Option<[u8; 32]>| {
        let Event::Request { method, target, country, body, now_ms, random, .. } = request(id, "US", "m", 0) else {
            unreachable!()
        };
        let headers = header.map(|h| vec![Header::new("authorization", h)]).unwrap_or_default();
        Event::Request {
            id,
            method,
            target,
            headers,
            country,
            client: None,
            body,
            now_ms,
            random,
            key_sha256,
            body_facts: None,
            token: None,
            fleet: None,
        }
    };
    // The router hashes the presented key itself...
    assert!(matches!(r.handle(keyed(1, Some("Bearer sk-team-a"), None)), Action::Forward(_)));
    assert!(matches!(r.handle(keyed(2, Some("Bearer sk-team-b"), None)), Action::Respond { status: 401, .. }));
    // ...or takes the host's digest of it.
    assert!(matches!(r.handle(keyed(3, None, Some(digest))), Action::Forward(_)));
    let other = crate::auth::key_digest(b"sk-team-b");
    assert!(matches!(r.handle(keyed(4, None, Some(other))), Action::Respond { status: 401, .. }));
}

#[test]
fn the_router_answers_the_same_when_given_only_the_headers_it_reads() {
    let digest = crate::auth::key_digest(b"sk-team-a");
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let config = format!(
        "nodes:\n  - {{id: small, type: edge, host: \"http://s\", models: [tiny, huge]}}\n  - {{id: big, type: cloud, host: \"http://b\", models: [huge]}}\nrouting:\n  rules:\n    - {{name: hard, match: {{type: complex_reasoning}}, target: big}}\n    - {{name: vip, match: {{user_tier: vip}}, target: small}}\ncache:\n  memory: 1MiB\n  client_ttl: true\nauth:\n  keys:\n    - {{sha256: \"{hex}\", tier: vip, tenant: acme}}\n"
    );
    let (mut all, mut only_read) = (router(&config), router(&config));
    let cases: [&[(&str, &str)]; 5] = [
        &[("x-request-type", "complex_reasoning"), ("user-agent", "OpenAI/Python 1.52.0")],
        &[("connection", "keep-alive, x-hop"), ("x-hop", "1"), ("accept", "application/json")],
        &[("cache-control", "no-store"), ("x-stainless-lang", "python")],
        &[("x-edge-cache-ttl", "60"), ("host", "edge.example")],
        &[("authorization", "Bearer sk-team-a"), ("x-trace", "t1")],
    ];
    for (id, headers) in (1..).zip(cases) {
        for hashed in [false, true] {
            let id = id * 2 + u64::from(hashed);
            let with = |keep: &dyn Fn(&str) -> bool| {
                let Event::Request { method, target, country, body, now_ms, random, .. } =
                    request(id, "DE", "auto", id)
                else {
                    unreachable!()
                };
                // The host hashes the key from all the client's headers.
                let key = presented_key(headers.iter().map(|(n, v)| (*n, v.as_bytes())));
                let key_sha256 = if hashed { key.map(crate::auth::key_digest) } else { None };
                let headers = headers.iter().filter(|(n, _)| keep(n)).map(|(n, v)| Header::new(n, v)).collect();
                Event::Request {
                    id,
                    method,
                    target,
                    headers,
                    country,
                    client: None,
                    body,
                    now_ms,
                    random,
                    key_sha256,
                    body_facts: None,
                    token: None,
                    fleet: None,
                }
            };
            let everything = all.handle(with(&|_| true));
            let read = only_read.handle(with(&|n| crate::wire::router_reads(n, hashed)));
            assert_eq!(everything, read, "headers {headers:?}, key hashed by the host: {hashed}");
            assert!(matches!(everything, Action::Forward(_)), "{everything:?}");
        }
    }
}

#[test]
fn a_forwards_explanation_is_what_the_router_answers_its_head_with() {
    let config = "nodes:\n  - {id: small, type: edge, host: \"http://s\", models: [tiny, less-tiny]}\n  - {id: big, type: cloud, host: \"http://b\", models: [huge]}\nrouting:\n  rules:\n    - {name: short, match: {max_tokens: 100}, target: small, fallback: [big]}\n";
    let mut r = router(config);
    let cases = [
        // Rewritten to a small model, a known country, a fallback left.
        (1, "DE", r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"max_tokens":10}"#),
        // The client's model kept, the default strategy, an unknown country.
        (2, "", r#"{"model":"huge","messages":[{"role":"user","content":"hi"}],"max_tokens":5000}"#),
    ];
    for (id, country, body) in cases {
        let mut event = request(id, country, "m", 0);
        if let Event::Request { body: b, .. } = &mut event {
            *b = crate::wire::RequestBody::Buffered(body.as_bytes().to_vec());
        }
        let Action::Forward(f) = r.handle(event) else { panic!("expected a forward") };
        assert_eq!(matches!(f.body, ForwardBody::RewriteModel(_)), id == 1, "{body}");
        let head = Event::ResponseHead { id, status: 200, retry_after_s: None, now_ms: 1_100 };
        let Action::Deliver(answered) = r.handle(head) else { panic!("expected a delivery") };
        assert_eq!(f.explain(r.config(), Country::parse(country)), Some(answered), "{body}");
    }
}

#[test]
fn a_batch_answers_its_last_event_after_the_deferred_ones() {
    let mut r = router("nodes:\n  - {id: a, type: local, host: \"http://a\"}\n");
    let encode = |events: &[Event]| -> Vec<u8> {
        events.iter().flat_map(|e| postcard::to_allocvec(e).expect("encodes")).collect()
    };
    let Ok(Some(Action::Forward(f))) = r.handle_batch(&encode(&[request(1, "US", "m", 0)])) else {
        panic!("expected a forward")
    };
    assert_eq!((forward_id(&r, &Action::Forward(f)), r.in_flight()), (Some("a"), vec![1]));
    let deferred = [
        Event::ResponseHead { id: 1, status: 200, retry_after_s: None, now_ms: 1_100 },
        Event::Finished { id: 1, usage: None, now_ms: 1_200 },
    ];
    let batch = encode(&[&deferred[..], &[request(2, "US", "m", 0)]].concat());
    assert!(matches!(r.handle_batch(&batch), Ok(Some(Action::Forward(_)))));
    assert_eq!((r.open_exchanges(), r.in_flight()), (1, vec![1]), "exchange 1 ended, 2 is in flight");
    // The last event is answered, whatever it is.
    let head = Event::ResponseHead { id: 2, status: 200, retry_after_s: None, now_ms: 1_300 };
    assert!(matches!(r.handle_batch(&encode(&[head])), Ok(Some(Action::Deliver(_)))));
    assert_eq!(r.handle_batch(&[]), Ok(None));
    let mut broken = encode(&[Event::Tick { now_ms: 5 }]);
    broken.push(REQUEST_TAG);
    assert!(r.handle_batch(&broken).is_err(), "a request cut short is an error");
}

#[test]
fn an_absorbed_event_changes_the_router_as_a_handled_one_does() {
    let config = "nodes:\n  - {id: a, type: cloud, host: \"http://a\", cost_per_1k_tokens: 1.0, max_cost_per_day: 100}\n  - {id: b, type: local, host: \"http://b\"}\nrouting:\n  rules:\n    - {match: {type: \"*\"}, target: a, fallback: [b]}\n";
    let (mut handled, mut absorbed) = (router(config), router(config));
    let status = |r: &mut Router| match r.handle(Event::Status { now_ms: 9_000 }) {
        Action::Respond { body, .. } => String::from_utf8(body).expect("utf-8"),
        other => panic!("expected a report, got {other:?}"),
    };
    for (id, head) in [(1, 200), (2, 500), (3, 200), (4, 503)] {
        for r in [&mut handled, &mut absorbed] {
            assert!(matches!(r.handle(request(id, "US", "m", id)), Action::Forward(_)));
        }
        let head = Event::ResponseHead { id, status: head, retry_after_s: None, now_ms: 1_100 };
        let end =
            Event::Finished { id, usage: Some(Usage { prompt_tokens: 10, completion_tokens: 90 }), now_ms: 1_200 };
        assert!(matches!(handled.handle(head.clone()), Action::Deliver(_) | Action::Forward(_)));
        handled.handle(end.clone());
        absorbed.absorb(head);
        absorbed.absorb(end);
    }
    assert_eq!(status(&mut handled), status(&mut absorbed));
    assert_eq!((handled.open_exchanges(), handled.in_flight()), (absorbed.open_exchanges(), absorbed.in_flight()));
    assert_eq!(handled.take_spent(), absorbed.take_spent());
}

#[test]
fn body_facts_from_the_host_stand_in_for_parsing_the_body() {
    let config = "nodes:\n  - {id: small, type: edge, host: \"http://s\", models: [tiny]}\n  - {id: big, type: cloud, host: \"http://b\", models: [huge]}\nrouting:\n  rules:\n    - {match: {max_tokens: 100}, target: small}\n";
    let with_facts = |id: u64, text: &str, facts: Option<BodyFacts>| {
        let mut event = request(id, "US", "m", 0);
        if let Event::Request { body, body_facts, .. } = &mut event {
            *body = crate::wire::RequestBody::Buffered(text.as_bytes().to_vec());
            *body_facts = facts;
        }
        event
    };
    let forward = |r: &mut Router, e: Event| match r.handle(e) {
        Action::Forward(f) => (f.node, f.body),
        other => panic!("expected a forward, got {other:?}"),
    };
    // The host's reading of a body and the router's own lead to the same forward.
    for body in [
        r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"max_tokens":10}"#,
        r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"max_tokens":5000}"#,
        r#"{"model":"huge","prompt":"once upon a time","stream":true}"#,
    ] {
        let facts = parse_body(body.as_bytes()).expect("parses");
        let own = forward(&mut router(config), with_facts(1, body, None));
        let host = forward(&mut router(config), with_facts(1, body, Some(facts)));
        assert_eq!(own, host, "{body}");
    }
    // The router does not read the body again: the host's facts decide.
    let facts = BodyFacts { model: Some("auto".into()), max_tokens: Some(10), ..BodyFacts::default() };
    let mut r = router(config);
    let (node, _) = forward(&mut r, with_facts(2, "{not json, never parsed", Some(facts)));
    assert_eq!(r.config().node_at(node).map(|n| n.id.as_str()), Some("small"));
    // Without them, the router explains what is wrong with the body.
    let mut r = router(config);
    let Action::Respond { status, body, .. } = r.handle(with_facts(3, "{not json", None)) else {
        panic!("expected a refusal")
    };
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("not valid JSON"), "{}", String::from_utf8_lossy(&body));
}

#[test]
fn forwarded_headers_drop_client_keys_and_hop_by_hop_headers() {
    let mut r = router("nodes:\n  - {id: a, type: local, host: \"http://a/base\", api_key_env: A_KEY}\n");
    let mut event = request(1, "US", "m", 0);
    if let Event::Request { headers, .. } = &mut event {
        *headers = vec![
            Header::new("authorization", "Bearer client"),
            Header::new("x-api-key", "client"),
            Header::new("connection", "keep-alive, x-hop"),
            Header::new("x-hop", "for the next hop only"),
            Header::new("api-key", "client"),
            Header::new("x-trace", "t1"),
        ];
    }
    let Action::Forward(f) = r.handle(event) else { panic!("expected a forward") };
    assert_eq!(f.remove_headers, ["x-hop"]);
    for name in ["authorization", "x-api-key", "api-key", "connection", "Host", "content-length"] {
        assert!(never_forwarded(name), "{name} must never be forwarded");
    }
    assert!(!never_forwarded("x-trace"));
    assert_eq!(r.config().nodes[0].url_for("/v1/chat/completions?x=1"), "http://a/base/v1/chat/completions?x=1");
    // Names are matched without regard to case and listed lower-case,
    // sorted and once each, over all `Connection` headers; those the host
    // never forwards anyway are left out.
    let mut connection = |values: &[&str]| {
        let mut event = request(2, "US", "m", 0);
        if let Event::Request { headers, .. } = &mut event {
            *headers = values.iter().map(|v| Header::new("connection", v)).collect();
        }
        match r.handle(event) {
            Action::Forward(f) => f.remove_headers,
            other => panic!("expected a forward, got {other:?}"),
        }
    };
    assert!(connection(&["Keep-Alive", "Upgrade, TE"]).is_empty());
    assert_eq!(connection(&["X-Zeta, keep-alive", "x-alpha , X-ZETA", "Authorization"]), ["x-alpha", "x-zeta"]);
}

#[test]
fn a_fallback_node_is_asked_for_a_model_of_its_own() {
    let config = "nodes:\n  - {id: small, type: edge, host: \"http://s\", models: [tiny, less-tiny], capabilities: [small_models]}\n  - {id: big, type: cloud, host: \"http://b\", models: [huge, huger]}\nrouting:\n  rules:\n    - {name: all, match: {type: \"*\"}, target: small, fallback: [big]}\n";
    let mut r = router(config);
    let model = |f: &Forward| match &f.body {
        ForwardBody::RewriteModel(m) => m.clone(),
        ForwardBody::Original => "(the client's)".into(),
    };
    let Action::Forward(first) = r.handle(request(1, "US", "gpt-4o", 0)) else { panic!("expected a forward") };
    assert_eq!((forward_id(&r, &Action::Forward(first.clone())), model(&first)), (Some("small"), "tiny".into()));
    let Action::Forward(second) =
        r.handle(Event::OriginFailed { id: 1, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: 1_010 })
    else {
        panic!("expected the fallback")
    };
    assert_eq!((forward_id(&r, &Action::Forward(second.clone())), model(&second)), (Some("big"), "huge".into()));
    let head = Event::ResponseHead { id: 1, status: 200, retry_after_s: None, now_ms: 1_020 };
    let Action::Deliver(explain) = r.handle(head) else { panic!("expected a delivery") };
    assert_eq!((explain.node.as_str(), explain.model.as_deref(), explain.rule.as_str()), ("big", Some("huge"), "all"));
    assert_eq!(second.explain(r.config(), Country::parse("US")), Some(explain));
}

const RESIDENCIES: [&str; 4] = ["EU", "US", "global", ""];
const COUNTRIES: [&str; 5] = ["DE", "FR", "US", "JP", "BR"];

/// Node residencies, rules as (target, fallbacks), client country, attempt outcomes, random.
type Scenario = (Vec<usize>, Vec<(usize, Vec<usize>)>, usize, Vec<u8>, u64);

/// A fleet, rules over it, and what each attempt meets.
fn scenario() -> impl proptest::strategy::Strategy<Value = Scenario> {
    (1usize..7).prop_flat_map(|n| {
        (
            prop::collection::vec(0..RESIDENCIES.len(), n),
            prop::collection::vec((0..n, prop::collection::vec(0..n, 0..4)), 0..3),
            0..COUNTRIES.len(),
            // 0: refused, 1: timeout, 2: 503, 3: 200
            prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(3)], 8),
            any::<u64>(),
        )
    })
}

proptest! {
    #[test]
    fn no_attempt_ever_leaves_the_requests_jurisdiction(
        (residencies, rules, country, outcomes, random) in scenario()
    ) {
        let mut yaml = String::from("residency:\n  jurisdictions: {EU: [\"@EU\"], US: [US]}\nnodes:\n");
        for (i, r) in residencies.iter().enumerate() {
            let res = RESIDENCIES[*r];
            let field = if res.is_empty() { String::new() } else { format!(", data_residency: {res}") };
            yaml += &format!("  - {{id: n{i}, type: cloud, host: \"http://n{i}\", weight: {}{field}}}\n", i + 1);
        }
        yaml += if rules.is_empty() { "routing:\n  default: weighted\n  rules: []\n" } else { "routing:\n  default: weighted\n  rules:\n" };
        for (target, fallback) in &rules {
            let fb: Vec<String> = fallback.iter().map(|f| format!("n{f}")).collect();
            yaml += &format!("    - {{match: {{}}, target: n{target}, fallback: [{}]}}\n", fb.join(", "));
        }
        let mut r = router(&yaml);
        let country = COUNTRIES[country];
        let jurisdiction = match country { "DE" | "FR" => Some("EU"), "US" => Some("US"), _ => None };
        let allowed = |node: &str| {
            let i: usize = node[1..].parse().unwrap_or(usize::MAX);
            let res = RESIDENCIES[residencies[i]];
            jurisdiction.is_none_or(|j| res == j || res == "global")
        };
        let mut action = r.handle(request(7, country, "m", random));
        for outcome in outcomes {
            let Some(node) = forward_id(&r, &action) else { break };
            prop_assert!(allowed(node), "{country} request sent to {node}\n{yaml}");
            action = match outcome {
                0 => r.handle(Event::OriginFailed { id: 7, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: 2_000 }),
                1 => r.handle(Event::OriginFailed { id: 7, failure: Failure::Timeout, retry: RetryType::Sent, now_ms: 2_000 }),
                2 => r.handle(Event::ResponseHead { id: 7, status: 503, retry_after_s: None, now_ms: 2_000 }),
                _ => r.handle(Event::ResponseHead { id: 7, status: 200, retry_after_s: None, now_ms: 2_000 }),
            };
        }
        if let Action::Respond { status, .. } = &action {
            prop_assert!([502, 503, 504].contains(status), "unexpected status {status}");
        }
        r.handle(Event::Finished { id: 7, usage: None, now_ms: 3_000 });
        prop_assert!(r.in_flight().iter().all(|&c| c == 0), "slots leaked: {:?}", r.in_flight());
    }
}

/// A passthrough request to node `a` (`body`: read whole, or streamed).
fn passthrough(id: u64, method: &str, body: crate::wire::RequestBody) -> Event {
    Event::Request {
        id,
        method: method.into(),
        target: "/v1/files".into(),
        headers: Vec::new(),
        country: Some("US".into()),
        client: None,
        body,
        now_ms: 1_000,
        random: 0,
        key_sha256: None,
        body_facts: None,
        token: None,
        fleet: None,
    }
}

#[test]
fn a_failed_attempt_goes_elsewhere_only_as_its_retry_type_allows() {
    let fleet = "nodes:\n  - {id: a, type: cloud, host: \"http://a\"}\n  - {id: b, type: cloud, host: \"http://b\"}\nrouting:\n  rules:\n    - {match: {type: \"*\"}, target: a, fallback: [b]}\n  passthrough: a\nhealth_check: {unhealthy_threshold: 10}\n";
    // An inference call may be made twice: after a timeout (sent) it goes on.
    let mut r = router(fleet);
    assert_eq!(forwarded(&mut r, request(1, "US", "m", 0)), Some("a"));
    let again = Event::OriginFailed { id: 1, failure: Failure::Timeout, retry: RetryType::Sent, now_ms: 1_100 };
    assert_eq!(forwarded(&mut r, again), Some("b"));

    // A POST through a passthrough path that reached the origin is not made
    // again, and the answer says why; one the origin never saw would be.
    let explain = |action: Action| match action {
        Action::Respond { status, body, .. } => (status, String::from_utf8_lossy(&body).into_owned()),
        other => panic!("expected an answer, got {other:?}"),
    };
    let buffered = || crate::wire::RequestBody::Buffered(b"{}".to_vec());
    assert_eq!(forwarded(&mut r, passthrough(2, "POST", buffered())), Some("a"));
    let sent = Event::OriginFailed { id: 2, failure: Failure::Reset, retry: RetryType::Sent, now_ms: 1_200 };
    let (status, message) = explain(r.handle(sent));
    assert_eq!(status, 502);
    assert!(message.contains("a may have acted on it, and its method is not idempotent"), "{message}");
    assert_eq!(forwarded(&mut r, passthrough(3, "POST", buffered())), Some("a"));
    let unsent = Event::OriginFailed { id: 3, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: 1_300 };
    let (_, message) = explain(r.handle(unsent));
    assert!(!message.contains("not sent to another node"), "{message}");

    // A streamed body is gone after any attempt.
    assert_eq!(forwarded(&mut r, passthrough(4, "PUT", crate::wire::RequestBody::Streamed)), Some("a"));
    let (_, message) = explain(r.handle(Event::OriginFailed {
        id: 4,
        failure: Failure::Connect,
        retry: RetryType::NotSent,
        now_ms: 1_400,
    }));
    assert!(message.contains("its body was streamed through and is gone"), "{message}");
}

#[test]
fn learned_sizing_sends_the_hardest_share_to_the_largest_model_and_says_so() {
    let config = |routing: &str| {
        format!(
            "nodes:\n  - {{id: n, type: local, host: \"http://n\", models: [tiny, mid, huge]}}\nmodel_routing: {{{routing}}}\n"
        )
    };
    let ask = |r: &mut Router, id: u64, prompt: &str, kind: Option<&str>| {
        let mut event = request(id, "US", "auto", 0);
        if let Event::Request { body, headers, .. } = &mut event {
            let json = serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": prompt}]});
            *body = crate::wire::RequestBody::Buffered(json.to_string().into_bytes());
            headers.extend(kind.map(|k| Header::new("x-request-type", k)));
        }
        match r.handle(event) {
            Action::Forward(f) => {
                let explain = f.explain(r.config(), None).expect("the node is in the config");
                let header = explain.headers().into_iter().find(|h| h.name == "x-edge-model");
                let header = header.map(|h| String::from_utf8(h.value.to_vec()).expect("header values are text"));
                (f.body, header)
            }
            other => panic!("expected a forward, got {other:?}"),
        }
    };
    let easy = "False analogy is another name for which fallacy?\nA. Over generalization\nB. Composition\nC. Concomitance\nD. Hasty generalization\nAnswer:";
    let hard = "Janet had 22 green pens and 10 yellow pens. Then she bought 6 bags of blue pens and 2 bags of red pens. There were 9 pens in each bag of blue and 6 pens in each bag of red. How many pens does Janet have now?";

    let mut r = router(&config("strategy: learned, large_share: 0.3"));
    let (body, header) = ask(&mut r, 1, hard, None);
    assert_eq!(body, ForwardBody::RewriteModel("huge".into()), "a word problem is in the hardest 30%");
    let header = header.expect("a rewrite is explained");
    let (model, difficulty) = crate::wire::Difficulty::parse_header(&header);
    let difficulty = difficulty.unwrap_or_else(|| panic!("the score is shown: {header}"));
    assert_eq!(model, "huge");
    assert!(difficulty.band >= 8 && difficulty.score_milli > 250, "{header}");
    let (body, header) = ask(&mut r, 2, easy, None);
    assert_eq!(body, ForwardBody::RewriteModel("tiny".into()), "{header:?}");
    assert!(
        header.as_deref().is_some_and(|h| h.starts_with("tiny; score=0.") && h.ends_with("; band=1")),
        "{header:?}"
    );
    // An explicit complex type still gets the largest, without a score.
    let (body, header) = ask(&mut r, 3, easy, Some("complex_reasoning"));
    assert_eq!((body, header.as_deref()), (ForwardBody::RewriteModel("huge".into()), Some("huge")));

    // The share is the operator's: none, or all.
    let mut none = router(&config("strategy: learned, large_share: 0"));
    assert_eq!(ask(&mut none, 1, hard, None).0, ForwardBody::RewriteModel("tiny".into()));
    let mut all = router(&config("strategy: learned, large_share: 1"));
    assert_eq!(ask(&mut all, 1, easy, None).0, ForwardBody::RewriteModel("huge".into()));
    // The tokens strategy (the default) sends both short prompts to the smallest, with no score.
    let mut tokens = router(&config("small_max_tokens: 1000"));
    assert_eq!(ask(&mut tokens, 1, hard, None), (ForwardBody::RewriteModel("tiny".into()), Some("tiny".into())));
}

#[test]
fn large_share_is_checked_where_it_is_written() {
    let load = |routing: &str| {
        let yaml = format!(
            "nodes:\n  - {{id: n, type: local, host: \"http://n\", models: [a, b]}}\nmodel_routing: {routing}\n"
        );
        RouterConfig::load("t.yaml", &yaml).map(|_| ()).map_err(|e| e.to_string())
    };
    let e = load("{large_share: 0.3}").unwrap_err();
    assert!(e.contains("t.yaml:3:17") && e.contains("applies to `strategy: learned`"), "{e}");
    let e = load("{strategy: learned, large_share: 30}").unwrap_err();
    assert!(e.contains("model_routing.large_share") && e.contains("from 0 to 1"), "{e}");
    let e = load("{strategy: smart}").unwrap_err();
    assert!(e.contains("tokens") && e.contains("learned"), "{e}");
    assert_eq!(load("{strategy: learned}"), Ok(()));
}

#[test]
fn only_admitted_requests_choosing_for_themselves_are_counted_and_shown_their_score() {
    let key = "sk-auto";
    let digest: String = crate::auth::key_digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let yaml = format!(
        "nodes:\n  - {{id: named, type: local, host: \"http://n\", models: [m]}}\n\
         \x20 - {{id: sized, type: local, host: \"http://s\", models: [small, large]}}\n\
         \x20 - {{id: single, type: cloud, host: \"http://o\", models: [only]}}\n\
         auth:\n  keys:\n    - {{sha256: \"{digest}\", tenant: t, limits: {{requests_per_minute: 1}}}}\n\
         model_routing: {{strategy: learned}}\nrouting:\n  rules:\n\
         \x20   - {{match: {{model: m}}, target: named, fallback: [sized]}}\n\
         \x20   - {{match: {{model: auto}}, target: sized, fallback: [single]}}\n"
    );
    let ask = |id: u64, model: &str, keyed: bool| {
        let mut event = request(id, "US", model, 0);
        if let Event::Request { body, headers, .. } = &mut event {
            let json =
                serde_json::json!({"model": model, "messages": [{"role": "user", "content": "What is 17 * 23?"}]});
            *body = crate::wire::RequestBody::Buffered(json.to_string().into_bytes());
            if keyed {
                headers.push(Header::new("authorization", &format!("Bearer {key}")));
            }
        }
        event
    };
    let mut r = router(&yaml);
    let window = |r: &Router| r.calibrator.clone();

    // A named model served as asked: placed for its fallback, not counted.
    let Action::Forward(f) = r.handle(ask(1, "m", false)) else { panic!("forwarded") };
    assert_eq!((f.body, f.difficulty), (ForwardBody::Original, None));
    let before = window(&r).expect("the fallback's choice was placed");
    let scorer = crate::difficulty::Scorer::trained();
    assert_eq!(before, crate::difficulty::Calibrator::seeded(scorer.quantiles()), "nothing counted yet");

    // `auto`, admitted: counted, and shown with the model its size chose.
    let Action::Forward(f) = r.handle(ask(2, "auto", true)) else { panic!("forwarded") };
    assert!(matches!(f.body, ForwardBody::RewriteModel(_)) && f.difficulty.is_some(), "{f:?}");
    let after_one = window(&r).expect("window");
    assert_ne!(after_one, before, "counted");
    // Its fallback to a one-model node is a rewrite the score did not choose: no score shown.
    let Action::Forward(fallback) =
        r.handle(Event::ResponseHead { id: 2, status: 503, retry_after_s: None, now_ms: 1_100 })
    else {
        panic!("falls back")
    };
    assert_eq!((&fallback.body, fallback.difficulty), (&ForwardBody::RewriteModel("only".into()), None));
    let explain = fallback.explain(r.config(), None).expect("explained");
    assert_eq!(
        explain.headers().iter().find(|h| h.name == "x-edge-model").map(|h| h.value.to_vec()),
        Some(b"only".to_vec())
    );

    // Refused by its key's limit: placed on the way, never counted.
    let Action::Respond { status, .. } = r.handle(ask(3, "auto", true)) else { panic!("refused") };
    assert_eq!(status, 429);
    assert_eq!(window(&r), Some(after_one));
}
