//! The cheapest proxy hyper can be: no routing, no wasm. Measured beside nginx
//! and edge-router so the table shows how much of edge-router's cost is the
//! HTTP stack itself. Usage: hyper-floor LISTEN ORIGIN (both host:port).
//! One current-thread runtime per core, SO_REUSEPORT listeners, and a per-thread
//! pool of keep-alive connections to the origin.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

type Body = BoxBody<Bytes, hyper::Error>;
type Pool = Arc<Mutex<Vec<SendRequest<Incoming>>>>;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args.next().ok_or_else(|| anyhow::anyhow!("LISTEN missing"))?.parse()?;
    let origin: SocketAddr = args.next().ok_or_else(|| anyhow::anyhow!("ORIGIN missing"))?.parse()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let handles: Vec<_> = (0..threads).map(|_| std::thread::spawn(move || run(listen, origin))).collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("thread panicked"))??;
    }
    Ok(())
}

fn run(listen: SocketAddr, origin: SocketAddr) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseport(true)?;
        socket.set_reuseaddr(true)?;
        socket.bind(listen)?;
        let listener = socket.listen(1024)?;
        let pool: Pool = Arc::default();
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let pool = pool.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| forward(pool.clone(), origin, req));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    })
}

async fn forward(pool: Pool, origin: SocketAddr, req: Request<Incoming>) -> Result<Response<Body>, hyper::Error> {
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
struct Returning {
    inner: Incoming,
    back: Option<(SendRequest<Incoming>, Pool)>,
}

impl http_body::Body for Returning {
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
