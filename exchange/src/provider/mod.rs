//! Provider adapters: a node that speaks another API than OpenAI's
//! (`edge_router::config::Api`) gets the client's OpenAI chat request in its
//! own wire format, with its own auth, and the client gets the answer back
//! in OpenAI's: JSON, streamed events, tool calls, usage (so costs stay
//! right) and errors. Each adapter is written once, here, and both hosts
//! run it: the request side through [`crate::upstream::outbound`], the
//! answer side as the first [`Transform`] of the answer
//! ([`crate::head::decide`]), after [`adapt_head`] has made the head
//! OpenAI's.
//!
//! What is and is not translated, per provider, is `docs/providers.md`.

mod anthropic;
pub mod bedrock;
mod chunks;
mod gemini;
pub mod messages;

use std::collections::VecDeque;

use bytes::Bytes;
use edge_router::config::{Api, Node};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};

use crate::transform::{Held, MAX_HELD_JSON, Piece, SseEvents, Transform};

/// The header that carries a node's key, in its API's way, marked
/// sensitive so that it never shows in debug output. `None` if the key
/// holds characters a header may not, or the API signs requests instead.
pub fn credential(api: Api, key: &str) -> Option<(HeaderName, HeaderValue)> {
    let (name, value) = match api {
        Api::OpenAi => (http::header::AUTHORIZATION, format!("Bearer {key}")),
        Api::Anthropic => (HeaderName::from_static("x-api-key"), key.to_string()),
        Api::Gemini => (HeaderName::from_static("x-goog-api-key"), key.to_string()),
        Api::Azure => (HeaderName::from_static("api-key"), key.to_string()),
        Api::Bedrock => return None,
    };
    let mut value = HeaderValue::from_str(&value).ok()?;
    value.set_sensitive(true);
    Some((name, value))
}

/// An OpenAI request translated for a node: the target on the node, the
/// body, and the header fields its API adds.
pub struct Translated {
    /// Path and query.
    pub target: String,
    /// The body.
    pub body: Bytes,
    /// Fields the API needs besides the credential (`anthropic-version`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// `body`, an OpenAI request to `target` (the model already the one the
/// router chose), as `node` takes it; `None` when the node speaks OpenAI's
/// API, or the body is not a JSON object (it goes as it came, and the
/// node's own error comes back).
pub fn translate(node: &Node, target: &str, body: &Bytes) -> Option<Translated> {
    let path = target.split('?').next().unwrap_or_default().trim_end_matches('/');
    // Only the API's own requests: a passed-through path's body (read
    // whole for a `pii` policy) goes as it came.
    if !edge_router::facts::Endpoint::classify("POST", path).is_api() {
        return None;
    }
    if path == messages::PATH && node.api != Api::Anthropic {
        // A Claude-native client's request goes on as OpenAI chat, and
        // from there into the node's own API.
        let request: Value = serde_json::from_slice(body).ok().filter(Value::is_object)?;
        let chat = Bytes::from(serde_json::to_vec(&messages::to_chat(&request)).ok()?);
        return Some(translate(node, "/v1/chat/completions", &chat).unwrap_or(Translated {
            target: "/v1/chat/completions".into(),
            body: chat,
            headers: Vec::new(),
        }));
    }
    match node.api {
        Api::OpenAi => return None,
        // Anthropic's own clients' requests go to it as they came.
        Api::Anthropic if path == messages::PATH => return None,
        Api::Azure => {
            // Azure OpenAI takes OpenAI's body as it is, and names the
            // model by its deployment, in the path: only the model is read.
            let operation = path.strip_prefix("/v1/")?;
            let version = node.api_version.as_deref().unwrap_or(AZURE_API_VERSION);
            let deployment = percent_encode(&crate::transform::top_level_text(body, b"model").unwrap_or_default());
            return Some(Translated {
                target: format!("/openai/deployments/{deployment}/{operation}?api-version={version}"),
                body: body.clone(),
                headers: Vec::new(),
            });
        }
        Api::Anthropic | Api::Gemini | Api::Bedrock => {}
    }
    let request: Value = serde_json::from_slice(body).ok().filter(Value::is_object)?;
    let model = request["model"].as_str().unwrap_or_default().to_string();
    let stream = request["stream"] == true;
    match node.api {
        Api::OpenAi | Api::Azure => None,
        Api::Bedrock => Some(Translated {
            target: bedrock::target(&model, stream),
            body: serde_json::to_vec(&bedrock::request(&request)).ok()?.into(),
            headers: vec![(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        }),
        Api::Anthropic => Some(Translated {
            target: "/v1/messages".into(),
            body: serde_json::to_vec(&anthropic::request(&request)).ok()?.into(),
            headers: vec![(HeaderName::from_static("anthropic-version"), HeaderValue::from_static(anthropic::VERSION))],
        }),
        Api::Gemini => Some(Translated {
            target: gemini::target(&model, stream),
            body: serde_json::to_vec(&gemini::request(&request)).ok()?.into(),
            headers: Vec::new(),
        }),
    }
}

/// Adds a turn to `turns` (`{"role": role, key: items}`), merged into the
/// last one when it has the same role: several tool results answer one
/// assistant turn in one user turn, and the providers want roles to alternate.
fn push_turn(turns: &mut Vec<Value>, role: &str, key: &str, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    if let Some(last) = turns.last_mut().filter(|t| t["role"] == role)
        && let Some(list) = last[key].as_array_mut()
    {
        list.extend(items);
        return;
    }
    turns.push(json!({"role": role, key: items}));
}

/// An OpenAI request's `temperature`, held to the 0 to 1 that Anthropic's
/// and Bedrock's models take (OpenAI's run to 2), and its `top_p` only
/// without one: recent Claude models refuse the two together.
fn sampling(openai: &Value) -> (Option<f64>, Option<&Value>) {
    let temperature = openai["temperature"].as_f64().map(|t| t.clamp(0.0, 1.0));
    let top_p = Some(&openai["top_p"]).filter(|p| temperature.is_none() && !p.is_null());
    (temperature, top_p)
}

/// An OpenAI request's `stop`, one sequence or several, as a list.
fn stop_sequences(openai: &Value) -> Option<Value> {
    match &openai["stop"] {
        Value::String(s) => Some(json!([s])),
        Value::Array(list) => Some(json!(list)),
        _ => None,
    }
}

/// The URL of an OpenAI `image_url` part, and its media type and base64
/// data when it is a `data:` URL.
fn image(part: &Value) -> Option<(&str, Option<(&str, &str)>)> {
    let url = part["image_url"]["url"].as_str().or(part["image_url"].as_str())?;
    Some((url, url.strip_prefix("data:").and_then(|d| d.split_once(";base64,"))))
}

/// Azure OpenAI's `api-version` when a node sets none: the latest GA one.
pub const AZURE_API_VERSION: &str = "2024-10-21";

/// `text` with everything but unreserved characters (`A-Z a-z 0-9 - . _
/// ~`) percent-encoded in upper-case hex, for a path segment or a query's
/// key or value.
fn percent_encode(text: &str) -> String {
    percent_encode_but(text, b"")
}

/// [`percent_encode`], leaving the bytes of `keep` as they are too (`/`, to
/// encode a whole path). An already encoded text is so encoded again.
fn percent_encode_but(text: &str, keep: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    out
}

/// Makes a translated node's response head OpenAI's: statuses that mean
/// "overloaded, try elsewhere" become `503` (Anthropic's `529`), so that
/// they lead to a fallback as OpenAI's do, and the length goes (the body is
/// rewritten).
pub fn adapt_head<B>(api: Api, response: &mut http::Response<B>) {
    if matches!(api, Api::OpenAi | Api::Azure) {
        return;
    }
    if response.status().as_u16() == 529 {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    let headers = response.headers_mut();
    headers.remove(http::header::CONTENT_LENGTH);
    // ConverseStream's binary frames go to the client as SSE.
    let framed = headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/vnd.amazon.eventstream"));
    if api == Api::Bedrock && framed {
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    }
}

/// The header fields that sign the request to a Bedrock node (AWS
/// Signature Version 4, over the URL of `target` on the node and the body
/// it is sent with, at `now_ms`); none for other nodes. `Err` when a
/// Bedrock node has no credentials or they cannot sign: the request is
/// not sent.
pub fn signature(
    node: &Node,
    credentials: Option<&bedrock::AwsCredentials>,
    target: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    if node.api != Api::Bedrock {
        return Ok(Vec::new());
    }
    let credentials = credentials.ok_or_else(|| format!("node {} has no AWS credentials to sign with", node.id))?;
    bedrock::sign(&node.url_for(target), body, credentials, node.region.as_deref().unwrap_or_default(), now_ms)
}

/// The rewrite of a node's answer into what the client asked in: OpenAI's
/// shape (see [`answer`]), then Anthropic's for a Claude-native client
/// ([`messages::ToMessages`]) unless the node is Anthropic's own. `None`
/// when nothing needs rewriting.
pub fn answer_for(
    endpoint: edge_router::facts::Endpoint,
    api: Api,
    status: StatusCode,
    sse: bool,
    now_ms: u64,
) -> Option<Box<dyn Transform>> {
    if endpoint != edge_router::facts::Endpoint::Messages {
        return answer(api, status, sse, now_ms);
    }
    if api == Api::Anthropic {
        return (sse && status.is_success()).then(|| Box::new(messages::carry_input_tokens()) as Box<dyn Transform>);
    }
    let back = Box::new(messages::ToMessages::new(status.is_success(), sse)) as Box<dyn Transform>;
    Some(match answer(api, status, sse, now_ms) {
        Some(openai) => Box::new(crate::transform::Then(openai, back)),
        None => back,
    })
}

/// The rewrite of a translated node's answer into OpenAI's: a stream of
/// events into chat completion chunks, JSON into a chat completion (or an
/// error into OpenAI's error shape). `None` for nodes that speak OpenAI.
pub fn answer(api: Api, status: StatusCode, sse: bool, now_ms: u64) -> Option<Box<dyn Transform>> {
    let created = now_ms / 1000;
    let dialect: Box<dyn Dialect> = match api {
        Api::OpenAi | Api::Azure => return None,
        Api::Bedrock if sse && status.is_success() => return Some(Box::new(bedrock::Stream::new(created))),
        Api::Bedrock => Box::new(bedrock::Whole::new(created)),
        Api::Anthropic => Box::new(anthropic::Stream::new(created)),
        Api::Gemini => Box::new(gemini::Stream::new(created)),
    };
    Some(Box::new(Translate::new(dialect, status.is_success(), sse)))
}

/// One provider's answers, as OpenAI's.
trait Dialect: Send + Sync {
    /// A whole JSON answer of a successful request.
    fn answer(&self, json: &Value) -> Option<Value>;
    /// A whole JSON answer of a failed request: OpenAI's error shape.
    fn error(&self, json: &Value) -> Value {
        openai_error(json)
    }
    /// One event of a stream (its `event:` name, if any, and its data);
    /// OpenAI's events go to `out`.
    fn event(&mut self, name: Option<&str>, data: &Value, out: &mut String);
    /// The stream ended; what OpenAI's stream still says (`[DONE]`).
    fn end(&mut self, out: &mut String);
}

/// Runs a [`Dialect`] over an answer body: each event of a successful
/// stream, or a JSON answer (or error) held whole.
pub struct Translate {
    dialect: Box<dyn Dialect>,
    sse: bool,
    ok: bool,
    events: SseEvents,
    held: Held,
}

impl Translate {
    fn new(dialect: Box<dyn Dialect>, ok: bool, sse: bool) -> Self {
        Self { dialect, sse: sse && ok, ok, events: SseEvents::default(), held: Held::new(MAX_HELD_JSON) }
    }
}

impl Transform for Translate {
    fn chunk(&mut self, input: Bytes, out: &mut VecDeque<Bytes>) {
        if !self.sse {
            return self.held.chunk(input, out);
        }
        let mut text = String::new();
        let dialect = &mut self.dialect;
        self.events.push(&input, |event, piece| {
            if piece != Piece::Event {
                // Part of an event too long to hold: it cannot be read, nor passed on untranslated.
                return;
            }
            let (name, data) = parse_event(&event);
            if let Some(data) = data {
                dialect.event(name.as_deref(), &data, &mut text);
            }
        });
        if !text.is_empty() {
            out.push_back(Bytes::from(text));
        }
    }

    fn end(&mut self, out: &mut VecDeque<Bytes>) {
        if !self.sse {
            if let Some(body) = self.held.whole() {
                let value: Option<Value> = serde_json::from_slice(&body).ok();
                let translated =
                    value.and_then(|v| if self.ok { self.dialect.answer(&v) } else { Some(self.dialect.error(&v)) });
                out.push_back(translated.and_then(|v| serde_json::to_vec(&v).ok()).map_or(body, Bytes::from));
            }
            return;
        }
        let mut text = String::new();
        let (rest, piece) = self.events.rest();
        if !rest.is_empty() && piece == Piece::Event {
            let (name, data) = parse_event(&rest);
            if let Some(data) = data {
                self.dialect.event(name.as_deref(), &data, &mut text);
            }
        }
        self.dialect.end(&mut text);
        if !text.is_empty() {
            out.push_back(Bytes::from(text));
        }
    }
}

/// An SSE event's name and its data as JSON (its `data:` lines joined);
/// `None` data when it has none or it is not JSON.
fn parse_event(event: &[u8]) -> (Option<String>, Option<Value>) {
    let (name, data) = event_text(event);
    (name, serde_json::from_slice(data.as_bytes()).ok())
}

/// An SSE event's name and its `data:` lines, joined with newlines.
fn event_text(event: &[u8]) -> (Option<String>, String) {
    let text = String::from_utf8_lossy(event);
    let mut name = None;
    let mut data = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    (name, data)
}

/// A provider's error body in OpenAI's shape: `{"error": {"message",
/// "type", "param", "code"}}`, with the provider's message and kind.
pub(crate) fn openai_error(provider: &Value) -> Value {
    let e = &provider["error"];
    // Anthropic: {"type":"error","error":{"type","message"}}; Gemini:
    // {"error":{"code","message","status"}}; Bedrock: {"message"}.
    let message = e["message"].as_str().or(provider["message"].as_str()).unwrap_or("the node answered with an error");
    let kind = e["type"].as_str().or(e["status"].as_str()).unwrap_or("api_error").to_ascii_lowercase();
    json!({"error": {"message": message, "type": kind, "param": null, "code": e["code"].clone()}})
}

#[cfg(test)]
mod tests;
