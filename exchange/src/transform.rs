//! The seam where bodies are rewritten as they stream: a [`Transform`]
//! takes chunks in and gives chunks out, keeping its own state, so that
//! what it works on may span any chunk boundary. Request bodies and
//! response bodies go through the same trait; provider translation and PII
//! restore plug in here.
//!
//! [`SseEvents`] cuts a stream into whole server-sent events, whatever the
//! chunking (an event over [`MAX_EVENT`] goes on in pieces, as it came).
//! [`SetModel`] sets the `model` of a JSON body: of a request the router
//! sends to another model, on its way out. [`EditAnswer`] rewrites
//! every event of a stream (or a JSON answer): it gives a client back the
//! `model` it asked for when the router sent the request to another model,
//! and tags response objects' ids with the node that holds them.

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

/// One transform, then another on what the first gives out.
pub struct Then(pub Box<dyn Transform>, pub Box<dyn Transform>);

impl Transform for Then {
    fn chunk(&mut self, input: Bytes, out: &mut VecDeque<Bytes>) {
        let mut between = VecDeque::new();
        self.0.chunk(input, &mut between);
        for piece in between {
            self.1.chunk(piece, out);
        }
    }

    fn end(&mut self, out: &mut VecDeque<Bytes>) {
        let mut between = VecDeque::new();
        self.0.end(&mut between);
        for piece in between {
            self.1.chunk(piece, out);
        }
        self.1.end(out);
    }
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
///
/// An event longer than [`MAX_EVENT`] is not held whole: what has come of
/// it is given out as it stands, a [`Piece::Start`], and the rest as
/// [`Piece::More`] as it comes, the last ending with the event's blank line.
/// So an origin that never ends its event holds no more than that, and no
/// byte is lost. Those who rewrite events pass such pieces on as they came
/// (or, when they cannot, as a translation, drop them).
#[derive(Debug)]
pub struct SseEvents {
    pending: BytesMut,
    /// How far `pending` has been looked through for its first event's end.
    scan: Scan,
    /// Whether `pending` is the rest of an event given out in pieces.
    cut: bool,
    /// The longest event held whole.
    max: usize,
}

/// The longest event [`SseEvents`] holds whole: the largest JSON answer held.
pub const MAX_EVENT: usize = MAX_HELD_JSON;

/// What [`SseEvents`] gives out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// An event, its blank line included (or, at the end of the stream, the
    /// start of one it never finished).
    Event,
    /// The start of an event longer than [`MAX_EVENT`].
    Start,
    /// More of that event.
    More,
}

impl Default for SseEvents {
    fn default() -> Self {
        Self::with_max(MAX_EVENT)
    }
}

impl SseEvents {
    /// Events held whole up to `max` bytes.
    fn with_max(max: usize) -> Self {
        Self { pending: BytesMut::new(), scan: Scan::default(), cut: false, max }
    }

    /// Adds `input`; calls `event` with each event now complete, its
    /// terminating blank line included, and with each piece of an event
    /// too long to hold.
    pub fn push(&mut self, input: &[u8], mut event: impl FnMut(Bytes, Piece)) {
        self.pending.extend_from_slice(input);
        while let Some(end) = self.scan.event_end(&self.pending) {
            let piece = self.ending();
            event(self.pending.split_to(end).freeze(), piece);
        }
        if self.pending.len() > self.max {
            // Cut where it stands, but not between a CR and the LF that
            // may follow it, and go on knowing whether a line starts there.
            let at = self.pending.len() - usize::from(self.pending.ends_with(b"\r"));
            let given = self.pending.split_to(at).freeze();
            self.scan = Scan { blank_at_start: given.ends_with(b"\n") || given.ends_with(b"\r"), ..Scan::default() };
            let piece = if std::mem::replace(&mut self.cut, true) { Piece::More } else { Piece::Start };
            event(given, piece);
        }
    }

    /// What is left: the start of an event the stream never finished (or
    /// the rest of one given out in pieces).
    pub fn rest(&mut self) -> (Bytes, Piece) {
        self.scan = Scan::default();
        (self.pending.split().freeze(), self.ending())
    }

    /// What an event that ends here is: the last piece of one given out in
    /// pieces, or a whole one. The next starts whole.
    fn ending(&mut self) -> Piece {
        if std::mem::take(&mut self.cut) { Piece::More } else { Piece::Event }
    }
}

/// Where a look for the end of a buffer's first event stopped, so that the
/// next look, once more has come, goes on from there: a long event is read
/// through once, not again with each chunk.
#[derive(Debug, Default, Clone, Copy)]
struct Scan {
    /// The next byte to look at.
    at: usize,
    /// Where the line it is in starts.
    line_start: usize,
    /// The buffer starts a line within an event (after a piece that ended
    /// with a line end), so an empty line there ends the event.
    blank_at_start: bool,
}

impl Scan {
    /// Where the first complete event in `buf` ends (just past its blank
    /// line), looking on from where the last look stopped; the look starts
    /// afresh after a find. A trailing CR is not taken as a line end yet: an
    /// LF may follow it.
    fn event_end(&mut self, buf: &[u8]) -> Option<usize> {
        let Self { at: mut i, mut line_start, blank_at_start } = *self;
        while i < buf.len() {
            let eol = match buf[i] {
                b'\n' => 1,
                b'\r' if i + 1 == buf.len() => break,
                b'\r' if buf[i + 1] == b'\n' => 2,
                b'\r' => 1,
                _ => {
                    i += 1;
                    continue;
                }
            };
            if i == line_start && (line_start > 0 || blank_at_start) {
                *self = Self::default();
                return Some(i + eol);
            }
            i += eol;
            line_start = i;
        }
        *self = Self { at: i, line_start, blank_at_start };
        None
    }
}

/// The largest JSON answer [`EditAnswer`] holds to rewrite; a larger one
/// goes through unchanged.
pub const MAX_HELD_JSON: usize = 8 << 20;

/// A JSON body held whole until it ends (what is to be rewritten may come in
/// any chunk), up to a size past which it goes through as it is.
pub(crate) struct Held {
    max: usize,
    /// The body so far, in its chunks (`None` once past `max`).
    chunks: Option<Vec<Bytes>>,
    len: usize,
}

impl Held {
    pub(crate) fn new(max: usize) -> Self {
        Self { max, chunks: Some(Vec::new()), len: 0 }
    }

    pub(crate) fn chunk(&mut self, input: Bytes, out: &mut VecDeque<Bytes>) {
        match &mut self.chunks {
            Some(held) if self.len + input.len() <= self.max => {
                self.len += input.len();
                held.push(input);
            }
            Some(_) => {
                // Too large to hold: what was held and all that follows goes as it is.
                out.extend(self.chunks.take().into_iter().flatten());
                out.push_back(input);
            }
            None => out.push_back(input),
        }
    }

    /// The whole body, if it was held.
    pub(crate) fn whole(&mut self) -> Option<Bytes> {
        let mut held = self.chunks.take()?;
        // A body in one chunk (the common case) is not copied to be read.
        Some(match held.len() {
            1 => held.pop().unwrap_or_default(),
            _ => held.concat().into(),
        })
    }
}

/// Sets the top-level `model` of a request body the router sends to another
/// model, held whole until it ends. Every other byte stays as it was; a
/// body without the field gets it.
pub struct SetModel {
    model: String,
    held: Held,
}

impl SetModel {
    /// For a request body the router sends to `model` (bounded already by
    /// `server.max_body_bytes`, so held whatever its size).
    pub fn request(model: &str) -> Self {
        Self { model: model.to_string(), held: Held::new(usize::MAX) }
    }
}

impl Transform for SetModel {
    fn chunk(&mut self, input: Bytes, out: &mut VecDeque<Bytes>) {
        self.held.chunk(input, out);
    }

    fn end(&mut self, out: &mut VecDeque<Bytes>) {
        let Some(body) = self.held.whole() else { return };
        let set = replace_model(&body, &self.model).or_else(|| insert_model(&body, &self.model));
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

/// What an answer's rewrite does to one JSON value (a `data:` event, or a
/// whole JSON answer): the rewritten bytes, or `None` to leave it as it is.
type Edit = Box<dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync>;

/// Rewrites an answer: each SSE `data:` event of a stream, or a JSON answer
/// held whole (up to [`MAX_HELD_JSON`]). Anything it does not change passes
/// byte for byte. Its uses:
/// - [`EditAnswer::restore_model`] gives the client back the `model` it
///   asked for when the router sent the request to another model
///   (`x-edge-model` still says which);
/// - [`EditAnswer::tag_response_ids`] tags the ids of response objects
///   (`/v1/responses`) with the node that holds them ([`tag_response_id`]).
pub struct EditAnswer {
    edit: Edit,
    sse: bool,
    events: SseEvents,
    json: Held,
}

impl EditAnswer {
    /// An edit of a response body that is an SSE stream (`sse`) or JSON.
    pub fn new(sse: bool, edit: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        Self { edit: Box::new(edit), sse, events: SseEvents::default(), json: Held::new(MAX_HELD_JSON) }
    }

    /// The top-level `model` of every event, or of the JSON answer, becomes `requested`.
    pub fn restore_model(requested: &str, sse: bool) -> Self {
        let requested = requested.to_string();
        Self::new(sse, move |json| replace_model(json, &requested))
    }

    /// The ids of response objects get `~<node>` ([`tag_response_id`]).
    pub fn tag_response_ids(node: &str, sse: bool) -> Self {
        let node = node.to_string();
        Self::new(sse, move |json| tag_response_id(json, &node))
    }

    /// Both edits: one held body, one pass over each event.
    pub fn both(first: Self, then: Self) -> Self {
        let (a, b) = (first.edit, then.edit);
        Self::new(first.sse, move |json| match a(json) {
            Some(edited) => Some(b(&edited).unwrap_or(edited)),
            None => b(json),
        })
    }

    /// `event` with each of its `data:` lines edited.
    fn edit_event(&self, event: Bytes) -> Bytes {
        let edits: Vec<(usize, usize, Vec<u8>)> = data_lines(&event)
            .into_iter()
            .filter_map(|(from, to)| (self.edit)(&event[from..to]).map(|rewritten| (from, to, rewritten)))
            .collect();
        splice(event, edits)
    }
}

/// The spans of the values of an SSE event's `data:` lines (the space after
/// the colon and the line end left out).
pub(crate) fn data_lines(event: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut at = 0;
    for line in event.split_inclusive(|&b| b == b'\n') {
        let start = at;
        at += line.len();
        let Some(data) = line.strip_prefix(b"data:") else { continue };
        let value = data.trim_ascii_start();
        let from = start + line.len() - value.len();
        spans.push((from, from + value.trim_ascii_end().len()));
    }
    spans
}

/// `event` with each span of `edits` (in order, not overlapping) replaced;
/// `event` itself, not copied, when there is none.
pub(crate) fn splice(event: Bytes, edits: Vec<(usize, usize, Vec<u8>)>) -> Bytes {
    if edits.is_empty() {
        return event;
    }
    let mut buf = Vec::with_capacity(event.len() + 64);
    let mut copied = 0;
    for (from, to, rewritten) in edits {
        buf.extend_from_slice(&event[copied..from]);
        buf.extend_from_slice(&rewritten);
        copied = to;
    }
    buf.extend_from_slice(&event[copied..]);
    Bytes::from(buf)
}

impl Transform for EditAnswer {
    fn chunk(&mut self, input: Bytes, out: &mut VecDeque<Bytes>) {
        if !self.sse {
            return self.json.chunk(input, out);
        }
        let mut events = Vec::new();
        self.events.push(&input, |e, piece| events.push((e, piece)));
        out.extend(events.into_iter().map(|(e, piece)| if piece == Piece::Event { self.edit_event(e) } else { e }));
    }

    fn end(&mut self, out: &mut VecDeque<Bytes>) {
        if !self.sse {
            if let Some(body) = self.json.whole() {
                out.push_back((self.edit)(&body).map_or(body, Bytes::from));
            }
            return;
        }
        match self.events.rest() {
            (rest, _) if rest.is_empty() => {}
            (rest, Piece::Event) => out.push_back(self.edit_event(rest)),
            (rest, _) => out.push_back(rest),
        }
    }
}

/// A response object's ids tagged with the node that holds it:
/// `{"object":"response","id":"resp_1",…}` (a JSON answer) or
/// `{"type":"response.created","response":{"id":"resp_1",…}}` (a stream's
/// event) gets `"id":"resp_1~<node>"`, and so does the object's
/// `previous_response_id` (which the node holds too); every other byte
/// stays. `None` when `json` holds no response object's id, or it is
/// tagged already.
pub fn tag_response_id(json: &[u8], node: &str) -> Option<Vec<u8>> {
    let is_response = top_level_value(json, b"object").is_some_and(|(s, e)| &json[s..e] == b"\"response\"");
    let (base, object) = if is_response {
        (0, json)
    } else {
        let (s, e) = top_level_value(json, b"response")?;
        (s, &json[s..e])
    };
    let tag = format!("{}{node}", edge_router::facts::RESPONSE_TAG);
    // Where each untagged id's closing quote is, last first, so that the
    // tags go in without moving the places still to come.
    let mut closes: Vec<usize> = [&b"previous_response_id"[..], b"id"]
        .into_iter()
        .filter_map(|key| top_level_value(object, key))
        .filter(|&(s, e)| object[s] == b'"' && e - s >= 3 && !object[s + 1..e - 1].ends_with(tag.as_bytes()))
        .map(|(_, e)| base + e - 1)
        .collect();
    if closes.is_empty() {
        return None;
    }
    edge_router::order::sort_by(&mut closes, |a, b| b.cmp(a));
    let mut out = json.to_vec();
    for close in closes {
        out.splice(close..close, tag.bytes());
    }
    Some(out)
}

/// `json` with the `~<node>` tag taken off its top-level
/// `previous_response_id`, every other byte as it was; `None` when that
/// field is absent or not tagged with `node`.
pub fn untag_previous_response_id(json: &[u8], node: &str) -> Option<Vec<u8>> {
    let (s, e) = top_level_value(json, b"previous_response_id").filter(|(s, _)| json[*s] == b'"')?;
    let tag = format!("{}{node}\"", edge_router::facts::RESPONSE_TAG);
    json[s..e].ends_with(tag.as_bytes()).then(|| [&json[..e - tag.len()], &json[e - 1..]].concat())
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

/// The string value of top-level key `key` of a JSON object, decoded,
/// without reading the rest of the object into a tree.
pub(crate) fn top_level_text(json: &[u8], key: &[u8]) -> Option<String> {
    let (start, end) = top_level_string(json, key)?;
    serde_json::from_slice(&json[start..end]).ok()
}

/// The span (quotes included) of the string value of top-level key `key`.
fn top_level_string(json: &[u8], key: &[u8]) -> Option<(usize, usize)> {
    top_level_value(json, key).filter(|(s, _)| json[*s] == b'"')
}

/// The span of the value of top-level key `key` of a JSON object.
fn top_level_value(json: &[u8], key: &[u8]) -> Option<(usize, usize)> {
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
            return Some((i, value_end));
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
