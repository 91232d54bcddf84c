//! The other providers' wire formats, as the fake origin speaks them, from
//! their public API references: Anthropic's Messages API, Google's Gemini
//! API and Azure OpenAI. Each checks what the real API checks first (its
//! auth header, its required fields, its roles), so that a request the
//! router translated wrongly fails here as it would there, and answers
//! with text, a tool call when the request offers tools and asks for the
//! weather, or its own error shape for a scripted status.

use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::reply::Reply;
use crate::responses::Answer;

/// The dialect a request's path speaks, if not OpenAI's.
pub fn answer(
    origin: &str,
    reply: &Reply,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Answer> {
    let asked: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if path == "/v1/messages" {
        return Some(anthropic(origin, reply, headers, &asked));
    }
    if let Some(rest) = path.strip_prefix("/v1beta/models/") {
        let (model, method) = rest.split_once(':')?;
        let stream = method == "streamGenerateContent" && query.contains("alt=sse");
        return Some(gemini(origin, reply, headers, model, stream, &asked));
    }
    if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        return azure(reply, headers, rest, query);
    }
    None
}

/// The text of the words a request's last user turn says, and its tool results.
fn last_words(turns: &[Value], text_of: impl Fn(&Value) -> Vec<String>) -> String {
    turns.last().map(|t| text_of(t).join(" ")).unwrap_or_default()
}

fn words(text: &str) -> Vec<String> {
    text.split(' ').enumerate().map(|(i, w)| if i == 0 { w.to_string() } else { format!(" {w}") }).collect()
}

fn anthropic_error(status: StatusCode, kind: &str, message: &str) -> Answer {
    Answer::Json(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}),
    )
}

/// Anthropic's Messages API.
fn anthropic(origin: &str, reply: &Reply, headers: &HeaderMap, asked: &Value) -> Answer {
    if headers.get("x-api-key").is_none_or(|k| k.is_empty()) {
        return anthropic_error(StatusCode::UNAUTHORIZED, "authentication_error", "x-api-key header is required");
    }
    if headers.get("anthropic-version").is_none() {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    if let Some(status) = reply.status.filter(|s| *s >= 400).and_then(|s| StatusCode::from_u16(s).ok()) {
        let kind = match status.as_u16() {
            429 => "rate_limit_error",
            529 => "overloaded_error",
            400 => "invalid_request_error",
            _ => "api_error",
        };
        return anthropic_error(status, kind, "the fake origin was told to fail");
    }
    let Some(messages) = asked["messages"].as_array().filter(|m| !m.is_empty()) else {
        return anthropic_error(StatusCode::BAD_REQUEST, "invalid_request_error", "messages: Field required");
    };
    if asked["max_tokens"].as_u64().is_none() {
        return anthropic_error(StatusCode::BAD_REQUEST, "invalid_request_error", "max_tokens: Field required");
    }
    if let Some(bad) = messages.iter().find(|m| m["role"] != "user" && m["role"] != "assistant") {
        let message = format!("messages: Unexpected role {}. Allowed roles are \"user\" or \"assistant\"", bad["role"]);
        return anthropic_error(StatusCode::BAD_REQUEST, "invalid_request_error", &message);
    }
    let model = asked["model"].as_str().unwrap_or("unknown");
    let blocks = |m: &Value| -> Vec<String> {
        match &m["content"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(list) => list
                .iter()
                .map(|b| match b["type"].as_str() {
                    Some("text") => b["text"].as_str().unwrap_or_default().to_string(),
                    Some("tool_result") => format!("tool said {}", b["content"].as_str().unwrap_or_default()),
                    Some("image") => format!("[image {}]", b["source"]["type"].as_str().unwrap_or_default()),
                    _ => String::new(),
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    let said = last_words(messages, blocks);
    let tool = asked["tools"][0]["name"].as_str().filter(|_| said.contains("weather"));
    let text = if said.starts_with("tool said") {
        format!("{origin} heard: {said}")
    } else {
        reply.text.as_deref().unwrap_or("hello from {origin}").replace("{origin}", origin).replace("{model}", model)
    };
    let [input, output] = reply.usage.unwrap_or([5, 5]);
    let system = asked["system"].as_str().map(|s| format!(" (system: {s})")).unwrap_or_default();
    let text =
        if tool.is_none() && !system.is_empty() && said.contains("system") { format!("{text}{system}") } else { text };
    let (content, stop) = match tool {
        Some(name) => {
            (json!([{"type": "tool_use", "id": "toolu_fake1", "name": name, "input": {"city": "Paris"}}]), "tool_use")
        }
        None => (json!([{"type": "text", "text": text}]), "end_turn"),
    };
    if asked["stream"] != true {
        return Answer::Json(
            StatusCode::OK,
            json!({"id": "msg_fake1", "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop, "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": output, "cache_read_input_tokens": 0}}),
        );
    }
    let mut events = Vec::new();
    let mut event = |kind: &str, data: Value| events.push(format!("event: {kind}\ndata: {data}\n\n"));
    event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_fake1", "type": "message",
        "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": 1}}}),
    );
    match tool {
        Some(name) => {
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_fake1", "name": name, "input": {}}}),
            );
            for piece in ["{\"city\": ", "\"Par", "is\"}"] {
                event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}),
                );
            }
        }
        None => {
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            );
            event("ping", json!({"type": "ping"}));
            for w in words(&text) {
                event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": w}}),
                );
            }
        }
    }
    event("content_block_stop", json!({"type": "content_block_stop", "index": 0}));
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": output}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    Answer::Events(events)
}

fn gemini_error(status: StatusCode, kind: &str, message: &str) -> Answer {
    Answer::Json(status, json!({"error": {"code": status.as_u16(), "message": message, "status": kind}}))
}

/// Google's Gemini API.
fn gemini(origin: &str, reply: &Reply, headers: &HeaderMap, model: &str, stream: bool, asked: &Value) -> Answer {
    if headers.get("x-goog-api-key").is_none_or(|k| k.is_empty()) {
        return gemini_error(StatusCode::FORBIDDEN, "PERMISSION_DENIED", "Method doesn't allow unregistered callers");
    }
    if let Some(status) = reply.status.filter(|s| *s >= 400).and_then(|s| StatusCode::from_u16(s).ok()) {
        let kind = match status.as_u16() {
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            400 => "INVALID_ARGUMENT",
            _ => "INTERNAL",
        };
        return gemini_error(status, kind, "the fake origin was told to fail");
    }
    let Some(contents) = asked["contents"].as_array().filter(|c| !c.is_empty()) else {
        return gemini_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "* GenerateContentRequest.contents: contents is not specified",
        );
    };
    if let Some(bad) = contents.iter().find(|c| c["role"] != "user" && c["role"] != "model") {
        let message = format!("Please use a valid role: user, model. Got {}", bad["role"]);
        return gemini_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &message);
    }
    let parts = |c: &Value| -> Vec<String> {
        c["parts"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|p| {
                if let Some(t) = p["text"].as_str() {
                    t.to_string()
                } else if p["functionResponse"].is_object() {
                    format!("tool said {}", p["functionResponse"]["response"]["result"].as_str().unwrap_or_default())
                } else {
                    String::new()
                }
            })
            .collect()
    };
    let said = last_words(contents, parts);
    let tool = asked["tools"][0]["functionDeclarations"][0]["name"].as_str().filter(|_| said.contains("weather"));
    let text = if said.starts_with("tool said") {
        format!("{origin} heard: {said}")
    } else {
        reply.text.as_deref().unwrap_or("hello from {origin}").replace("{origin}", origin).replace("{model}", model)
    };
    let [input, output] = reply.usage.unwrap_or([5, 5]);
    let usage = json!({"promptTokenCount": input, "candidatesTokenCount": output, "totalTokenCount": input + output});
    let response = |parts: Value, finish: Option<&str>, usage: Option<&Value>| {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        let mut r = json!({"candidates": [candidate], "modelVersion": model, "responseId": "gem-fake1"});
        if let Some(u) = usage {
            r["usageMetadata"] = u.clone();
        }
        r
    };
    let call = tool.map(|name| json!([{"functionCall": {"name": name, "args": {"city": "Paris"}}}]));
    if !stream {
        let parts = call.unwrap_or_else(|| json!([{"text": text}]));
        return Answer::Json(StatusCode::OK, response(parts, Some("STOP"), Some(&usage)));
    }
    let mut events = Vec::new();
    match call {
        Some(parts) => events.push(response(parts, Some("STOP"), Some(&usage))),
        None => {
            let pieces = words(&text);
            let last = pieces.len() - 1;
            for (i, w) in pieces.iter().enumerate() {
                let (finish, u) = if i == last { (Some("STOP"), Some(&usage)) } else { (None, None) };
                events.push(response(json!([{"text": w}]), finish, u));
            }
        }
    }
    Answer::Events(events.into_iter().map(|e| format!("data: {e}\r\n\r\n")).collect())
}

/// Azure OpenAI: OpenAI's format, behind its own key header and `api-version`.
fn azure(reply: &Reply, headers: &HeaderMap, rest: &str, query: &str) -> Option<Answer> {
    let error = |status: StatusCode, code: &str, message: &str| {
        Some(Answer::Json(status, json!({"error": {"code": code, "message": message}})))
    };
    if headers.get("api-key").is_none_or(|k| k.is_empty()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint.",
        );
    }
    if !query.split('&').any(|p| p.starts_with("api-version=") && p.len() > "api-version=".len()) {
        return error(StatusCode::NOT_FOUND, "404", "Resource not found");
    }
    let _ = (reply, rest);
    // Past its gate it answers as OpenAI does.
    None
}
