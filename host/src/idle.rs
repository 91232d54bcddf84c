//! Closing client connections that have nothing to do, or that take nothing.
//!
//! hyper's HTTP/1.1 server ends a kept-alive connection whose next request
//! does not come within `server.client_timeout`; its HTTP/2 server has no
//! such limit, so a client could open connections and hold them idle
//! forever. Here the connection's transport reads end (as if the client had
//! closed) once no stream has been open, and nothing has been read, for the
//! timeout. A stream counts as open from its request until its response
//! body ends.
//!
//! A client that stops reading its answer stops hyper's writes, and hyper
//! then stops polling the response body, whose own timers run only when it
//! is polled: the exchange, its node's slot and its origin connection would
//! be held for good. [`WriteDeadline`] fails a write that has made no
//! progress for the timeout, and hyper closes the connection. On HTTP/2 a
//! client can keep the connection busy and still give one stream no
//! flow-control window, so no write waits: a stream whose body handed hyper
//! a piece and has not been asked for the next for the timeout ends the
//! connection's reads too.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What a connection is doing: its open streams, and when it last did anything.
pub struct Activity {
    open: AtomicUsize,
    /// Milliseconds since `start` of the last read or stream end.
    last_ms: AtomicU64,
    start: Instant,
    /// The open streams' [`StreamGuard::handed`] times (HTTP/2).
    streams: Mutex<Vec<Weak<AtomicU64>>>,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        let streams = Mutex::new(Vec::new());
        Arc::new(Self { open: AtomicUsize::new(0), last_ms: AtomicU64::new(0), start: Instant::now(), streams })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A stream opened; it closes when the returned guard is dropped.
    pub fn open(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        let handed = Arc::new(AtomicU64::new(0));
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.retain(|s| s.strong_count() > 0);
        streams.push(Arc::downgrade(&handed));
        StreamGuard { activity: self.clone(), handed }
    }

    /// When the connection will have been idle for `timeout`, if it is idle now.
    fn idle_until(&self, timeout: Duration) -> Option<Instant> {
        (self.open.load(Ordering::Relaxed) == 0)
            .then(|| self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + timeout)
    }

    /// Whether a stream's answer has waited for the client to take it for
    /// `timeout`: hyper handed the last piece on and has not asked for the
    /// next, because the client gives the stream no flow-control window.
    fn starved(&self, timeout: Duration) -> bool {
        let now = self.now_ms();
        let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.iter().filter_map(Weak::upgrade).any(|handed| {
            let at = handed.load(Ordering::Relaxed);
            at != 0 && now.saturating_sub(at - 1) >= limit
        })
    }
}

/// An open stream; dropping it closes it.
pub struct StreamGuard {
    activity: Arc<Activity>,
    /// One more than when (milliseconds since the activity's `start`) the
    /// stream's body last handed hyper a piece that hyper has not followed
    /// with a poll for the next; 0 while it has.
    handed: Arc<AtomicU64>,
}

impl StreamGuard {
    /// The body handed a piece on (`true`), or was asked for the next.
    fn handed(&self, handed: bool) {
        let at = if handed { self.activity.now_ms().saturating_add(1) } else { 0 };
        self.handed.store(at, Ordering::Relaxed);
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.activity.touch();
        self.activity.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its stream open until it ends or is dropped.
pub struct Tracked<B> {
    inner: B,
    stream: StreamGuard,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, stream: StreamGuard) -> Self {
        Self { inner, stream }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.stream.handed(matches!(polled, Poll::Ready(Some(Ok(_)))));
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A transport whose reads end once its connection has been idle for `timeout`.
pub struct IdleIo<T> {
    inner: T,
    activity: Arc<Activity>,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, activity: Arc<Activity>, timeout: Duration) -> Self {
        let timer = Box::pin(tokio::time::sleep(timeout));
        Self { inner, activity, timeout, timer }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.activity.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                // Wake again when the connection would have been idle long
                // enough (or, with a stream open, a timeout from now, to look again).
                loop {
                    let deadline = this.activity.idle_until(this.timeout);
                    if deadline.is_some_and(|d| d <= Instant::now()) || this.activity.starved(this.timeout) {
                        // Idle, or a stream starved: the read ends, and hyper
                        // closes the connection (and its streams).
                        return Poll::Ready(Ok(()));
                    }
                    this.timer.as_mut().reset(deadline.unwrap_or_else(|| Instant::now() + this.timeout));
                    if this.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A transport whose writes fail once they have made no progress for
/// `timeout`. The timer exists only while a write waits.
pub struct WriteDeadline<T> {
    inner: T,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        Self { inner, timeout, stalled: None }
    }

    /// What a write came to: progress ends the wait; a wait starts the
    /// timer, and one that outlasts it fails.
    fn watch<R>(&mut self, cx: &mut Context<'_>, polled: Poll<std::io::Result<R>>) -> Poll<std::io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client took nothing of its answer for {timeout:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        self.watch(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
