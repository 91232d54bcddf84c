//! Passive health: failing nodes are taken out of rotation after
//! `unhealthy_threshold` consecutive failures, and one probe request after
//! the cool-down brings them back. Bodies that stall or break off after the
//! head end clearly for the client and count as the node's failures.

use std::time::{Duration, Instant};

use edge_router_e2e::{
    FakeOrigin, Route, Script, TestRouter, breaks_after_head_origin, chat_body, fake_origin, json_origin, refused_addr,
    silent_origin, sse_origin, stalls_mid_body_origin,
};
use http_body_util::BodyExt;

fn config(primary: &str, backup: &str) -> String {
    format!(
        "nodes:\n  - {{id: primary, type: local, host: \"{primary}\"}}\n  - {{id: backup, type: cloud, host: \"{backup}\"}}\nrouting:\n  rules:\n    - {{name: chain, match: {{}}, target: primary, fallback: [backup]}}\nhealth_check: {{unhealthy_threshold: 2, cool_down: 200ms, max_cool_down: 1s}}\n"
    )
}

/// The fake origin, answering 503 to its first `failures` requests, then 200.
async fn recovering_origin(failures: u64) -> FakeOrigin {
    let status = |s| fake_origin::Reply { status: Some(s), ..Default::default() };
    let mut responses: Vec<_> = (0..failures).map(|_| status(503)).collect();
    responses.push(status(200));
    FakeOrigin::start("primary", Script { responses, ..Script::default() }).await.expect("start the fake origin")
}

async fn hits(server: &FakeOrigin) -> usize {
    server.hits()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answering_503_is_skipped_then_probed_back_into_rotation() {
    let primary = recovering_origin(2).await;
    let backup = json_origin(200, Duration::ZERO).await;
    let r = TestRouter::new(&config(&primary.url(), &backup.url())).await;

    for _ in 0..2 {
        let reply = r.chat("US", &chat_body("m", 5)).await;
        assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (200, "backup", "2"));
    }
    // Two failures in a row: the primary rests, and the backup answers at the first attempt.
    for _ in 0..3 {
        let reply = r.chat("US", &chat_body("m", 5)).await;
        assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (200, "backup", "1"));
    }
    assert_eq!(hits(&primary).await, 2, "an open breaker sends the node nothing");

    // After the cool-down (100-200 ms with jitter) one probe goes; the node has recovered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (200, "primary", "1"));
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.status, reply.node()), (200, "primary"));
    assert_eq!(hits(&primary).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_panic_mode_a_refusing_node_without_fallback_gets_a_clear_503_and_no_traffic_while_open() {
    let dead = refused_addr().await;
    let config = config(&dead, "http://127.0.0.1:9")
        .replace("fallback: [backup]", "fallback: []")
        .replace("max_cool_down: 1s}", "max_cool_down: 1s, panic_threshold: 0}");
    let r = TestRouter::new(&config).await;
    for _ in 0..2 {
        let reply = r.chat("US", &chat_body("m", 5)).await;
        assert_eq!(reply.status, 502, "{}", reply.json());
    }
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"]["type"], "nodes_unhealthy");
    assert_eq!(reply.header("retry-after"), "1");
    assert_eq!(reply.header("x-edge-attempts"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_panic_mode_a_node_whose_breaker_is_open_still_gets_the_requests_nothing_else_can_serve() {
    let primary = recovering_origin(2).await;
    let config = config(&primary.url(), "http://127.0.0.1:9").replace("fallback: [backup]", "fallback: []");
    let r = TestRouter::new(&config).await;
    for _ in 0..2 {
        let reply = r.chat("US", &chat_body("m", 5)).await;
        assert_eq!(reply.status, 503, "the origin's own 503s open the breaker");
    }
    // Every node the request may use is unhealthy (0 of 1, under the default
    // 50%): it goes to the primary anyway, says so, and the good answer
    // closes the breaker, so the next request is a plain one.
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.status, reply.node(), reply.header("x-edge-panic")), (200, "primary", "true"));
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.status, reply.header("x-edge-panic")), (200, ""));
    assert_eq!(hits(&primary).await, 4, "no request was refused at the edge");
}

/// Primary and backup, the primary with a 300 ms idle limit, and a breaker
/// that opens at the first failure.
fn stall_config(primary: &str, backup: &str) -> String {
    format!(
        "nodes:\n  - {{id: primary, type: local, host: \"{primary}\", timeouts: {{idle: 300ms}}}}\n  - {{id: backup, type: cloud, host: \"{backup}\"}}\nrouting:\n  rules:\n    - {{name: chain, match: {{}}, target: primary, fallback: [backup]}}\nhealth_check: {{unhealthy_threshold: 1, cool_down: 10s}}\n"
    )
}

async fn post(r: &TestRouter) -> hyper::Response<hyper::body::Incoming> {
    r.send("POST", "/v1/chat/completions", &[("content-type", "application/json")], &chat_body("m", 5).to_string())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_stalls_ends_with_an_sse_error_event_and_counts_against_the_node() {
    let backup = json_origin(200, Duration::ZERO).await;
    let primary = sse_origin(3, Duration::from_secs(5)).await;
    let r = TestRouter::new(&stall_config(&primary.url(), &backup.url())).await;
    let start = Instant::now();
    let resp = post(&r).await;
    assert_eq!((resp.status().as_u16(), resp.headers()["x-edge-node"].to_str().ok()), (200, Some("primary")));
    let body = resp.into_body().collect().await.expect("the stream ends cleanly, with an error event").to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(start.elapsed() < Duration::from_secs(3), "a stall must not hang the client: {:?}", start.elapsed());
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 2, "{text}");
    assert!(events[0].starts_with("data: {") && events[0].contains(r#""content":"w1""#), "{text}");
    let error = events[1].strip_prefix("event: error\ndata: ").unwrap_or_else(|| panic!("not an error event: {text}"));
    let error: serde_json::Value = serde_json::from_str(error).unwrap_or_default();
    assert_eq!(error["error"]["type"], "upstream_stall");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("primary")), "{error}");

    // The stall counted as the primary's failure: with a threshold of 1 it now rests.
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (200, "backup", "1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_body_that_stalls_is_cut_off_not_left_hanging() {
    let backup = json_origin(200, Duration::ZERO).await;
    let r = TestRouter::new(&stall_config(&stalls_mid_body_origin(Duration::from_secs(5)).await, &backup.url())).await;
    let start = Instant::now();
    let resp = post(&r).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.into_body().collect().await.is_err(), "a cut-off JSON body must reach the client as broken");
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.node(), reply.header("x-edge-attempts")), ("backup", "1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_body_counts_against_the_node() {
    let backup = json_origin(200, Duration::ZERO).await;
    let r = TestRouter::new(&stall_config(&breaks_after_head_origin().await, &backup.url())).await;
    let resp = post(&r).await;
    assert!(resp.into_body().collect().await.is_err());
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.node(), reply.header("x-edge-attempts")), ("backup", "1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_outlasting_its_total_limit_ends_with_an_upstream_timeout_event() {
    let slow = sse_origin(20, Duration::from_millis(100)).await;
    let config = stall_config(&slow.url(), "http://127.0.0.1:9")
        .replace("timeouts: {idle: 300ms}", "timeouts: {first_byte: 400ms, total: 450ms}");
    let r = TestRouter::new(&config).await;
    let body = post(&r).await.into_body().collect().await.expect("ends with an error event").to_bytes();
    let text = String::from_utf8_lossy(&body);
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert!((3..=6).contains(&events.len()), "a few chunks, then the cut: {text}");
    assert!(events[events.len() - 1].contains(r#""type":"upstream_timeout""#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_probes_take_a_sick_node_out_before_any_request_fails_and_bring_it_back() {
    // Chat requests are answered; the health endpoint fails twice, then recovers.
    let chat = Route { method: Some("POST".into()), ..Route::default() };
    let status = |s| fake_origin::Reply { status: Some(s), ..Default::default() };
    let script =
        Script { routes: vec![chat], responses: vec![status(503), status(503), status(200)], ..Script::default() };
    let primary = FakeOrigin::start("primary", script).await.expect("start the fake origin");
    let backup = json_origin(200, Duration::ZERO).await;
    let config = config(&primary.url(), &backup.url())
        .replace("host: \"http://127", "health_path: /health, host: \"http://127")
        .replace("health_check: {", "health_check: {interval: 150ms, timeout: 100ms, ");
    let r = TestRouter::new(&config).await;

    let count = |method: &'static str| {
        let primary = &primary;
        async move { primary.seen().iter().filter(|q| q.method == method).count() }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while count("GET").await < 2 {
        assert!(Instant::now() < deadline, "no probes arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.node(), reply.header("x-edge-attempts")), ("backup", "1"), "two failed probes open the breaker");
    assert_eq!(count("POST").await, 0);

    // The health endpoint recovers: a probe after the cool-down closes the breaker.
    loop {
        assert!(Instant::now() < deadline, "the node never came back");
        if r.chat("US", &chat_body("m", 5)).await.node() == "primary" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_accepts_and_never_answers_is_taken_out_after_the_threshold() {
    let backup = json_origin(200, Duration::ZERO).await;
    let config = config(&silent_origin().await, &backup.url())
        .replace("type: local, host", "type: local, timeouts: {first_byte: 200ms}, host");
    let r = TestRouter::new(&config).await;
    for _ in 0..2 {
        let reply = r.chat("US", &chat_body("m", 5)).await;
        assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (200, "backup", "2"));
    }
    let start = Instant::now();
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.node(), reply.header("x-edge-attempts")), ("backup", "1"));
    assert!(start.elapsed() < Duration::from_millis(150), "an open breaker costs no waiting: {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_upload_breaks_off_or_stalls_costs_the_node_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let primary = json_origin(200, Duration::ZERO).await;
    let backup = json_origin(200, Duration::ZERO).await;
    // A breaker once open stays open for the whole test (a minute's cool-down).
    let config = config(&primary.url(), &backup.url())
        .replace("host: \"http://127", "timeouts: {first_byte: 300ms}, host: \"http://127")
        .replace("routing:\n", "routing:\n  passthrough: primary\n")
        .replace("cool_down: 200ms, max_cool_down: 1s", "cool_down: 60s, max_cool_down: 60s");
    assert!(config.contains("cool_down: 60s"), "{config}");
    let r = TestRouter::new(&config).await;
    let head = "POST /v1/files HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n\
                transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";
    // Three uploads that break off (the client goes away mid-body), more
    // than the two failures in a row that would take the node out.
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(r.addr()).await.expect("connect");
        s.write_all(head.as_bytes()).await.expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.node(), reply.header("x-edge-attempts")), ("primary", "1"), "broken off: not the node's failure");
    // Three that stop coming: the node's first_byte runs out while it waits for the body.
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(r.addr()).await.expect("connect");
        s.write_all(head.as_bytes()).await.expect("write");
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout"), "{answer}");
    }
    let reply = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!((reply.node(), reply.header("x-edge-attempts")), ("primary", "1"), "the node was not blamed");
}
