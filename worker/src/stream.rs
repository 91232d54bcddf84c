//! A JavaScript `ReadableStream` read from Rust, chunk by chunk: the
//! request bodies the Worker reads without a declared length, and origins'
//! answers on their way through the exchange's watchdog.
//!
//! Not `worker::Body`: that one releases its reader's lock when the stream
//! ends, and releasing a lock makes a `TypeError` (the spec rejects the
//! reader's `closed` promise with one), stack trace and all: about 7 µs of
//! CPU per stream, by the profile `bench/worker.sh` led to. A stream read to
//! its end needs no lock released; one dropped before its end is cancelled,
//! which tells whatever feeds it (an origin's `fetch`) to stop.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{FutureExt, Stream};
use http_body::Frame;
use wasm_bindgen::prelude::*;
use worker::js_sys::{Promise, Uint8Array};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{ReadableStream, ReadableStreamDefaultReader};

#[wasm_bindgen]
extern "C" {
    /// What a reader's `read()` resolves to.
    type ReadResult;
    #[wasm_bindgen(method, getter)]
    fn done(this: &ReadResult) -> bool;
    #[wasm_bindgen(method, getter)]
    fn value(this: &ReadResult) -> JsValue;
}

thread_local! {
    /// Catches a cancelled stream's rejection (it has nowhere to go), one
    /// closure for every cancel rather than one leaked per cancel.
    static IGNORE: Closure<dyn FnMut(JsValue)> = Closure::new(|_| {});
}

/// A stream's bytes, read as they come.
pub struct JsBody {
    /// `None` once the stream ended or failed, or for no body at all.
    reader: Option<ReadableStreamDefaultReader>,
    pending: Option<JsFuture>,
}

impl JsBody {
    pub fn new(stream: &ReadableStream) -> Self {
        Self { reader: Some(stream.get_reader().unchecked_into()), pending: None }
    }

    /// No body.
    pub fn empty() -> Self {
        Self { reader: None, pending: None }
    }
}

impl Stream for JsBody {
    type Item = Result<Bytes, String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(reader) = &this.reader else { return Poll::Ready(None) };
        let pending = this.pending.get_or_insert_with(|| JsFuture::from(reader.read()));
        let Poll::Ready(read) = pending.poll_unpin(cx) else { return Poll::Pending };
        this.pending = None;
        match read {
            Ok(result) => {
                let result: ReadResult = result.unchecked_into();
                if result.done() {
                    this.reader = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Ok(Bytes::from(Uint8Array::new(&result.value()).to_vec()))))
            }
            Err(e) => {
                this.reader = None;
                Poll::Ready(Some(Err(e.as_string().unwrap_or_else(|| format!("{e:?}")))))
            }
        }
    }
}

impl http_body::Body for JsBody {
    type Data = Bytes;
    type Error = String;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, String>>> {
        self.poll_next(cx).map(|chunk| chunk.map(|c| c.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.reader.is_none()
    }
}

impl Drop for JsBody {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            let cancelled: Promise = reader.cancel();
            IGNORE.with(|ignore| {
                let _ = cancelled.catch(ignore);
            });
        }
    }
}
