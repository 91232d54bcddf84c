//! The decision floor (`hyper-floor LISTEN ORIGIN CONFIG MODULE`) really asks
//! the module: what it forwards reaches the origin, and what the module
//! refuses does not. Without this, `bench/proxy.sh` could be comparing
//! against a proxy that skipped the decision.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// An origin on loopback answering every request with `from-origin`, counting them.
async fn origin(count: Arc<AtomicUsize>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the origin");
    let addr = listener.local_addr().expect("origin address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    count.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from_static(b"from-origin")))) }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// Kills the child process when dropped, so a failed assertion leaves nothing running.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Posts a chat request to the decision floor at `port` until it answers (it
/// needs a moment to compile the module); returns the status and body.
async fn chat(port: u16) -> (u16, String) {
    let body = r#"{"model":"llama-3-8b","messages":[{"role":"user","content":"Hello there"}]}"#;
    for _ in 0..150 {
        let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        let req = hyper::Request::post("/v1/chat/completions")
            .header("host", "bench")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request");
        let resp = sender.send_request(req).await.expect("an answer");
        let status = resp.status().as_u16();
        let text = resp.into_body().collect().await.expect("body").to_bytes();
        return (status, String::from_utf8_lossy(&text).into_owned());
    }
    panic!("the decision floor did not start listening on port {port}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Starts the decision floor with `extra` appended to a one-node config, and
/// sends one chat request through it: its status and body, and how many
/// requests the origin saw.
fn through_the_floor(extra: &str) -> (u16, String, usize) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let count = Arc::new(AtomicUsize::new(0));
        let origin = origin(count.clone()).await;
        let dir = std::env::temp_dir().join(format!("decision-floor-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("router.yaml");
        let text = format!(
            "nodes:\n  - {{id: origin, type: local, host: \"http://{origin}\", models: [llama-3-8b], data_residency: global}}\n\
             routing:\n  rules:\n    - {{match: {{type: \"*\"}}, target: origin}}\n{extra}"
        );
        std::fs::write(&config, text).expect("write the config");
        let port = free_port();
        let module = edge_router_host::default_module_path();
        let _floor = Child(
            std::process::Command::new(env!("CARGO_BIN_EXE_hyper-floor"))
                .arg(format!("127.0.0.1:{port}"))
                .arg(origin.to_string())
                .arg(&config)
                .arg(&module)
                .spawn()
                .expect("start hyper-floor"),
        );
        let (status, body) = chat(port).await;
        let _ = std::fs::remove_dir_all(&dir);
        (status, body, count.load(Ordering::SeqCst))
    })
}

#[test]
fn what_the_module_forwards_reaches_the_origin() {
    assert_eq!(through_the_floor(""), (200, "from-origin".into(), 1));
}

#[test]
fn what_the_module_refuses_does_not() {
    // Keys are required and the request has none: the module answers 401 itself.
    let auth = "auth:\n  required: true\n  keys:\n    - {sha256: \"5d6bf7b999239eddfd0a32aede86c79e58e1b3a03a2685fbe53c5980581bdc1d\", tier: vip, tenant: acme}\n";
    assert_eq!(through_the_floor(auth), (502, "not forwarded".into(), 0));
}
