//! An origin's answer streaming to the client through the exchange's
//! watchdog (`exchange::watch`): each chunk read in Rust, timed with a
//! `Delay`, and passed on.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use edge_router::wire::{Explain, Forward};
use exchange::answer::bodiless;
use exchange::head::{Delivery, deliver_head};
use exchange::watch::{Cut, Watch, WatchSetup};
use futures_util::StreamExt;
use futures_util::future::{Either, select};
use worker::{Delay, Response, ResponseBuilder};

use crate::convert::{Body, js_headers, response};
use crate::later::{Finish, Later};
use crate::now_ms;

/// The client's response: the origin's head as the exchange shapes it, and
/// its body watched.
#[allow(clippy::too_many_arguments)]
pub fn stream(
    resp: http::Response<worker::Body>,
    method: &http::Method,
    explain: &Explain,
    forward: &Forward,
    delivery: Delivery,
    sent_ms: u64,
    finish: Option<Finish>,
    later: &Later,
) -> worker::Result<Response> {
    let (mut parts, inner) = resp.into_parts();
    deliver_head(&mut parts.headers, explain, delivery.transform.is_some());
    if bodiless(method, parts.status) {
        // Nothing to pass through (a HEAD, a 204): the exchange is over.
        drop(finish);
        return Ok(response(parts.status, &parts.headers, Body::Empty));
    }
    let watch = Watch::new(WatchSetup {
        node: explain.node.as_str().into(),
        idle_ms: forward.idle_timeout_ms,
        total_ms: forward.total_timeout_ms,
        sent_ms,
        head_ms: now_ms(),
        sse: delivery.sse,
        meter: forward.meter,
        capture: delivery.capture,
        transform: delivery.transform,
    });
    let tracked =
        Tracked { inner, watch, out: VecDeque::new(), finish, later: later.clone(), failed: None, done: false };
    let chunks = futures_util::stream::unfold(tracked, Tracked::next);
    ResponseBuilder::new()
        .with_status(parts.status.as_u16())
        .with_headers(js_headers(&parts.headers))
        .from_stream(chunks)
}

/// An origin's body passed through the watchdog.
struct Tracked {
    inner: worker::Body,
    watch: Watch,
    /// What the client gets next, in order.
    out: VecDeque<Bytes>,
    finish: Option<Finish>,
    later: Later,
    /// The error the client's body ends with, after what is in `out`.
    failed: Option<worker::Error>,
    /// Nothing more comes from `inner`.
    done: bool,
}

type Chunk = Result<Bytes, worker::Error>;

impl Tracked {
    async fn next(mut self) -> Option<(Chunk, Self)> {
        loop {
            if let Some(chunk) = self.out.pop_front() {
                return Some((Ok(chunk), self));
            }
            if self.done {
                let failed = self.failed.take()?;
                return Some((Err(failed), self));
            }
            let wait = self.watch.wake_at().saturating_sub(now_ms());
            let delay = Box::pin(Delay::from(Duration::from_millis(wait)));
            match select(self.inner.next(), delay).await {
                Either::Left((Some(Ok(chunk)), _)) => {
                    let this = &mut self;
                    this.watch.on_chunk(chunk, now_ms(), &mut this.out);
                }
                Either::Left((None, _)) => self.complete(),
                Either::Left((Some(Err(e)), _)) => {
                    // As on the edge box: the body ends with an error, which
                    // closes the client's stream short.
                    worker::console_warn!("edge-router: {} broke off its response: {e}", self.watch.node());
                    let failure = self.watch.on_broken();
                    if let Some(finish) = self.finish.take() {
                        finish.body_failed(failure);
                    }
                    self.done = true;
                    return Some((Err(e), self));
                }
                Either::Right(((), _)) => {
                    if let Some(cut) = self.watch.on_timer(now_ms()) {
                        self.cut(cut);
                    }
                }
            }
        }
    }

    /// The body was cut off: the router hears why, and the client gets the
    /// cut's last chunk or an error.
    fn cut(&mut self, cut: Cut) {
        worker::console_warn!("edge-router: {}", cut.message);
        if let (Some(failure), Some(finish)) = (cut.failure, self.finish.take()) {
            finish.body_failed(failure);
        }
        self.done = true;
        match cut.last {
            Some(last) => self.out.push_back(last),
            None => self.failed = Some(worker::Error::RustError(cut.message)),
        }
    }

    /// The whole body went through: the exchange finishes with the usage it
    /// reported, and the answer is stored after the response.
    fn complete(&mut self) {
        self.done = true;
        let ended = self.watch.on_end(now_ms(), &mut self.out);
        if let Some(mut finish) = self.finish.take() {
            finish.usage = ended.usage;
        }
        if let Some(captured) = ended.captured {
            self.later.run(crate::cache::put(captured.key, captured.entry, captured.body));
        }
    }
}
