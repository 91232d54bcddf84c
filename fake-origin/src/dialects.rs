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
pub fn answer(origin: &str, reply: &Reply, parts: &http::request::Parts, body: &[u8]) -> Option<Answer> {
    let (path, query, headers) = (parts.uri.path(), parts.uri.query().unwrap_or(""), &parts.headers);
    let asked: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Some(rest) = path.strip_prefix("/model/") {
        let (model, operation) = rest.rsplit_once('/')?;
        let model = model.replace("%3A", ":");
        return match operation {
            "converse" => Some(bedrock(origin, reply, parts, &model, false, body)),
            "converse-stream" => Some(bedrock(origin, reply, parts, &model, true, body)),
            _ => None,
        };
    }
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
        let text = reply.text.as_deref().unwrap_or("hello from {origin}");
        text.replace("{origin}", origin).replace("{model}", model).replace("{prompt}", &said)
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
            let split = match reply.piece_chars {
                Some(n) => crate::server::pieces_of(&text, n),
                None => words(&text),
            };
            for w in split {
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

/// The secret access key the fake Bedrock origin checks signatures with
/// (its access key id may be any); tests give the router this one.
pub const BEDROCK_SECRET: &str = "edge-router-fake-secret-key";

fn bedrock_error(status: StatusCode, kind: &str, message: &str) -> Answer {
    Answer::JsonWith(
        status,
        vec![("x-amzn-errortype".into(), format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"))],
        json!({"message": message}),
    )
}

/// Amazon Bedrock's Converse API, behind Signature Version 4, which it
/// checks as Bedrock does: the signature is computed again from the
/// request, with [`BEDROCK_SECRET`], and must match.
pub fn bedrock(
    origin: &str,
    reply: &Reply,
    parts: &http::request::Parts,
    model: &str,
    stream: bool,
    body: &[u8],
) -> Answer {
    if let Err(why) = check_signature(parts, body) {
        return bedrock_error(StatusCode::FORBIDDEN, "InvalidSignatureException", &why);
    }
    if let Some(status) = reply.status.filter(|s| *s >= 400).and_then(|s| StatusCode::from_u16(s).ok()) {
        let kind = match status.as_u16() {
            429 => "ThrottlingException",
            503 => "ServiceUnavailableException",
            400 => "ValidationException",
            _ => "InternalServerException",
        };
        return bedrock_error(status, kind, "the fake origin was told to fail");
    }
    let asked: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(messages) = asked["messages"].as_array().filter(|m| !m.is_empty()) else {
        return bedrock_error(StatusCode::BAD_REQUEST, "ValidationException", "messages: must not be empty");
    };
    if let Some(bad) = messages.iter().find(|m| m["role"] != "user" && m["role"] != "assistant") {
        let message = format!("Invalid role {}: it must be user or assistant", bad["role"]);
        return bedrock_error(StatusCode::BAD_REQUEST, "ValidationException", &message);
    }
    let blocks = |m: &Value| -> Vec<String> {
        m["content"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|b| {
                if let Some(t) = b["text"].as_str() {
                    t.to_string()
                } else if b["toolResult"].is_object() {
                    format!("tool said {}", b["toolResult"]["content"][0]["text"].as_str().unwrap_or_default())
                } else {
                    String::new()
                }
            })
            .collect()
    };
    let said = last_words(messages, blocks);
    let tool = asked["toolConfig"]["tools"][0]["toolSpec"]["name"].as_str().filter(|_| said.contains("weather"));
    let text = if said.starts_with("tool said") {
        format!("{origin} heard: {said}")
    } else {
        reply.text.as_deref().unwrap_or("hello from {origin}").replace("{origin}", origin).replace("{model}", model)
    };
    let [input, output] = reply.usage.unwrap_or([5, 5]);
    let usage = json!({"inputTokens": input, "outputTokens": output, "totalTokens": input + output});
    let stop = if tool.is_some() { "tool_use" } else { "end_turn" };
    if !stream {
        let content = match tool {
            Some(name) => {
                json!([{"toolUse": {"toolUseId": "tooluse_fake1", "name": name, "input": {"city": "Paris"}}}])
            }
            None => json!([{"text": text}]),
        };
        return Answer::Json(
            StatusCode::OK,
            json!({"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
                "usage": usage, "metrics": {"latencyMs": 12}}),
        );
    }
    let mut frames = Vec::new();
    let mut frame = |kind: &str, payload: Value| frames.push(event_frame(kind, &payload));
    frame("messageStart", json!({"role": "assistant"}));
    match tool {
        Some(name) => {
            frame(
                "contentBlockStart",
                json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_fake1", "name": name}}}),
            );
            for piece in ["{\"city\": ", "\"Paris\"}"] {
                frame("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}}));
            }
        }
        None => {
            for w in words(&text) {
                frame("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": w}}));
            }
        }
    }
    frame("contentBlockStop", json!({"contentBlockIndex": 0}));
    frame("messageStop", json!({"stopReason": stop}));
    frame("metadata", json!({"usage": usage, "metrics": {"latencyMs": 12}}));
    Answer::Frames(frames)
}

/// One event of an AWS event stream, framed (prelude, headers, payload, CRCs).
fn event_frame(kind: &str, payload: &Value) -> Vec<u8> {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let message = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(":event-type", HeaderValue::String(kind.to_string().into())))
        .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())))
        .add_header(Header::new(":message-type", HeaderValue::String("event".into())));
    let mut out = Vec::new();
    // Writing to a Vec cannot fail for a message this small.
    let _ = aws_smithy_eventstream::frame::write_message_to(&message, &mut out);
    out
}

/// Computes the request's Signature Version 4 again, from what it carries
/// (`Authorization`'s scope and signed headers, `X-Amz-Date`, the body),
/// with [`BEDROCK_SECRET`], and compares.
fn check_signature(parts: &http::request::Parts, body: &[u8]) -> Result<(), String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let auth = header("authorization").ok_or("Missing Authentication Token")?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 Credential=").ok_or("Authorization is not AWS4-HMAC-SHA256")?;
    let (scope, rest) = rest.split_once(", SignedHeaders=").ok_or("Authorization has no SignedHeaders")?;
    let (signed, given) = rest.split_once(", Signature=").ok_or("Authorization has no Signature")?;
    let parts_of_scope: Vec<&str> = scope.split('/').collect();
    let [access_key, _, region, service, "aws4_request"] = parts_of_scope[..] else {
        return Err(format!("the credential scope `{scope}` is malformed"));
    };
    if service != "bedrock" {
        return Err(format!("the credential is scoped to `{service}`, not bedrock"));
    }
    let when = header("x-amz-date").and_then(amz_date).ok_or("X-Amz-Date is missing or malformed")?;
    let token = header("x-amz-security-token").map(str::to_string);
    let identity =
        aws_credential_types::Credentials::new(access_key, BEDROCK_SECRET, token, None, "fake-origin").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("bedrock")
        .time(when)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let host = header("host").ok_or("Host is missing")?;
    let url = format!("http://{host}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let headers: Vec<(&str, &str)> = signed
        .split(';')
        .filter(|n| !n.starts_with("x-amz-date") && *n != "x-amz-security-token")
        .map(|n| (n, header(n).unwrap_or_default()))
        .collect();
    let request = SignableRequest::new(parts.method.as_str(), &url, headers.into_iter(), SignableBody::Bytes(body))
        .map_err(|e| e.to_string())?;
    let (_, expected) = sign(request, &params).map_err(|e| e.to_string())?.into_parts();
    if expected == given {
        Ok(())
    } else {
        Err("The request signature we calculated does not match the signature you provided.".into())
    }
}

/// An `X-Amz-Date` (`20150830T123600Z`) as a time.
fn amz_date(text: &str) -> Option<std::time::SystemTime> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}
