//! The decision floor (`hyper-floor LISTEN ORIGIN CONFIG MODULE`) really asks
//! the module: what it forwards reaches the origin, and what the module
//! refuses does not. Without this, `bench/proxy.sh` could be comparing
//! against a proxy that skipped the decision.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use fake_origin::{FakeOrigin, Reply, Script};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// The project's fake origin, answering every request with `from-origin`.
async fn origin() -> FakeOrigin {
    let reply = Reply { body: Some("from-origin".into()), ..Reply::default() };
    FakeOrigin::start("origin", Script { reply, ..Script::default() }).await.expect("start the origin")
}

/// The decision floor as a child process, killed (and its config removed) when dropped.
struct Floor {
    child: std::process::Child,
    dir: std::path::PathBuf,
    addr: SocketAddr,
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Floor {
    /// Starts `hyper-floor` on a free port with `extra` appended to a
    /// one-node config routing everything to `origin`.
    fn start(origin: SocketAddr, extra: &str) -> Self {
        use std::io::BufRead;
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("decision-floor-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("router.yaml");
        let text = format!(
            "nodes:\n  - {{id: origin, type: local, host: \"http://{origin}\", models: [llama-3-8b], data_residency: global}}\n\
             routing:\n  rules:\n    - {{match: {{type: \"*\"}}, target: origin}}\n{extra}"
        );
        std::fs::write(&config, text).expect("write the config");
        let module = edge_router_host::default_module_path();
        assert!(module.exists(), "no router module at {} (run scripts/build-module.sh)", module.display());
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hyper-floor"))
            .args(["127.0.0.1:0".as_ref(), origin.to_string().as_ref(), config.as_os_str(), module.as_os_str()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start hyper-floor");
        // It prints its address once it listens; a child that exits (a
        // refused config, a module that does not load) ends the output instead.
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let read = std::io::BufReader::new(stdout).read_line(&mut line);
        let addr = line.trim().strip_prefix("listening on ").and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            panic!("hyper-floor did not start ({read:?}, said {line:?}; its errors are above)");
        };
        Self { child, dir, addr }
    }

    /// Posts a chat request with `headers`; the status and the body.
    async fn chat(&self, headers: &[(&str, &str)]) -> (u16, String) {
        let body = r#"{"model":"llama-3-8b","messages":[{"role":"user","content":"Hello there"}]}"#;
        let stream = tokio::net::TcpStream::connect(self.addr).await.expect("connect to the decision floor");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        let mut req = hyper::Request::post("/v1/chat/completions")
            .header("host", "bench")
            .header("content-type", "application/json");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(Bytes::from_static(body.as_bytes()))).expect("request");
        let resp = sender.send_request(req).await.expect("an answer");
        let status = resp.status().as_u16();
        let text = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&text).into_owned())
    }
}

/// Sends one chat request with `headers` through a decision floor whose
/// config has `extra` appended: its status and body, and how many requests
/// the origin saw.
fn through_the_floor(extra: &str, headers: &[(&str, &str)]) -> (u16, String, usize) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let origin = origin().await;
        let floor = Floor::start(origin.addr(), extra);
        let (status, body) = floor.chat(headers).await;
        (status, body, origin.hits())
    })
}

/// Keys are required; the one key known is `sk-demo-vip` (as in examples/hybrid.yaml).
const KEYS: &str = "auth:\n  required: true\n  keys:\n    - {sha256: \"5d6bf7b999239eddfd0a32aede86c79e58e1b3a03a2685fbe53c5980581bdc1d\", tier: vip, tenant: acme}\n";

#[test]
fn what_the_module_forwards_reaches_the_origin() {
    assert_eq!(through_the_floor("", &[]), (200, "from-origin".into(), 1));
    // The key is hashed by the host and identified by the module.
    let keyed = through_the_floor(KEYS, &[("authorization", "Bearer sk-demo-vip")]);
    assert_eq!(keyed, (200, "from-origin".into(), 1));
}

#[test]
fn what_the_module_refuses_does_not() {
    let (status, body, seen) = through_the_floor(KEYS, &[("authorization", "Bearer sk-unknown")]);
    assert_eq!((status, seen), (401, 0), "{body}");
    assert!(body.contains("error"), "the module's own answer: {body}");
}
