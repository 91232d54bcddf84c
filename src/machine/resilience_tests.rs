//! Rate-limit pauses, daily budgets, canaries, operators' changes and the
//! status report, driven through events as a host would.

use serde_json::Value;

use origin_fallback::{GOLDEN_GAMMA, canary_draw};

use origin_fallback::RetryType;

use super::*;
use crate::wire::{Control, Restore};
use crate::wire::{Spend, Usage};

const DAY_MS: u64 = origin_fallback::MS_PER_DAY;

fn router(yaml: &str) -> Router {
    Router::new(RouterConfig::load("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")))
}

/// A chat request saying "hi": estimated at 7 prompt tokens plus `max_tokens`.
fn request(id: u64, now_ms: u64, random: u64, max_tokens: u64) -> Event {
    let body = format!(r#"{{"model":"m","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"hi"}}]}}"#);
    chat_event(id, now_ms, random, &body)
}

/// The id of the node `action`, a forward, goes to.
fn node_id<'r>(r: &'r Router, action: &Action) -> &'r str {
    forward_id(r, action).unwrap_or_else(|| panic!("expected a forward, got {action:?}"))
}

/// Handles `event`, which must be forwarded: the id of the node it goes to.
fn node_of(r: &mut Router, event: Event) -> &str {
    let action = r.handle(event);
    node_id(r, &action)
}

fn head(id: u64, status: u16, retry_after_s: Option<u32>, now_ms: u64) -> Event {
    Event::ResponseHead { id, status, retry_after_s, now_ms }
}

fn finished(id: u64, usage: Option<Usage>, now_ms: u64) -> Event {
    Event::Finished { id, usage, now_ms }
}

fn json_of(action: Action) -> (u16, Value) {
    match action {
        Action::Respond { status, body, .. } => {
            (status, serde_json::from_slice(&body).unwrap_or_else(|e| panic!("not JSON: {e}")))
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

const CHAIN: &str = "
nodes:
  - {id: a, type: cloud, host: \"http://a\", cost_per_1k_tokens: 2.0, max_cost_per_day: 1.05}
  - {id: b, type: cloud, host: \"http://b\"}
routing:
  rules:
    - {name: main, match: {}, target: a, fallback: [b]}
";

#[test]
fn a_429_with_retry_after_moves_on_and_rests_the_node_for_that_long() {
    let mut r = router(CHAIN);
    assert_eq!(node_of(&mut r, request(1, 1_000, 0, 10)), "a");
    // 429 is a fallback status: the host must ask, and the next node is tried.
    assert_eq!(node_of(&mut r, head(1, 429, Some(30), 1_010)), "b");
    r.handle(head(1, 200, None, 1_020));
    r.handle(finished(1, None, 1_030));
    // For 30 s the node gets nothing; then it is back.
    assert_eq!(node_of(&mut r, request(2, 30_000, 0, 10)), "b");
    r.handle(finished(2, None, 30_001));
    assert_eq!(node_of(&mut r, request(3, 31_011, 0, 10)), "a");
    // A 429 without retry-after moves on but imposes no pause.
    assert_eq!(node_of(&mut r, head(3, 429, None, 31_020)), "b");
    r.handle(finished(3, None, 31_030));
    assert_eq!(node_of(&mut r, request(4, 31_040, 0, 10)), "a");
    assert_eq!(r.health()[0], BreakerState::Closed { failures: 0 }, "a 429 is not a node failure");
}

#[test]
fn with_every_candidate_paused_the_answer_carries_the_shortest_pause() {
    let mut r = router(&CHAIN.replace("fallback: [b]", "fallback: []"));
    r.handle(request(1, 1_000, 0, 10));
    assert!(matches!(r.handle(head(1, 503, Some(7), 1_000)), Action::Deliver(_)), "the last node's 503 is passed on");
    r.handle(finished(1, None, 1_000));
    let Action::Respond { status, headers, body } = r.handle(request(2, 2_000, 0, 10)) else { panic!("no refusal") };
    assert_eq!(status, 503);
    assert!(headers.iter().any(|h| h.name == "retry-after" && h.value == b"6"), "{headers:?}");
    assert!(String::from_utf8_lossy(&body).contains("asked for a pause (a)"));
    // A pause that came with a 503 is answered with 503, one of a 429 with 429.
    assert!(String::from_utf8_lossy(&body).contains("nodes_unavailable"));
}

#[test]
fn spending_is_reserved_then_settled_from_usage_and_the_budget_skips_the_node() {
    let mut r = router(CHAIN);
    // Estimated 7 + 93 = 100 tokens at 2.0 per 1k: 0.2 reserved.
    assert_eq!(node_of(&mut r, request(1, 1_000, 0, 93)), "a");
    r.handle(head(1, 200, None, 1_010));
    let (_, status) = json_of(r.handle(Event::Status { now_ms: 1_020 }));
    assert_eq!(status["nodes"][0]["today"]["reserved"], 0.2);
    // The origin reports 300 tokens: 0.6 is settled and the reservation released.
    r.handle(finished(1, Some(Usage { prompt_tokens: 100, completion_tokens: 200 }), 1_030));
    assert_eq!(r.take_spent(), [Spend { node: "a".into(), day: 0, spent: 0.6 }]);
    assert!(r.take_spent().is_empty(), "told once");
    // 0.6 spent + 0.2 estimated fits under 1.05; settled without usage, a 2xx costs its estimate.
    assert_eq!(node_of(&mut r, request(2, 2_000, 0, 93)), "a");
    r.handle(head(2, 200, None, 2_010));
    r.handle(finished(2, None, 2_020));
    // 0.8 + 0.2 still fits; a failed attempt costs nothing and moves on.
    assert_eq!(node_of(&mut r, request(3, 3_000, 0, 93)), "a");
    assert_eq!(
        node_of(
            &mut r,
            Event::OriginFailed { id: 3, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: 3_010 }
        ),
        "b"
    );
    r.handle(finished(3, None, 3_020));
    // A bigger request (0.4) no longer fits: the node is skipped like an unhealthy one.
    assert_eq!(node_of(&mut r, request(4, 4_000, 0, 193)), "b");
    r.handle(finished(4, None, 4_010));
    let (_, status) = json_of(r.handle(Event::Status { now_ms: 4_020 }));
    let a = &status["nodes"][0]["today"];
    assert!((a["cost"].as_f64().unwrap_or(0.0) - 0.8).abs() < 1e-9, "{a}");
    assert_eq!((a["requests"].as_u64(), a["tokens"].as_u64(), a["reserved"].as_f64()), (Some(2), Some(400), Some(0.0)));
    assert_eq!(status["tenants_today"]["anonymous"]["requests"], 4);
    assert_eq!(status["rules_today"]["main"]["requests"], 4);
    // The next UTC day the budget starts again.
    assert_eq!(node_of(&mut r, request(5, DAY_MS + 1, 0, 193)), "a");
}

#[test]
fn a_shared_ledger_reserves_what_the_router_reserved_and_is_told_what_each_attempt_cost() {
    let mut r = router(CHAIN);
    assert!(r.take_settled().is_empty());
    // Not recording: a host without a shared ledger is never handed settlements.
    assert_eq!(node_of(&mut r, request(1, 1_000, 0, 93)), "a");
    r.handle(finished(1, None, 1_010));
    assert!(r.take_settled().is_empty(), "kept without record_settlements");

    let mut r = router(CHAIN);
    r.record_settlements();
    assert_eq!(node_of(&mut r, request(2, 1_000, 0, 93)), "a");
    let claim = r.reservation(2).unwrap_or_else(|| panic!("a has a budget"));
    assert_eq!(claim, BudgetClaim { node: "a".into(), day: 0, amount: 0.2, limit: 1.05 });
    // A failed attempt settles at nothing; the fallback b has no budget, so no claim.
    assert_eq!(
        node_of(
            &mut r,
            Event::OriginFailed { id: 2, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: 1_010 }
        ),
        "b"
    );
    assert_eq!(r.reservation(2), None);
    r.handle(finished(2, None, 1_020));
    assert_eq!(r.take_settled(), [Settlement { id: 2, node: "a".into(), day: 0, cost: 0.0 }]);
    // A delivered answer settles at its usage: 300 tokens at 2.0 per 1k.
    assert_eq!(node_of(&mut r, request(3, 2_000, 0, 93)), "a");
    r.handle(head(3, 200, None, 2_010));
    r.handle(finished(3, Some(Usage { prompt_tokens: 100, completion_tokens: 200 }), 2_020));
    let settled = r.take_settled();
    assert_eq!(settled.len(), 1);
    assert!((settled[0].cost - 0.6).abs() < 1e-9 && settled[0].id == 3, "{settled:?}");
    assert!(r.take_settled().is_empty(), "told once");
}

#[test]
fn a_refusal_by_the_shared_ledger_passes_the_node_over_without_charging_its_health() {
    let mut r = router(&format!("{CHAIN}health_check: {{unhealthy_threshold: 1}}\n"));
    r.record_settlements();
    assert_eq!(node_of(&mut r, request(1, 1_000, 0, 93)), "a");
    // Other routers spent 1.0 of a's 1.05: the refused attempt is not counted.
    let Action::Forward(f) = r.handle(Event::BudgetRefused { id: 1, spent: 1.0, now_ms: 1_010 }) else {
        panic!("expected the fallback")
    };
    let explain = f.explain(r.config(), None).expect("a node of the config");
    assert_eq!((explain.node.as_str(), f.attempt, explain.attempts), ("b", 1, 1));
    r.handle(head(1, 200, None, 1_020));
    r.handle(finished(1, None, 1_030));
    assert_eq!(r.health()[0], BreakerState::Closed { failures: 0 }, "a budget refusal is not a failure");
    // This router now knows a's spending: 1.0 + 0.2 would pass 1.05, so b directly.
    assert_eq!(node_of(&mut r, request(2, 2_000, 0, 93)), "b");
    assert_eq!(r.reservation(2), None);
    let (_, status) = json_of(r.handle(Event::Status { now_ms: 2_010 }));
    assert_eq!(status["nodes"][0]["today"]["reserved"], 0.0, "the refused reservation was released");
}

#[test]
fn with_every_candidate_over_budget_the_answer_says_when_budgets_reset() {
    let mut r = router(&CHAIN.replace("fallback: [b]", "fallback: []"));
    r.handle(Event::Restore(Restore {
        spent: vec![Spend { node: "a".into(), day: 0, spent: 1.0 }],
        ..Restore::default()
    }));
    let Action::Respond { status, headers, body } = r.handle(request(1, DAY_MS - 60_000, 0, 95)) else {
        panic!("expected a refusal")
    };
    assert_eq!(status, 503);
    assert!(headers.iter().any(|h| h.name == "retry-after" && h.value == b"60"), "{headers:?}");
    assert!(String::from_utf8_lossy(&body).contains("budget_exhausted"));
}

#[test]
fn restored_spending_counts_against_the_budget_and_older_days_do_not() {
    let mut r = router(CHAIN);
    r.handle(Event::Restore(Restore {
        spent: vec![Spend { node: "a".into(), day: 0, spent: 0.9 }, Spend { node: "gone".into(), day: 0, spent: 1.0 }],
        weights: vec![("b".into(), 0.5)],
        draining: vec![],
    }));
    assert_eq!(node_of(&mut r, request(1, 1_000, 0, 93)), "b", "0.9 + 0.2 passes 1.05");
    let (_, status) = json_of(r.handle(Event::Status { now_ms: 1_000 }));
    assert_eq!(status["nodes"][1]["weight"], 0.5);
    r.handle(Event::Restore(Restore {
        spent: vec![Spend { node: "a".into(), day: 0, spent: 0.1 }],
        ..Restore::default()
    }));
    assert_eq!(node_of(&mut r, request(2, 1_000, 0, 95)), "b", "a smaller record of the same day is not taken");
    // A record of an older day than the one held is ignored too.
    let restore = |day, spent| {
        Event::Restore(Restore { spent: vec![Spend { node: "a".into(), day, spent }], ..Restore::default() })
    };
    r.handle(restore(1, 0.1));
    r.handle(restore(0, 1.0));
    assert_eq!(node_of(&mut r, request(3, DAY_MS + 1, 0, 93)), "a", "day 1: 0.1 + 0.2 fits");
}

#[test]
fn budget_days_follow_the_configured_offset() {
    let config = format!("{CHAIN}budgets: {{utc_offset: \"+02:00\"}}\n");
    let mut r = router(&config);
    r.handle(Event::Restore(Restore {
        spent: vec![Spend { node: "a".into(), day: 0, spent: 1.0 }],
        ..Restore::default()
    }));
    let two_hours = 2 * 3_600_000;
    assert_eq!(node_of(&mut r, request(1, DAY_MS - two_hours - 1, 0, 95)), "b");
    assert_eq!(node_of(&mut r, request(2, DAY_MS - two_hours, 0, 95)), "a", "local midnight at +02:00");
    let err = RouterConfig::load("t.yaml", &config.replace("+02:00", "2h")).unwrap_err().to_string();
    assert!(err.contains("budgets.utc_offset") && err.contains("`2h` is not an offset"), "{err}");
}

#[test]
fn a_canary_gets_its_share_within_a_point_and_the_rest_never_goes_there() {
    let config = "
nodes:
  - {id: stable, type: local, host: \"http://s\"}
  - {id: canary, type: local, host: \"http://c\"}
  - {id: backup, type: cloud, host: \"http://b\"}
routing:
  rules:
    - {name: main, match: {}, target: stable, fallback: [canary, backup], canary: {node: canary, percent: 5}}
";
    let mut r = router(config);
    let mut seed = 20_261_123u64;
    let mut canary = 0;
    for id in 0..10_000 {
        seed = seed.wrapping_add(GOLDEN_GAMMA);
        let action = r.handle(request(id, 1_000, mix64(seed), 10));
        match node_id(&r, &action) {
            "canary" => canary += 1,
            "stable" => {}
            other => panic!("unexpected first node {other}"),
        }
        r.handle(head(id, 200, None, 1_000));
        r.handle(finished(id, None, 1_000));
    }
    let share = f64::from(canary) / 100.0;
    assert!((share - 5.0).abs() <= 1.0, "canary share {share}%");

    // Not drawn: failing over skips the canary, even though it is a listed fallback.
    let not_drawn = (0..).find(|&x| !canary_draw(x, 5.0)).unwrap_or_default();
    assert_eq!(node_of(&mut r, request(1, 2_000, not_drawn, 10)), "stable");
    assert_eq!(
        node_of(
            &mut r,
            Event::OriginFailed { id: 1, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: 2_000 }
        ),
        "backup"
    );
    // A failing canary falls back to the rule's own chain.
    let mut r = router(config);
    let drawn = (0..).find(|&x| canary_draw(x, 5.0)).unwrap_or_default();
    assert_eq!(node_of(&mut r, request(1, 1_000, drawn, 10)), "canary");
    assert_eq!(
        node_of(
            &mut r,
            Event::OriginFailed { id: 1, failure: Failure::Connect, retry: RetryType::NotSent, now_ms: 1_000 }
        ),
        "stable"
    );
    let bad = config.replace("node: canary, percent: 5", "node: nope, percent: 120");
    let err = RouterConfig::load("t.yaml", &bad).unwrap_err().to_string();
    assert!(err.contains("canary.node: `nope` is not the id of any node"), "{err}");
    assert!(err.contains("canary.percent: 120 is not a share from 0 to 100"), "{err}");
}

const PAIR: &str = "
nodes:
  - {id: a, type: cloud, host: \"http://a\", weight: 1}
  - {id: b, type: cloud, host: \"http://b\", weight: 1}
routing:
  default: weighted
";

fn control(r: &mut Router, command: Control) -> (u16, Value) {
    json_of(r.handle(Event::Control { command, now_ms: 1_000 }))
}

#[test]
fn weights_set_at_run_time_steer_the_weighted_strategy() {
    let mut r = router(PAIR);
    let (status, node) = control(&mut r, Control::SetWeight { node: "a".into(), weight: 0.0 });
    assert_eq!((status, node["id"].as_str(), node["weight"].as_f64()), (200, Some("a"), Some(0.0)));
    for id in 0..200 {
        assert_eq!(node_of(&mut r, request(id, 1_000, mix64(id), 10)), "b");
        r.handle(finished(id, None, 1_000));
    }
    let (status, err) = control(&mut r, Control::SetWeight { node: "a".into(), weight: -1.0 });
    assert_eq!(status, 400, "{err}");
    let (status, err) = control(&mut r, Control::SetWeight { node: "zz".into(), weight: 1.0 });
    assert_eq!(status, 404);
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("nodes: a, b")), "{err}");
}

#[test]
fn a_drained_node_gets_no_new_requests_but_keeps_those_in_flight() {
    let mut r = router(PAIR);
    let first = (0..).find(|&x| node_of(&mut router(PAIR), request(0, 0, x, 10)) == "a").unwrap_or_default();
    assert_eq!(node_of(&mut r, request(1, 1_000, first, 10)), "a");
    let (status, node) = control(&mut r, Control::Drain { node: "a".into() });
    assert_eq!((status, node["draining"].as_bool(), node["in_flight"].as_u64()), (200, Some(true), Some(1)));
    for id in 2..50 {
        assert_eq!(node_of(&mut r, request(id, 1_000, mix64(id), 10)), "b");
        r.handle(finished(id, None, 1_000));
    }
    // The request in flight carries on and is delivered.
    assert!(matches!(r.handle(head(1, 200, None, 1_100)), Action::Deliver(_)));
    r.handle(finished(1, None, 1_200));
    control(&mut r, Control::Drain { node: "b".into() });
    let (status, body) = json_of(r.handle(request(60, 1_000, 0, 10)));
    assert_eq!((status, body["error"]["type"].as_str()), (503, Some("nodes_draining")));
    control(&mut r, Control::Undrain { node: "a".into() });
    assert_eq!(node_of(&mut r, request(61, 1_000, 0, 10)), "a");
}

#[test]
fn the_status_report_counts_errors_latency_and_shares_of_the_last_hour() {
    let mut r = router(&CHAIN.replace("max_cost_per_day: 1.05", "max_concurrent: 4"));
    for id in 0..4 {
        r.handle(request(id, 1_000, 0, 10));
        if id == 0 {
            r.handle(Event::OriginFailed { id, failure: Failure::Timeout, retry: RetryType::Sent, now_ms: 1_050 });
            r.handle(head(id, 200, None, 1_070));
        } else {
            r.handle(head(id, 200, None, 1_000 + 10 * id));
        }
    }
    let (status, report) = json_of(r.handle(Event::Status { now_ms: 2_000 }));
    assert_eq!(status, 200);
    let a = &report["nodes"][0];
    assert_eq!((a["in_flight"].as_u64(), a["max_concurrent"].as_u64()), (Some(3), Some(4)));
    assert_eq!((a["last_hour"]["attempts"].as_u64(), a["last_hour"]["failures"].as_u64()), (Some(4), Some(1)));
    assert_eq!(a["last_hour"]["error_rate"], 0.25);
    assert_eq!(a["last_hour"]["share_of_traffic"], 0.75);
    let p95 = a["last_hour"]["p95_ms"].as_f64().unwrap_or_default();
    assert!((26.0..=34.0).contains(&p95), "p95 {p95} ms (the slowest head took 30 ms)");
    assert_eq!(a["health"], "healthy");
    assert_eq!(report["nodes"][1]["last_hour"]["served"], 1);
    assert_eq!(report["requests_in_flight"], 4);
    // An hour later the traffic has aged out of the window.
    let (_, later) = json_of(r.handle(Event::Status { now_ms: 2_000 + 3_600_000 }));
    assert_eq!(later["nodes"][0]["last_hour"]["attempts"], 0);
}
