//! The cheapest proxy hyper can be: no routing, no wasm. Measured beside nginx
//! and edge-router so the table shows how much of edge-router's cost is the
//! HTTP stack itself. One current-thread runtime per core, SO_REUSEPORT
//! listeners, and a per-thread pool of keep-alive connections to the origin.
//!
//! Usage: hyper-floor LISTEN ORIGIN [CONFIG MODULE] (LISTEN and ORIGIN as
//! host:port; a LISTEN port of 0 takes a free one). It prints
//! `listening on ADDR` once it accepts connections.
//!
//! With CONFIG and MODULE it is the **decision floor**: the same proxy plus
//! the least a router built on the module must do per request, and nothing
//! else. It reads the body (the router's choice depends on it), reads the
//! request for the module as the edge box does (`exchange::intake::host_reads`), asks the
//! module for its decision (`proxy::call_module`, the edge box's own call),
//! forwards to the origin only if the module said forward (otherwise it
//! answers what the module answered), and tells the module about the response
//! head and the end, deferred as the edge box defers them (the end right after
//! the head: nothing watches the body). Each thread has its own module
//! instance, so it pays nothing for sharing one; with
//! `DECISION_FLOOR_SHARED=1` the threads share one, as the edge box's workers
//! do. What it leaves out is listed in bench/README.md; what it costs above
//! nginx is a lower bound for an edge-router on this stack.
// A host: it reads its environment and clocks.
#![allow(clippy::disallowed_methods)]

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
use edge_router_host::proxy::{call_module, defer_event, now_ms};
use edge_router_host::{RouterModule, WasmRouter, module};
use exchange::intake::{HostReads, host_reads};
use origin_fallback::{GOLDEN_GAMMA, mix64};

// The edge box's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Body = BoxBody<Bytes, hyper::Error>;
type Pool<B> = Arc<Mutex<Vec<SendRequest<B>>>>;

/// The decision floor's module: the config (as the host reads it) and the
/// module with its config's text.
struct Decide {
    config: Arc<RouterConfig>,
    module: RouterModule,
    file: String,
    text: String,
}

impl Decide {
    fn instance(&self) -> anyhow::Result<Arc<Mutex<WasmRouter>>> {
        Ok(Arc::new(Mutex::new(WasmRouter::new(&self.module, &self.file, &self.text)?)))
    }
}

/// What a decision-floor request needs: the host's config, this thread's (or
/// the shared) module instance, and request ids and random numbers.
struct Decider {
    config: Arc<RouterConfig>,
    router: Arc<Mutex<WasmRouter>>,
    next: std::sync::atomic::AtomicU64,
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
            Some(Decide { config: Arc::new(config), module, file, text })
        }
        (None, None) => None,
        _ => anyhow::bail!("give both CONFIG and MODULE, or neither"),
    };
    let shared = match &decide {
        Some(d) if std::env::var("DECISION_FLOOR_SHARED").is_ok_and(|v| v == "1") => Some(d.instance()?),
        _ => None,
    };
    // Bound here first, so a port of 0 becomes one port all threads share.
    let first = bind(listen)?;
    let listen = first.local_addr()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut sockets = vec![first];
    for _ in 1..threads {
        sockets.push(bind(listen)?);
    }
    let (ready, listening) = std::sync::mpsc::channel();
    let handles: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(thread, socket)| {
            let decider = match &decide {
                None => Ok(None),
                Some(d) => shared.clone().map_or_else(|| d.instance(), Ok).map(|router| {
                    let seed = mix64(std::process::id().into()) ^ mix64(thread as u64);
                    Some(Decider { config: d.config.clone(), router, next: seed.into() })
                }),
            };
            let ready = ready.clone();
            std::thread::spawn(move || run(socket, origin, decider?, ready))
        })
        .collect();
    drop(ready);
    // Once every thread listens (a thread that failed drops its sender early).
    if listening.iter().take(threads).count() == threads {
        println!("listening on {listen}");
    }
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("thread panicked"))??;
    }
    Ok(())
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseport(true)?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

fn run(
    socket: TcpSocket,
    origin: SocketAddr,
    decider: Option<Decider>,
    ready: std::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = socket.listen(1024)?;
        let _ = ready.send(());
        let decider = decider.map(Arc::new);
        let (plain, decided): (Pool<Incoming>, Pool<Full<Bytes>>) = (Arc::default(), Arc::default());
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let io = TokioIo::new(stream);
            if let Some(decider) = &decider {
                let (decider, pool) = (decider.clone(), decided.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| decided_forward(decider.clone(), pool.clone(), origin, req));
                    let _ = http1::Builder::new().serve_connection(io, service).await;
                });
            } else {
                let pool = plain.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| forward(pool.clone(), origin, req));
                    let _ = http1::Builder::new().serve_connection(io, service).await;
                });
            }
        }
    })
}

/// The decision floor's request: body read, the module asked, then forwarded.
async fn decided_forward(
    decider: Arc<Decider>,
    pool: Pool<Full<Bytes>>,
    origin: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let endpoint = Endpoint::classify(parts.method.as_str(), target);
    let HostReads { headers, key_sha256, body_facts, .. } =
        host_reads(&decider.config, &parts.headers, None, endpoint, Some(&body), None);
    let id = decider.next.fetch_add(GOLDEN_GAMMA, std::sync::atomic::Ordering::Relaxed);
    let request = RequestRef {
        id,
        method: parts.method.as_str(),
        target,
        headers,
        country: None,
        client: None,
        body: BodyRef::Buffered(&body),
        now_ms: now_ms(),
        random: mix64(id),
        key_sha256,
        body_facts,
        token: None,
        fleet: None,
    };
    let answer = |status: StatusCode, body: Bytes| {
        let mut resp = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
        *resp.status_mut() = status;
        resp
    };
    match call_module(&decider.router, |into| module::encode_request(&request, into)).map(|r| r.action) {
        Ok(Action::Forward(_)) => {}
        Ok(Action::Respond { status, body, .. }) => {
            return Ok(answer(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), body.into()));
        }
        Ok(other) => return Ok(answer(StatusCode::BAD_GATEWAY, format!("not forwarded: {other:?}").into())),
        Err(e) => return Ok(answer(StatusCode::INTERNAL_SERVER_ERROR, format!("module call failed: {e:#}").into())),
    }
    let resp = forward(pool, origin, Request::from_parts(parts, Full::new(body))).await?;
    let (status, at) = (resp.status().as_u16(), now_ms());
    defer_event(&decider.router, &Event::ResponseHead { id, status, retry_after_s: None, now_ms: at });
    defer_event(&decider.router, &Event::Finished { id, usage: None, now_ms: at });
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

/// Puts the connection back in the pool when the response body ends.
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
