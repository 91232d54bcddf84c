//! Fallback chains: refused connections, timeouts and 503 move to the next
//! node; nothing moves once a response byte has gone to the client; a full
//! node overflows.

use std::time::{Duration, Instant};

use edge_router_e2e::{
    FakeOrigin, Script, TestRouter, breaks_after_head_origin, chat_body, fake_origin, json_origin, refused_addr,
    silent_origin,
};
use http_body_util::BodyExt;

/// Starts a request that holds the only slot of a slow `max_concurrent: 1` node
/// for ~400 ms, and returns once it is in flight.
async fn occupy(r: &std::sync::Arc<TestRouter>) -> tokio::task::JoinHandle<edge_router_e2e::Reply> {
    let first = tokio::spawn({
        let r = r.clone();
        async move { r.chat("US", &chat_body("m", 5)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    first
}

fn chain_config(primary: &str, backup: &str, first_byte: &str) -> String {
    format!(
        "nodes:\n  - {{id: primary, type: local, host: \"{primary}\", timeouts: {{connect: 1s, first_byte: {first_byte}}}}}\n  - {{id: backup, type: cloud, host: \"{backup}\", timeouts: {{connect: 1s, first_byte: {first_byte}}}}}\nrouting:\n  rules:\n    - {{name: chain, match: {{}}, target: primary, fallback: [backup]}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_falls_back() {
    let backup = json_origin(200, Duration::ZERO).await;
    let r = TestRouter::new(&chain_config(&refused_addr().await, &backup.url(), "5s")).await;
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (200, "backup", "2"));
    assert_eq!(reply.header("x-edge-rule"), "chain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_before_the_response_head_falls_back() {
    let backup = json_origin(200, Duration::ZERO).await;
    let r = TestRouter::new(&chain_config(&silent_origin().await, &backup.url(), "300ms")).await;
    let start = Instant::now();
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (200, "backup", "2"));
    assert!(start.elapsed() < Duration::from_secs(3), "fallback took {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_503_falls_back_and_other_errors_pass_through() {
    let backup = json_origin(200, Duration::ZERO).await;
    let unavailable = json_origin(503, Duration::ZERO).await;
    let r = TestRouter::new(&chain_config(&unavailable.url(), &backup.url(), "5s")).await;
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (200, "backup", "2"));

    // A 400 is the client's problem: no fallback, the origin's answer is passed on.
    let bad = json_origin(400, Duration::ZERO).await;
    let r = TestRouter::new(&chain_config(&bad.url(), &backup.url(), "5s")).await;
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (400, "primary", "1"));
    assert_eq!(reply.json()["origin"], "origin", "the origin's own answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_node_503_is_passed_on_and_all_refused_is_a_clear_502() {
    let unavailable = json_origin(503, Duration::ZERO).await;
    let r = TestRouter::new(&chain_config(&refused_addr().await, &unavailable.url(), "5s")).await;
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (503, "backup", "2"));

    let r = TestRouter::new(&chain_config(&refused_addr().await, &refused_addr().await, "5s")).await;
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("x-edge-attempts"), "2");
    let err = &reply.json()["error"];
    assert_eq!(err["type"], "upstream_error");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(message.contains("primary: connection failed") && message.contains("backup"), "{message}");

    let r = TestRouter::new(&chain_config(&silent_origin().await, &silent_origin().await, "200ms")).await;
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.status, reply.json()["error"]["type"].as_str()), (504, Some("upstream_timeout")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fallback_after_the_first_byte() {
    let backup = json_origin(200, Duration::ZERO).await;
    let r = TestRouter::new(&chain_config(&breaks_after_head_origin().await, &backup.url(), "5s")).await;
    let resp = r
        .send("POST", "/v1/chat/completions", &[("content-type", "application/json")], &chat_body("m", 5).to_string())
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-edge-node"], "primary");
    let body = resp.into_body().collect().await;
    assert!(body.is_err(), "the broken stream must reach the client as broken, not be completed from elsewhere");
    assert!(backup.hits() == 0, "the backup must never be asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_overflows_to_its_fallback_and_frees_its_slot() {
    let primary = json_origin(200, Duration::from_millis(400)).await;
    let backup = json_origin(200, Duration::ZERO).await;
    let config = format!(
        "nodes:\n  - {{id: primary, type: local, host: \"{}\", max_concurrent: 1}}\n  - {{id: backup, type: cloud, host: \"{}\"}}\nrouting:\n  rules:\n    - {{match: {{}}, target: primary, fallback: [backup]}}\n",
        primary.url(),
        backup.url()
    );
    let r = std::sync::Arc::new(TestRouter::new(&config).await);
    let first = occupy(&r).await;
    let second = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((second.node(), second.header("x-edge-attempts")), ("backup", "1"), "the full node was skipped");
    assert_eq!(first.await.expect("first").node(), "primary");
    // The slot was released when the first exchange finished.
    assert_eq!(r.chat("US", &chat_body("m", 5)).await.node(), "primary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_candidate_full_is_429_with_retry_after() {
    let primary = json_origin(200, Duration::from_millis(400)).await;
    let config = format!("nodes:\n  - {{id: only, type: local, host: \"{}\", max_concurrent: 1}}\n", primary.url());
    let r = std::sync::Arc::new(TestRouter::new(&config).await);
    let first = occupy(&r).await;
    let second = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!(second.status, 429);
    assert_eq!(second.header("retry-after"), "1");
    assert_eq!(second.json()["error"]["type"], "capacity_exceeded");
    assert_eq!(first.await.expect("first").status, 200);
}

/// The fake origin answering 429, OpenAI's rate-limit error, with the given `retry-after` value.
async fn rate_limited_origin(retry_after: &str) -> FakeOrigin {
    let reply = fake_origin::Reply {
        status: Some(429),
        headers: [
            ("retry-after".to_string(), retry_after.to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ]
        .into(),
        body: Some(serde_json::json!({"error": {"type": "rate_limit", "message": "slow down"}}).to_string()),
        ..Default::default()
    };
    FakeOrigin::start("limited", Script::always(reply)).await.expect("start the fake origin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_falls_back_and_its_retry_after_rests_the_node() {
    let backup = json_origin(200, Duration::ZERO).await;
    let limited = rate_limited_origin("1").await;
    let r = TestRouter::new(&chain_config(&limited.url(), &backup.url(), "5s")).await;
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (200, "backup", "2"));
    // For the next second the limited node is left alone.
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.node(), reply.header("x-edge-attempts")), ("backup", "1"));
    assert_eq!(limited.hits(), 1);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.node(), reply.header("x-edge-attempts")), ("backup", "2"), "tried again after the pause");
    assert_eq!(limited.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_date_is_honoured_and_the_last_nodes_429_is_passed_on() {
    let in_a_minute = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
    let limited = rate_limited_origin(&in_a_minute).await;
    let config = chain_config(&limited.url(), "http://127.0.0.1:9", "5s").replace("fallback: [backup]", "fallback: []");
    let r = TestRouter::new(&config).await;
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.status, reply.node()), (429, "primary"), "the origin's own 429 reaches the client");
    assert_eq!(reply.json()["error"]["type"], "rate_limit");
    // Now the router answers itself, with the pause that is left.
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.status, reply.json()["error"]["type"].as_str()), (429, Some("rate_limited")));
    let wait: u64 = reply.header("retry-after").parse().unwrap_or(0);
    assert!((55..=60).contains(&wait), "retry-after {wait}");
    assert_eq!(limited.hits(), 1);
}
