//! `edge-router demo`: the router on an example config, with small local
//! OpenAI-compatible origins it starts itself.
//!
//! The demo origins answer with canned completions (streamed as SSE when
//! asked) that name the origin, so each curl shows where a request went. A
//! control port stops and restarts them to show fallback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::origins::{BoxError, ProxyBody};

/// The config the demo runs, with `{{node-id}}` placeholders for origin URLs.
pub const DEMO_CONFIG: &str = include_str!("../../examples/demo.yaml");

/// One canned origin.
pub struct DemoOrigin {
    name: String,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl DemoOrigin {
    /// Starts an origin labelled `name` on a free loopback port.
    pub async fn start(name: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut origin = Self { name: name.to_string(), addr, task: None };
        origin.task = Some(spawn_origin(listener, origin.name.clone()));
        Ok(origin)
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening: new connections are refused.
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        if self.task.is_none() {
            let listener = TcpListener::bind(self.addr).await?;
            self.task = Some(spawn_origin(listener, self.name.clone()));
        }
        Ok(())
    }

    /// Whether it is listening.
    pub fn running(&self) -> bool {
        self.task.is_some()
    }
}

impl Drop for DemoOrigin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_origin(listener: TcpListener, name: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let name = name.clone();
            conns.spawn(async move {
                let svc = service_fn(move |req| answer(name.clone(), req));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    })
}

async fn answer(name: String, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let model = parsed["model"].as_str().unwrap_or("unknown").to_string();
    let text = format!("Hello from demo origin {name}, model {model}. This is a canned answer.");
    let resp = if path.ends_with("/chat/completions") && parsed["stream"] == true {
        let words: Vec<String> = text.split(' ').map(|w| format!("{w} ")).collect();
        Response::builder()
            .header("content-type", "text/event-stream")
            .header("x-demo-origin", &name)
            .body(sse_stream(words, model.clone(), parsed["stream_options"]["include_usage"] == true).boxed())
    } else if path.ends_with("/chat/completions") || path.ends_with("/completions") {
        let json = serde_json::json!({
            "id": "demo-1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 14, "total_tokens": 24}
        });
        Response::builder()
            .header("content-type", "application/json")
            .header("x-demo-origin", &name)
            .body(full(json.to_string()))
    } else {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("x-demo-origin", &name)
            .body(full("not found\n".into()))
    };
    Ok(resp.unwrap_or_else(|_| Response::new(full(String::new()))))
}

fn full(s: String) -> ProxyBody {
    Full::new(Bytes::from(s)).map_err(|never| match never {}).boxed()
}

/// SSE chunks, one word each, 80 ms apart, then (if the client asked for it
/// with `stream_options.include_usage`) a usage chunk, then `[DONE]`.
fn sse_stream(words: Vec<String>, model: String, include_usage: bool) -> ChannelBody {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for w in words {
            let chunk = serde_json::json!({"object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": {"content": w}}]});
            if tx.send(Bytes::from(format!("data: {chunk}\n\n"))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(80)).await;
        }
        if include_usage {
            let usage = serde_json::json!({"object": "chat.completion.chunk", "model": model, "choices": [],
                "usage": {"prompt_tokens": 10, "completion_tokens": 14, "total_tokens": 24}});
            let _ = tx.send(Bytes::from(format!("data: {usage}\n\n"))).await;
        }
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    ChannelBody(rx)
}

/// A response body fed by a channel; it ends when the sender is dropped.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// The demo's origins by node id, and the config text pointing at them.
pub struct DemoFleet {
    /// Origins, by node id.
    pub origins: Vec<(String, DemoOrigin)>,
    /// The config with real addresses.
    pub config: String,
}

impl DemoFleet {
    /// Starts one origin per `{{id}}` placeholder in the demo config.
    pub async fn start() -> std::io::Result<Self> {
        let mut config = DEMO_CONFIG.to_string();
        let mut origins = Vec::new();
        for id in ["local-gpu", "edge-small", "cloud-eu", "cloud-us"] {
            let origin = DemoOrigin::start(id).await?;
            config = config.replace(&format!("{{{{{id}}}}}"), &origin.url());
            origins.push((id.to_string(), origin));
        }
        Ok(Self { origins, config })
    }
}

/// Serves `POST /stop/<id>` and `POST /start/<id>` for the demo origins.
pub async fn control_server(
    listener: TcpListener,
    fleet: std::sync::Arc<tokio::sync::Mutex<DemoFleet>>,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let fleet = fleet.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let fleet = fleet.clone();
                async move {
                    let path = req.uri().path().to_string();
                    let mut fleet = fleet.lock().await;
                    let (verb, id) = path.trim_start_matches('/').split_once('/').unwrap_or(("", ""));
                    let reply = match fleet.origins.iter_mut().find(|(n, _)| n == id) {
                        None => format!("no demo origin named `{id}`\n"),
                        Some((_, o)) if verb == "stop" => {
                            o.stop();
                            format!("demo origin {id} stopped: connections to it are now refused\n")
                        }
                        Some((_, o)) if verb == "start" => match o.restart().await {
                            Ok(()) => format!("demo origin {id} is listening again\n"),
                            Err(e) => format!("demo origin {id} could not restart: {e}\n"),
                        },
                        Some(_) => "use POST /stop/<id> or /start/<id>\n".to_string(),
                    };
                    Ok::<_, Infallible>(Response::new(full(reply)))
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
