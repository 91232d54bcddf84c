//! The seam where bodies are rewritten as they stream: a [`Transform`]
//! takes chunks in and gives chunks out, keeping its own state, so that
//! what it works on may span any chunk boundary. Request bodies and
//! response bodies go through the same trait; provider translation and PII
//! restore plug in here.
//!
//! [`SseEvents`] cuts a stream into whole server-sent events, whatever the
//! chunking. [`SetModel`] sets the `model` of a JSON body: of a request the
//! router sends to another model, on its way out. [`RestoreModel`] gives a
//! client back the `model` it asked for in every event (or in a JSON answer)
//! when the router sent the request to another model.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// A streaming body rewrite.
pub trait Transform: Send + Sync {
    /// Takes one chunk of input and pushes what is ready to `out` (possibly
    /// nothing yet, possibly several chunks).
    fn chunk(&mut self, input: Bytes, out: &mut VecDeque<Bytes>);

    /// The input ended: pushes whatever is still held.
    fn end(&mut self, out: &mut VecDeque<Bytes>);
}

/// Runs a whole body (a buffered request body, say) through `transform`.
pub fn transform_whole(transform: &mut dyn Transform, body: Bytes) -> Bytes {
    let mut out = VecDeque::new();
    transform.chunk(body, &mut out);
    transform.end(&mut out);
    match out.len() {
        0 => Bytes::new(),
        1 => out.pop_front().unwrap_or_default(),
        _ => out.into_iter().flatten().collect::<Vec<u8>>().into(),
    }
}

/// Cuts a byte stream into whole server-sent events: each ends with a
/// blank line (RFC-less, but the WHATWG HTML spec's "dispatch the event":
/// lines end with CRLF, LF or CR, and an empty line ends an event).
#[derive(Debug, Default)]
pub struct SseEvents {
    pending: BytesMut,
}

impl SseEvents {
    /// Adds `input`; calls `event` with each event now complete, its
    /// terminating blank line included.
    pub fn push(&mut self, input: &[u8], mut event: impl FnMut(Bytes)) {
        self.pending.extend_from_slice(input);
        while let Some(end) = event_end(&self.pending) {
            event(self.pending.split_to(end).freeze());
        }
    }

    /// What is left: the start of an event the stream never finished.
    pub fn rest(&mut self) -> Bytes {
        self.pending.split().freeze()
    }
}

/// Where the first complete event in `buf` ends (just past its blank line).
/// A trailing CR is not taken as a line end yet: an LF may follow it.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut line_start = 0;
    while i < buf.len() {
        let eol = match buf[i] {
            b'\n' => 1,
            b'\r' if i + 1 == buf.len() => return None,
            b'\r' if buf[i + 1] == b'\n' => 2,
            b'\r' => 1,
            _ => {
                i += 1;
                continue;
            }
        };
        if i == line_start && line_start > 0 {
            return Some(i + eol);
        }
        i += eol;
        line_start = i;
    }
    None
}

/// The largest JSON answer [`RestoreModel`] holds to rewrite; a larger one
/// goes through unchanged.
pub const MAX_HELD_JSON: usize = 8 << 20;

/// Sets the top-level `model` of a JSON body, held whole until it ends
/// (the field may come in any chunk). Every other byte stays as it was.
/// The request side sends a request to the model the router chose
/// ([`SetModel::request`]); the response side gives a client back the model
/// it asked for ([`RestoreModel`]).
pub struct SetModel {
    model: String,
    /// Add the field to a body without one (a request: the router chose the
    /// model); a response without one is left alone.
    insert: bool,
    /// Past this many bytes the body goes through as it is.
    max_held: usize,
    /// The body so far, in its chunks (`None` once past `max_held`).
    held: Option<Vec<Bytes>>,
    held_len: usize,
}

impl SetModel {
    /// For a request body the router sends to `model` (bounded already by
    /// `server.max_body_bytes`, so held whatever its size).
    pub fn request(model: &str) -> Self {
        Self { model: model.to_string(), insert: true, max_held: usize::MAX, held: Some(Vec::new()), held_len: 0 }
    }

    /// For a JSON answer, restored to `model` if it names one.
    fn response(model: &str) -> Self {
        Self { model: model.to_string(), insert: false, max_held: MAX_HELD_JSON, held: Some(Vec::new()), held_len: 0 }
    }
}

impl Transform for SetModel {
    fn chunk(&mut self, input: Bytes, out: &mut VecDeque<Bytes>) {
        match &mut self.held {
            Some(held) if self.held_len + input.len() <= self.max_held => {
                self.held_len += input.len();
                held.push(input);
            }
            Some(_) => {
                // Too large to hold: what was held and all that follows goes as it is.
                out.extend(self.held.take().into_iter().flatten());
                out.push_back(input);
            }
            None => out.push_back(input),
        }
    }

    fn end(&mut self, out: &mut VecDeque<Bytes>) {
        let Some(mut held) = self.held.take() else { return };
        // A body in one chunk (the common case) is not copied to be read.
        let body = match held.len() {
            1 => held.pop().unwrap_or_default(),
            _ => held.concat().into(),
        };
        let set = replace_model(&body, &self.model)
            .or_else(|| self.insert.then(|| insert_model(&body, &self.model)).flatten());
        out.push_back(set.map_or(body, Bytes::from));
    }
}

/// `json` (an object) with its top-level `model` set to `model`, however it
/// was before (absent, or not a string); `None` if it is not a JSON object.
/// Unlike [`replace_model`] this reads and writes the whole object.
fn insert_model(json: &[u8], model: &str) -> Option<Vec<u8>> {
    let mut value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(json).ok()?;
    value.insert("model".into(), serde_json::Value::String(model.into()));
    serde_json::to_vec(&value).ok()
}

/// Gives the client back the `model` it asked for: the top-level `model` of
/// every SSE `data:` event, or of a JSON answer, becomes `requested`. The
/// router had sent the request to another model (`x-edge-model` still says
/// which). Anything else passes byte for byte.
pub struct RestoreModel {
    requested: String,
    sse: bool,
    events: SseEvents,
    /// A JSON answer's restore.
    json: SetModel,
}

impl RestoreModel {
    /// A restore for a response body that is an SSE stream (`sse`) or JSON.
    pub fn new(requested: &str, sse: bool) -> Self {
        Self {
            requested: requested.to_string(),
            sse,
            events: SseEvents::default(),
            json: SetModel::response(requested),
        }
    }

    /// `event` with the `model` of each of its `data:` lines restored.
    fn restore_event(&self, event: Bytes) -> Bytes {
        let mut out: Option<Vec<u8>> = None;
        let (mut at, mut copied) = (0, 0);
        for line in event.split_inclusive(|&b| b == b'\n') {
            let start = at;
            at += line.len();
            let Some(data) = line.strip_prefix(b"data:") else { continue };
            let value = data.trim_ascii_start();
            let from = start + line.len() - value.len();
            let value = value.trim_ascii_end();
            let Some(rewritten) = replace_model(value, &self.requested) else { continue };
            let buf = out.get_or_insert_with(|| Vec::with_capacity(event.len() + 32));
            buf.extend_from_slice(&event[copied..from]);
            buf.extend_from_slice(&rewritten);
            copied = from + value.len();
        }
        match out {
            None => event,
            Some(mut buf) => {
                buf.extend_from_slice(&event[copied..]);
                Bytes::from(buf)
            }
        }
    }
}

impl Transform for RestoreModel {
    fn chunk(&mut self, input: Bytes, out: &mut VecDeque<Bytes>) {
        if !self.sse {
            return self.json.chunk(input, out);
        }
        let mut events = Vec::new();
        self.events.push(&input, |e| events.push(e));
        out.extend(events.into_iter().map(|e| self.restore_event(e)));
    }

    fn end(&mut self, out: &mut VecDeque<Bytes>) {
        if !self.sse {
            return self.json.end(out);
        }
        let rest = self.events.rest();
        if !rest.is_empty() {
            out.push_back(self.restore_event(rest));
        }
    }
}

/// `json` (an object) with the string value of its top-level `model`
/// replaced by `model`, every other byte as it was; `None` when `json` is
/// not an object with a string `model`.
pub fn replace_model(json: &[u8], model: &str) -> Option<Vec<u8>> {
    let (start, end) = top_level_string(json, b"model")?;
    let encoded = serde_json::to_vec(model).ok()?;
    let mut out = Vec::with_capacity(json.len() + encoded.len());
    out.extend_from_slice(&json[..start]);
    out.extend_from_slice(&encoded);
    out.extend_from_slice(&json[end..]);
    Some(out)
}

/// The span (quotes included) of the string value of top-level key `key`.
fn top_level_string(json: &[u8], key: &[u8]) -> Option<(usize, usize)> {
    let mut i = skip_ws(json, 0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(json, i);
        if json.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(json, i)?;
        let name = &json[i + 1..key_end - 1];
        i = skip_ws(json, key_end);
        if json.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(json, i + 1);
        let value_end = value_end(json, i)?;
        if name == key {
            return (json.get(i) == Some(&b'"')).then_some((i, value_end));
        }
        i = skip_ws(json, value_end);
        match json.get(i) {
            Some(b',') => i += 1,
            _ => return None,
        }
    }
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while json.get(i).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Just past the string starting at `start` (a quote).
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < json.len() {
        match json[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Just past the JSON value starting at `start`.
fn value_end(json: &[u8], start: usize) -> Option<usize> {
    match json.get(start)? {
        b'"' => string_end(json, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while i < json.len() {
                match json[i] {
                    b'"' => {
                        i = string_end(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = start;
            while i < json.len() && !matches!(json[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

#[cfg(test)]
mod tests;
