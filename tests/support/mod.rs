//! Shared pieces of the end-to-end tests: the real router module in the real
//! host, listening on 127.0.0.1:0, and origins that misbehave on purpose.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_router_host::{RouterModule, ServerHandle, default_module_path};
pub use fake_origin::{self, FakeOrigin, Route, Script, Seen};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

pub mod mmdb;

/// The compiled router module, shared by every test in the process.
pub fn module() -> &'static RouterModule {
    static MODULE: OnceLock<RouterModule> = OnceLock::new();
    MODULE.get_or_init(|| {
        let path = default_module_path();
        RouterModule::from_file(&path)
            .unwrap_or_else(|e| panic!("{e:#}\nrun scripts/build-module.sh (or scripts/test.sh) first"))
    })
}

/// A router under test.
pub struct TestRouter {
    handle: Option<ServerHandle>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A response with its body read.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The served node.
    pub fn node(&self) -> &str {
        self.header("x-edge-node")
    }
}

impl TestRouter {
    /// Starts the host with `config` (YAML) on a free loopback port.
    pub async fn start(config: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let handle = edge_router_host::start(module(), "test.yaml", config, listener)?;
        Ok(Self { handle: Some(handle), client: Client::builder(TokioExecutor::new()).build_http() })
    }

    /// Starts the host, panicking with the config error if it is refused.
    pub async fn new(config: &str) -> Self {
        Self::start(config).await.unwrap_or_else(|e| panic!("router refused its config: {e:#}\n{config}"))
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.handle.as_ref().map(ServerHandle::addr).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Sends a request and returns the response head with the body unread.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> http::Response<Incoming> {
        self.send_with(&self.client, method, path, headers, body).await
    }

    /// Sends a request from the loopback address `local` (any of
    /// 127.0.0.0/8), as a client of that address would, and reads the
    /// whole response.
    pub async fn request_from(
        &self,
        local: std::net::IpAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        read_reply(self.send_with(&client, method, path, headers, body).await).await
    }

    async fn send_with(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> http::Response<Incoming> {
        let mut b = http::Request::builder().method(method).uri(format!("http://{}{path}", self.addr()));
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let req = b.body(Full::new(Bytes::from(body.to_string()))).expect("request");
        client.request(req).await.expect("router answered")
    }

    /// Sends a request and reads the whole response.
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        read_reply(self.send(method, path, headers, body).await).await
    }

    /// `POST /v1/chat/completions` with a JSON body and a client country.
    pub async fn chat(&self, country: &str, body: &serde_json::Value) -> Reply {
        self.chat_with(country, body, &[]).await
    }

    /// Like `chat`, with extra headers.
    pub async fn chat_with(&self, country: &str, body: &serde_json::Value, extra: &[(&str, &str)]) -> Reply {
        let mut headers = vec![("content-type", "application/json"), ("x-country", country)];
        headers.extend_from_slice(extra);
        self.request("POST", "/v1/chat/completions", &headers, &body.to_string()).await
    }

    /// Stops the server, letting in-flight requests run for `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(h) = self.handle.take() {
            h.shutdown(grace).await;
        }
    }
}

/// A response, read whole.
async fn read_reply(resp: http::Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    Reply { status: parts.status.as_u16(), headers: parts.headers, body }
}

/// A chat body with one user message of `words` words.
pub fn chat_body(model: &str, words: usize) -> serde_json::Value {
    let text = vec!["hello"; words].join(" ");
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// An address on which nothing listens: connections are refused.
pub async fn refused_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

/// An origin that accepts connections and never answers.
pub async fn silent_origin() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    format!("http://{addr}")
}

/// A raw TCP origin: for each connection, reads the request (one read is
/// enough for the small requests of these tests), then lets `respond` write.
async fn raw_origin<F, Fut>(respond: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let respond = std::sync::Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let respond = respond.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
                respond(s).await;
            });
        }
    });
    format!("http://{addr}")
}

/// An origin that sends a 200 head and part of a body, then drops the connection.
pub async fn breaks_after_head_origin() -> String {
    raw_origin(|mut s| async move {
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 1000\r\n\r\ndata: partial\n\n";
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.flush().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    })
    .await
}

/// An origin whose chat completion (model `tiny`) comes chunked, in two
/// chunks, and ends with a trailer section (`x-checksum`), as some origins
/// send without being asked.
pub async fn trailers_origin() -> String {
    raw_origin(|mut s| async move {
        let body = r#"{"id":"chatcmpl-t","object":"chat.completion","model":"tiny","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;
        let (a, b) = body.split_at(40);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n\
             {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nx-checksum: 42\r\n\r\n",
            a.len(),
            b.len()
        );
        let _ = s.write_all(response.as_bytes()).await;
        let _ = s.flush().await;
    })
    .await
}

/// An origin whose chat completion comes chunked with a `Content-Length`
/// that is not its length, as a broken server or proxy may send it (RFC
/// 9112 §6.3: the chunking wins, and the length must not be passed on).
pub async fn chunked_and_length_origin() -> String {
    raw_origin(|mut s| async move {
        let body = r#"{"id":"chatcmpl-l","object":"chat.completion","model":"tiny","choices":[{"index":0,"message":{"role":"assistant","content":"whole"},"finish_reason":"stop"}]}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10\r\ntransfer-encoding: chunked\r\n\r\n\
             {:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(response.as_bytes()).await;
        let _ = s.flush().await;
    })
    .await
}

/// An origin that sends a JSON 200 head and part of its body, then stalls
/// (keeping the connection open) for `stall`.
pub async fn stalls_mid_body_origin(stall: Duration) -> String {
    raw_origin(move |mut s| async move {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"id\":";
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.flush().await;
        tokio::time::sleep(stall).await;
    })
    .await
}

/// The fake origin streaming every answer as SSE: `events` data events (a
/// chunk per word, the last with `usage`, then `[DONE]`), `gap` apart.
pub async fn sse_origin(events: usize, gap: Duration) -> FakeOrigin {
    let words: Vec<String> = (1..events).map(|i| format!("w{i}")).collect();
    let reply = fake_origin::Reply {
        sse: Some(true),
        text: Some(words.join(" ")),
        gap_ms: gap.as_millis() as u64,
        ..Default::default()
    };
    FakeOrigin::start("origin", Script::always(reply)).await.expect("start a fake origin")
}

/// The fake origin (`fake-origin`), named `name`, answering every request
/// with `status` (and a chat completion naming it) after `delay`.
pub async fn json_origin_named(name: &str, status: u16, delay: Duration) -> FakeOrigin {
    let reply = fake_origin::Reply { status: Some(status), delay_ms: delay.as_millis() as u64, ..Default::default() };
    FakeOrigin::start(name, Script::always(reply)).await.expect("start a fake origin")
}

/// [`json_origin_named`], named `origin`.
pub async fn json_origin(status: u16, delay: Duration) -> FakeOrigin {
    json_origin_named("origin", status, delay).await
}

/// Reads a body frame by frame, noting when each data frame arrived.
pub async fn timed_frames(body: Incoming, start: Instant) -> Vec<(Duration, Bytes)> {
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            out.push((start.elapsed(), data));
        }
    }
    out
}

/// A country-trusting server section: loopback may set `x-country`.
pub const TRUSTING_SERVER: &str = "server:\n  country_header: x-country\n  trusted_proxies: [127.0.0.1]\n";

/// Hex SHA-256, as client keys are listed in `auth.keys`.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
