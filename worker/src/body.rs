//! An origin's answer streaming to the client through the exchange's
//! watchdog (`exchange::watch`): each chunk read in Rust, timed with a
//! `Delay`, and passed on.

use std::time::Duration;

use bytes::Bytes;
use edge_router::wire::{Explain, Forward};
use exchange::answer::bodiless;
use exchange::head::{Delivery, deliver_head};
use exchange::record::{Ending, Outcome};
use exchange::watch::{Cut, Next, Watch, WatchSetup};
use futures_util::StreamExt;
use futures_util::future::{Either, select};
use worker::Delay;

use crate::convert::{Answer, Body, response};
use crate::later::{Finish, Later};
use crate::now_ms;
use crate::stream::JsBody;

/// The client's response: the origin's head as the exchange shapes it, and
/// its body watched.
#[allow(clippy::too_many_arguments)]
pub fn stream(
    resp: http::Response<JsBody>,
    method: &http::Method,
    explain: &Explain,
    forward: &Forward,
    delivery: Delivery,
    sent_ms: u64,
    finish: Option<Finish>,
    later: &Later,
    usage_wanted: bool,
) -> Answer {
    let (mut parts, inner) = resp.into_parts();
    deliver_head(&mut parts.headers, explain, delivery.transform.is_some());
    if bodiless(method, parts.status) {
        // Nothing to pass through (a HEAD, a 204): the exchange is over.
        drop(finish);
        return response(parts.status, &parts.headers, Body::Empty);
    }
    let watch = Watch::new(WatchSetup {
        node: explain.node.as_str().into(),
        idle_ms: forward.idle_timeout_ms,
        total_ms: forward.total_timeout_ms,
        sent_ms,
        head_ms: now_ms(),
        sse: delivery.sse,
        // The request's record counts the tokens of every API call.
        meter: forward.meter || usage_wanted,
        capture: delivery.capture,
        transform: delivery.transform,
    });
    let ending = Ending::default();
    parts.extensions.insert(ending.clone());
    let tracked = Tracked { inner, watch, finish, later: later.clone(), ending };
    let chunks = futures_util::stream::unfold(tracked, Tracked::next);
    http::Response::from_parts(parts, Body::Watched(chunks.boxed_local()))
}

/// An origin's body passed through the watchdog.
struct Tracked {
    inner: JsBody,
    watch: Watch,
    finish: Option<Finish>,
    later: Later,
    /// How the body ended, for the request's record.
    ending: Ending,
}

type Chunk = Result<Bytes, worker::Error>;

impl Tracked {
    async fn next(mut self) -> Option<(Chunk, Self)> {
        loop {
            match self.watch.next_out() {
                Next::Data(chunk) => return Some((Ok(chunk), self)),
                Next::Fail(message) => return Some((Err(worker::Error::RustError(message)), self)),
                Next::End => return None,
                Next::Wait => {}
            }
            let wait = self.watch.wake_at().saturating_sub(now_ms());
            let delay = Box::pin(Delay::from(Duration::from_millis(wait)));
            match select(self.inner.next(), delay).await {
                Either::Left((Some(Ok(chunk)), _)) => self.watch.on_chunk(chunk, now_ms()),
                Either::Left((None, _)) => self.complete(),
                Either::Left((Some(Err(e)), _)) => {
                    // As on the edge box: the body ends with an error, which
                    // closes the client's stream short.
                    worker::console_warn!("edge-router: {} broke off its response: {e}", self.watch.node());
                    let failure = self.watch.on_broken();
                    self.ending.set(Outcome::Broken, None);
                    if let Some(finish) = self.finish.take() {
                        finish.fail(failure);
                    }
                    return Some((Err(worker::Error::RustError(e)), self));
                }
                Either::Right(((), _)) => {
                    if let Some(cut) = self.watch.on_timer(now_ms()) {
                        self.cut(cut);
                    }
                }
            }
        }
    }

    /// The body was cut off: the router hears why (the watch tells the client).
    fn cut(&mut self, cut: Cut) {
        worker::console_warn!("edge-router: {}", cut.message);
        self.ending.set(Outcome::Broken, None);
        if let (Some(failure), Some(finish)) = (cut.failure, self.finish.take()) {
            finish.fail(failure);
        }
    }

    /// The whole body went through: the exchange finishes with the usage it
    /// reported, and the answer is stored after the response.
    fn complete(&mut self) {
        let ended = self.watch.on_end(now_ms());
        self.ending.set(Outcome::Complete, ended.usage);
        if let Some(finish) = self.finish.take() {
            finish.end(ended.usage);
        }
        if let Some(captured) = ended.captured {
            self.later.run(crate::cache::put(captured.key, captured.cached));
        }
    }
}
