//! The fake origin's server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::dialects;
use crate::reply::{Reply, Script, fill_dates};
use crate::responses::{Answer, Held};

type Body = BoxBody<Bytes, Infallible>;

/// A request the origin got.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header fields, lower-case names, in order.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

struct State {
    name: String,
    script: Script,
    served: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    responses: Held,
}

/// A fake origin on a loopback port.
pub struct FakeOrigin {
    addr: SocketAddr,
    state: Arc<State>,
    task: Option<JoinHandle<()>>,
}

impl Drop for FakeOrigin {
    fn drop(&mut self) {
        self.stop();
    }
}

impl FakeOrigin {
    /// Starts an origin named `name` (its answers say so) on a free port.
    pub async fn start(name: &str, script: Script) -> std::io::Result<Self> {
        Self::start_on(name, script, "127.0.0.1:0".parse().map_err(std::io::Error::other)?).await
    }

    /// Starts it on `addr`.
    pub async fn start_on(name: &str, script: Script, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            name: name.to_string(),
            script,
            served: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            responses: Held::default(),
        });
        Ok(Self { addr, task: Some(serve(listener, state.clone())), state })
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The requests it got so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How many requests it got.
    pub fn hits(&self) -> usize {
        self.state.seen.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Stops listening: new connections are refused.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        if self.task.is_none() {
            let listener = TcpListener::bind(self.addr).await?;
            self.task = Some(serve(listener, self.state.clone()));
        }
        Ok(())
    }

    /// Whether it is listening.
    pub fn running(&self) -> bool {
        self.task.is_some()
    }
}

fn serve(listener: TcpListener, state: Arc<State>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            conns.spawn(async move {
                let (io, interim) = interim::wrap(TokioIo::new(stream));
                let svc = service_fn(move |req| answer(state.clone(), interim.clone(), req));
                let _ = http1::Builder::new().serve_connection(io, svc).await;
            });
        }
    })
}

async fn answer(
    state: Arc<State>,
    interim: interim::Interim,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    if target == "/__fake/seen" {
        let seen = state.seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        return Ok(json_response(StatusCode::OK, &json!(seen)));
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let route = state.script.routes.iter().find(|r| r.matches(&parts, &text)).map(|r| &r.reply);
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    state.seen.lock().unwrap_or_else(PoisonError::into_inner).push(Seen {
        method: parts.method.as_str().to_string(),
        target,
        headers,
        body: text,
    });
    let reply = match route {
        Some(reply) => reply.clone(),
        None => state.script.reply(state.served.fetch_add(1, Ordering::SeqCst)).clone(),
    };
    for early in &reply.interim {
        if let Ok(status) = StatusCode::from_u16(early.status) {
            interim.arm();
            interim.send(status, &header_map(&early.headers));
        }
    }
    if reply.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(reply.delay_ms)).await;
    }
    interim.disarm();
    // Another provider's API (which answers scripted errors in its own
    // shape), or the Responses API unless the script makes this reply
    // something else.
    let path = parts.uri.path();
    let dialect = reply.body.is_none().then(|| dialects::answer(&state.name, &reply, &parts, &body));
    let plain = reply.status.is_none_or(|s| s == 200) && reply.body.is_none();
    let api = dialect
        .flatten()
        .or_else(|| plain.then(|| state.responses.answer(&state.name, &reply, &parts.method, path, &body)).flatten());
    match api {
        Some(Answer::Json(status, value)) => Ok(json_response(status, &value)),
        Some(Answer::JsonWith(status, fields, value)) => {
            let mut resp = json_response(status, &value);
            for (name, v) in fields {
                if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&v)) {
                    resp.headers_mut().insert(n, v);
                }
            }
            Ok(resp)
        }
        Some(Answer::Frames(frames)) => {
            let mut headers = header_map(&reply.headers);
            headers.insert("content-type", HeaderValue::from_static("application/vnd.amazon.eventstream"));
            let chunks = frames.into_iter().map(Bytes::from).collect();
            Ok(with(StatusCode::OK, headers, streamed_bytes(chunks, Duration::from_millis(reply.gap_ms))))
        }
        Some(Answer::Events(events)) => {
            let mut headers = header_map(&reply.headers);
            headers.insert("content-type", HeaderValue::from_static("text/event-stream"));
            Ok(with(StatusCode::OK, headers, streamed(events, Duration::from_millis(reply.gap_ms))))
        }
        None => Ok(respond(&state.name, &reply, &parts, &body)),
    }
}

fn header_map(fields: &std::collections::BTreeMap<String, String>) -> HeaderMap {
    let now = SystemTime::now();
    let mut map = HeaderMap::new();
    for (name, value) in fields {
        if let (Ok(n), Ok(v)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&fill_dates(value, now)))
        {
            map.append(n, v);
        }
    }
    map
}

fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into()).boxed()
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

/// The answer to a request whose parts are `parts` and body `body`.
fn respond(origin: &str, reply: &Reply, parts: &http::request::Parts, body: &[u8]) -> Response<Body> {
    let status = reply.status.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK);
    let mut headers = header_map(&reply.headers);
    if let Some(etag) = &reply.etag {
        if let Ok(v) = HeaderValue::from_str(etag) {
            headers.insert("etag", v);
        }
        let matched = parts.headers.get("if-none-match").is_some_and(|v| v.as_bytes() == etag.as_bytes());
        if matched {
            return with(StatusCode::NOT_MODIFIED, headers, full(Bytes::new()));
        }
    }
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED || parts.method == Method::HEAD {
        return with(status, headers, full(Bytes::new()));
    }
    if let Some(raw) = &reply.body {
        headers.entry("content-type").or_insert(HeaderValue::from_static("text/plain"));
        return raw_body(status, headers, raw, reply.ranges.then_some(&parts.headers));
    }
    let asked: Value = serde_json::from_slice(body).unwrap_or_default();
    let model = asked.get("model").cloned().unwrap_or(Value::Null);
    let model_text = model.as_str().unwrap_or("unknown");
    let text = reply
        .text
        .as_deref()
        .unwrap_or("hello from {origin}")
        .replace("{origin}", origin)
        .replace("{model}", model_text);
    let [prompt, completion] = reply.usage.unwrap_or([5, 5]);
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    let sse = reply.sse.unwrap_or(asked["stream"] == true);
    // Azure OpenAI's paths end as OpenAI's do.
    if parts.uri.path().ends_with("/embeddings") {
        // One vector per input, as OpenAI answers: a list of `embedding`
        // objects, each a list of floats or, when the client asks for
        // `encoding_format: base64` (the Node SDK does by default), the
        // base64 of their little-endian 32-bit floats.
        let inputs = asked["input"].as_array().map_or(1, Vec::len);
        let base64 = asked["encoding_format"] == "base64";
        let data: Vec<Value> = (0..inputs)
            .map(|i| {
                let vector = [0.25f32, -0.5, i as f32 / 8.0];
                let embedding = if base64 {
                    use base64::Engine as _;
                    let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    json!(vector)
                };
                json!({"object": "embedding", "index": i, "embedding": embedding})
            })
            .collect();
        let answer = json!({"object": "list", "data": data, "model": model, "origin": origin,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt}});
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        return with(status, headers, full(answer.to_string()));
    }
    if parts.uri.path().ends_with("/completions") && !parts.uri.path().ends_with("/chat/completions") {
        return legacy_completion(status, headers, origin, &model, &text, &usage, sse, reply.gap_ms);
    }
    // Tools, as the other dialects do: a request that offers one and asks
    // about the weather gets a call; one that ends with a tool's result
    // gets an answer that repeats it.
    let turns = asked["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    let last = turns.last().cloned().unwrap_or(Value::Null);
    let tool = asked["tools"][0]["function"]["name"]
        .as_str()
        .filter(|_| last["role"] == "user" && last["content"].as_str().is_some_and(|c| c.contains("weather")));
    let prompt = last_user_text(turns);
    let text = match last["role"].as_str() {
        Some("tool") => format!("{origin} heard: tool said {}", last["content"].as_str().unwrap_or_default()),
        _ => text.replace("{prompt}", &prompt),
    };
    let pieces = |text: &str| match reply.piece_chars {
        Some(n) => pieces_of(text, n),
        None => words_of(text),
    };
    let scripted = reply.arguments.as_ref().zip(asked["tools"][0]["function"]["name"].as_str());
    if let Some((arguments, name)) = scripted {
        let escaped = serde_json::to_string(&prompt).unwrap_or_default();
        let arguments = arguments.replace("{prompt}", &escaped[1..escaped.len() - 1]);
        let split = match reply.piece_chars {
            Some(n) => pieces_of(&arguments, n),
            None => vec![arguments.clone()],
        };
        return tool_call(status, headers, origin, &model, name, &arguments, &split, &usage, sse, reply.chunk_bytes);
    }
    if let Some(name) = tool {
        let arguments = "{\"city\": \"Paris\"}";
        let split = ["{\"city\": ".to_string(), "\"Paris\"}".to_string()];
        return tool_call(status, headers, origin, &model, name, arguments, &split, &usage, sse, None);
    }
    if !sse {
        let answer = json!({"id": "chatcmpl-fake", "object": "chat.completion", "origin": origin, "model": model,
            "method": parts.method.as_str(),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage});
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        return with(status, headers, full(answer.to_string()));
    }
    headers.insert("content-type", HeaderValue::from_static("text/event-stream"));
    let separate_usage = asked["stream_options"]["include_usage"] == true;
    let events = sse_events(origin, &model, &pieces(&text), &usage, separate_usage);
    with(status, headers, streamed_in(events, Duration::from_millis(reply.gap_ms), reply.chunk_bytes))
}

/// The text of the last user turn: its content, or its parts' texts.
fn last_user_text(turns: &[Value]) -> String {
    let Some(turn) = turns.iter().rev().find(|t| t["role"] == "user") else { return String::new() };
    match &turn["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}

/// `text` a word at a time, each after the first with its space.
fn words_of(text: &str) -> Vec<String> {
    text.split(' ').enumerate().map(|(i, w)| if i == 0 { w.to_string() } else { format!(" {w}") }).collect()
}

/// `text` in pieces of `n` characters.
pub(crate) fn pieces_of(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

/// A body sent as `events`, `gap` apart, or cut into chunks of `chunk_bytes`.
fn streamed_in(events: Vec<String>, gap: Duration, chunk_bytes: Option<usize>) -> Body {
    match chunk_bytes {
        Some(n) => {
            let all = events.concat().into_bytes();
            streamed_bytes(all.chunks(n.max(1)).map(Bytes::copy_from_slice).collect(), gap)
        }
        None => streamed(events, gap),
    }
}

/// A chat completion that calls `name` with `arguments`, or the chunks of
/// one: the call's id and name, its arguments in the pieces `split`, then
/// `finish_reason: tool_calls` with the usage.
#[allow(clippy::too_many_arguments)]
fn tool_call(
    status: StatusCode,
    mut headers: HeaderMap,
    origin: &str,
    model: &Value,
    name: &str,
    arguments: &str,
    split: &[String],
    usage: &Value,
    sse: bool,
    chunk_bytes: Option<usize>,
) -> Response<Body> {
    if !sse {
        let call = json!({"id": "call_fake1", "type": "function", "function": {"name": name, "arguments": arguments}});
        let answer = json!({"id": "chatcmpl-fake", "object": "chat.completion", "origin": origin, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [call]},
                "finish_reason": "tool_calls"}], "usage": usage});
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        return with(status, headers, full(answer.to_string()));
    }
    let chunk = |delta: Value, finish: Value, usage: &Value| {
        let c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "origin": origin, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": usage});
        format!("data: {c}\n\n")
    };
    let start =
        json!({"index": 0, "id": "call_fake1", "type": "function", "function": {"name": name, "arguments": ""}});
    let mut events = vec![chunk(json!({"role": "assistant", "tool_calls": [start]}), Value::Null, &Value::Null)];
    for piece in split {
        let delta = json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]});
        events.push(chunk(delta, Value::Null, &Value::Null));
    }
    events.push(chunk(json!({}), json!("tool_calls"), usage));
    events.push("data: [DONE]\n\n".to_string());
    headers.insert("content-type", HeaderValue::from_static("text/event-stream"));
    with(status, headers, streamed_in(events, Duration::ZERO, chunk_bytes))
}

/// A legacy completion (`/v1/completions`): a `text_completion`, or its
/// stream of chunks (a word each, the last with `usage`), then `[DONE]`.
#[allow(clippy::too_many_arguments)]
fn legacy_completion(
    status: StatusCode,
    mut headers: HeaderMap,
    origin: &str,
    model: &Value,
    text: &str,
    usage: &Value,
    sse: bool,
    gap_ms: u64,
) -> Response<Body> {
    let choice =
        |text: &str, finish: Value| json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish});
    let object = |choices: Value, usage: &Value| {
        json!({"id": "cmpl-fake", "object": "text_completion", "created": 1_741_290_958, "origin": origin,
            "model": model, "choices": choices, "usage": usage})
    };
    if !sse {
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        return with(status, headers, full(object(json!([choice(text, json!("stop"))]), usage).to_string()));
    }
    let words: Vec<&str> = text.split(' ').collect();
    let mut events: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let last = i + 1 == words.len();
            let piece = if i == 0 { (*w).to_string() } else { format!(" {w}") };
            let finish = if last { json!("stop") } else { Value::Null };
            format!("data: {}\n\n", object(json!([choice(&piece, finish)]), if last { usage } else { &Value::Null }))
        })
        .collect();
    events.push("data: [DONE]\n\n".into());
    headers.insert("content-type", HeaderValue::from_static("text/event-stream"));
    with(status, headers, streamed(events, Duration::from_millis(gap_ms)))
}

/// A stream's events as OpenAI sends them: a chunk per piece of the text
/// (`words`), then (when the
/// client asked with `stream_options.include_usage`) a chunk with only
/// `usage`, then `[DONE]`. Without that option the last word's chunk carries
/// the usage, as OpenAI-compatible servers such as vLLM do.
fn sse_events(origin: &str, model: &Value, words: &[String], usage: &Value, separate_usage: bool) -> Vec<String> {
    let last = words.len().saturating_sub(1);
    let chunk = |choices: Value, usage: &Value| {
        let c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "origin": origin, "model": model,
            "choices": choices, "usage": usage});
        format!("data: {c}\n\n")
    };
    let mut events: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let finish = if i == last { json!("stop") } else { Value::Null };
            let choices = json!([{"index": 0, "delta": {"content": w}, "finish_reason": finish}]);
            chunk(choices, if i == last && !separate_usage { usage } else { &Value::Null })
        })
        .collect();
    if separate_usage {
        events.push(chunk(json!([]), usage));
    }
    events.push("data: [DONE]\n\n".into());
    events
}

/// A body sent as `events`, `gap` apart.
fn streamed(events: Vec<String>, gap: Duration) -> Body {
    streamed_bytes(events.into_iter().map(Bytes::from).collect(), gap)
}

/// A body sent as `chunks`, `gap` apart.
fn streamed_bytes(chunks: Vec<Bytes>, gap: Duration) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for (i, chunk) in chunks.into_iter().enumerate() {
            if i > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    Frames(rx).boxed()
}

/// Frames from a channel.
struct Frames(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// `raw`, or the one byte range of it a request's `Range` asks for.
fn raw_body(status: StatusCode, mut headers: HeaderMap, raw: &str, ranges: Option<&HeaderMap>) -> Response<Body> {
    let len = raw.len();
    let range = ranges.and_then(|h| h.get("range")).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (from, to) = v.strip_prefix("bytes=")?.split_once('-')?;
        let from: usize = from.parse().ok()?;
        let to: usize =
            if to.is_empty() { len.checked_sub(1)? } else { to.parse::<usize>().ok()?.min(len.checked_sub(1)?) };
        (from <= to).then_some((from, to))
    });
    match range {
        Some((from, to)) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {from}-{to}/{len}")) {
                headers.insert("content-range", v);
            }
            with(StatusCode::PARTIAL_CONTENT, headers, full(raw.as_bytes()[from..=to].to_vec()))
        }
        None => with(status, headers, full(raw.to_string())),
    }
}

fn with(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}
