//! Accepting connections and shutting down gracefully.
//!
//! One task accepts; each accepted connection is then served, start to end,
//! by one of `workers` threads that each run a single-threaded runtime. A
//! request, its origin connection and the response stream thus stay on one
//! thread: no work-stealing and no wake-ups across threads on the hot path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::proxy::{Client, ReloadError, Reloaded, Shared, handle};

/// Logs what became of a config reload `why` asked for.
pub fn report_reload(why: &str, result: Result<Reloaded, ReloadError>) {
    match result {
        Ok(r) if !r.changed => tracing::info!("{why}: the config file is unchanged"),
        Ok(r) => {
            let s = &r.generation.source;
            tracing::info!(
                "{why}: config {} reloaded (sha256 {}, {} nodes, {} rules)",
                s.name,
                &s.sha256[..12],
                r.generation.config.nodes.len(),
                r.generation.config.rules.len()
            );
            for setting in r.restart_needed {
                tracing::warn!("{setting} changed: it takes effect at the next restart");
            }
        }
        Err(ReloadError::NoFile) => tracing::warn!("{why}: the config was not read from a file; nothing to reload"),
        Err(ReloadError::Refused(e)) => {
            tracing::error!("{why}: the new config was refused, the running one stays:\n{e}")
        }
    }
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    shared: std::sync::Weak<Shared>,
    stop: Option<oneshot::Sender<Duration>>,
    task: JoinHandle<()>,
    /// The admin API's address and task, when it is served.
    admin: Option<(SocketAddr, JoinHandle<()>)>,
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.admin {
            task.abort();
        }
    }
}

impl ServerHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin API's address, if it is served.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(addr, _)| *addr)
    }

    /// Reads the config file again and puts it in force (what `SIGHUP`,
    /// `edge-router reload` and `--watch` do; see `Shared::reload_config`).
    pub fn reload_config(&self) -> Result<Reloaded, ReloadError> {
        match self.shared.upgrade() {
            Some(shared) => shared.reload_config(),
            None => Err(ReloadError::Refused("the server is shutting down".into())),
        }
    }

    /// Looks at the config file every `period`, and reloads it when it
    /// changed (a config that does not load is logged and the running one
    /// stays, until the file changes again).
    pub fn watch_config(&self, period: Duration) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut seen = None;
            loop {
                tokio::time::sleep(period).await;
                let Some(shared) = shared.upgrade() else { break };
                let Some(path) = shared.generation().source.path.clone() else { break };
                let stamp = std::fs::metadata(&path).and_then(|m| Ok((m.modified()?, m.len()))).ok();
                if seen.is_none() || stamp == seen {
                    seen = stamp;
                    continue;
                }
                seen = stamp;
                let reloaded = tokio::task::spawn_blocking(move || shared.reload_config()).await;
                match reloaded {
                    Ok(result) => report_reload("the config file changed", result),
                    Err(e) => tracing::error!("the config reload failed: {e}"),
                }
            }
        });
    }

    pub(crate) fn set_admin(&mut self, addr: SocketAddr, task: JoinHandle<()>) {
        self.admin = Some((addr, task));
    }

    /// Stops accepting, lets in-flight requests and streams run for up to
    /// `grace`, then closes what is left. Returns when done.
    pub async fn shutdown(mut self, grace: Duration) {
        // As requests drain, the nodes look idle: that is no reason to scale in.
        if let Some(shared) = self.shared.upgrade() {
            shared.signals.scaling_stopped.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some((_, admin)) = self.admin.take() {
            admin.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(grace);
        }
        let _ = (&mut self.task).await;
        // The last lines of the access log and the audit trail, before the process ends.
        if let Some(shared) = self.shared.upgrade() {
            shared.signals.flush();
            if let Some(audit) = &shared.signals.audit {
                audit.close(Duration::from_secs(5));
            }
        }
    }
}

/// Runs `job` every `period`, the first time one period from now, for as
/// long as the server lives: it owns the only lasting strong reference to
/// `shared`, so when the server is gone, so is the task.
fn every<F, Fut>(shared: &Arc<Shared>, period: Duration, job: F)
where
    F: Fn(Arc<Shared>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let weak = Arc::downgrade(shared);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(shared) = weak.upgrade() else { break };
            job(shared).await;
        }
    });
}

/// A worker thread running a single-threaded runtime until told to stop.
struct Worker {
    runtime: Handle,
    /// Dropping this ends the thread, and with it every task left on it.
    _stop: oneshot::Sender<()>,
}

impl Worker {
    fn start(index: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new().name(format!("edge-worker-{index}")).spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
        Ok(Self { runtime: handle, _stop: stop })
    }
}

/// Serves `shared` on `listener` until shut down.
pub fn serve(shared: Arc<Shared>, listener: TcpListener) -> std::io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let weak = Arc::downgrade(&shared);
    let workers = (0..shared.workers()).map(Worker::start).collect::<std::io::Result<Vec<_>>>()?;
    let (stop_tx, mut stop_rx) = oneshot::channel::<Duration>();
    // How often the router is told the time when no request does it (the cadence both hosts share).
    let tick_every = Duration::from_millis(exchange::notices::TICK_EVERY_MS);
    every(&shared, tick_every, |shared| async move { shared.tick() });
    // Passive health covers the first interval; probing starts after it.
    for node in &shared.generation().config.nodes {
        shared.watch_health(&node.id);
    }
    crate::scaling::start(&shared).map_err(std::io::Error::other)?;
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let mut next = 0usize;
        let grace = loop {
            tokio::select! {
                grace = &mut stop_rx => break grace.unwrap_or(Duration::ZERO),
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors and the like: back off instead of spinning.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    // Hand the socket over bare, so it registers with the worker's own reactor.
                    let stream = match stream.into_std() {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!("connection from {peer} lost before serving: {e}");
                            continue;
                        }
                    };
                    let worker = next % workers.len();
                    next = next.wrapping_add(1);
                    let shared = shared.clone();
                    let watcher = graceful.watcher();
                    // The config in force when the connection came (a reload may change it).
                    let client_timeout = shared.generation().config.server.client_timeout.0;
                    let tls = shared.tls();
                    workers[worker].runtime.spawn(async move {
                        let stream = match tokio::net::TcpStream::from_std(stream) {
                            Ok(s) => s,
                            Err(e) => return tracing::debug!("connection from {peer} lost before serving: {e}"),
                        };
                        let mut conn = Accepted { shared, worker, peer, client_timeout, hsts: None };
                        let served = match tls {
                            None => serve_http1(stream, conn, watcher).await,
                            Some(tls) => {
                                let accepted = tokio::time::timeout(client_timeout, tls.acceptor.accept(stream)).await;
                                let stream = match accepted {
                                    Ok(Ok(s)) => s,
                                    Ok(Err(e)) => return tracing::debug!("TLS handshake with {peer} failed: {e}"),
                                    Err(_) => return tracing::debug!("TLS handshake with {peer} took over {client_timeout:?}"),
                                };
                                conn.hsts = tls.hsts.clone();
                                if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                                    serve_http2(stream, conn, watcher).await
                                } else {
                                    serve_http1(stream, conn, watcher).await
                                }
                            }
                        };
                        if let Err(e) = served {
                            tracing::debug!("connection from {peer} ended: {e}");
                        }
                    });
                }
            }
        };
        drop(listener);
        if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
            tracing::warn!("shutdown grace of {grace:?} ran out; closing the remaining connections");
        }
        drop(workers);
    });
    Ok(ServerHandle { addr, shared: weak, stop: Some(stop_tx), task, admin: None })
}

/// An accepted client connection: what serving each of its requests takes.
struct Accepted {
    shared: Arc<Shared>,
    /// The worker thread serving it (whose origin pools its requests use).
    worker: usize,
    peer: SocketAddr,
    /// `server.client_timeout` when it came.
    client_timeout: Duration,
    /// `Strict-Transport-Security`, over HTTPS when the config asks for it.
    hsts: Option<http::HeaderValue>,
}

impl Accepted {
    /// Serves one of its requests, with `interim` for an origin's 1xx answers.
    ///
    /// The future is boxed: hyper keeps a slot the size of its service's
    /// future for as long as an HTTP/1.1 connection lives, and routing a
    /// request takes about 9 KB of state. Boxed, the slot is a pointer and
    /// the state lives only until the response's head is out, not for the
    /// whole of a streamed answer or an idle keep-alive connection.
    fn serve(
        &self,
        req: http::Request<hyper::body::Incoming>,
        interim: interim::Interim,
    ) -> std::pin::Pin<Box<impl Future<Output = http::Response<crate::origins::ProxyBody>> + use<>>> {
        let (shared, hsts) = (self.shared.clone(), self.hsts.clone());
        let client = Client { worker: self.worker, peer: self.peer.ip(), interim };
        Box::pin(async move { with_hsts(handle(shared, client, req).await, hsts) })
    }
}

/// Serves one HTTP/1.1 connection (plain, or HTTPS without `h2`), with
/// origins' interim (1xx) answers passed on.
async fn serve_http1<S>(
    stream: S,
    conn: Accepted,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let client_timeout = conn.client_timeout;
    // Interim (1xx) answers from origins go to the client through this.
    let stream = crate::idle::WriteDeadline::new(stream, client_timeout);
    let (io, interim) = interim::wrap(TokioIo::new(stream));
    let service = service_fn(move |req| {
        let response = conn.serve(req, interim.clone());
        async move { Ok::<_, std::convert::Infallible>(response.await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(client_timeout)
        .serve_connection(io, service);
    watcher.watch(conn).await
}

/// Serves one HTTP/2 connection (HTTPS, `h2` by ALPN). HTTP/2 has no
/// interim answers of hyper's to pass on: an origin's are dropped. The
/// connection ends when no stream has been open for `client_timeout`
/// (`idle.rs`); a peer that stops answering pings goes sooner.
async fn serve_http2<S>(
    stream: S,
    conn: Accepted,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let interim = interim::Interim::inert();
    let activity = crate::idle::Activity::new();
    let stream = crate::idle::WriteDeadline::new(stream, conn.client_timeout);
    let io = crate::idle::IdleIo::new(stream, activity.clone(), conn.client_timeout);
    let service = service_fn(move |req| {
        let stream = activity.open();
        let response = conn.serve(req, interim.clone());
        async move {
            let response = response.await;
            Ok::<_, std::convert::Infallible>(response.map(|body| crate::idle::Tracked::new(body, stream)))
        }
    });
    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .keep_alive_interval(Some(H2_PING_EVERY))
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    watcher.watch(conn).await
}

/// Streams one HTTP/2 connection may have open at once (each may hold a
/// request body of up to `server.max_body_bytes` while it is read).
const H2_MAX_STREAMS: u32 = 64;
/// How often an HTTP/2 peer is pinged, and how long it has to answer.
const H2_PING_EVERY: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

fn with_hsts<B>(mut response: http::Response<B>, hsts: Option<http::HeaderValue>) -> http::Response<B> {
    if let Some(value) = hsts {
        response.headers_mut().insert(http::header::STRICT_TRANSPORT_SECURITY, value);
    }
    response
}
