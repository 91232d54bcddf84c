//! A request's record (`exchange::record`), closed when its response is
//! over: at once for an answer already in memory, and at the end of the
//! body for a streamed one, with the usage and the outcome the watchdog
//! found (through the `Ending` the body carries).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use exchange::record::{Begun, Ending, Outcome, Record};
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::{Generation, Shared, now_ms};
use crate::origins::{BoxError, ProxyBody};
use crate::signals::Signals;

/// The response `admit` made for `begun`, its record closed now or when the
/// body ends (and priced in the config the request started under).
pub(super) fn recorded(
    shared: &Arc<Shared>,
    generation: Arc<Generation>,
    begun: Begun,
    mut response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let ending = response.extensions_mut().remove::<Ending>();
    let now = now_ms();
    let mut record = Record::at_head(begun, response.status(), response.headers(), response.extensions(), now);
    match ending {
        None => {
            record.close(Outcome::Complete, None, &generation.config, now);
            shared.signals.closed(record, &generation.config);
            response
        }
        Some(ending) => {
            let open = Some((Box::new(record), ending, shared.signals.clone(), generation));
            response.map(|inner| Recorded { inner, open }.boxed())
        }
    }
}

/// A streamed body whose record closes at its end, or when the client goes.
struct Recorded {
    inner: ProxyBody,
    open: Option<Open>,
}

/// A record waiting for its body's end: how it ends, where it goes, and
/// the config it is priced in.
type Open = (Box<Record>, Ending, Arc<Signals>, Arc<Generation>);

impl Recorded {
    /// Closes the record: as the body said it ended, else as `seen`.
    fn close(&mut self, seen: Outcome) {
        let Some((mut record, ending, signals, generation)) = self.open.take() else { return };
        let (outcome, usage) = ending.outcome(seen);
        record.close(outcome, usage, &generation.config, now_ms());
        signals.closed(*record, &generation.config);
    }
}

impl Body for Recorded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.close(Outcome::Complete),
            Poll::Ready(Some(Err(_))) => self.close(Outcome::Broken),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.close(Outcome::Complete),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.close(Outcome::ClientGone);
    }
}
