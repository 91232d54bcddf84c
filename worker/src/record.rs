//! Each request's access log line (`exchange::record`, as on the edge box),
//! written to the console, which Workers Logs collects: at once for an
//! answer already in memory, at the end of the body for a streamed one,
//! with the usage and outcome the watchdog found.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use edge_router::config::AccessLogTarget;
use edge_router::facts::Endpoint;
use exchange::record::{Begun, Ending, Outcome, Record, sampled};
use futures_util::Stream;
use futures_util::stream::{LocalBoxStream, StreamExt};

use crate::convert::{Answer, Body};
use crate::now_ms;
use crate::state::Generation;

/// A request being recorded, and the config it is priced by.
pub struct Recording {
    pub begun: Begun,
    generation: Rc<Generation>,
}

impl Recording {
    /// The record of request `id`, unless the access log is off or does not sample it.
    pub fn start(
        generation: &Rc<Generation>,
        id: u64,
        method: &http::Method,
        target: &str,
        endpoint: Endpoint,
    ) -> Option<Self> {
        {
            let router = generation.router.borrow();
            let m = &router.config().monitoring;
            if m.access_log == AccessLogTarget::Off || !sampled(id, m.access_log_sample) {
                return None;
            }
        }
        let mut begun = Begun::new(id, now_ms(), method, target);
        begun.endpoint = Some(endpoint);
        Some(Self { begun, generation: generation.clone() })
    }
}

/// `answer`, its record written now, or when its streamed body ends.
pub fn recorded(answer: Answer, recording: Option<Recording>) -> Answer {
    let Some(Recording { begun, generation }) = recording else { return answer };
    let now = now_ms();
    let record = Record::at_head(begun, answer.status(), answer.headers(), answer.extensions(), now);
    let (mut parts, body) = answer.into_parts();
    let body = match (parts.extensions.remove::<Ending>(), body) {
        (Some(ending), Body::Watched(inner)) => {
            Body::Watched(Recorded { inner, open: Some((Box::new(record), ending, generation)) }.boxed_local())
        }
        (_, body) => {
            write(record, Outcome::Complete, None, &generation);
            body
        }
    };
    http::Response::from_parts(parts, body)
}

fn write(mut record: Record, outcome: Outcome, usage: Option<edge_router::wire::Usage>, generation: &Generation) {
    record.close(outcome, usage, generation.router.borrow().config(), now_ms());
    worker::console_log!("{}", record.json_line());
}

/// A streamed body whose record is written at its end, or when the client goes.
struct Recorded {
    inner: LocalBoxStream<'static, Result<Bytes, worker::Error>>,
    open: Option<(Box<Record>, Ending, Rc<Generation>)>,
}

impl Recorded {
    fn close(&mut self, seen: Outcome) {
        let Some((record, ending, generation)) = self.open.take() else { return };
        let (outcome, usage) = ending.outcome(seen);
        write(*record, outcome, usage, &generation);
    }
}

impl Stream for Recorded {
    type Item = Result<Bytes, worker::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(None) => self.close(Outcome::Complete),
            Poll::Ready(Some(Err(_))) => self.close(Outcome::Broken),
            _ => {}
        }
        polled
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.close(Outcome::ClientGone);
    }
}
