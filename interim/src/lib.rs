//! Interim (1xx) responses, such as `103 Early Hints` and `102 Processing`,
//! on a hyper HTTP/1 server connection.
//!
//! A hyper service answers each request with exactly one response, so it
//! cannot send a `1xx` before it (hyper refuses an informational status).
//! RFC 9110 §15.2 lets a server send any number of them first. This crate
//! wraps the connection's transport: [`wrap`] gives the transport to hand to
//! hyper and an [`Interim`] handle, whose [`Interim::send`] queues a `1xx`
//! head; the transport writes it before anything else hyper writes next,
//! and wakes the connection's task so that it goes out at once, even while
//! hyper waits for the service's final response.
//!
//! A `1xx` may only be sent before the request's final response head
//! begins: the caller sends it from the service (or from a callback of a
//! request the service is waiting for), never after the service returned.
//! It must not be sent to an HTTP/1.0 client (RFC 9110 §15.2), which the
//! caller checks with the request's version.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use atomic_waker::AtomicWaker;
use http::{HeaderMap, StatusCode};

/// At most this many bytes of interim responses wait for the client to
/// read them (an origin may send any number of `1xx`).
pub const MAX_QUEUED: usize = 64 * 1024;

/// What a transport and its handles share.
#[derive(Default)]
struct Shared {
    /// No transport to write to (an HTTP/2 connection): nothing is sent.
    inert: bool,
    /// Set while a service may send: only then is the connection's waker kept.
    armed: AtomicBool,
    /// Whether `queued` holds anything (checked without the lock).
    pending: AtomicBool,
    queued: Mutex<Vec<u8>>,
    /// The connection task's waker, to write what is queued while it waits.
    waker: AtomicWaker,
}

/// A connection's transport, writing queued interim responses first.
pub struct InterimIo<T> {
    inner: T,
    shared: Arc<Shared>,
    /// hyper's last write went out only in part: the rest of that message
    /// comes next, and nothing may go between.
    partial: bool,
}

/// Sends interim responses on one connection.
#[derive(Clone)]
pub struct Interim(Arc<Shared>);

/// Wraps a connection's transport; the handle sends interim responses on it.
pub fn wrap<T>(io: T) -> (InterimIo<T>, Interim) {
    let shared = Arc::new(Shared::default());
    (InterimIo { inner: io, shared: shared.clone(), partial: false }, Interim(shared))
}

impl Interim {
    /// A handle with no transport behind it, for a connection that cannot
    /// carry these writes (HTTP/2): it never sends.
    pub fn inert() -> Self {
        Self(Arc::new(Shared { inert: true, ..Shared::default() }))
    }

    /// Lets [`send`](Self::send) work for the request being served: the
    /// connection's task is woken to write. Until [`disarm`](Self::disarm).
    pub fn arm(&self) {
        self.0.armed.store(true, Ordering::Release);
    }

    /// The request's final response is on its way: nothing more is sent.
    pub fn disarm(&self) {
        self.0.armed.store(false, Ordering::Release);
    }

    /// Queues an interim response with `status` (102 to 199; 100 is hyper's
    /// own, for `Expect: 100-continue`, and 101 switches protocols) and
    /// `headers` (the caller leaves hop-by-hop fields out). False, and
    /// nothing sent, when the status is not one or the handle is not armed.
    pub fn send(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        if self.0.inert || !(102..200).contains(&status.as_u16()) || !self.0.armed.load(Ordering::Acquire) {
            return false;
        }
        let mut head =
            format!("HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or("")).into_bytes();
        for (name, value) in headers {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let mut queued = self.0.queued.lock().unwrap_or_else(PoisonError::into_inner);
        // A client that does not read: what it has not taken is bounded, and
        // an interim response past that is not sent (none is owed).
        if queued.len() + head.len() > MAX_QUEUED {
            return false;
        }
        queued.extend_from_slice(&head);
        drop(queued);
        self.0.pending.store(true, Ordering::Release);
        self.0.waker.wake();
        true
    }
}

impl<T: hyper::rt::Write + Unpin> InterimIo<T> {
    /// Writes what is queued; ready once nothing is left.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.partial || !self.shared.pending.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let mut queued = self.shared.queued.lock().unwrap_or_else(PoisonError::into_inner);
        while !queued.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &queued))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            queued.drain(..n);
        }
        self.shared.pending.store(false, Ordering::Release);
        Poll::Ready(Ok(()))
    }

    /// Keeps the connection task's waker while a service may send.
    fn register(&self, cx: &Context<'_>) {
        if self.shared.armed.load(Ordering::Acquire) {
            self.shared.waker.register(cx.waker());
        }
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for InterimIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for InterimIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.partial = n < buf.len();
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        self.partial = n < bufs.iter().map(|b| b.len()).sum();
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes on every turn of a connection's task, even with
        // nothing of its own to write: the waker kept here is the task's.
        self.register(cx);
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
