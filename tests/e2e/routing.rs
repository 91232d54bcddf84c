//! Rule kinds, strategies and model rewriting.

use edge_router_e2e::{FakeOrigin, Script, TRUSTING_SERVER, TestRouter, chat_body, json_origin_named, sha256_hex};
use serde_json::json;
/// The fake origin, answering every chat completion with one naming it (`origin`).
async fn origin(name: &str) -> FakeOrigin {
    FakeOrigin::start(name, Script::default()).await.expect("start the fake origin")
}

fn node(id: &str, server: &FakeOrigin, extra: &str) -> String {
    format!("  - {{id: {id}, type: cloud, host: \"{}\"{extra}}}\n", server.url())
}

async fn model_sent_to(server: &FakeOrigin) -> String {
    let seen = server.seen();
    let last = seen.last().expect("origin received a request");
    let body: serde_json::Value = serde_json::from_str(&last.body).expect("json body");
    body["model"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_kind_selects_its_target() {
    let (a, b, c, d, e, f, g) = (
        origin("a").await,
        origin("b").await,
        origin("c").await,
        origin("d").await,
        origin("e").await,
        origin("f").await,
        origin("g").await,
    );
    let vip = sha256_hex("sk-vip");
    let config = format!(
        "{TRUSTING_SERVER}auth:\n  keys: [{{sha256: \"{vip}\", tier: vip, tenant: acme}}]\nnodes:\n{}{}{}{}{}{}{}\
routing:\n  rules:\n{}",
        node("a", &a, ""),
        node("b", &b, ""),
        node("c", &c, ""),
        node("d", &d, ""),
        node("e", &e, ""),
        node("f", &f, ""),
        node("g", &g, ""),
        [
            "{name: by-type, match: {type: realtime_chat}, target: a}",
            "{name: by-min, match: {min_tokens: 3000}, target: b}",
            "{name: by-geo, match: {geo: [JP, KR]}, target: c}",
            "{name: by-tier, match: {user_tier: vip}, target: d}",
            "{name: by-model, match: {model: \"mistral-*\"}, target: e}",
            "{name: by-estimate, match: {estimated_tokens: \"<300\"}, target: f}",
            "{name: by-max, match: {max_tokens: 600}, target: g}",
        ]
        .map(|r| format!("    - {r}\n"))
        .concat(),
    );
    let r = TestRouter::new(&config).await;

    let stream = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let reply = r.chat("US", &stream).await;
    assert_eq!((reply.status, reply.node(), reply.header("x-edge-rule")), (200, "a", "by-type"));
    assert!(String::from_utf8_lossy(&reply.body).contains(r#""origin":"a""#), "a's own stream");

    let typed = r.chat_with("US", &chat_body("m", 10), &[("x-request-type", "realtime_chat")]).await;
    assert_eq!(typed.node(), "a", "the x-request-type header sets the type");

    assert_eq!(r.chat("US", &chat_body("m", 4000)).await.node(), "b");
    assert_eq!(r.chat("KR", &chat_body("m", 10)).await.node(), "c");
    assert_eq!(r.chat_with("US", &chat_body("m", 10), &[("authorization", "Bearer sk-vip")]).await.node(), "d");
    assert_eq!(r.chat_with("US", &chat_body("m", 10), &[("authorization", "Bearer sk-other")]).await.node(), "f");
    assert_eq!(r.chat("US", &chat_body("mistral-7b", 10)).await.node(), "e");
    // 10 words + overhead + 256 default completion tokens < 300.
    assert_eq!(r.chat("US", &chat_body("m", 10)).await.node(), "f");
    // 10 words + 300 requested completion tokens: above 300, within 600.
    let mut limited = chat_body("m", 10);
    limited["max_tokens"] = json!(300);
    assert_eq!(r.chat("US", &limited).await.node(), "g");
    // Nothing matches a 700-token request: the default strategy picks among all nodes (all cost 0, so config order).
    let mut big = chat_body("m", 10);
    big["max_tokens"] = json!(1000);
    let fallthrough = r.chat("US", &big).await;
    assert_eq!((fallthrough.node(), fallthrough.header("x-edge-rule")), ("a", "strategy:cost_aware"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_boost_lets_a_later_rule_win() {
    let (a, b) = (origin("a").await, origin("b").await);
    let config = format!(
        "nodes:\n{}{}routing:\n  rules:\n    - {{name: first, match: {{type: \"*\"}}, target: a}}\n    - {{name: boosted, match: {{model: special}}, target: b, priority_boost: 5}}\n",
        node("a", &a, ""),
        node("b", &b, "")
    );
    let r = TestRouter::new(&config).await;
    assert_eq!(r.chat("US", &chat_body("special", 5)).await.header("x-edge-rule"), "boosted");
    assert_eq!(r.chat("US", &chat_body("other", 5)).await.header("x-edge-rule"), "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies_order_globbed_candidates() {
    let (cheap, dear, high) = (origin("cheap").await, origin("dear").await, origin("high").await);
    let nodes = format!(
        "nodes:\n{}{}{}",
        node("pool-dear", &dear, ", cost_per_1k_tokens: 0.9, priority: 1, weight: 0"),
        node("pool-cheap", &cheap, ", cost_per_1k_tokens: 0.1, priority: 2, weight: 0"),
        node("pool-high", &high, ", cost_per_1k_tokens: 0.5, priority: 9, weight: 1"),
    );
    for (strategy, expected) in [("cost_aware", "pool-cheap"), ("priority", "pool-high"), ("weighted", "pool-high")] {
        let config =
            format!("{nodes}routing:\n  rules:\n    - {{match: {{}}, target: \"pool-*\", strategy: {strategy}}}\n");
        let r = TestRouter::new(&config).await;
        for _ in 0..5 {
            let reply = r.chat("US", &chat_body("m", 5)).await;
            assert_eq!(reply.node(), expected, "strategy {strategy}");
            assert_eq!(reply.header("x-edge-rule"), "rules[0]");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_strategy_splits_traffic_by_weight() {
    let (a, b) = (origin("a").await, origin("b").await);
    let config = format!(
        "nodes:\n{}{}routing:\n  default: weighted\n",
        node("a", &a, ", weight: 3"),
        node("b", &b, ", weight: 1")
    );
    let r = TestRouter::new(&config).await;
    let n = 400;
    let mut to_a = 0;
    for _ in 0..n {
        if r.chat("US", &chat_body("m", 3)).await.node() == "a" {
            to_a += 1;
        }
    }
    let share = f64::from(to_a) / f64::from(n);
    // Expected 0.75; 400 draws put 99.9% of outcomes within ±0.07.
    assert!((0.68..=0.82).contains(&share), "share to the weight-3 node was {share}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_first_prefers_the_node_observed_faster() {
    let slow = json_origin_named("slow", 200, std::time::Duration::from_millis(150)).await;
    let fast = origin("fast").await;
    let config =
        format!("nodes:\n{}{}routing:\n  default: latency_first\n", node("slow", &slow, ""), node("fast", &fast, ""));
    let r = TestRouter::new(&config).await;
    // Both unmeasured: config order, then the other one gets measured.
    assert_eq!(r.chat("US", &chat_body("m", 3)).await.node(), "slow");
    assert_eq!(r.chat("US", &chat_body("m", 3)).await.node(), "fast");
    for _ in 0..3 {
        assert_eq!(r.chat("US", &chat_body("m", 3)).await.node(), "fast");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_and_small_model_targets_are_rewritten_to_a_served_model() {
    let (edge, big) = (origin("edge").await, origin("big").await);
    let config = format!(
        "nodes:\n{}{}routing:\n  rules:\n    - {{match: {{estimated_tokens: \"<2000\"}}, target: edge-1}}\n",
        node("edge-1", &edge, ", models: [tiny-0.5b, small-3b], capabilities: [small_models]"),
        node("big-1", &big, ", models: [huge-70b]"),
    );
    let r = TestRouter::new(&config).await;

    let reply = r.chat("US", &chat_body("auto", 20)).await;
    assert_eq!((reply.status, reply.node(), reply.header("x-edge-model")), (200, "edge-1", "tiny-0.5b"));
    assert_eq!(model_sent_to(&edge).await, "tiny-0.5b");

    let reply = r.chat("US", &chat_body("gpt-4o", 20)).await;
    assert_eq!(reply.node(), "edge-1");
    assert_eq!(model_sent_to(&edge).await, "tiny-0.5b", "a small-model target serves a named model with its own");

    // Long request: no rule matches; `auto` goes to a node with models, largest model.
    let reply = r.chat("US", &chat_body("auto", 3000)).await;
    assert_eq!(reply.node(), "edge-1");
    assert_eq!(model_sent_to(&edge).await, "small-3b");

    // A served model passes unchanged, and the rest of the body is untouched.
    let mut body = chat_body("huge-70b", 3000);
    body["temperature"] = json!(0.2);
    let reply = r.chat("US", &body).await;
    assert_eq!(
        (reply.node(), reply.header("x-edge-model")),
        ("big-1", ""),
        "no x-edge-model when nothing was rewritten"
    );
    let sent: serde_json::Value = serde_json::from_str(&big.seen()[0].body).expect("json");
    assert_eq!(sent, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_ending_in_trailers_keeps_what_the_model_restore_held_back() {
    // The restore holds a JSON answer back until its end; the origin ends it
    // with a trailer section, which must not end the client's body first.
    let origin = edge_router_e2e::trailers_origin().await;
    let config = format!(
        "nodes:\n  - {{id: edge-1, type: edge, host: \"{origin}\", models: [tiny, big]}}\n\
         model_routing: {{restore_requested_model: true}}\n"
    );
    let r = TestRouter::new(&config).await;
    let reply = r.chat("US", &chat_body("auto", 5)).await;
    assert_eq!((reply.status, reply.header("x-edge-model")), (200, "tiny"));
    let answer: serde_json::Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("the whole answer arrives ({e}): {:?}", String::from_utf8_lossy(&reply.body)));
    assert_eq!(
        (answer["model"].as_str(), answer["choices"][0]["message"]["content"].as_str()),
        (Some("auto"), Some("hi"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_both_chunked_and_with_a_length_reaches_the_client_whole() {
    let origin = edge_router_e2e::chunked_and_length_origin().await;
    let config = format!("nodes:\n  - {{id: edge-1, type: edge, host: \"{origin}\", models: [tiny]}}\n");
    let r = TestRouter::new(&config).await;
    let reply = r.chat("US", &chat_body("tiny", 5)).await;
    assert_eq!(reply.status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("the whole answer arrives ({e}): {:?}", String::from_utf8_lossy(&reply.body)));
    assert_eq!(answer["choices"][0]["message"]["content"], "whole");
    assert_eq!(reply.header("content-length"), "", "the origin's length is not passed on");
}
