//! Anthropic's Messages API (`POST /v1/messages`, `anthropic-version:
//! 2023-06-01`): an OpenAI chat request as a Messages request, and a
//! message (or its stream of `message_start`, `content_block_*`,
//! `message_delta`, `message_stop` events) as a chat completion.

use serde_json::{Map, Value, json};

use super::Dialect;
use super::chunks::{self, Chunks};

/// The `anthropic-version` the translation is written for.
pub const VERSION: &str = "2023-06-01";

/// `max_tokens` when the client set none: the Messages API requires it,
/// and OpenAI's default is "as long as the model allows".
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// An OpenAI chat request as a Messages request.
pub fn request(openai: &Value) -> Value {
    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for m in openai["messages"].as_array().map(Vec::as_slice).unwrap_or_default() {
        match m["role"].as_str().unwrap_or_default() {
            "system" | "developer" => system.push(text_of(&m["content"])),
            "assistant" => {
                let mut blocks = content_blocks(&m["content"]);
                for call in m["tool_calls"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
                    let input: Value = serde_json::from_slice(arguments.as_bytes()).unwrap_or_else(|_| json!({}));
                    blocks.push(
                        json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input}),
                    );
                }
                push(&mut messages, "assistant", blocks);
            }
            "tool" => {
                let result =
                    json!({"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": text_of(&m["content"])});
                push(&mut messages, "user", vec![result]);
            }
            _ => push(&mut messages, "user", content_blocks(&m["content"])),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), openai["model"].clone());
    out.insert("messages".into(), Value::Array(messages));
    let max = openai["max_completion_tokens"].as_u64().or(openai["max_tokens"].as_u64()).unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max));
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n\n")));
    }
    if !openai["stream"].is_null() {
        out.insert("stream".into(), openai["stream"].clone());
    }
    let (temperature, top_p) = super::sampling(openai);
    if let Some(t) = temperature {
        out.insert("temperature".into(), json!(t));
    }
    if let Some(p) = top_p {
        out.insert("top_p".into(), p.clone());
    }
    // A stop sequence of whitespace alone (`"\n"`) is refused: it is left out.
    if let Some(Value::Array(stop)) = super::stop_sequences(openai) {
        let stop: Vec<Value> = stop.into_iter().filter(|s| s.as_str().is_some_and(|s| !s.trim().is_empty())).collect();
        if !stop.is_empty() {
            out.insert("stop_sequences".into(), Value::Array(stop));
        }
    }
    if let Some(tools) = openai["tools"].as_array() {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t["type"] == "function")
            .map(|t| {
                let f = &t["function"];
                let schema =
                    if f["parameters"].is_object() { f["parameters"].clone() } else { json!({"type": "object"}) };
                let mut tool = json!({"name": f["name"], "input_schema": schema});
                if f["description"].is_string() {
                    tool["description"] = f["description"].clone();
                }
                tool
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    let mut choice = match &openai["tool_choice"] {
        Value::String(s) if s == "none" => Some(json!({"type": "none"})),
        Value::String(s) if s == "required" => Some(json!({"type": "any"})),
        Value::String(s) if s == "auto" => Some(json!({"type": "auto"})),
        Value::Object(o) if o.get("type") == Some(&json!("function")) => {
            Some(json!({"type": "tool", "name": openai["tool_choice"]["function"]["name"]}))
        }
        _ => None,
    };
    if openai["parallel_tool_calls"] == false && out.contains_key("tools") {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        c["disable_parallel_tool_use"] = json!(true);
    }
    if let Some(c) = choice {
        out.insert("tool_choice".into(), c);
    }
    if let Some(user) = openai["user"].as_str() {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    Value::Object(out)
}

fn push(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    super::push_turn(messages, role, "content", blocks);
}

/// The text of OpenAI content: a string, or its text parts joined.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

/// OpenAI content (a string or parts) as Messages content blocks: text,
/// and images (a `data:` URL as base64, any other URL by reference).
fn content_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if !s.is_empty() => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p["type"].as_str()? {
                "text" => Some(json!({"type": "text", "text": p["text"]})),
                "image_url" => {
                    let (url, data_url) = super::image(p)?;
                    Some(match data_url {
                        Some((media_type, data)) => {
                            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
                        }
                        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
                    })
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// OpenAI's `finish_reason` for a `stop_reason`.
fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// OpenAI's `usage` for a Messages `usage`: prompt tokens count cached ones, as OpenAI's do.
fn usage(u: &Value) -> Value {
    chunks::usage(
        chunks::tokens(u, &["input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"]),
        chunks::tokens(u, &["output_tokens"]),
    )
}

/// Anthropic's answers as OpenAI's.
pub struct Stream {
    chunks: Chunks,
    /// Input tokens, from `message_start`.
    input: Value,
    /// Why it stopped, from `message_delta`.
    stop: Option<String>,
}

impl Stream {
    pub fn new(created: u64) -> Self {
        Self { chunks: Chunks::new(created), input: Value::Null, stop: None }
    }
}

impl Dialect for Stream {
    fn answer(&self, m: &Value) -> Option<Value> {
        let blocks = m["content"].as_array()?;
        let text: String = blocks.iter().filter(|b| b["type"] == "text").filter_map(|b| b["text"].as_str()).collect();
        let calls: Vec<Value> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| {
                let arguments = serde_json::to_string(&b["input"]).unwrap_or_else(|_| "{}".into());
                json!({"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": arguments}})
            })
            .collect();
        let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }, "refusal": null});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        let finish = finish_reason(m["stop_reason"].as_str().unwrap_or("end_turn"));
        let id = m["id"].as_str().unwrap_or_default();
        Some(chunks::completion(
            id,
            m["model"].as_str().unwrap_or_default(),
            self.chunks.created,
            message,
            finish,
            usage(&m["usage"]),
        ))
    }

    fn event(&mut self, name: Option<&str>, data: &Value, out: &mut String) {
        let kind = data["type"].as_str().or(name).unwrap_or_default();
        match kind {
            "message_start" => {
                let m = &data["message"];
                self.chunks.id = m["id"].as_str().unwrap_or_default().to_string();
                self.chunks.model = m["model"].as_str().unwrap_or_default().to_string();
                self.input = m["usage"].clone();
                self.chunks.write(out, json!({"content": ""}), None, None);
            }
            "content_block_start" => {
                let block = &data["content_block"];
                let index = data["index"].as_u64().unwrap_or(0);
                match block["type"].as_str() {
                    Some("tool_use") => self.chunks.tool_start(
                        out,
                        index,
                        block["id"].as_str().unwrap_or_default(),
                        block["name"].as_str().unwrap_or_default(),
                        Value::Null,
                    ),
                    Some("text") => self.chunks.text(out, block["text"].as_str().unwrap_or_default()),
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                let index = data["index"].as_u64().unwrap_or(0);
                match delta["type"].as_str() {
                    Some("text_delta") => self.chunks.text(out, delta["text"].as_str().unwrap_or_default()),
                    Some("input_json_delta") => {
                        self.chunks.tool_arguments(out, index, delta["partial_json"].as_str().unwrap_or_default())
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                self.stop = data["delta"]["stop_reason"].as_str().map(str::to_string);
                // The final counts: output from here, input from the start
                // unless this event carries it too.
                let mut u = self.input.clone();
                if let (Some(u), Some(delta)) = (u.as_object_mut(), data["usage"].as_object()) {
                    for (k, v) in delta {
                        if !v.is_null() {
                            u.insert(k.clone(), v.clone());
                        }
                    }
                }
                self.input = u;
            }
            "message_stop" => {
                let finish = finish_reason(self.stop.as_deref().unwrap_or("end_turn"));
                self.chunks.finish(out, finish, usage(&self.input));
                self.chunks.done(out);
            }
            "error" => {
                let e = &data["error"];
                self.chunks.fail();
                chunks::error_event(
                    out,
                    e["type"].as_str().unwrap_or("api_error"),
                    e["message"].as_str().unwrap_or("the node's stream failed"),
                );
            }
            _ => {}
        }
    }

    fn end(&mut self, out: &mut String) {
        self.chunks.unfinished(out);
    }
}
