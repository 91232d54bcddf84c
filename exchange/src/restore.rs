//! Personal values given back in the answer: the placeholders a node got
//! instead of them (`pii` mode `pseudonymize`) are replaced by the
//! originals in what the client receives.
//!
//! A JSON answer is held whole (up to [`MAX_HELD_JSON`]) and restored in
//! every string. A stream is restored event by event, and a placeholder may
//! come split across events: a model writes `[EMAIL_1]` a token at a time.
//! So each streamed text (a *channel*: the content of one choice, one tool
//! call's arguments, one content block, one output item) has its own
//! [`Restorer`], which holds back a tail that may still become a
//! placeholder, never more than the longest placeholder is long, and gives
//! out no half-restored value. A held tail goes out:
//! - with the channel's next piece;
//! - in the same event, when the choice it belongs to ends there
//!   (`finish_reason`);
//! - just before an event that ends its choice, block or item without
//!   continuing it (a finish chunk, `content_block_stop`,
//!   `response.output_text.done`), or ends them all (`message_delta`,
//!   `message_stop`, `response.completed`, `[DONE]`), as an event of the
//!   channel's own shape with that text (other events, a `ping` or a
//!   content filter's note, leave it held);
//! - at the end of the stream, the same way.
//!
//! Nothing is swallowed: a tail that never became a placeholder goes out as
//! it came. Which strings are streamed pieces: those under a `delta` (chat
//! chunks, Anthropic's and the Responses API's events) and the `text` of a
//! legacy completion's chunk; any other string in an event is whole and is
//! restored at once. A tool call's arguments are a JSON text: a value goes
//! into them escaped. Anthropic's `thinking` keeps its placeholders: its
//! `signature` covers the text as the model wrote it. The vault lives in
//! the transform, for this exchange only.
//!
//! What an origin can make this hold and do is bounded. At most
//! [`MAX_HOLDING`] texts hold a tail at once, the copies of the events
//! their tails are to go out in add up to at most [`HOLD_BUDGET`] bytes,
//! and the copies made of one event have at most 4 × [`MAX_PIECES`] pieces
//! taken out of them; a text past any of these gives its tail out at once,
//! in the event it came in. An event with more than [`MAX_PIECES`] streamed
//! pieces (or strings to look at, or index fields) is not followed piece by
//! piece: every tail goes out before it, and each of its strings is
//! restored on its own, as a JSON answer's are. An event too long to hold
//! ([`crate::transform::MAX_EVENT`]) goes on as it came, every tail before it.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use edge_router::pii::{Restorer, Vault, holds_json, restore_value};
use serde_json::Value;

use crate::transform::{Held, MAX_HELD_JSON, Piece, SseEvents, Transform, data_lines, splice};

/// Most streamed texts holding a tail at once (a stream of 128 choices,
/// each with its text and a tool call's arguments, holds up to 256).
pub const MAX_HOLDING: usize = 256;
/// Most bytes of the events whose copies the held tails keep to go out in.
pub const HOLD_BUDGET: usize = 4 << 20;
/// Most streamed pieces (and strings to look at, and index fields) an
/// event may have for its pieces to be followed one by one; a model's
/// events have a few.
pub const MAX_PIECES: usize = 1024;

/// Restores an answer's placeholders: an SSE stream (`sse`) or JSON.
pub struct RestorePii {
    vault: Arc<Vault>,
    sse: bool,
    events: SseEvents,
    json: Held,
    /// The streamed texts holding a tail back.
    holding: Vec<Channel>,
}

/// A streamed text with a tail held back.
struct Channel {
    /// Which text it is: the event's `type` and the string's path, with
    /// the `index` of each choice, call or block on the way.
    key: String,
    /// The `index`, `output_index` and `content_index` fields on the way.
    scope: Vec<(String, i64)>,
    restorer: Restorer,
    /// The event it last came in, to give the tail out in an event of the
    /// same shape: its lines besides `data:` (`event: …`), the JSON, and
    /// where the text is in that JSON.
    lines: Vec<u8>,
    template: Value,
    at: Vec<Step>,
    /// The length of that event, counted against [`HOLD_BUDGET`].
    size: usize,
}

/// A step into a JSON value.
#[derive(Clone, PartialEq)]
enum Step {
    Key(String),
    Item(usize),
}

/// A string of an event, as the walk meets it.
struct Met {
    /// Positional path.
    at: Vec<Step>,
    key: String,
    scope: Vec<(String, i64)>,
    piece: bool,
    json: bool,
    /// The choice it belongs to ends in this event.
    last: bool,
}

impl RestorePii {
    /// Restores `vault`'s placeholders in an answer that is an SSE stream (`sse`) or JSON.
    pub fn new(vault: Arc<Vault>, sse: bool) -> Self {
        Self { vault, sse, events: SseEvents::default(), json: Held::new(MAX_HELD_JSON), holding: Vec::new() }
    }

    /// What goes out for a piece of the stream: an event is restored; an
    /// event too long to hold goes on as it came, every tail before it.
    fn piece(&mut self, event: Bytes, piece: Piece, out: &mut VecDeque<Bytes>) {
        match piece {
            Piece::Event => self.event(event, out),
            Piece::Start => {
                self.flush(&[], out);
                out.push_back(event);
            }
            Piece::More => out.push_back(event),
        }
    }

    /// One whole event: what goes out for it (a held tail's own event first, maybe).
    fn event(&mut self, event: Bytes, out: &mut VecDeque<Bytes>) {
        let data = data_lines(&event);
        if data.is_empty() {
            // A comment, or an event without data.
            out.push_back(event);
            return;
        }
        if self.holding.is_empty() && !event.contains(&b'[') {
            // Nothing held, no placeholder in it: as it came.
            out.push_back(event);
            return;
        }
        let mut edited: Vec<(usize, usize, Vec<u8>)> = Vec::new();
        for (start, end) in data {
            let Ok(mut value) = serde_json::from_slice::<Value>(&event[start..end]) else {
                // `[DONE]`, or not JSON: every tail goes out before it.
                self.flush(&[], out);
                continue;
            };
            let Walked { met, closes, scope, crowded } = walk_event(&value, &self.holding);
            if crowded {
                // Too many pieces to follow: every tail goes out before it,
                // and each of its strings is restored on its own.
                self.flush(&[], out);
                if restore_value(&mut value, &self.vault) {
                    edited.push((start, end, serde_json::to_vec(&value).unwrap_or_default()));
                }
                continue;
            }
            if closes {
                // What this event does not continue is over: its tail goes first.
                let continued: Vec<&str> = met.iter().filter(|m| m.piece).map(|m| m.key.as_str()).collect();
                self.flush_except(&scope, &continued, out);
            }
            let mut changed = false;
            let mut templates = Vec::new();
            for m in &met {
                let Some(text) = string_at(&mut value, &m.at) else { continue };
                let restored = if m.piece {
                    let held = self.holding.iter().position(|c| c.key == m.key);
                    let mut restorer = held.map_or_else(|| Restorer::new(m.json), |i| self.holding.remove(i).restorer);
                    let mut given = restorer.push(&self.vault, text);
                    if m.last {
                        given.push_str(&restorer.finish());
                    } else if restorer.is_holding() {
                        templates.push((m.key.clone(), m.scope.clone(), restorer, m.at.clone()));
                    }
                    given
                } else {
                    self.vault.restore(text, m.json)
                };
                if restored != *text {
                    *text = restored;
                    changed = true;
                }
            }
            if !templates.is_empty() {
                let lines = other_lines(&event);
                // The tail goes out in this event's shape with its other
                // pieces left out (clients add pieces up: an `id` or a
                // `name` again would be doubled), but for a `type`.
                let mut shape = value.clone();
                for_each_object(&mut shape, &mut |map| {
                    // Counted or numbered per event by clients: not repeated.
                    map.retain(|k, _| !matches!(k.as_str(), "usage" | "logprobs" | "sequence_number" | "obfuscation"));
                    // Another choice that ends in this event ends once (a held
                    // tail's own choice does not end here: that gives it out).
                    if let Some(end) = map.get_mut("finish_reason") {
                        *end = Value::Null;
                    }
                });
                let mut others = Vec::new();
                piece_paths(&shape, &mut Vec::new(), false, is_legacy(&shape), &mut others);
                // How many of this event's tails may be held: each is one
                // more text holding, one more copy of the event against the
                // budget, and one more copy to take the other pieces out of.
                let held_bytes: usize = self.holding.iter().map(|c| c.size).sum();
                let room = if others.len() > MAX_PIECES {
                    0
                } else {
                    MAX_HOLDING
                        .saturating_sub(self.holding.len())
                        .min(HOLD_BUDGET.saturating_sub(held_bytes) / event.len())
                        .min((MAX_PIECES * 4).checked_div(others.len()).unwrap_or(usize::MAX))
                };
                for (i, (key, scope, mut restorer, at)) in templates.into_iter().enumerate() {
                    if i >= room {
                        // More than may be held: the tail goes out now, in this event.
                        let tail = restorer.finish();
                        if let Some(text) = string_at(&mut value, &at)
                            && !tail.is_empty()
                        {
                            text.push_str(&tail);
                            changed = true;
                        }
                        continue;
                    }
                    let mut template = shape.clone();
                    for other in others.iter().filter(|o| **o != at) {
                        if legacy_text(other) {
                            // A legacy choice keeps a `text`, empty: clients read one in every choice.
                            if let Some(text) = string_at(&mut template, other) {
                                text.clear();
                            }
                        } else if !matches!(other.last(), Some(Step::Key(k)) if k == "type") {
                            remove_at(&mut template, other);
                        }
                    }
                    let size = event.len();
                    self.holding.push(Channel { key, scope, restorer, lines: lines.clone(), template, at, size });
                }
            }
            if changed {
                edited.push((start, end, serde_json::to_vec(&value).unwrap_or_default()));
            }
        }
        out.push_back(splice(event, edited));
    }

    /// Gives out, each in an event of its own, the tails held by the
    /// channels `scope` does not rule out (a scope that names another
    /// choice or block leaves that one's tail held).
    fn flush(&mut self, scope: &[(String, i64)], out: &mut VecDeque<Bytes>) {
        self.flush_except(scope, &[], out);
    }

    /// [`flush`](Self::flush), but for the channels named in `continued`.
    fn flush_except(&mut self, scope: &[(String, i64)], continued: &[&str], out: &mut VecDeque<Bytes>) {
        let mut kept = Vec::new();
        for mut channel in std::mem::take(&mut self.holding) {
            let clash = scope.iter().any(|(k, v)| channel.scope.iter().any(|(ck, cv)| ck == k && cv != v));
            if clash || continued.contains(&channel.key.as_str()) {
                kept.push(channel);
                continue;
            }
            let tail = channel.restorer.finish();
            if let Some(text) = string_at(&mut channel.template, &channel.at) {
                *text = tail;
            }
            let mut event = channel.lines;
            event.extend_from_slice(b"data: ");
            event.extend_from_slice(&serde_json::to_vec(&channel.template).unwrap_or_default());
            event.extend_from_slice(b"\n\n");
            out.push_back(Bytes::from(event));
        }
        self.holding = kept;
    }
}

impl Transform for RestorePii {
    fn chunk(&mut self, input: Bytes, out: &mut VecDeque<Bytes>) {
        if !self.sse {
            return self.json.chunk(input, out);
        }
        let mut events = Vec::new();
        self.events.push(&input, |e, piece| events.push((e, piece)));
        for (event, piece) in events {
            self.piece(event, piece, out);
        }
    }

    fn end(&mut self, out: &mut VecDeque<Bytes>) {
        if !self.sse {
            if let Some(body) = self.json.whole() {
                out.push_back(edge_router::pii::restore_answer(&body, &self.vault).map_or(body, Bytes::from));
            }
            return;
        }
        let (rest, piece) = self.events.rest();
        if !rest.is_empty() {
            // An event the stream never finished: restored as far as it goes,
            // and ended before a held tail's own event follows it.
            self.piece(rest, piece, out);
            if !self.holding.is_empty() {
                out.push_back(Bytes::from_static(b"\n\n"));
            }
        }
        self.flush(&[], out);
    }
}

/// An event's lines other than its data, its id and its blank line (`event: …`).
fn other_lines(event: &[u8]) -> Vec<u8> {
    let mut lines = Vec::new();
    for line in event.split_inclusive(|&b| b == b'\n') {
        let bare = line.trim_ascii();
        if !bare.is_empty() && !bare.starts_with(b"data:") && !bare.starts_with(b"id:") {
            lines.extend_from_slice(bare);
            lines.push(b'\n');
        }
    }
    lines
}

/// What a walk over an event's JSON found.
#[derive(Default)]
struct Walked {
    /// The strings there may be work on: a streamed piece whose channel
    /// holds a tail, and any string with a `[` in it.
    met: Vec<Met>,
    /// Whether the event ends a choice, block or item (`finish_reason`, a
    /// `*_stop` or `*.done` event), or the whole answer.
    closes: bool,
    /// The scope of the whole event: the `index`, `output_index` and
    /// `content_index` fields anywhere in it.
    scope: Vec<(String, i64)>,
    /// More than [`MAX_PIECES`] streamed pieces, strings to look at, or
    /// index fields: the walk stopped there, and `met` and `scope` are not
    /// the event's.
    crowded: bool,
}

/// The strings of an event's JSON there may be work on (`holding`: the
/// channels holding a tail).
fn walk_event(value: &Value, holding: &[Channel]) -> Walked {
    let kind = value.get("type").and_then(Value::as_str).unwrap_or_default();
    let legacy = is_legacy(value);
    let mut walk =
        Walk { found: Walked::default(), holding, pieces: 0, legacy, kind, at: Vec::new(), scope: Vec::new() };
    walk.value(value, false, false);
    let ends = ["content_block_stop", "message_delta", "message_stop", "error"].contains(&kind)
        || [".done", ".completed", ".failed", ".incomplete"].iter().any(|e| kind.ends_with(e));
    walk.found.closes |= ends;
    walk.found
}

struct Walk<'a> {
    found: Walked,
    holding: &'a [Channel],
    /// The streamed pieces met so far.
    pieces: usize,
    legacy: bool,
    kind: &'a str,
    /// Where the walk is.
    at: Vec<Step>,
    /// The index fields on the way there.
    scope: Vec<(String, i64)>,
}

impl Walk<'_> {
    fn value(&mut self, value: &Value, delta: bool, last: bool) {
        if self.found.crowded {
            return;
        }
        match value {
            Value::String(text) => self.string(text, delta, last),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.at.push(Step::Item(i));
                    self.value(item, delta, last);
                    self.at.pop();
                }
            }
            Value::Object(map) => {
                let before = self.scope.len();
                for field in ["index", "output_index", "content_index"] {
                    if let Some(n) = map.get(field).and_then(Value::as_i64) {
                        if self.found.scope.len() == MAX_PIECES {
                            self.found.crowded = true;
                            return;
                        }
                        let name = format!("{}.{field}", shape(&self.at));
                        self.found.scope.push((name.clone(), n));
                        self.scope.push((name, n));
                    }
                }
                // A choice that ends here (`finish_reason`) gives out what it held.
                let ends = map.get("finish_reason").is_some_and(|f| !f.is_null());
                self.found.closes |= ends;
                let last = last || ends;
                for (k, v) in map {
                    if matches!(k.as_str(), "thinking" | "signature") {
                        // Signed as the model wrote it: left as it is.
                        continue;
                    }
                    self.at.push(Step::Key(k.clone()));
                    self.value(v, delta || k == "delta", last);
                    self.at.pop();
                }
                self.scope.truncate(before);
            }
            _ => {}
        }
    }

    fn string(&mut self, text: &str, delta: bool, last: bool) {
        let name = match self.at.last() {
            Some(Step::Key(k)) => k.as_str(),
            _ => "",
        };
        let piece = delta || name == "delta" || (self.legacy && legacy_text(&self.at));
        let json = holds_json(self.kind, name);
        if piece {
            // Each is looked for among the held: a crowd of them is not followed.
            self.pieces += 1;
            if self.pieces > MAX_PIECES {
                self.found.crowded = true;
                return;
            }
        }
        let key = piece.then(|| channel_key(self.kind, &self.at, &self.scope));
        let held = key.as_ref().is_some_and(|k| self.holding.iter().any(|c| &c.key == k));
        if !held && !text.contains('[') {
            return;
        }
        if self.found.met.len() == MAX_PIECES {
            self.found.crowded = true;
            return;
        }
        self.found.met.push(Met {
            at: self.at.clone(),
            key: key.unwrap_or_default(),
            scope: self.scope.clone(),
            piece,
            json,
            last,
        });
    }
}

/// The path `at` without positions (`choices[].delta`): the prefix of scope names.
fn shape(at: &[Step]) -> String {
    let mut out = String::new();
    for step in at {
        match step {
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Item(_) => out.push_str("[]"),
        }
    }
    out
}

/// Which streamed text a string at `at` is: the event's `type`, the path,
/// and the `index` of each choice, tool call or block on the way (a stream
/// sends one choice per event, always at position 0).
fn channel_key(kind: &str, at: &[Step], scope: &[(String, i64)]) -> String {
    let mut key = String::from(kind);
    for step in at {
        match step {
            Step::Key(k) => {
                key.push('.');
                key.push_str(k);
            }
            Step::Item(i) => key.push_str(&format!("[{i}]")),
        }
    }
    for (name, n) in scope {
        key.push_str(&format!(" {name}={n}"));
    }
    key
}

/// Calls `edit` on every object within `value`, at any depth, before
/// going into the fields it leaves.
fn for_each_object(value: &mut Value, edit: &mut dyn FnMut(&mut serde_json::Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            edit(map);
            map.values_mut().for_each(|v| for_each_object(v, edit));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| for_each_object(v, edit)),
        _ => {}
    }
}

/// Whether an event is a legacy completion's chunk, which streams each
/// choice's text outside any `delta` ([`legacy_text`]).
fn is_legacy(value: &Value) -> bool {
    value.get("object").and_then(Value::as_str) == Some("text_completion")
}

/// Whether `at` is a choice's `text` (in a legacy completion's chunk, a streamed piece).
fn legacy_text(at: &[Step]) -> bool {
    matches!(at, [Step::Key(c), Step::Item(_), Step::Key(t)] if c == "choices" && t == "text")
}

/// Where the streamed pieces of an event are (strings under a `delta`, and
/// a `legacy` chunk's choice texts); it stops past [`MAX_PIECES`] of them.
fn piece_paths(value: &Value, at: &mut Vec<Step>, delta: bool, legacy: bool, out: &mut Vec<Vec<Step>>) {
    if out.len() > MAX_PIECES {
        return;
    }
    match value {
        Value::String(_)
            if delta || matches!(at.last(), Some(Step::Key(k)) if k == "delta") || (legacy && legacy_text(at)) =>
        {
            out.push(at.clone())
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push(Step::Item(i));
                piece_paths(item, at, delta, legacy, out);
                at.pop();
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                at.push(Step::Key(k.clone()));
                piece_paths(v, at, delta || k == "delta", legacy, out);
                at.pop();
            }
        }
        _ => {}
    }
}

/// `value` without the field at `at` (an array's item is emptied instead).
fn remove_at(value: &mut Value, at: &[Step]) {
    let Some((last, parent)) = at.split_last() else { return };
    let mut v = value;
    for step in parent {
        let next = match step {
            Step::Key(k) => v.get_mut(k.as_str()),
            Step::Item(i) => v.get_mut(*i),
        };
        let Some(next) = next else { return };
        v = next;
    }
    match (last, v) {
        (Step::Key(k), Value::Object(map)) => {
            map.shift_remove(k.as_str());
        }
        (Step::Item(i), Value::Array(items)) => {
            if let Some(item) = items.get_mut(*i) {
                *item = Value::String(String::new());
            }
        }
        _ => {}
    }
}

/// The string at `at` in `value`.
fn string_at<'v>(value: &'v mut Value, at: &[Step]) -> Option<&'v mut String> {
    let mut v = value;
    for step in at {
        v = match step {
            Step::Key(k) => v.get_mut(k.as_str())?,
            Step::Item(i) => v.get_mut(*i)?,
        };
    }
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
