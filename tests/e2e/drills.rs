//! Fault drills: one origin per way of failing, each taken through the whole
//! cycle. The failures open the node's breaker after the threshold, traffic
//! moves to the fallback, and once the origin recovers, the half-open probe
//! brings the node back. The client sees a good answer or one clear error
//! every time, and never waits long.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edge_router_e2e::{TestRouter, chat_body, json_origin};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How an origin misbehaves until it is healed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Nothing listens: connections are refused.
    Refuses,
    /// Accepts and never answers.
    Silent,
    /// Sends an SSE head and one event, then stalls.
    StallsMidStream,
    /// Sends a head and part of the body, then resets the connection.
    ResetsMidBody,
    /// Answers 503.
    Answers503,
}

/// A raw TCP origin that shows `fault` until healed, then answers 200 JSON.
struct Faulty {
    url: String,
    healed: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    fault: Fault,
}

impl Faulty {
    async fn start(fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let healed = Arc::new(AtomicBool::new(false));
        if fault == Fault::Refuses {
            drop(listener); // bound again at `heal`
        } else {
            tokio::spawn(serve(listener, fault, healed.clone()));
        }
        Self { url: format!("http://{addr}"), healed, addr, fault }
    }

    async fn heal(&self) {
        self.healed.store(true, Ordering::SeqCst);
        if self.fault == Fault::Refuses {
            let listener = TcpListener::bind(self.addr).await.expect("the same port again");
            tokio::spawn(serve(listener, self.fault, self.healed.clone()));
        }
    }
}

async fn serve(listener: TcpListener, fault: Fault, healed: Arc<AtomicBool>) {
    while let Ok((s, _)) = listener.accept().await {
        let healed = healed.load(Ordering::SeqCst);
        tokio::spawn(answer(s, if healed { None } else { Some(fault) }));
    }
}

async fn answer(mut s: TcpStream, fault: Option<Fault>) {
    let mut buf = vec![0u8; 65536];
    let _ = s.read(&mut buf).await;
    let _ = match fault {
        None => {
            let body = r#"{"ok":true}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(head.as_bytes()).await
        }
        Some(Fault::Refuses) => Ok(()),
        Some(Fault::Silent) => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        }
        Some(Fault::StallsMidStream) => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
            let event = "data: {\"n\":0}\n\n";
            let _ = s.write_all(format!("{head}{:x}\r\n{event}\r\n", event.len()).as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        }
        Some(Fault::ResetsMidBody) => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"partial\":";
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            // Linger zero: closing sends a reset, not a clean end. (Deprecated
            // because a non-zero linger blocks on drop; zero never does.)
            #[allow(deprecated)]
            let _ = s.set_linger(Some(Duration::ZERO));
            Ok(())
        }
        Some(Fault::Answers503) => {
            let body = r#"{"error":{"type":"overloaded","message":"try later"}}"#;
            let head = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(head.as_bytes()).await
        }
    };
}

/// What the client got: status, serving node, attempts, and whether the
/// body arrived whole (or as a clear SSE error event).
async fn ask(r: &TestRouter) -> (u16, String, String, Result<String, String>) {
    let asked = async {
        let body = chat_body("m", 5).to_string();
        let resp = r.send("POST", "/v1/chat/completions", &[("content-type", "application/json")], &body).await;
        let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let (status, node, attempts) = (resp.status().as_u16(), header("x-edge-node"), header("x-edge-attempts"));
        let body = match resp.into_body().collect().await {
            Ok(b) => Ok(String::from_utf8_lossy(&b.to_bytes()).into_owned()),
            Err(e) => Err(e.to_string()),
        };
        (status, node, attempts, body)
    };
    tokio::time::timeout(Duration::from_secs(5), asked).await.expect("the client never hangs")
}

async fn drill(fault: Fault) {
    let origin = Faulty::start(fault).await;
    let backup = json_origin(200, Duration::ZERO).await;
    let config = format!(
        "nodes:
  - {{id: primary, type: local, host: \"{}\", timeouts: {{first_byte: 300ms, idle: 300ms}}}}
  - {{id: backup, type: cloud, host: \"{}\"}}
routing:
  rules:
    - {{name: chain, match: {{}}, target: primary, fallback: [backup]}}
health_check: {{unhealthy_threshold: 2, cool_down: 300ms, max_cool_down: 1s, interval: 1h}}
",
        origin.url,
        backup.url()
    );
    let r = TestRouter::new(&config).await;

    // Up to the threshold the primary gets each request. A failure before the
    // response head falls back; one after it ends with a clear error.
    for _ in 0..2 {
        let (status, node, attempts, body) = ask(&r).await;
        match fault {
            Fault::Refuses | Fault::Silent | Fault::Answers503 => {
                assert_eq!((status, node.as_str(), attempts.as_str()), (200, "backup", "2"), "{fault:?}");
                assert!(body.is_ok(), "{fault:?}: {body:?}");
            }
            Fault::StallsMidStream => {
                let body = body.unwrap_or_else(|e| panic!("an SSE stall ends cleanly with an error event: {e}"));
                assert!(body.contains("event: error") && body.contains("upstream_stall"), "{body}");
            }
            Fault::ResetsMidBody => assert!(body.is_err(), "a reset reaches the client as a broken body"),
        }
    }

    // The breaker is open: the backup serves at the first attempt.
    let (status, node, attempts, _) = ask(&r).await;
    assert_eq!((status, node.as_str(), attempts.as_str()), (200, "backup", "1"), "{fault:?}: breaker open");

    // The origin recovers; after the cool-down one probe brings it back.
    origin.heal().await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..2 {
        let (status, node, attempts, body) = ask(&r).await;
        assert_eq!((status, node.as_str(), attempts.as_str()), (200, "primary", "1"), "{fault:?}: recovered");
        assert_eq!(body.as_deref(), Ok(r#"{"ok":true}"#));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_an_origin_that_refuses_connections() {
    drill(Fault::Refuses).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_an_origin_that_accepts_and_never_answers() {
    drill(Fault::Silent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_an_origin_that_stalls_mid_stream() {
    drill(Fault::StallsMidStream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_an_origin_that_resets_mid_body() {
    drill(Fault::ResetsMidBody).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_an_origin_that_answers_503_then_recovers() {
    drill(Fault::Answers503).await;
}
