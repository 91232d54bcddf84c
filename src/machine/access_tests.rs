//! Keys, tenants, allow-lists and rate limits, as the router applies them.

use super::*;
use crate::auth::key_digest;
use crate::wire::{Forward, RequestBody, Usage};

fn router(yaml: &str) -> Router {
    Router::new(RouterConfig::load("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")))
}

fn hex(key: &str) -> String {
    key_digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A chat request with `key`, from `client`, asking for up to `max_tokens`.
fn call(id: u64, key: &str, client: Option<&str>, max_tokens: u64, now_ms: u64) -> Event {
    let body = format!(r#"{{"model":"m","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"hi"}}]}}"#);
    Event::Request {
        id,
        method: "POST".into(),
        target: "/v1/chat/completions".into(),
        headers: vec![Header::new("authorization", &format!("Bearer {key}"))],
        country: None,
        client: client.map(Into::into),
        body: RequestBody::Buffered(body.into_bytes()),
        now_ms,
        random: 0,
        key_sha256: None,
        body_facts: None,
        token: None,
        fleet: None,
    }
}

fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.name == name).and_then(|h| std::str::from_utf8(&h.value).ok())
}

fn refused(action: Action) -> (u16, Vec<Header>, serde_json::Value) {
    let Action::Respond { status, headers, body } = action else { panic!("not refused: {action:?}") };
    (status, headers, serde_json::from_slice(&body).expect("JSON"))
}

fn forward(action: Action) -> Forward {
    let Action::Forward(f) = action else { panic!("not forwarded: {action:?}") };
    f
}

#[test]
fn an_expired_key_is_refused_while_its_successor_serves() {
    let yaml = format!(
        "nodes:\n  - {{id: a, type: local, host: \"http://a\"}}\nauth:\n  required: true\n  keys:\n\
         \x20   - {{sha256: \"{}\", tenant: acme, name: old, not_after: \"2026-12-01T00:00:00Z\"}}\n\
         \x20   - {{sha256: \"{}\", tenant: acme, name: new}}\n",
        hex("sk-old"),
        hex("sk-new")
    );
    let mut r = router(&yaml);
    let before = 1_764_547_200_000; // 2025-12-01
    let after = 1_796_083_200_001; // just past 2026-12-01
    forward(r.handle(call(1, "sk-old", None, 10, before)));
    let (status, headers, body) = refused(r.handle(call(2, "sk-old", None, 10, after)));
    assert_eq!((status, header(&headers, "www-authenticate")), (401, Some("Bearer")));
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
    forward(r.handle(call(3, "sk-new", None, 10, after)));
}

#[test]
fn allow_lists_of_key_and_tenant_both_hold() {
    let yaml = format!(
        "nodes:\n  - {{id: a, type: local, host: \"http://a\"}}\nauth:\n  keys:\n\
         \x20   - {{sha256: \"{}\", tenant: acme, allow_ips: [10.1.0.0/16]}}\n\
         \x20 tenants:\n    acme: {{allow_ips: [10.0.0.0/8, \"2001:db8::/32\"]}}\n",
        hex("sk-a")
    );
    let mut r = router(&yaml);
    forward(r.handle(call(1, "sk-a", Some("10.1.2.3"), 10, 0)));
    for (id, client) in [(2, Some("10.2.0.1")), (3, Some("2001:db8::1")), (4, Some("garbage")), (5, None)] {
        let (status, _, body) = refused(r.handle(call(id, "sk-a", client, 10, 0)));
        assert_eq!((status, body["error"]["type"].as_str()), (403, Some("permission_denied")), "{client:?}");
    }
}

#[test]
fn requests_per_minute_of_a_tenant_refuse_with_openai_headers() {
    let yaml = format!(
        "nodes:\n  - {{id: a, type: local, host: \"http://a\"}}\nauth:\n  keys:\n\
         \x20   - {{sha256: \"{}\", tenant: acme}}\n    - {{sha256: \"{}\", tenant: acme}}\n\
         \x20 tenants:\n    acme: {{limits: {{requests_per_minute: 2}}}}\n",
        hex("sk-1"),
        hex("sk-2")
    );
    let mut r = router(&yaml);
    let first = forward(r.handle(call(1, "sk-1", None, 10, 0)));
    let w = first.ratelimit.requests.expect("requests window");
    assert_eq!((w.limit, w.remaining), (2, 1));
    assert!(first.ratelimit.tokens.is_none(), "no token limit, no token headers");
    // The tenant's two keys share its limit.
    forward(r.handle(call(2, "sk-2", None, 10, 0)));
    let (status, headers, body) = refused(r.handle(call(3, "sk-1", None, 10, 0)));
    assert_eq!((status, body["error"]["type"].as_str()), (429, Some("rate_limited")));
    assert!(body["error"]["message"].as_str().unwrap().contains("tenant acme"), "{body}");
    assert_eq!(header(&headers, "retry-after"), Some("30"));
    assert_eq!(header(&headers, "retry-after-ms"), Some("30000"));
    assert_eq!(header(&headers, "x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(header(&headers, "x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(header(&headers, "x-ratelimit-reset-requests"), Some("1m0s"));
    // Half a minute later one request has come back.
    forward(r.handle(call(4, "sk-1", None, 10, 30_000)));
}

#[test]
fn tokens_are_reserved_from_the_estimate_and_settled_from_the_usage() {
    let yaml = format!(
        "nodes:\n  - {{id: a, type: local, host: \"http://a\"}}\nauth:\n  keys:\n\
         \x20   - {{sha256: \"{}\", tenant: acme, limits: {{tokens_per_minute: 1000}}}}\n",
        hex("sk-a")
    );
    let mut r = router(&yaml);
    let f = forward(r.handle(call(1, "sk-a", None, 700, 0)));
    assert!(f.meter, "the usage is needed to settle");
    let reserved = 1000 - f.ratelimit.tokens.unwrap().remaining;
    assert!(reserved >= 700, "the prompt and max_tokens are reserved: {reserved}");
    let (status, headers, body) = refused(r.handle(call(2, "sk-a", None, 700, 0)));
    assert_eq!(status, 429);
    assert!(body["error"]["message"].as_str().unwrap().contains("key "), "{body}");
    assert!(header(&headers, "x-ratelimit-remaining-tokens").is_some());
    // The first answer used 50 tokens: the rest goes back.
    r.handle(Event::ResponseHead { id: 1, status: 200, retry_after_s: None, now_ms: 0 });
    r.handle(Event::Finished { id: 1, usage: Some(Usage { prompt_tokens: 10, completion_tokens: 40 }), now_ms: 0 });
    let f = forward(r.handle(call(3, "sk-a", None, 700, 0)));
    assert_eq!(f.ratelimit.tokens.unwrap().remaining, 1000 - 50 - reserved);
    // More than a minute's allowance never fits, and says so.
    let (_, headers, body) = refused(r.handle(call(4, "sk-a", None, 5_000, 0)));
    assert!(body["error"]["message"].as_str().unwrap().contains("too large"), "{body}");
    assert_eq!(header(&headers, "retry-after"), None);
}

#[test]
fn a_request_refused_for_another_reason_takes_nothing_from_the_limits() {
    let yaml = format!(
        "nodes:\n  - {{id: a, type: local, host: \"http://a\"}}\nauth:\n  keys:\n\
         \x20   - {{sha256: \"{}\", tenant: acme, limits: {{requests_per_minute: 1}}}}\n",
        hex("sk-a")
    );
    let mut r = router(&yaml);
    let mut bad = call(1, "sk-a", None, 10, 0);
    if let Event::Request { body, .. } = &mut bad {
        *body = RequestBody::Buffered(b"{not json".to_vec());
    }
    assert_eq!(refused(r.handle(bad)).0, 400);
    forward(r.handle(call(2, "sk-a", None, 10, 0)));
}

#[test]
fn limits_survive_a_reload_and_follow_the_new_sizes() {
    let config = |rpm: u64| {
        format!(
            "nodes:\n  - {{id: a, type: local, host: \"http://a\"}}\nauth:\n  keys:\n\
             \x20   - {{sha256: \"{}\", tenant: acme}}\n  tenants:\n    acme: {{limits: {{requests_per_minute: {rpm}}}}}\n",
            hex("sk-a")
        )
    };
    let mut r = router(&config(2));
    forward(r.handle(call(1, "sk-a", None, 10, 0)));
    forward(r.handle(call(2, "sk-a", None, 10, 0)));
    r.reconfigure(RouterConfig::load("t.yaml", &config(3)).unwrap());
    // Spent is spent: the larger limit refills from where the bucket was.
    let f = forward(r.handle(call(3, "sk-a", None, 10, 20_000)));
    assert_eq!(f.ratelimit.requests.unwrap().limit, 3);
    assert_eq!(refused(r.handle(call(4, "sk-a", None, 10, 20_000))).0, 429);
}

#[test]
fn the_fleet_store_decides_and_an_unreachable_one_leaves_each_box_its_share() {
    use crate::wire::{Fleet, RateLimit, Window};
    let yaml = format!(
        "nodes:\n  - {{id: a, type: local, host: \"http://a\"}}\nstate: {{redis: \"redis://127.0.0.1:6379\", local_share: 50}}\n\
         auth:\n  keys:\n    - {{sha256: \"{}\", tenant: acme}}\n  tenants:\n    acme: {{limits: {{requests_per_minute: 4, tokens_per_minute: 100000}}}}\n",
        hex("sk-a")
    );
    let mut r = router(&yaml);
    let with = |id: u64, fleet: Fleet| {
        let mut e = call(id, "sk-a", None, 10, 0);
        if let Event::Request { fleet: f, .. } = &mut e {
            *f = Some(fleet);
        }
        e
    };
    let global = RateLimit { requests: Some(Window { limit: 4, remaining: 0, reset_ms: 60_000 }), tokens: None };
    // The store admitted it: its limits are the ones reported, and the
    // usage is read, to settle the tokens there.
    let admitted = forward(r.handle(with(1, Fleet::Admitted(global))));
    assert_eq!((admitted.ratelimit, admitted.meter), (global, true));
    // The store refused it: 429, named by the caller's scope.
    let refused = Fleet::Refused {
        scope: 0,
        requests: true,
        limit: 4,
        requested: 1,
        retry_after_ms: Some(15_000),
        ratelimit: global,
    };
    let (status, headers, body) = super::access_tests::refused(r.handle(with(2, refused)));
    assert_eq!((status, header(&headers, "retry-after")), (429, Some("15")));
    assert!(body["error"]["message"].as_str().unwrap().contains("tenant acme"), "{body}");
    // Unreachable: this box alone takes half of the four.
    forward(r.handle(with(3, Fleet::Unreachable)));
    let f = forward(r.handle(with(4, Fleet::Unreachable)));
    assert_eq!(f.ratelimit.requests.unwrap().limit, 2);
    assert_eq!(super::access_tests::refused(r.handle(with(5, Fleet::Unreachable))).0, 429);
}
