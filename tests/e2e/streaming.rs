//! SSE passes through as the origin sends it, and shutdown lets streams finish.

use std::time::{Duration, Instant};

use edge_router_e2e::{TestRouter, chat_body, sse_origin, timed_frames};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_chunks_arrive_as_the_origin_sends_them() {
    let origin = sse_origin(5, Duration::from_millis(200)).await;
    let r = TestRouter::new(&format!("nodes:\n  - {{id: n, type: local, host: \"{}\"}}\n", origin.url())).await;
    let mut body = chat_body("m", 3);
    body["stream"] = serde_json::json!(true);
    let start = Instant::now();
    let resp = r.send("POST", "/v1/chat/completions", &[], &body.to_string()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let frames = timed_frames(resp.into_body(), start).await;
    let text: String = frames.iter().map(|(_, b)| String::from_utf8_lossy(b).into_owned()).collect();
    assert_eq!(text.matches("data: ").count(), 5, "{text}");
    // The origin spends 800 ms between its first and last event. Buffering
    // would deliver everything at the end; pass-through delivers the first
    // event long before the last.
    let first = frames.first().map(|f| f.0).unwrap_or_default();
    let last = frames.last().map(|f| f.0).unwrap_or_default();
    assert!(frames.len() >= 4, "events were coalesced into {} frames", frames.len());
    assert!(last - first >= Duration::from_millis(600), "first at {first:?}, last at {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_stream_finish() {
    let origin = sse_origin(4, Duration::from_millis(150)).await;
    let r = TestRouter::new(&format!("nodes:\n  - {{id: n, type: local, host: \"{}\"}}\n", origin.url())).await;
    let addr = r.addr();
    let mut body = chat_body("m", 3);
    body["stream"] = serde_json::json!(true);
    let resp = r.send("POST", "/v1/chat/completions", &[], &body.to_string()).await;
    let reader = tokio::spawn(timed_frames(resp.into_body(), Instant::now()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    r.shutdown(Duration::from_secs(5)).await;
    let frames = reader.await.expect("reader");
    let text: String = frames.iter().map(|(_, b)| String::from_utf8_lossy(b).into_owned()).collect();
    assert_eq!(text.matches("data: ").count(), 4, "the stream was cut: {text}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no new connections after shutdown");
}
