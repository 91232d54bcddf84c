//! Connections to origins: kept alive and reused between requests, a
//! connection the origin closed while idle is never used (and costs no
//! fallback), and every request goes out in origin form with the node's `Host`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use edge_router_e2e::{TestRouter, chat_body, refused_addr};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What a counting origin saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    /// `Host` and request target of each request.
    requests: Mutex<Vec<(String, String)>>,
}

/// A keep-alive origin answering every request with a JSON completion, or
/// with an empty body when `empty`. With `close_after`, it drops each
/// connection that long after its first answer, as servers do with idle
/// connections.
async fn counting_origin(close_after: Option<Duration>, empty: bool) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counts.connections.fetch_add(1, Ordering::SeqCst);
            let counts = counts.clone();
            let answered = Arc::new(tokio::sync::Notify::new());
            tokio::spawn(async move {
                let notify = answered.clone();
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (counts, notify) = (counts.clone(), notify.clone());
                    async move {
                        let host = req.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                        counts.requests.lock().expect("lock").push((host, req.uri().to_string()));
                        let _ = req.into_body().collect().await;
                        let body =
                            if empty { "" } else { r#"{"choices":[{"message":{"role":"assistant","content":"ok"}}]}"# };
                        let resp = hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(body.as_bytes())))
                            .expect("response");
                        notify.notify_one();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                match close_after {
                    Some(after) => {
                        let idle_close = async {
                            answered.notified().await;
                            tokio::time::sleep(after).await;
                        };
                        tokio::select! {
                            _ = conn => {}
                            () = idle_close => {}
                        }
                    }
                    None => drop(conn.await),
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn config(primary: &str, backup: &str) -> String {
    format!(
        "server:\n  workers: 2\nnodes:\n  - {{id: primary, type: local, host: \"{primary}\"}}\n  - {{id: backup, type: cloud, host: \"{backup}\"}}\nrouting:\n  rules:\n    - {{name: chain, match: {{}}, target: primary, fallback: [backup]}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_connections_are_kept_alive_and_reused() {
    let (origin, seen) = counting_origin(None, false).await;
    let r = TestRouter::new(&config(&origin, &refused_addr().await)).await;
    for _ in 0..20 {
        let reply = r.chat("US", &chat_body("m", 5)).await;
        assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (200, "primary", "1"));
    }
    // One pool per worker thread: at most one connection each for requests one at a time.
    let connections = seen.connections.load(Ordering::SeqCst);
    assert!((1..=2).contains(&connections), "20 sequential requests opened {connections} origin connections");
    let requests = seen.requests.lock().expect("lock").clone();
    assert_eq!(requests.len(), 20);
    let host = origin.trim_start_matches("http://");
    assert!(
        requests.iter().all(|(h, target)| h == host && target == "/v1/chat/completions"),
        "the origin saw {:?}",
        requests[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_origin_closed_while_idle_is_not_used() {
    let (origin, seen) = counting_origin(Some(Duration::from_millis(100)), false).await;
    let r = TestRouter::new(&config(&origin, &refused_addr().await)).await;
    for i in 0..4 {
        let reply = r.chat("US", &chat_body("m", 5)).await;
        // A failed attempt would show as a second attempt (on the refused backup, a 502).
        assert_eq!(
            (reply.status, reply.node(), reply.header("x-edge-attempts")),
            (200, "primary", "1"),
            "request {i}: {:?}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 4, "each request needed a new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_without_a_body_frees_its_connection_for_the_next_request() {
    // An empty body ends with the head: nothing reads it to the end, so the
    // connection must go back to the pool when the head arrives.
    let (origin, seen) = counting_origin(None, true).await;
    let r = TestRouter::new(&config(&origin, &refused_addr().await)).await;
    for _ in 0..10 {
        let reply = r.chat("US", &chat_body("m", 5)).await;
        assert_eq!((reply.status, reply.node(), reply.body.len()), (200, "primary", 0));
    }
    let connections = seen.connections.load(Ordering::SeqCst);
    assert!((1..=2).contains(&connections), "10 sequential empty answers opened {connections} origin connections");
}
