//! OpenAI's Responses API (`/v1/responses`), as the fake origin speaks it:
//! response objects it creates and keeps (so a follow-up that reaches
//! another origin fails, as it would for real), their retrieval, input
//! items and deletion, and a stream of typed events
//! (`response.created` … `response.completed`) when asked for one.

use std::sync::{Mutex, PoisonError};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::reply::Reply;

/// The response objects an origin made, with their input items.
#[derive(Debug, Default)]
pub struct Held {
    made: Mutex<Vec<(Value, Vec<Value>)>>,
}

/// What the Responses API answers: a JSON value with its status, or a
/// stream's events.
pub enum Answer {
    /// A JSON body.
    Json(StatusCode, Value),
    /// A JSON body with header fields.
    JsonWith(StatusCode, Vec<(String, String)>, Value),
    /// SSE events, each a whole `event:`/`data:` block.
    Events(Vec<String>),
    /// AWS event-stream frames.
    Frames(Vec<Vec<u8>>),
}

/// OpenAI's error shape.
fn error(status: StatusCode, message: String, param: Option<&str>, code: Option<&str>) -> Answer {
    Answer::Json(
        status,
        json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}),
    )
}

impl Held {
    /// The answer to a request for `path` under `/v1/responses`, or `None`
    /// when the path is not the Responses API's.
    pub fn answer(&self, origin: &str, reply: &Reply, method: &Method, path: &str, body: &[u8]) -> Option<Answer> {
        let rest = path.strip_prefix("/v1/responses")?;
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        if rest.is_empty() {
            return (method == Method::POST).then(|| self.create(&mut made, origin, reply, body));
        }
        let rest = rest.strip_prefix('/')?;
        let (id, below) = rest.split_once('/').unwrap_or((rest, ""));
        let Some(at) = made.iter().position(|(r, _)| r["id"] == id) else {
            let message = format!("Response with id '{id}' not found.");
            return Some(error(StatusCode::NOT_FOUND, message, None, None));
        };
        Some(match (method.as_str(), below) {
            ("GET", "") => Answer::Json(StatusCode::OK, made[at].0.clone()),
            ("DELETE", "") => {
                made.remove(at);
                Answer::Json(StatusCode::OK, json!({"id": id, "object": "response", "deleted": true}))
            }
            ("POST", "cancel") => {
                let message = "Only responses created with background=true can be cancelled.".to_string();
                error(StatusCode::BAD_REQUEST, message, None, None)
            }
            ("GET", "input_items") => {
                let items = made[at].1.clone();
                let first = items.first().map(|i| i["id"].clone()).unwrap_or(Value::Null);
                let last = items.last().map(|i| i["id"].clone()).unwrap_or(Value::Null);
                Answer::Json(
                    StatusCode::OK,
                    json!({"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": false}),
                )
            }
            _ => error(StatusCode::NOT_FOUND, format!("Unknown path {path}"), None, None),
        })
    }

    fn create(&self, made: &mut Vec<(Value, Vec<Value>)>, origin: &str, reply: &Reply, body: &[u8]) -> Answer {
        let Ok(asked) = serde_json::from_slice::<Value>(body) else {
            return error(
                StatusCode::BAD_REQUEST,
                "We could not parse the JSON body of your request.".into(),
                None,
                None,
            );
        };
        let previous = asked["previous_response_id"].as_str();
        if let Some(p) = previous
            && !made.iter().any(|(r, _)| r["id"] == p)
        {
            let message = format!("Previous response with id '{p}' not found.");
            return error(
                StatusCode::BAD_REQUEST,
                message,
                Some("previous_response_id"),
                Some("previous_response_not_found"),
            );
        }
        let model = asked["model"].as_str().unwrap_or("unknown").to_string();
        let n = made.len() + 1;
        let id = format!("resp_{n:04}{}", origin.bytes().map(|b| format!("{b:02x}")).collect::<String>());
        let text = reply
            .text
            .as_deref()
            .unwrap_or("hello from {origin}")
            .replace("{origin}", origin)
            .replace("{model}", &model);
        let [input, output] = reply.usage.unwrap_or([5, 5]);
        let usage = json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input + output});
        let message_id = format!("msg_{n:04}");
        let part = json!({"type": "output_text", "text": text, "annotations": []});
        let item = json!({"id": message_id, "type": "message", "status": "completed", "role": "assistant",
            "content": [part]});
        let object = |status: &str, output: Value, usage: Value| {
            json!({"id": id, "object": "response", "created_at": 1_741_290_958, "status": status,
                "error": null, "incomplete_details": null, "instructions": asked["instructions"],
                "max_output_tokens": asked["max_output_tokens"], "model": model, "output": output,
                "parallel_tool_calls": true, "previous_response_id": previous,
                "reasoning": {"effort": null, "summary": null}, "store": asked["store"] != false,
                "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
                "top_p": 1.0, "truncation": "disabled", "usage": usage, "user": null, "metadata": {},
                "origin": origin})
        };
        let done = object("completed", json!([item]), usage);
        let inputs = input_items(&asked["input"]);
        if asked["store"] != false {
            made.push((done.clone(), inputs));
        }
        if asked["stream"] != true && reply.sse != Some(true) {
            return Answer::Json(StatusCode::OK, done);
        }
        let mut events = Vec::new();
        let mut event = |kind: &str, mut data: Value| {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(events.len());
            events.push(format!("event: {kind}\ndata: {data}\n\n"));
        };
        let started = object("in_progress", json!([]), Value::Null);
        event("response.created", json!({"response": started}));
        event("response.in_progress", json!({"response": started}));
        let open =
            json!({"id": message_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
        event("response.output_item.added", json!({"output_index": 0, "item": open}));
        let at = json!({"item_id": message_id, "output_index": 0, "content_index": 0});
        let empty = json!({"type": "output_text", "text": "", "annotations": []});
        event("response.content_part.added", merge(&at, json!({"part": empty})));
        for (i, word) in text.split(' ').enumerate() {
            let delta = if i == 0 { word.to_string() } else { format!(" {word}") };
            event("response.output_text.delta", merge(&at, json!({"delta": delta, "logprobs": []})));
        }
        event("response.output_text.done", merge(&at, json!({"text": text, "logprobs": []})));
        event("response.content_part.done", merge(&at, json!({"part": part})));
        event("response.output_item.done", json!({"output_index": 0, "item": item}));
        event("response.completed", json!({"response": done}));
        Answer::Events(events)
    }
}

/// `base` with `more`'s fields.
fn merge(base: &Value, more: Value) -> Value {
    let mut out = base.clone();
    if let (Some(o), Value::Object(m)) = (out.as_object_mut(), more) {
        o.extend(m);
    }
    out
}

/// A request's `input` as the input items the API lists: a string is one
/// user message.
fn input_items(input: &Value) -> Vec<Value> {
    let items = match input {
        Value::String(text) => vec![json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": text}]})],
        Value::Array(items) => items.clone(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            if let Some(object) = item.as_object_mut().filter(|o| !o.contains_key("id")) {
                object.insert("id".into(), json!(format!("msg_in_{i}")));
            }
            item
        })
        .collect()
}
