//! Amazon Bedrock's Converse API (`POST /model/{modelId}/converse`, and
//! `/converse-stream`, whose answer is AWS's binary event-stream framing):
//! an OpenAI chat request as a Converse request, signed with AWS Signature
//! Version 4 ([`sigv4`]), and its answers as a chat completion or its
//! chunks (frames read by [`frames`]).

mod frames;
mod sigv4;

use std::collections::VecDeque;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::Dialect;
use super::chunks::{self, Chunks};
use crate::transform::Transform;

/// The target of a request for `model`.
pub fn target(model: &str, stream: bool) -> String {
    let model = super::percent_encode(model);
    if stream { format!("/model/{model}/converse-stream") } else { format!("/model/{model}/converse") }
}

/// An OpenAI chat request as a Converse request.
pub fn request(openai: &Value) -> Value {
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for m in openai["messages"].as_array().map(Vec::as_slice).unwrap_or_default() {
        match m["role"].as_str().unwrap_or_default() {
            "system" | "developer" => system.extend(content(&m["content"])),
            "assistant" => {
                let mut blocks = content(&m["content"]);
                for call in m["tool_calls"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
                    let input: Value = serde_json::from_slice(arguments.as_bytes()).unwrap_or_else(|_| json!({}));
                    blocks.push(
                        json!({"toolUse": {"toolUseId": call["id"], "name": call["function"]["name"], "input": input}}),
                    );
                }
                push(&mut messages, "assistant", blocks);
            }
            "tool" => {
                let text = match &m["content"] {
                    Value::String(s) => s.clone(),
                    other => content(other).iter().filter_map(|b| b["text"].as_str()).collect(),
                };
                let result = json!({"toolResult": {"toolUseId": m["tool_call_id"], "content": [{"text": text}]}});
                push(&mut messages, "user", vec![result]);
            }
            _ => push(&mut messages, "user", content(&m["content"])),
        }
    }
    let mut out = Map::new();
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let mut inference = Map::new();
    if let Some(max) = openai["max_completion_tokens"].as_u64().or(openai["max_tokens"].as_u64()) {
        inference.insert("maxTokens".into(), json!(max));
    }
    let (temperature, top_p) = super::sampling(openai);
    if let Some(t) = temperature {
        inference.insert("temperature".into(), json!(t));
    }
    if let Some(p) = top_p {
        inference.insert("topP".into(), p.clone());
    }
    if let Some(stop) = super::stop_sequences(openai) {
        inference.insert("stopSequences".into(), stop);
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    let tools: Vec<Value> = openai["tools"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|t| t["type"] == "function")
        .map(|t| {
            let f = &t["function"];
            let schema = if f["parameters"].is_object() { f["parameters"].clone() } else { json!({"type": "object"}) };
            let mut spec = json!({"name": f["name"], "inputSchema": {"json": schema}});
            if f["description"].is_string() {
                spec["description"] = f["description"].clone();
            }
            json!({"toolSpec": spec})
        })
        .collect();
    // Converse has no "none": without tools offered, none is called. But
    // Converse refuses tool calls and results in the history of a request
    // that offers no tools: there they are told as text.
    if tools.is_empty() || openai["tool_choice"] == "none" {
        for block in messages.iter_mut().filter_map(|m| m["content"].as_array_mut()).flatten() {
            told_as_text(block);
        }
    } else {
        let mut config = json!({"tools": tools});
        let choice = match &openai["tool_choice"] {
            Value::String(s) if s == "required" => Some(json!({"any": {}})),
            Value::String(s) if s == "auto" => Some(json!({"auto": {}})),
            Value::Object(_) => Some(json!({"tool": {"name": openai["tool_choice"]["function"]["name"]}})),
            _ => None,
        };
        if let Some(c) = choice {
            config["toolChoice"] = c;
        }
        out.insert("toolConfig".into(), config);
    }
    out.insert("messages".into(), Value::Array(messages));
    Value::Object(out)
}

/// A `toolUse` or `toolResult` block as a text block that says what it was.
fn told_as_text(block: &mut Value) {
    let id = |b: &Value| b["toolUseId"].as_str().unwrap_or_default().to_string();
    let text = if let Some(u) = block.get("toolUse") {
        format!("(tool call {}: {}({}))", id(u), u["name"].as_str().unwrap_or_default(), u["input"])
    } else if let Some(r) = block.get("toolResult") {
        let content: String =
            r["content"].as_array().into_iter().flatten().filter_map(|c| c["text"].as_str()).collect();
        format!("(result of tool call {}: {content})", id(r))
    } else {
        return;
    };
    *block = json!({"text": text});
}

fn push(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    super::push_turn(messages, role, "content", blocks);
}

/// OpenAI content as Converse content blocks: text, and images given as
/// `data:` URLs (Converse takes image bytes, not URLs).
fn content(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if !s.is_empty() => vec![json!({"text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p["type"].as_str()? {
                "text" => Some(json!({"text": p["text"]})),
                "image_url" => {
                    let (media, data) = super::image(p)?.1?;
                    let format = media.strip_prefix("image/").unwrap_or(media);
                    Some(json!({"image": {"format": format, "source": {"bytes": data}}}))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// OpenAI's `finish_reason` for a `stopReason`.
fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "content_filtered" | "guardrail_intervened" => "content_filter",
        _ => "stop",
    }
}

fn usage(u: &Value) -> Value {
    chunks::usage(
        chunks::tokens(u, &["inputTokens", "cacheReadInputTokens", "cacheWriteInputTokens"]),
        chunks::tokens(u, &["outputTokens"]),
    )
}

/// A whole Converse answer as a chat completion.
pub struct Whole {
    created: u64,
}

impl Whole {
    pub fn new(created: u64) -> Self {
        Self { created }
    }
}

impl Dialect for Whole {
    fn answer(&self, r: &Value) -> Option<Value> {
        let blocks = r["output"]["message"]["content"].as_array()?;
        let text: String = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
        let calls: Vec<Value> = blocks
            .iter()
            .filter(|b| b["toolUse"].is_object())
            .map(|b| {
                let u = &b["toolUse"];
                let arguments = serde_json::to_string(&u["input"]).unwrap_or_else(|_| "{}".into());
                json!({"id": u["toolUseId"], "type": "function", "function": {"name": u["name"], "arguments": arguments}})
            })
            .collect();
        let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }, "refusal": null});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        let finish = finish_reason(r["stopReason"].as_str().unwrap_or("end_turn"));
        Some(chunks::completion("chatcmpl-bedrock", "", self.created, message, finish, usage(&r["usage"])))
    }

    fn event(&mut self, _name: Option<&str>, _data: &Value, _out: &mut String) {}

    fn end(&mut self, _out: &mut String) {}
}

/// A ConverseStream answer (AWS event-stream frames) as OpenAI's chunks.
pub struct Stream {
    frames: frames::Decoder,
    chunks: Chunks,
    stop: Option<String>,
    finished: bool,
}

impl Stream {
    pub fn new(created: u64) -> Self {
        let mut chunks = Chunks::new(created);
        chunks.id = "chatcmpl-bedrock".into();
        Self { frames: frames::Decoder::default(), chunks, stop: None, finished: false }
    }

    /// One frame: its `:event-type` (or `:exception-type`) and JSON payload.
    fn frame(&mut self, message: &frames::Message, out: &mut String) {
        let payload: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
        if message.header(":message-type") == Some("exception") {
            let kind = message.header(":exception-type").unwrap_or("api_error");
            let text =
                payload["message"].as_str().or(payload["Message"].as_str()).unwrap_or("the node's stream failed");
            self.chunks.fail();
            self.finished = true;
            return chunks::error_event(out, kind, text);
        }
        match message.header(":event-type").unwrap_or_default() {
            "messageStart" => self.chunks.write(out, json!({"content": ""}), None, None),
            "contentBlockStart" => {
                let index = payload["contentBlockIndex"].as_u64().unwrap_or(0);
                let tool = &payload["start"]["toolUse"];
                if tool.is_object() {
                    let id = tool["toolUseId"].as_str().unwrap_or_default();
                    self.chunks.tool_start(out, index, id, tool["name"].as_str().unwrap_or_default(), Value::Null);
                }
            }
            "contentBlockDelta" => {
                let index = payload["contentBlockIndex"].as_u64().unwrap_or(0);
                let delta = &payload["delta"];
                if let Some(text) = delta["text"].as_str() {
                    self.chunks.text(out, text);
                } else if let Some(input) = delta["toolUse"]["input"].as_str() {
                    self.chunks.tool_arguments(out, index, input);
                }
            }
            "messageStop" => self.stop = payload["stopReason"].as_str().map(str::to_string),
            "metadata" => {
                // After `messageStop`: the usage, and so the end.
                let finish = finish_reason(self.stop.as_deref().unwrap_or("end_turn"));
                self.chunks.finish(out, finish, usage(&payload["usage"]));
                self.chunks.done(out);
                self.finished = true;
            }
            _ => {}
        }
    }
}

impl Transform for Stream {
    fn chunk(&mut self, input: Bytes, out: &mut VecDeque<Bytes>) {
        if self.finished {
            return;
        }
        self.frames.push(&input);
        let mut text = String::new();
        loop {
            match self.frames.next() {
                Ok(Some(message)) => {
                    self.frame(&message, &mut text);
                    // An exception or the closing `metadata`: what follows is not read.
                    if self.finished {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // A broken frame: the rest cannot be read.
                    chunks::error_event(
                        &mut text,
                        "upstream_error",
                        &format!("the node's event stream is malformed: {e}"),
                    );
                    self.finished = true;
                    break;
                }
            }
        }
        if self.finished {
            // What the node sent after its end is not kept.
            self.frames = frames::Decoder::default();
        }
        if !text.is_empty() {
            out.push_back(Bytes::from(text));
        }
    }

    fn end(&mut self, out: &mut VecDeque<Bytes>) {
        if self.finished {
            return;
        }
        let mut text = String::new();
        match self.stop.take() {
            // `messageStop` without `metadata`: finished, usage unknown.
            Some(stop) => {
                self.chunks.finish(&mut text, finish_reason(&stop), Value::Null);
                self.chunks.done(&mut text);
            }
            None => self.chunks.unfinished(&mut text),
        }
        out.push_back(Bytes::from(text));
    }
}

/// A Bedrock node's AWS credentials, as the host read them.
#[derive(Clone)]
pub struct AwsCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl AwsCredentials {
    /// The credentials `names` names, each read with `read` (the host's
    /// environment, or its secrets); `None` unless the key id and secret
    /// are both set. The session token is optional.
    pub fn read(names: &edge_router::config::AwsCredentialsEnv, read: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let read = |name: &str| read(name).filter(|v| !v.is_empty());
        Some(Self {
            access_key_id: read(&names.access_key_id)?,
            secret_access_key: read(&names.secret_access_key)?,
            session_token: names.session_token.as_deref().and_then(read),
        })
    }
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsCredentials { .. }")
    }
}

/// The header fields that sign a `POST` of `body` to `url` for Bedrock in
/// `region` at `now_ms` (Signature Version 4: `x-amz-date`,
/// `x-amz-security-token` with temporary credentials, and `authorization`,
/// marked sensitive). The request must carry the `host` of `url` and
/// `content-type: application/json`, which are signed too.
pub fn sign(
    url: &str,
    body: &[u8],
    credentials: &AwsCredentials,
    region: &str,
    now_ms: u64,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
    let host = host_of(&uri).ok_or_else(|| format!("`{url}` has no host"))?;
    let key = sigv4::Key {
        access_key_id: &credentials.access_key_id,
        secret_access_key: &credentials.secret_access_key,
        session_token: credentials.session_token.as_deref(),
        region,
        service: "bedrock",
    };
    let headers = [("host", host.as_str()), ("content-type", "application/json")];
    let query = uri.query().unwrap_or_default();
    sigv4::sign("POST", uri.path(), query, &headers, body, &key, now_ms)
        .into_iter()
        .map(|(name, value)| {
            let mut value = HeaderValue::try_from(value).map_err(|_| format!("`{name}` cannot be a header value"))?;
            value.set_sensitive(name != "x-amz-date");
            Ok((HeaderName::from_static(name), value))
        })
        .collect()
}

/// The `Host` of `uri`: its host, and its port unless it is the scheme's default.
pub fn host_of(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?;
    let default = if uri.scheme_str() == Some("https") { 443 } else { 80 };
    Some(match uri.port_u16() {
        Some(port) if port != default => format!("{host}:{port}"),
        _ => host.to_string(),
    })
}
