//! A streamed answer on its way to the client, frame by frame, so SSE
//! chunks reach the client as they arrive. The exchange's watchdog
//! (`exchange::watch`) decides what each chunk, timer and drain means;
//! this drives it with tokio timers and hyper bodies, and tells the router
//! and the cache what it said.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use edge_router::wire::{Event, Explain, Forward};
use exchange::finish::{Finish, Tell};
use exchange::head::{Delivery, deliver_head};
use exchange::record::{Ending, Outcome};
use exchange::watch::{Cut, Next, Watch, WatchSetup};
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::{Shared, now_ms};
use crate::cache::{EdgeCache, FillGuard};
use crate::origins::{BoxError, Lease, ProxyBody};

/// The end of an exchange reaches the router with its next call.
pub(super) struct Deferred(pub(super) Arc<Shared>);

impl Tell for Deferred {
    fn tell(&self, event: Event) {
        self.0.defer(&event);
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// Tells the router an exchange is over when dropped: after the response
/// body ended, or when the client went away at any point before.
pub(super) type FinishOnDrop = Finish<Deferred>;

/// What an answer streams with.
pub(super) struct Stream<'a> {
    pub(super) explain: &'a Explain,
    pub(super) forward: &'a Forward,
    pub(super) delivery: Delivery,
    /// The node's id, for messages.
    pub(super) node: Arc<str>,
    pub(super) sent_ms: u64,
    /// Cancelled when a drain of the node runs out of time.
    pub(super) cut_off: Option<CancellationToken>,
    /// The origin connection, given back when the body has been read to the end.
    pub(super) lease: Option<Lease>,
    /// Held while the answer fills its cache key.
    pub(super) filling: Option<FillGuard>,
    pub(super) cache: Arc<EdgeCache>,
    /// Look for `usage` even if the node is not metered: the request's
    /// record counts the tokens of every API call.
    pub(super) usage_wanted: bool,
}

/// The client's response: the origin's head as the exchange shapes it, and
/// its body watched.
pub(super) fn deliver(resp: Response<Incoming>, s: Stream<'_>, finish: FinishOnDrop) -> Response<ProxyBody> {
    let (mut parts, inner) = resp.into_parts();
    deliver_head(&mut parts.headers, s.explain, s.delivery.transform.is_some());
    let now = now_ms();
    let watch = Watch::new(WatchSetup {
        node: s.node,
        idle_ms: s.forward.idle_timeout_ms,
        total_ms: s.forward.total_timeout_ms,
        sent_ms: s.sent_ms,
        head_ms: now,
        sse: s.delivery.sse,
        meter: s.forward.meter || s.usage_wanted,
        capture: s.delivery.capture,
        transform: s.delivery.transform,
    });
    let timer = Box::pin(tokio::time::sleep(until(watch.wake_at(), now)));
    let ending = Ending::default();
    parts.extensions.insert(ending.clone());
    // Requests waiting for this answer to be stored go on their own at once
    // when it will not be (not storable, or too large).
    let filling = s.filling.filter(|_| watch.captures());
    let tracked = Tracked {
        ending,
        inner,
        watch,
        finish: Some(finish),
        timer,
        cut_off: s.cut_off,
        cut_wait: None,
        lease: s.lease,
        filling,
        cache: s.cache,
        trailers: None,
    };
    Response::from_parts(parts, tracked.boxed())
}

/// How long until `at` (milliseconds since the epoch), from `now`.
fn until(at: u64, now: u64) -> Duration {
    Duration::from_millis(at.saturating_sub(now))
}

/// An origin's body passed through the watchdog.
struct Tracked {
    /// How the body ended, for the request's record.
    ending: Ending,
    inner: Incoming,
    watch: Watch,
    finish: Option<FinishOnDrop>,
    timer: Pin<Box<tokio::time::Sleep>>,
    cut_off: Option<CancellationToken>,
    /// Waits for `cut_off`; made only once the body has had to wait.
    cut_wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    lease: Option<Lease>,
    filling: Option<FillGuard>,
    cache: Arc<EdgeCache>,
    /// The origin's trailers, sent after whatever the watch still holds.
    trailers: Option<http::HeaderMap>,
}

impl Tracked {
    /// The body was cut off: the router hears why (the watch tells the client).
    fn cut(&mut self, cut: Cut) {
        tracing::warn!("{}", cut.message);
        self.ending.set(Outcome::Broken, None);
        if let (Some(failure), Some(finish)) = (cut.failure, self.finish.take()) {
            finish.fail(failure);
        }
        self.filling = None;
    }

    /// The whole body went through: the exchange finishes with the usage it
    /// reported, the answer is stored, and the connection goes back.
    fn complete(&mut self) {
        let ended = self.watch.on_end(now_ms());
        self.ending.set(Outcome::Complete, ended.usage);
        if let Some(finish) = self.finish.take() {
            finish.end(ended.usage);
        }
        if let Some(captured) = ended.captured {
            self.cache.put(captured.key, captured.cached);
        }
        self.filling = None;
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }

    fn drained(&mut self) {
        self.cut_off = None;
        self.cut_wait = None;
        let cut = self.watch.on_drained();
        self.cut(cut);
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            match self.watch.next_out() {
                Next::Data(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Next::Fail(message) => return Poll::Ready(Some(Err(message.into()))),
                Next::End => return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t)))),
                Next::Wait => {}
            }
            if self.cut_off.as_ref().is_some_and(CancellationToken::is_cancelled) {
                self.drained();
                continue;
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let frame = match frame.into_data() {
                        Ok(data) => data,
                        // Trailers end the body: they follow what the
                        // watch still holds (a transform's last bytes).
                        Err(frame) => {
                            self.trailers = frame.into_trailers().ok();
                            self.complete();
                            continue;
                        }
                    };
                    let now = now_ms();
                    self.watch.on_chunk(frame, now);
                    if self.filling.is_some() && !self.watch.captures() {
                        self.filling = None;
                    }
                    let next = tokio::time::Instant::now() + until(self.watch.wake_at(), now);
                    self.timer.as_mut().reset(next);
                    // A body of known length is complete with its last frame;
                    // hyper does not poll it again.
                    if self.inner.is_end_stream() {
                        self.complete();
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!("the response body broke off: {e}");
                    let failure = self.watch.on_broken();
                    self.ending.set(Outcome::Broken, None);
                    if let Some(finish) = self.finish.take() {
                        finish.fail(failure);
                    }
                    self.filling = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(None) => self.complete(),
                Poll::Pending => {
                    if self.cut_wait.is_none()
                        && let Some(token) = &self.cut_off
                    {
                        self.cut_wait = Some(Box::pin(token.clone().cancelled_owned()));
                    }
                    if let Some(wait) = self.cut_wait.as_mut()
                        && wait.as_mut().poll(cx).is_ready()
                    {
                        self.drained();
                        continue;
                    }
                    if self.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let now = now_ms();
                    match self.watch.on_timer(now) {
                        Some(cut) => self.cut(cut),
                        None => {
                            // Early (the clocks differ by a hair): wait the rest.
                            let next = tokio::time::Instant::now()
                                + until(self.watch.wake_at(), now).max(Duration::from_millis(1));
                            self.timer.as_mut().reset(next);
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // With the last chunk, so that hyper ends the response in the same write.
        self.watch.is_done() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.watch.exact() {
            return self.inner.size_hint();
        }
        SizeHint::default()
    }
}
