//! Passive health: failing nodes are taken out of rotation after
//! `unhealthy_threshold` consecutive failures, and one probe request after
//! the cool-down brings them back.

use std::time::Duration;

use edge_router_e2e::{TestRouter, chat_body, json_origin, refused_addr};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn config(primary: &str, backup: &str) -> String {
    format!(
        "nodes:\n  - {{id: primary, type: local, host: \"{primary}\"}}\n  - {{id: backup, type: cloud, host: \"{backup}\"}}\nrouting:\n  rules:\n    - {{name: chain, match: {{}}, target: primary, fallback: [backup]}}\nhealth_check: {{unhealthy_threshold: 2, cool_down: 200ms, max_cool_down: 1s}}\n"
    )
}

/// An origin that answers 503 to its first `failures` requests, then 200.
async fn recovering_origin(failures: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(serde_json::json!({"status": 503})))
        .up_to_n_times(failures)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"status": 200})))
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

async fn hits(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answering_503_is_skipped_then_probed_back_into_rotation() {
    let primary = recovering_origin(2).await;
    let backup = json_origin(200, Duration::ZERO).await;
    let r = TestRouter::new(&config(&primary.uri(), &backup.uri())).await;

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
async fn a_refusing_node_without_fallback_gets_a_clear_503_and_no_traffic_while_open() {
    let dead = refused_addr().await;
    let config = config(&dead, "http://127.0.0.1:9").replace("fallback: [backup]", "fallback: []");
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
