//! Claude-native clients: a request to `/v1/messages` in Anthropic's shape
//! is routed like chat. A node that speaks Anthropic's API gets it as it
//! came; any other gets it as an OpenAI chat request ([`to_chat`], then
//! its own API's translation), and its answer, once OpenAI's, is given
//! back in Anthropic's shape ([`ToMessages`]): a message, or the events of
//! its stream.

use std::sync::Mutex;

use serde_json::{Map, Value, json};

/// The path of Anthropic's Messages API, on the router as on Anthropic.
pub const PATH: &str = "/v1/messages";

/// An Anthropic Messages request as an OpenAI chat request.
pub fn to_chat(m: &Value) -> Value {
    let mut messages: Vec<Value> = Vec::new();
    let system = match &m["system"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    };
    if !system.is_empty() {
        messages.push(json!({"role": "system", "content": system}));
    }
    for turn in m["messages"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let role = turn["role"].as_str().unwrap_or("user");
        let blocks = match &turn["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(b) => b.clone(),
            _ => Vec::new(),
        };
        let mut parts: Vec<Value> = Vec::new();
        let mut calls: Vec<Value> = Vec::new();
        for b in &blocks {
            match b["type"].as_str().unwrap_or_default() {
                "text" => parts.push(json!({"type": "text", "text": b["text"]})),
                "image" => {
                    let s = &b["source"];
                    let url = match s["type"].as_str() {
                        Some("base64") => format!(
                            "data:{};base64,{}",
                            s["media_type"].as_str().unwrap_or("image/png"),
                            s["data"].as_str().unwrap_or_default()
                        ),
                        _ => s["url"].as_str().unwrap_or_default().to_string(),
                    };
                    parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                }
                "tool_use" => {
                    let arguments = serde_json::to_string(&b["input"]).unwrap_or_else(|_| "{}".into());
                    calls.push(json!({"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": arguments}}));
                }
                "tool_result" => {
                    let content = match &b["content"] {
                        Value::String(s) => s.clone(),
                        Value::Array(list) => {
                            list.iter().filter_map(|c| c["text"].as_str()).collect::<Vec<_>>().join("\n")
                        }
                        _ => String::new(),
                    };
                    messages.push(json!({"role": "tool", "tool_call_id": b["tool_use_id"], "content": content}));
                }
                _ => {}
            }
        }
        let only_text = parts.iter().all(|p| p["type"] == "text");
        let content = if parts.is_empty() {
            Value::Null
        } else if only_text {
            json!(parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(""))
        } else {
            Value::Array(parts)
        };
        if role == "assistant" {
            let mut message = json!({"role": "assistant", "content": content});
            if !calls.is_empty() {
                message["tool_calls"] = Value::Array(calls);
            }
            messages.push(message);
        } else if !content.is_null() {
            messages.push(json!({"role": "user", "content": content}));
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), m["model"].clone());
    out.insert("messages".into(), Value::Array(messages));
    for (from, to) in
        [("max_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"), ("stop_sequences", "stop")]
    {
        if !m[from].is_null() {
            out.insert(to.into(), m[from].clone());
        }
    }
    if m["stream"] == true {
        out.insert("stream".into(), json!(true));
        // The usage the message's last event reports.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(tools) = m["tools"].as_array() {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t["name"].is_string())
            .map(|t| {
                let mut f = json!({"name": t["name"], "parameters": t["input_schema"]});
                if t["description"].is_string() {
                    f["description"] = t["description"].clone();
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    let choice = &m["tool_choice"];
    let mapped = match choice["type"].as_str() {
        Some("auto") => Some(json!("auto")),
        Some("any") => Some(json!("required")),
        Some("none") => Some(json!("none")),
        Some("tool") => Some(json!({"type": "function", "function": {"name": choice["name"]}})),
        _ => None,
    };
    if let Some(c) = mapped {
        out.insert("tool_choice".into(), c);
    }
    if choice["disable_parallel_tool_use"] == true {
        out.insert("parallel_tool_calls".into(), json!(false));
    }
    if let Some(user) = m["metadata"]["user_id"].as_str() {
        out.insert("user".into(), json!(user));
    }
    Value::Object(out)
}

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`.
fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

fn usage(u: &Value) -> Value {
    json!({"input_tokens": u["prompt_tokens"].as_u64().unwrap_or(0), "output_tokens": u["completion_tokens"].as_u64().unwrap_or(0)})
}

/// A chat completion as a message.
fn message(c: &Value) -> Value {
    let choice = &c["choices"][0];
    let mut content: Vec<Value> = Vec::new();
    if let Some(text) = choice["message"]["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in choice["message"]["tool_calls"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let input: Value = call["function"]["arguments"]
            .as_str()
            .and_then(|a| serde_json::from_slice(a.as_bytes()).ok())
            .unwrap_or_else(|| json!({}));
        content.push(json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input}));
    }
    json!({
        "id": c["id"], "type": "message", "role": "assistant", "model": c["model"], "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str().unwrap_or("stop")), "stop_sequence": null,
        "usage": usage(&c["usage"]),
    })
}

/// An OpenAI error body as Anthropic's.
fn error(e: &Value) -> Value {
    let inner = &e["error"];
    json!({"type": "error", "error": {
        "type": inner["type"].as_str().unwrap_or("api_error"),
        "message": inner["message"].as_str().unwrap_or("the request failed"),
    }})
}

fn event(out: &mut String, kind: &str, data: Value) {
    out.push_str(&format!("event: {kind}\ndata: {data}\n\n"));
}

/// An OpenAI answer (a chat completion, its chunks, or an error) in
/// Anthropic's shape.
pub struct ToMessages;

impl ToMessages {
    /// For an answer that succeeded (`ok`) or not, a stream (`sse`) or JSON.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(ok: bool, sse: bool) -> super::Translate {
        super::Translate::new(Box::new(Stream::default()), ok, sse)
    }
}

#[derive(Default)]
struct Stream {
    started: bool,
    /// The open content block: its index, and whether it is text.
    open: Option<(u64, bool)>,
    blocks: u64,
    stop: Option<&'static str>,
    usage: Value,
    stopped: bool,
}

impl Stream {
    fn close(&mut self, out: &mut String) {
        if let Some((index, _)) = self.open.take() {
            event(out, "content_block_stop", json!({"type": "content_block_stop", "index": index}));
        }
    }

    fn chunk(&mut self, name: Option<&str>, c: &Value, out: &mut String) {
        if name == Some("error") || c["error"].is_object() {
            self.close(out);
            // An error ends the message: no closing events follow it.
            self.stopped = true;
            return event(out, "error", error(c));
        }
        if !self.started {
            self.started = true;
            let start = json!({"type": "message_start", "message": {"id": c["id"], "type": "message", "role": "assistant",
                "model": c["model"], "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}});
            event(out, "message_start", start);
        }
        if !c["usage"].is_null() {
            self.usage = c["usage"].clone();
        }
        let choice = &c["choices"][0];
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            if !matches!(self.open, Some((_, true))) {
                self.close(out);
                let index = self.blocks;
                self.blocks += 1;
                self.open = Some((index, true));
                let block = json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}});
                event(out, "content_block_start", block);
            }
            let index = self.open.map_or(0, |(i, _)| i);
            event(
                out,
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": text}}),
            );
        }
        for call in delta["tool_calls"].as_array().map(Vec::as_slice).unwrap_or_default() {
            if let Some(id) = call["id"].as_str() {
                self.close(out);
                let index = self.blocks;
                self.blocks += 1;
                self.open = Some((index, false));
                let block = json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "tool_use", "id": id, "name": call["function"]["name"], "input": {}}});
                event(out, "content_block_start", block);
            }
            if let (Some(arguments), Some((index, false))) = (call["function"]["arguments"].as_str(), self.open)
                && !arguments.is_empty()
            {
                event(
                    out,
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": arguments}}),
                );
            }
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            self.stop = Some(stop_reason(finish));
        }
    }

    fn finish(&mut self, out: &mut String) {
        if self.stopped || !self.started {
            return;
        }
        self.stopped = true;
        self.close(out);
        event(
            out,
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop.unwrap_or("end_turn"), "stop_sequence": null}, "usage": usage(&self.usage)}),
        );
        event(out, "message_stop", json!({"type": "message_stop"}));
    }
}

impl super::Dialect for Stream {
    fn answer(&self, json: &Value) -> Option<Value> {
        Some(message(json))
    }

    fn error(&self, json: &Value) -> Value {
        error(json)
    }

    fn event(&mut self, name: Option<&str>, data: &Value, out: &mut String) {
        self.chunk(name, data, out);
    }

    /// OpenAI's `[DONE]` (not JSON, so never an event) or the end of the
    /// body: the message's closing events.
    fn end(&mut self, out: &mut String) {
        self.finish(out);
    }
}

/// For an Anthropic node's own stream to a Claude-native client: the
/// `message_delta` event, whose `usage` holds only the output tokens, gets
/// the input tokens (cached ones too) `message_start` reported, so that
/// the meter (which reads the end of the stream) charges both.
pub fn carry_input_tokens() -> crate::transform::EditAnswer {
    let start: Mutex<Option<Map<String, Value>>> = Mutex::new(None);
    crate::transform::EditAnswer::new(true, move |json| {
        let held = || start.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if json.windows(15).any(|w| w == b"\"message_start\"") {
            let v: Value = serde_json::from_slice(json).ok()?;
            *held() = v["message"]["usage"].as_object().cloned();
            return None;
        }
        if !json.windows(15).any(|w| w == b"\"message_delta\"") {
            return None;
        }
        let reported = held().clone()?;
        let mut v: Value = serde_json::from_slice(json).ok()?;
        let usage = v.get_mut("usage")?.as_object_mut()?;
        let mut added = false;
        for key in ["input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"] {
            if usage.get(key).is_none_or(Value::is_null)
                && let Some(n) = reported.get(key).filter(|n| !n.is_null())
            {
                usage.insert(key.into(), n.clone());
                added = true;
            }
        }
        if !added {
            return None;
        }
        serde_json::to_vec(&v).ok()
    })
}
