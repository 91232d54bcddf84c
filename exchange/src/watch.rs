//! The watchdog of a streamed answer, sans I/O: the host feeds it each
//! chunk of an origin's body and the time, arms a timer for
//! [`Watch::wake_at`], and reports when the timer fires, when the body
//! broke, when it ended, or when a drain ran out of time. The watch queues
//! what the client gets ([`Watch::next_out`]) and says what the router and the
//! cache are told.
//!
//! - **Time limits.** A body that sends nothing for the node's `idle` limit,
//!   or outlasts its `total` limit (counted from when the request was sent),
//!   is cut off and counted against the node ([`Failure::Timeout`]).
//! - **Drains.** A drain whose time ran out cuts the body off too, without
//!   blaming the node.
//! - **How a body is cut off.** An SSE stream ends with an `event: error`
//!   carrying an OpenAI-shaped error (which OpenAI's SDKs raise as an API
//!   error), so the client sees why instead of hanging; any other body ends
//!   with an error, which closes the client's connection short of the
//!   declared length.
//! - **Usage.** For a metered node the tail of the body is kept, and the
//!   `usage` found in it when the body ends goes to the router.
//! - **Capture.** An answer the cache may keep is collected as it passes and
//!   stored only if the whole of it went through.
//! - **Transforms.** A [`Transform`] rewrites the body on its way.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use edge_router::wire::{Failure, Usage};

use crate::capture::{Capture, Captured};
use crate::transform::Transform;
use crate::usage::find_usage;

/// How much of a metered body's end is kept: the last SSE chunks, or the
/// end of a JSON answer, where servers put `usage`.
pub const METER_TAIL: usize = 16 << 10;

/// What a body is watched for.
pub struct Watch {
    node: Arc<str>,
    idle_ms: u64,
    deadline_ms: u64,
    last_ms: u64,
    /// For an SSE stream, the last bytes the client got of it, to tell
    /// whether they ended an event (a cut's error event must not join a
    /// partial one); `None` for any other body.
    sse: Option<SseTail>,
    meter: Option<Vec<u8>>,
    capture: Option<Capture>,
    transform: Option<Box<dyn Transform>>,
    /// The next chunk the client gets, when it is the only one: an
    /// untransformed chunk passes through here without a queue.
    first: Option<Bytes>,
    /// What the client gets after `first`, in order.
    out: VecDeque<Bytes>,
    /// The error the client's body ends with, after what is in `out`.
    failed: Option<String>,
    ended: bool,
}

/// The last four bytes of an SSE stream so far.
#[derive(Default)]
struct SseTail([u8; 4]);

impl SseTail {
    fn push(&mut self, data: &[u8]) {
        for &b in data.iter().rev().take(4).rev() {
            self.0.rotate_left(1);
            self.0[3] = b;
        }
    }

    /// Whether the stream stands between events: at its start, or after the
    /// blank line that ends one (`\n\n`, `\r\r` or `\r\n\r\n`).
    fn between_events(&self) -> bool {
        let t = &self.0;
        t == &[0; 4] || t[2..] == *b"\n\n" || t[2..] == *b"\r\r" || t == b"\r\n\r\n"
    }
}

/// What the client's body does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Passes this chunk on.
    Data(Bytes),
    /// Ends with an error (closing the client's connection short).
    Fail(String),
    /// Ends.
    End,
    /// Waits for the origin's next chunk (or the timer).
    Wait,
}

/// How a watch starts.
pub struct WatchSetup {
    /// The node answering, for messages.
    pub node: Arc<str>,
    /// Longest gap between chunks.
    pub idle_ms: u64,
    /// Limit from sending the request to the body's end.
    pub total_ms: u64,
    /// When the request was sent.
    pub sent_ms: u64,
    /// When the response head came (the idle limit runs from here).
    pub head_ms: u64,
    /// Whether the body is an SSE stream (`text/event-stream`).
    pub sse: bool,
    /// Whether to look for `usage` at the end (the node is metered).
    pub meter: bool,
    /// The answer to collect for the cache, if it may be stored.
    pub capture: Option<Capture>,
    /// The rewrite the body goes through, if any.
    pub transform: Option<Box<dyn Transform>>,
}

/// A body cut off before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// What to tell the router (`BodyFailed`): `None` for a drain, which is
    /// not the node's failure.
    pub failure: Option<Failure>,
    /// Why, for the log. The client gets it too: an SSE stream as a last
    /// error event, any other body as the error it ends with.
    pub message: String,
}

/// A body that went through to its end.
#[derive(Debug)]
pub struct Ended {
    /// The `usage` it reported, for a metered node.
    pub usage: Option<Usage>,
    /// The whole answer, to store under its key.
    pub captured: Option<Captured>,
}

impl Watch {
    /// Starts watching.
    pub fn new(setup: WatchSetup) -> Self {
        Self {
            node: setup.node,
            idle_ms: setup.idle_ms,
            deadline_ms: setup.sent_ms.saturating_add(setup.total_ms),
            last_ms: setup.head_ms,
            sse: setup.sse.then(SseTail::default),
            meter: setup.meter.then(Vec::new),
            capture: setup.capture,
            transform: setup.transform,
            first: None,
            out: VecDeque::new(),
            failed: None,
            ended: false,
        }
    }

    /// What the client's body does next.
    pub fn next_out(&mut self) -> Next {
        if let Some(data) = self.first.take().or_else(|| self.out.pop_front()) {
            return Next::Data(data);
        }
        match (self.ended, self.failed.take()) {
            (_, Some(message)) => Next::Fail(message),
            (true, None) => Next::End,
            (false, None) => Next::Wait,
        }
    }

    /// Whether the client's body is exactly the origin's (no transform, not
    /// cut): then the origin's length holds for it too.
    pub fn exact(&self) -> bool {
        self.transform.is_none() && !self.ended
    }

    /// When the host must call [`on_timer`](Self::on_timer) unless a chunk
    /// comes first.
    pub fn wake_at(&self) -> u64 {
        self.last_ms.saturating_add(self.idle_ms).min(self.deadline_ms)
    }

    /// The node answering.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether the answer is still being kept for the cache: false when
    /// none was asked, or once it grew too large to keep.
    pub fn captures(&self) -> bool {
        self.capture.is_some()
    }

    /// Whether the client's body has ended: over, with nothing left to send
    /// (so that a host can say so with the last chunk, not after it).
    pub fn is_done(&self) -> bool {
        self.ended && self.first.is_none() && self.out.is_empty() && self.failed.is_none()
    }

    /// A chunk came at `now_ms`: queues what the client gets of it.
    pub fn on_chunk(&mut self, chunk: Bytes, now_ms: u64) {
        self.last_ms = now_ms;
        if self.transform.is_none() && self.first.is_none() && self.out.is_empty() {
            // The common case: one chunk in, the same chunk out, no queue.
            observe(&mut self.meter, &mut self.capture, &mut self.sse, &chunk);
            self.first = Some(chunk);
            return;
        }
        let from = self.out.len();
        match &mut self.transform {
            Some(t) => t.chunk(chunk, &mut self.out),
            None => self.out.push_back(chunk),
        }
        self.observe(from);
    }

    /// Observes what was queued from index `from` on.
    fn observe(&mut self, from: usize) {
        for data in self.out.range(from..) {
            observe(&mut self.meter, &mut self.capture, &mut self.sse, data);
        }
    }

    /// The host's timer fired at `now_ms`: the cut, if a limit ran out
    /// (`None` if it fired early; arm it again for [`wake_at`](Self::wake_at)).
    pub fn on_timer(&mut self, now_ms: u64) -> Option<Cut> {
        if self.ended || now_ms < self.wake_at() {
            return None;
        }
        let (kind, message) = if now_ms >= self.deadline_ms {
            ("upstream_timeout", format!("node {} did not finish its response within its total time limit", self.node))
        } else {
            let idle = self.idle_ms as f64 / 1000.0;
            ("upstream_stall", format!("node {} sent nothing for {idle}s; the response was cut off", self.node))
        };
        Some(self.cut(kind, message, Some(Failure::Timeout)))
    }

    /// A drain of the node ran out of time (not the node's failure).
    pub fn on_drained(&mut self) -> Cut {
        let message = format!("node {} is drained and its drain time ran out; the response was cut off", self.node);
        self.cut("node_drained", message, None)
    }

    fn cut(&mut self, kind: &str, message: String, failure: Option<Failure>) -> Cut {
        self.ended = true;
        self.capture = None;
        if let Some(tail) = &self.sse {
            // Ends a partial event first: it is lost either way, and the
            // error event stays whole.
            let event = sse_error_event(kind, &message);
            let event = if tail.between_events() { event } else { format!("\n\n{event}") };
            self.out.push_back(Bytes::from(event));
        } else {
            self.failed = Some(message.clone());
        }
        Cut { failure, message }
    }

    /// The origin's body broke off: what to tell the router.
    pub fn on_broken(&mut self) -> Failure {
        self.ended = true;
        self.capture = None;
        Failure::Reset
    }

    /// The body ended at `now_ms`: queues what a transform still held, and
    /// says what the body reported and what to store.
    pub fn on_end(&mut self, now_ms: u64) -> Ended {
        self.ended = true;
        let from = self.out.len();
        if let Some(t) = &mut self.transform {
            t.end(&mut self.out);
        }
        self.observe(from);
        let usage = self.meter.as_deref().and_then(find_usage);
        let captured = self.capture.take().map(|c| c.finish(now_ms));
        Ended { usage, captured }
    }
}

/// Keeps the tail of `data` for the meter, all of it for the capture
/// (dropped once the answer is too large to keep), and its last bytes for
/// an SSE stream's cut.
fn observe(meter: &mut Option<Vec<u8>>, capture: &mut Option<Capture>, sse: &mut Option<SseTail>, data: &[u8]) {
    if let Some(tail) = sse {
        tail.push(data);
    }
    if let Some(tail) = meter {
        tail.extend_from_slice(data);
        if tail.len() > 2 * METER_TAIL {
            tail.drain(..tail.len() - METER_TAIL);
        }
    }
    if let Some(c) = capture
        && !c.keep(data)
    {
        *capture = None;
    }
}

/// An OpenAI-shaped error as the last event of an SSE stream that had to be
/// cut off (OpenAI's SDKs raise it as an API error), so the client sees why
/// instead of a stream that just stops.
pub fn sse_error_event(kind: &str, message: &str) -> String {
    let error = serde_json::json!({"error": {"type": kind, "message": message}});
    format!("event: error\ndata: {error}\n\n")
}

#[cfg(test)]
mod tests;
