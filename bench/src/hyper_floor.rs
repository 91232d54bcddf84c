//! The cheapest proxy hyper can be: no routing, no wasm. Measured beside nginx
//! and edge-router so the table shows how much of edge-router's cost is the
//! HTTP stack itself. One current-thread runtime per core, SO_REUSEPORT
//! listeners, and a per-thread pool of keep-alive connections to the origin.
//!
//! Usage: hyper-floor LISTEN ORIGIN [CONFIG MODULE] (LISTEN and ORIGIN as host:port)
//!
//! With CONFIG and MODULE it is the **decision floor**: the same proxy plus
//! the least a router built on the module must do per request, and nothing
//! else. It reads the body (the router's choice depends on it), reads the
//! request for the module as the edge box does (`proxy::host_reads`), asks the
//! module for its decision, forwards to the origin only if the module said
//! forward, and tells the module about the response head and the end,
//! deferred as the edge box defers them (the end right after the head: nothing
//! watches the body). Each thread has its own module instance, so it pays
//! nothing for sharing one; with `DECISION_FLOOR_SHARED=1` the threads share
//! one, as the edge box's workers do. There are no timeouts, no explanation
//! headers and no copy of the client's headers. What it costs above nginx is
//! a lower bound for any edge-router on this stack.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

use edge_router::RouterConfig;
use edge_router::facts::Endpoint;
use edge_router::wire::{Action, BodyRef, Event, RequestRef};
use edge_router_host::proxy::{HostReads, host_reads, now_ms};
use edge_router_host::{RouterModule, WasmRouter, module};

type Body = BoxBody<Bytes, hyper::Error>;
type Pool<B> = Arc<Mutex<Vec<SendRequest<B>>>>;

/// What the decision floor needs: the config (as the host reads it) and the
/// module with its config's text.
#[derive(Clone)]
struct Decide {
    config: Arc<RouterConfig>,
    module: RouterModule,
    file: Arc<str>,
    text: Arc<str>,
}

/// One thread's module instance and its request ids.
struct Instance {
    router: WasmRouter,
    next_id: u64,
    /// Buffers for the encoded event and the reply.
    event: Vec<u8>,
    reply: Vec<u8>,
}

impl Instance {
    fn new(d: &Decide) -> anyhow::Result<Arc<Mutex<Self>>> {
        Ok(Arc::new(Mutex::new(Self {
            router: WasmRouter::new(&d.module, &d.file, &d.text)?,
            next_id: 1,
            event: Vec::with_capacity(4096),
            reply: Vec::with_capacity(4096),
        })))
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args.next().ok_or_else(|| anyhow::anyhow!("LISTEN missing"))?.parse()?;
    let origin: SocketAddr = args.next().ok_or_else(|| anyhow::anyhow!("ORIGIN missing"))?.parse()?;
    let decide = match (args.next(), args.next()) {
        (Some(file), Some(module)) => {
            let text = std::fs::read_to_string(&file)?;
            let config = RouterConfig::load(&file, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
            let module = RouterModule::from_file(module.as_ref())?;
            Some(Decide { config: Arc::new(config), module, file: file.into(), text: text.into() })
        }
        (None, None) => None,
        _ => anyhow::bail!("give both CONFIG and MODULE, or neither"),
    };
    let shared = match &decide {
        Some(d) if std::env::var_os("DECISION_FLOOR_SHARED").is_some() => Some(Instance::new(d)?),
        _ => None,
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (decide, shared) = (decide.clone(), shared.clone());
            std::thread::spawn(move || run(listen, origin, decide, shared))
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("thread panicked"))??;
    }
    Ok(())
}

fn run(
    listen: SocketAddr,
    origin: SocketAddr,
    decide: Option<Decide>,
    shared: Option<Arc<Mutex<Instance>>>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseport(true)?;
        socket.set_reuseaddr(true)?;
        socket.bind(listen)?;
        let listener = socket.listen(1024)?;
        let instance = match (&decide, shared) {
            (_, Some(shared)) => Some(shared),
            (Some(d), None) => Some(Instance::new(d)?),
            (None, None) => None,
        };
        let (plain, decided): (Pool<Incoming>, Pool<Full<Bytes>>) = (Arc::default(), Arc::default());
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let io = TokioIo::new(stream);
            match (&decide, &instance) {
                (Some(d), Some(instance)) => {
                    let (config, instance, pool) = (d.config.clone(), instance.clone(), decided.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            decided_forward(config.clone(), instance.clone(), pool.clone(), origin, req)
                        });
                        let _ = http1::Builder::new().serve_connection(io, service).await;
                    });
                }
                _ => {
                    let pool = plain.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| forward(pool.clone(), origin, req));
                        let _ = http1::Builder::new().serve_connection(io, service).await;
                    });
                }
            }
        }
    })
}

/// The decision floor's request: body read, the module asked, then forwarded.
async fn decided_forward(
    config: Arc<RouterConfig>,
    instance: Arc<Mutex<Instance>>,
    pool: Pool<Full<Bytes>>,
    origin: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let endpoint = Endpoint::classify(parts.method.as_str(), target);
    let headers = || parts.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
    let HostReads { headers, key_sha256, body_facts } = host_reads(&config, headers, None, endpoint, Some(&body));
    let sent_ms = now_ms();
    let (id, forwarded) = {
        let mut guard = instance.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Instance { router, next_id, event, reply } = &mut *guard;
        let id = *next_id;
        *next_id += 1;
        let request = RequestRef {
            id,
            method: parts.method.as_str(),
            target,
            headers,
            country: None,
            body: BodyRef::Buffered(&body),
            now_ms: sent_ms,
            random: id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            key_sha256,
            body_facts,
        };
        let action = module::encode_request(&request, event)
            .and_then(|()| router.handle_encoded(event, reply))
            .and_then(|()| module::decode(reply));
        (id, matches!(action, Ok(r) if matches!(r.action, Action::Forward(_))))
    };
    if !forwarded {
        let mut refused =
            Response::new(Full::new(Bytes::from_static(b"not forwarded")).map_err(|n| match n {}).boxed());
        *refused.status_mut() = StatusCode::BAD_GATEWAY;
        return Ok(refused);
    }
    let resp = forward(pool, origin, Request::from_parts(parts, Full::new(body))).await?;
    let mut guard = instance.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let status = resp.status().as_u16();
    let now_ms = now_ms();
    for event in
        [Event::ResponseHead { id, status, retry_after_s: None, now_ms }, Event::Finished { id, usage: None, now_ms }]
    {
        guard.router.defer(&event);
    }
    Ok(resp)
}

async fn forward<B>(pool: Pool<B>, origin: SocketAddr, req: Request<B>) -> Result<Response<Body>, hyper::Error>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut idle = pool.lock().unwrap().pop();
    if let Some(s) = idle.as_mut()
        && s.ready().await.is_err()
    {
        idle = None;
    }
    let mut sender = match idle {
        Some(s) => s,
        None => {
            let stream = TcpStream::connect(origin).await.expect("origin reachable");
            stream.set_nodelay(true).ok();
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender
        }
    };
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = Returning { inner: body, back: Some((sender, pool)) }.boxed();
    Ok(Response::from_parts(parts, body))
}
struct Returning<B> {
    inner: Incoming,
    back: Option<(SendRequest<B>, Pool<B>)>,
}

impl<B> http_body::Body for Returning<B> {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if (matches!(polled, std::task::Poll::Ready(None)) || self.inner.is_end_stream())
            && let Some((s, pool)) = self.back.take()
        {
            pool.lock().unwrap().push(s);
        }
        polled
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
