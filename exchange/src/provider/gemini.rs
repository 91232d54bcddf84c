//! Google's Gemini API (`models/{model}:generateContent`, and
//! `:streamGenerateContent?alt=sse` for a stream): an OpenAI chat request as
//! a `GenerateContentRequest`, and its responses (whole, or one per SSE
//! event) as a chat completion or its chunks.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::Dialect;
use super::chunks::{self, Chunks};

/// The target of a request for `model`.
pub fn target(model: &str, stream: bool) -> String {
    let model = super::percent_encode(model.strip_prefix("models/").unwrap_or(model));
    if stream {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    }
}

/// The `thoughtSignature` Gemini's documentation gives for a function call
/// it did not sign (one from another model), which its check lets through.
const UNSIGNED: &str = "skip_thought_signature_validator";

/// A function call as an OpenAI tool call's fields: `id` (`call_<i>` for the
/// `i`th call if it has none) and, as Google's own OpenAI-compatible API
/// gives it, the part's `thoughtSignature` in `extra_content` (Gemini 3
/// wants it back with the call in the next request).
fn call_fields(part: &Value, i: u64) -> (String, Value) {
    let id = part["functionCall"]["id"].as_str().map_or_else(|| format!("call_{i}"), str::to_string);
    let extra = match &part["thoughtSignature"] {
        Value::String(s) => json!({"google": {"thought_signature": s}}),
        _ => Value::Null,
    };
    (id, extra)
}

/// An OpenAI chat request as a `GenerateContentRequest`.
pub fn request(openai: &Value) -> Value {
    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // A tool result names its call; Gemini wants the function's name.
    let mut names: HashMap<String, String> = HashMap::new();
    for m in openai["messages"].as_array().map(Vec::as_slice).unwrap_or_default() {
        match m["role"].as_str().unwrap_or_default() {
            "system" | "developer" => system.extend(parts(&m["content"])),
            "assistant" => {
                let mut p = parts(&m["content"]);
                for (i, call) in m["tool_calls"].as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
                    let name = call["function"]["name"].as_str().unwrap_or_default();
                    if let Some(id) = call["id"].as_str() {
                        names.insert(id.to_string(), name.to_string());
                    }
                    let args =
                        call["function"]["arguments"].as_str().and_then(|a| serde_json::from_slice(a.as_bytes()).ok());
                    let mut part = json!({"functionCall": {"name": name, "args": args.unwrap_or_else(|| json!({}))}});
                    // A call carries its signature back; the first of a turn
                    // says it has none when the client kept none (or another
                    // node answered that turn).
                    match &call["extra_content"]["google"]["thought_signature"] {
                        Value::String(signature) => part["thoughtSignature"] = json!(signature),
                        _ if i == 0 => part["thoughtSignature"] = json!(UNSIGNED),
                        _ => {}
                    }
                    p.push(part);
                }
                push(&mut contents, "model", p);
            }
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap_or_default();
                let name = names.get(id).cloned().unwrap_or_else(|| id.to_string());
                let text = match &m["content"] {
                    Value::String(s) => s.clone(),
                    other => parts(other).iter().filter_map(|p| p["text"].as_str()).collect(),
                };
                // The response must be an object: JSON that is one stays itself.
                let response = serde_json::from_slice::<Value>(text.as_bytes())
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({"result": text}));
                push(&mut contents, "user", vec![json!({"functionResponse": {"name": name, "response": response}})]);
            }
            _ => push(&mut contents, "user", parts(&m["content"])),
        }
    }
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    let mut config = Map::new();
    let max = openai["max_completion_tokens"].as_u64().or(openai["max_tokens"].as_u64());
    // `n` is not translated: one candidate is read back.
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed")] {
        if !openai[from].is_null() {
            config.insert(to.into(), openai[from].clone());
        }
    }
    if let Some(max) = max {
        config.insert("maxOutputTokens".into(), json!(max));
    }
    if let Some(stop) = super::stop_sequences(openai) {
        config.insert("stopSequences".into(), stop);
    }
    if openai["response_format"]["type"] == "json_object" {
        config.insert("responseMimeType".into(), json!("application/json"));
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    if let Some(tools) = openai["tools"].as_array() {
        let declarations: Vec<Value> = tools
            .iter()
            .filter(|t| t["type"] == "function")
            .map(|t| {
                let f = &t["function"];
                let mut d = json!({"name": f["name"]});
                if !f["description"].is_null() {
                    d["description"] = f["description"].clone();
                }
                // JSON Schema as OpenAI's tools carry it; `parameters` takes
                // only Gemini's OpenAPI subset.
                if !f["parameters"].is_null() {
                    d["parametersJsonSchema"] = f["parameters"].clone();
                }
                d
            })
            .collect();
        out.insert("tools".into(), json!([{"functionDeclarations": declarations}]));
    }
    let mode = match &openai["tool_choice"] {
        Value::String(s) if s == "none" => Some(json!({"mode": "NONE"})),
        Value::String(s) if s == "required" => Some(json!({"mode": "ANY"})),
        Value::String(s) if s == "auto" => Some(json!({"mode": "AUTO"})),
        Value::Object(_) => {
            Some(json!({"mode": "ANY", "allowedFunctionNames": [openai["tool_choice"]["function"]["name"]]}))
        }
        _ => None,
    };
    if let Some(mode) = mode {
        out.insert("toolConfig".into(), json!({"functionCallingConfig": mode}));
    }
    Value::Object(out)
}

fn push(contents: &mut Vec<Value>, role: &str, parts: Vec<Value>) {
    super::push_turn(contents, role, "parts", parts);
}

/// OpenAI content as Gemini parts: text, and images given as `data:` URLs
/// (`inlineData`); an image by URL is sent as `fileData`.
fn parts(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if !s.is_empty() => vec![json!({"text": s})],
        Value::Array(list) => list
            .iter()
            .filter_map(|p| match p["type"].as_str()? {
                "text" => Some(json!({"text": p["text"]})),
                "image_url" => {
                    let (url, data_url) = super::image(p)?;
                    Some(match data_url {
                        Some((mime, data)) => json!({"inlineData": {"mimeType": mime, "data": data}}),
                        None => json!({"fileData": {"fileUri": url}}),
                    })
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// OpenAI's `finish_reason` for a `finishReason`.
fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => "content_filter",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// OpenAI's `usage` for `usageMetadata` (thinking counts as output, as OpenAI's reasoning tokens do).
fn usage(u: &Value) -> Value {
    chunks::usage(
        chunks::tokens(u, &["promptTokenCount"]),
        chunks::tokens(u, &["candidatesTokenCount", "thoughtsTokenCount"]),
    )
}

/// Gemini's answers as OpenAI's.
pub struct Stream {
    chunks: Chunks,
    usage: Value,
    finish: Option<String>,
    /// Function calls so far (each its own OpenAI tool call).
    calls: u64,
}

impl Stream {
    pub fn new(created: u64) -> Self {
        Self { chunks: Chunks::new(created), usage: Value::Null, finish: None, calls: 0 }
    }
}

impl Dialect for Stream {
    fn answer(&self, r: &Value) -> Option<Value> {
        let candidate = &r["candidates"][0];
        let parts = candidate["content"]["parts"].as_array().map(Vec::as_slice).unwrap_or_default();
        let text: String = parts.iter().filter(|p| p["thought"] != true).filter_map(|p| p["text"].as_str()).collect();
        let calls: Vec<Value> = parts
            .iter()
            .filter(|p| p["functionCall"].is_object())
            .enumerate()
            .map(|(i, p)| {
                let call = &p["functionCall"];
                let (id, extra) = call_fields(p, i as u64);
                let arguments = serde_json::to_string(&call["args"]).unwrap_or_else(|_| "{}".into());
                let mut call =
                    json!({"id": id, "type": "function", "function": {"name": call["name"], "arguments": arguments}});
                if !extra.is_null() {
                    call["extra_content"] = extra;
                }
                call
            })
            .collect();
        // A prompt blocked outright has no candidate, only why.
        let blocked = r["promptFeedback"]["blockReason"].as_str().map(|_| "SAFETY");
        let finish = finish_reason(candidate["finishReason"].as_str().or(blocked).unwrap_or("STOP"), !calls.is_empty());
        let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }, "refusal": null});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        let id = r["responseId"].as_str().unwrap_or("gemini");
        let model = r["modelVersion"].as_str().unwrap_or_default();
        Some(chunks::completion(id, model, self.chunks.created, message, finish, usage(&r["usageMetadata"])))
    }

    fn event(&mut self, _name: Option<&str>, r: &Value, out: &mut String) {
        if r["error"].is_object() {
            let e = &r["error"];
            self.chunks.fail();
            let kind = e["status"].as_str().unwrap_or("api_error").to_ascii_lowercase();
            return chunks::error_event(out, &kind, e["message"].as_str().unwrap_or("the node's stream failed"));
        }
        if self.chunks.id.is_empty() {
            self.chunks.id = r["responseId"].as_str().unwrap_or("gemini").to_string();
            self.chunks.model = r["modelVersion"].as_str().unwrap_or_default().to_string();
        }
        let candidate = &r["candidates"][0];
        for p in candidate["content"]["parts"].as_array().map(Vec::as_slice).unwrap_or_default() {
            if p["thought"] == true {
                continue;
            }
            if let Some(text) = p["text"].as_str() {
                self.chunks.text(out, text);
            } else if p["functionCall"].is_object() {
                let call = &p["functionCall"];
                let index = self.calls;
                self.calls += 1;
                let (id, extra) = call_fields(p, index);
                self.chunks.tool_start(out, index, &id, call["name"].as_str().unwrap_or_default(), extra);
                let arguments = serde_json::to_string(&call["args"]).unwrap_or_else(|_| "{}".into());
                self.chunks.tool_arguments(out, index, &arguments);
            }
        }
        if !r["usageMetadata"].is_null() {
            self.usage = r["usageMetadata"].clone();
        }
        let blocked = r["promptFeedback"]["blockReason"].as_str().map(|_| "SAFETY");
        if let Some(reason) = candidate["finishReason"].as_str().or(blocked) {
            self.finish = Some(reason.to_string());
        }
    }

    fn end(&mut self, out: &mut String) {
        // Gemini's stream just ends; its last response said why.
        match self.finish.take() {
            Some(reason) => {
                let finish = finish_reason(&reason, self.calls > 0);
                self.chunks.finish(out, finish, usage(&self.usage));
                self.chunks.done(out);
            }
            None => self.chunks.unfinished(out),
        }
    }
}
