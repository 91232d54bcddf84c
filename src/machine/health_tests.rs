//! The breaker per node as requests see it.

use origin_fallback::RetryType;

use super::*;
use crate::wire::Forward;

const FLEET: &str = "
nodes:
  - {id: primary, type: local, host: \"http://primary\"}
  - {id: backup, type: cloud, host: \"http://backup\"}
routing:
  rules:
    - {name: main, match: {type: \"*\"}, target: primary, fallback: [backup]}
health_check: {unhealthy_threshold: 2, cool_down: 1s, max_cool_down: 4s}
";

fn request(id: u64, now_ms: u64) -> Event {
    chat_event(id, now_ms, id, r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
}

/// Handles `event`, which must be forwarded: to which node id, and the attempt's number.
fn forward_to(r: &mut Router, event: Event) -> (&str, u32) {
    let action = r.handle(event);
    match (forward_id(r, &action), &action) {
        (Some(node), Action::Forward(f)) => (node, f.attempt),
        _ => panic!("expected a forward, got {action:?}"),
    }
}

/// A request whose first node refuses the connection and whose fallback answers 200.
fn failing_over(r: &mut Router, id: u64, now_ms: u64) {
    assert_eq!(forward_to(r, request(id, now_ms)), ("primary", 1));
    assert_eq!(
        forward_to(r, Event::OriginFailed { id, failure: Failure::Connect, retry: RetryType::NotSent, now_ms }),
        ("backup", 2)
    );
    assert!(matches!(
        r.handle(Event::ResponseHead { id, status: 200, retry_after_s: None, now_ms }),
        Action::Deliver(_)
    ));
    r.handle(Event::Finished { id, usage: None, now_ms });
}

#[test]
fn failures_open_the_breaker_and_a_probe_after_the_cool_down_closes_it() {
    let mut r = Router::new(RouterConfig::load("t.yaml", FLEET).unwrap_or_else(|e| panic!("{e}")));
    failing_over(&mut r, 1, 1_000);
    assert!(r.take_notices().is_empty(), "one failure is below the threshold");
    failing_over(&mut r, 2, 1_100);
    let notices = r.take_notices();
    assert!(
        matches!(&notices[..], [Notice::Unhealthy { node, probe_in_ms, .. }] if node == "primary" && (500..=1_000).contains(probe_in_ms)),
        "{notices:?}"
    );

    // While open, the primary is skipped: the backup serves at the first attempt.
    assert_eq!(forward_to(&mut r, request(3, 1_200)), ("backup", 1));
    r.handle(Event::ResponseHead { id: 3, status: 200, retry_after_s: None, now_ms: 1_210 });
    r.handle(Event::Finished { id: 3, usage: None, now_ms: 1_220 });
    assert!(r.take_notices().is_empty(), "a state change is told once, not per request");

    // After the cool-down one request probes; a concurrent one goes to the backup.
    assert_eq!(forward_to(&mut r, request(4, 2_200)), ("primary", 1));
    assert_eq!(r.take_notices(), [Notice::Probing { node: "primary".into() }]);
    assert_eq!(forward_to(&mut r, request(5, 2_200)), ("backup", 1));
    assert!(matches!(
        r.handle(Event::ResponseHead { id: 4, status: 200, retry_after_s: None, now_ms: 2_250 }),
        Action::Deliver(_)
    ));
    // The probe's good head closes the breaker at once, so the node is
    // back while the probe's body is still streaming.
    assert_eq!(r.take_notices(), [Notice::Healthy { node: "primary".into() }]);
    assert_eq!(forward_to(&mut r, request(6, 2_300)), ("primary", 1));
}

#[test]
fn bodies_that_break_off_after_a_good_head_open_the_breaker() {
    let mut r = Router::new(RouterConfig::load("t.yaml", FLEET).unwrap_or_else(|e| panic!("{e}")));
    for id in [1, 2] {
        assert_eq!(forward_to(&mut r, request(id, 1_000)), ("primary", 1));
        r.handle(Event::ResponseHead { id, status: 200, retry_after_s: None, now_ms: 1_000 });
        r.handle(Event::BodyFailed { id, failure: Failure::Reset, now_ms: 1_010 });
        r.handle(Event::Finished { id, usage: None, now_ms: 1_010 });
    }
    assert!(matches!(r.health()[0], BreakerState::Open { .. }), "{:?}", r.health());
    assert_eq!(forward_to(&mut r, request(3, 1_020)), ("backup", 1));
}

#[test]
fn client_errors_and_501_do_not_count_but_other_5xx_do() {
    let mut r = Router::new(RouterConfig::load("t.yaml", FLEET).unwrap_or_else(|e| panic!("{e}")));
    for (id, status) in [(1, 404), (2, 429), (3, 501), (4, 400)] {
        forward_to(&mut r, request(id, 1_000));
        r.handle(Event::ResponseHead { id, status, retry_after_s: None, now_ms: 1_000 });
        r.handle(Event::Finished { id, usage: None, now_ms: 1_000 });
    }
    assert_eq!(r.health()[0], BreakerState::Closed { failures: 0 });
    for id in [5, 6] {
        forward_to(&mut r, request(id, 1_000));
        // The backup is free, so a 503 moves on; it still counts against the primary.
        assert_eq!(
            forward_to(&mut r, Event::ResponseHead { id, status: 503, retry_after_s: None, now_ms: 1_000 }),
            ("backup", 2)
        );
        r.handle(Event::ResponseHead { id, status: 200, retry_after_s: None, now_ms: 1_000 });
        r.handle(Event::Finished { id, usage: None, now_ms: 1_000 });
    }
    assert!(matches!(r.health()[0], BreakerState::Open { .. }));
    assert_eq!(r.health()[1], BreakerState::Closed { failures: 0 });
}

#[test]
fn without_panic_mode_every_candidate_unhealthy_is_a_503_with_retry_after() {
    let config = FLEET.replace("fallback: [backup]", "fallback: []").replace("4s}", "4s, panic_threshold: 0}");
    let mut r = Router::new(RouterConfig::load("t.yaml", &config).unwrap_or_else(|e| panic!("{e}")));
    for id in [1, 2] {
        forward_to(&mut r, request(id, 1_000));
        let failed =
            r.handle(Event::OriginFailed { id, failure: Failure::Timeout, retry: RetryType::Sent, now_ms: 1_000 });
        assert!(matches!(failed, Action::Respond { status: 504, .. }), "{failed:?}");
    }
    let Action::Respond { status, headers, body } = r.handle(request(3, 1_100)) else { panic!("expected a refusal") };
    assert_eq!(status, 503);
    let retry =
        headers.iter().find(|h| h.name == "retry-after").map(|h| String::from_utf8_lossy(&h.value).into_owned());
    assert!(retry.is_some_and(|s| s == "1"), "{headers:?}");
    assert!(String::from_utf8_lossy(&body).contains("unhealthy (primary)"));
}

#[test]
fn a_probe_whose_client_left_hands_the_probe_to_the_next_request() {
    let mut r = Router::new(RouterConfig::load("t.yaml", FLEET).unwrap_or_else(|e| panic!("{e}")));
    failing_over(&mut r, 1, 1_000);
    failing_over(&mut r, 2, 1_000);
    assert_eq!(forward_to(&mut r, request(3, 5_000)), ("primary", 1));
    r.handle(Event::Finished { id: 3, usage: None, now_ms: 5_010 });
    assert_eq!(forward_to(&mut r, request(4, 5_020)), ("primary", 1), "the next request probes");
}

#[test]
fn failed_active_probes_open_the_breaker_without_a_failed_request() {
    let mut r = Router::new(RouterConfig::load("t.yaml", FLEET).unwrap_or_else(|e| panic!("{e}")));
    let probe = |ok, now_ms| Event::Probed { node: "primary".into(), ok, now_ms };
    r.handle(Event::Probed { node: "nonexistent".into(), ok: false, now_ms: 0 });
    r.handle(probe(false, 0));
    assert_eq!(r.health()[0], BreakerState::Closed { failures: 1 });
    r.handle(probe(false, 10));
    assert!(matches!(r.take_notices()[..], [Notice::Unhealthy { .. }]));
    assert_eq!(forward_to(&mut r, request(1, 20)), ("backup", 1));
    r.handle(probe(true, 2_000));
    assert_eq!(r.take_notices(), [Notice::Healthy { node: "primary".into() }]);
    assert_eq!(forward_to(&mut r, request(2, 2_010)), ("primary", 1));
}

#[test]
fn the_retry_budget_stops_failing_over_when_most_requests_fail() {
    let config = FLEET
        .replace("fallback: [backup]}", "fallback: [backup]}\n  retry_budget: {ratio: 0, min_per_second: 1}")
        .replace("unhealthy_threshold: 2", "unhealthy_threshold: 1000");
    let mut r = Router::new(RouterConfig::load("t.yaml", &config).unwrap_or_else(|e| panic!("{e}\n{config}")));
    // One retry per second over ten seconds: ten requests fail over.
    for id in 0..10 {
        failing_over(&mut r, id, 1_000);
    }
    assert_eq!(forward_to(&mut r, request(10, 1_000)), ("primary", 1));
    let Action::Respond { status, body, .. } =
        r.handle(Event::OriginFailed { id: 10, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: 1_000 })
    else {
        panic!("the budget is spent: no fallback")
    };
    assert_eq!(status, 502);
    assert!(String::from_utf8_lossy(&body).contains("retry budget spent"));
    // A 503 is then passed on as it is instead of being retried.
    forward_to(&mut r, request(11, 1_000));
    assert!(matches!(
        r.handle(Event::ResponseHead { id: 11, status: 503, retry_after_s: None, now_ms: 1_000 }),
        Action::Deliver(_)
    ));
    // Ten seconds on, the window has moved and failing over works again.
    failing_over(&mut r, 12, 11_000);
}

/// Opens `node`'s breaker (index in `r`'s config) with two failed requests
/// that go to it alone, at `now_ms`.
fn open(r: &mut Router, first_id: u64, now_ms: u64) {
    for id in first_id..first_id + 2 {
        let action = r.handle(request(id, now_ms));
        assert!(matches!(action, Action::Forward(_)), "{action:?}");
        r.handle(Event::OriginFailed { id, failure: Failure::Connect, retry: RetryType::NotSent, now_ms });
    }
}

#[test]
fn with_every_candidate_unhealthy_a_request_goes_to_the_one_whose_cool_down_ends_first() {
    // Each node alone serves its own requests first, so each breaker opens at its own time.
    let config = FLEET.replace("fallback: [backup]", "fallback: []");
    let mut r = Router::new(RouterConfig::load("t.yaml", &config).unwrap_or_else(|e| panic!("{e}")));
    open(&mut r, 1, 1_000);
    assert!(matches!(r.health()[0], BreakerState::Open { .. }));
    let action = r.handle(request(3, 1_100));
    let Action::Forward(f) = &action else { panic!("panic mode sends it anyway: {action:?}") };
    assert!(f.panic, "the forward says it is a panic");
    assert_eq!(forward_id(&r, &action), Some("primary"));
    let notices = r.take_notices();
    assert!(
        notices.iter().any(|n| matches!(n, Notice::Panic { node, healthy: 0, candidates: 1 } if node == "primary")),
        "{notices:?}"
    );
    let explain = f.explain(r.config(), None).expect("a known node");
    assert!(explain.panic && explain.headers().contains(&Header::new("x-edge-panic", "true")));
    // Told once per opening, not per request.
    r.handle(Event::OriginFailed { id: 3, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: 1_150 });
    let again = r.handle(request(4, 1_200));
    assert!(matches!(again, Action::Forward(Forward { panic: true, .. })), "{again:?}");
    assert!(!r.take_notices().iter().any(|n| matches!(n, Notice::Panic { .. })));
    // A good answer shows the node serves: its breaker closes.
    r.handle(Event::ResponseHead { id: 4, status: 200, retry_after_s: None, now_ms: 1_250 });
    assert_eq!(r.health()[0], BreakerState::Closed { failures: 0 });
    assert!(r.take_notices().iter().any(|n| matches!(n, Notice::Healthy { node } if node == "primary")));
}

#[test]
fn panic_mode_picks_the_earliest_cool_down_after_every_healthy_node() {
    let fleet = "
nodes:
  - {id: a, type: local, host: \"http://a\"}
  - {id: b, type: local, host: \"http://b\"}
  - {id: c, type: local, host: \"http://c\"}
routing:
  default: priority
  rules:
    - {name: only-a, match: {model: a}, target: a}
    - {name: only-b, match: {model: b}, target: b}
    - {name: all, match: {type: \"*\"}, target: c, fallback: [b, a]}
health_check: {unhealthy_threshold: 2, cool_down: 10s, max_cool_down: 40s}
";
    let mut r = Router::new(RouterConfig::load("t.yaml", fleet).unwrap_or_else(|e| panic!("{e}")));
    let only = |id: u64, model: &str, now_ms: u64| {
        chat_event(id, now_ms, id, &format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#))
    };
    // b opens first, then a: b's cool-down ends first.
    for (id, model, now) in [(1, "b", 1_000), (2, "b", 1_000), (3, "a", 5_000), (4, "a", 5_000)] {
        assert!(matches!(r.handle(only(id, model, now)), Action::Forward(_)));
        r.handle(Event::OriginFailed { id, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: now });
    }
    // One healthy node of three is below half: c first, then the open ones, b leading.
    assert_eq!(forward_to(&mut r, request(5, 6_000)), ("c", 1));
    let next = Event::OriginFailed { id: 5, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: 6_010 };
    assert_eq!(forward_to(&mut r, next), ("b", 2));
    let next = Event::OriginFailed { id: 5, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: 6_020 };
    assert_eq!(forward_to(&mut r, next), ("a", 3), "each node once, then the next");
    let last =
        r.handle(Event::OriginFailed { id: 5, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: 6_030 });
    assert!(matches!(last, Action::Respond { status: 502, .. }), "{last:?}");
}

#[test]
fn panic_mode_never_crosses_a_drain_or_a_residency() {
    let config = FLEET.replace("fallback: [backup]", "fallback: []");
    let mut r = Router::new(RouterConfig::load("t.yaml", &config).unwrap_or_else(|e| panic!("{e}")));
    open(&mut r, 1, 1_000);
    r.handle(Event::Control { command: crate::wire::Control::Drain { node: "primary".into() }, now_ms: 1_050 });
    let drained = r.handle(request(3, 1_100));
    assert!(matches!(drained, Action::Respond { status: 503, .. }), "{drained:?}");

    let fenced = "
nodes:
  - {id: eu, type: cloud, host: \"http://eu\", data_residency: EU}
  - {id: us, type: cloud, host: \"http://us\", data_residency: US}
routing:
  rules:
    - {name: main, match: {type: \"*\"}, target: eu, fallback: [us]}
health_check: {unhealthy_threshold: 1}
residency:
  jurisdictions: {EU: [DE], US: [US]}
";
    let mut r = Router::new(RouterConfig::load("t.yaml", fenced).unwrap_or_else(|e| panic!("{e}")));
    let german = |id: u64, now_ms: u64| {
        let Event::Request { id, method, target, headers, body, random, key_sha256, body_facts, .. } =
            request(id, now_ms)
        else {
            unreachable!()
        };
        Event::Request {
            id,
            method,
            target,
            headers,
            country: Some("DE".into()),
            client: None,
            body,
            now_ms,
            random,
            key_sha256,
            body_facts,
            token: None,
            fleet: None,
        }
    };
    assert_eq!(forward_to(&mut r, german(1, 1_000)), ("eu", 1));
    let failed =
        r.handle(Event::OriginFailed { id: 1, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: 1_000 });
    assert!(matches!(failed, Action::Respond { .. }), "a German request never goes to us: {failed:?}");
    // eu is open now; the next German request may only use eu, so it goes there in panic.
    assert_eq!(forward_to(&mut r, german(2, 1_100)), ("eu", 1));
}

#[test]
fn the_issues_blackout_a_lone_passthrough_node_keeps_serving_after_a_few_5xx() {
    let lone = "
nodes:
  - {id: origin, type: local, host: \"http://origin\"}
routing:
  passthrough: origin
cache: {enabled: false}
";
    let mut r = Router::new(RouterConfig::load("t.yaml", lone).unwrap_or_else(|e| panic!("{e}")));
    let get = |id: u64, path: &str| Event::Request {
        id,
        method: "GET".into(),
        target: path.into(),
        headers: Vec::new(),
        country: None,
        client: None,
        body: crate::wire::RequestBody::Buffered(Vec::new()),
        now_ms: 1_000 + id,
        random: id,
        key_sha256: None,
        body_facts: None,
        token: None,
        fleet: None,
    };
    for id in 1..=3 {
        assert!(matches!(r.handle(get(id, "/broken")), Action::Forward(_)));
        r.handle(Event::ResponseHead { id, status: 503, retry_after_s: None, now_ms: 1_000 + id });
        r.handle(Event::Finished { id, usage: None, now_ms: 1_000 + id });
    }
    assert!(matches!(r.health()[0], BreakerState::Open { .. }), "three 503s opened it");
    let other = r.handle(get(4, "/fine"));
    assert!(matches!(other, Action::Forward(Forward { panic: true, .. })), "not a blackout: {other:?}");
    r.handle(Event::ResponseHead { id: 4, status: 200, retry_after_s: None, now_ms: 1_010 });
    assert_eq!(r.health()[0], BreakerState::Closed { failures: 0 }, "and the node is healthy again");
}
