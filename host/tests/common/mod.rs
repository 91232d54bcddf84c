//! What the edge box's CLI tests share: the real binary serving a config,
//! its admin API driven by CLI invocations, and a client for its proxy.
#![allow(dead_code, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;

pub const BIN: &str = env!("CARGO_BIN_EXE_edge-router");
pub const TOKEN: &str = "test-admin-token-3f9a";

/// The edge box as a child process; killed when dropped.
pub struct EdgeBox {
    pub child: Child,
    pub addr: String,
    pub admin: String,
    /// What it logged until it was serving.
    pub log: Vec<String>,
    /// The config file it serves.
    pub path: std::path::PathBuf,
    /// What it logs from then on.
    pub later: std::sync::mpsc::Receiver<String>,
}

impl Drop for EdgeBox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EdgeBox {
    pub fn start(config: &str) -> Self {
        Self::start_as("config.yaml", config)
    }

    /// Starts it with `config` written to a file called `name`.
    pub fn start_as(name: &str, config: &str) -> Self {
        Self::start_with(name, config, &[])
    }

    /// [`start_as`](Self::start_as), with `args` added to `serve`'s.
    pub fn start_with(name: &str, config: &str, args: &[&str]) -> Self {
        Self::start_with_env(name, config, args, &[])
    }

    /// [`start_with`](Self::start_with), with `env` set for it too.
    pub fn start_with_env(name: &str, config: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        // Cargo's folder for integration tests' files (in target/), not /tmp.
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("edge-router-operators-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, config).expect("config written");
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&path)
            .args(["--listen", "127.0.0.1:0", "--module"])
            .arg(edge_router_host::default_module_path())
            .args(args)
            .env("EDGE_ROUTER_ADMIN_TOKEN", TOKEN)
            .env("EDGE_ROUTER_LOG", "info")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("edge-router starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[edge-router] {line}");
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut admin) = (None, None);
        let mut log = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while addr.is_none() || admin.is_none() {
            let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("start-up log");
            log.push(line.clone());
            if let Some(a) = line.split("admin API on ").nth(1) {
                admin = Some(a.trim().to_string());
            }
            if let Some(a) = line.split(" nodes on ").nth(1) {
                addr = Some(a.trim().to_string());
            }
        }
        Self { child, addr: addr.unwrap_or_default(), admin: admin.unwrap_or_default(), log, path, later: rx }
    }

    /// Waits (up to 20 s) for a log line containing `text`, and returns it.
    pub fn wait_for_log(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line = self
                .later
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no log line with `{text}`"));
            if line.contains(text) {
                return line;
            }
        }
    }

    /// Runs a CLI command against the admin API; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str], token: &str) -> (bool, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .args(["--admin", &self.admin])
            .env("EDGE_ROUTER_ADMIN_TOKEN", token)
            .output()
            .expect("the CLI runs");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.cli(args, TOKEN);
        assert!(ok, "edge-router {args:?} failed: {stderr}");
        stdout
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status is JSON")
    }
}

pub type Client = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

pub async fn chat(client: &Client, addr: &str, model: &str, content: &str) -> hyper::Response<hyper::body::Incoming> {
    let mut body = serde_json::json!({"model": model, "stream": model.starts_with("stream"),
        "messages": [{"role": "user", "content": content}]});
    if content == "deterministic" {
        body["temperature"] = serde_json::json!(0);
    }
    let req = http::Request::post(format!("{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    client.request(req).await.expect("the router answers")
}
