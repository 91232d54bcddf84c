//! OpenAI's chat completion chunks, as the adapters write them.

use serde_json::{Value, json};

/// The chunks of one streamed chat completion.
pub(super) struct Chunks {
    pub id: String,
    pub model: String,
    pub created: u64,
    /// Each tool call's place in OpenAI's `tool_calls`: the provider's index
    /// of its content block, and whether any of its arguments came.
    tools: Vec<(u64, bool)>,
    /// Whether `[DONE]` was written.
    done: bool,
    /// Whether the role was announced.
    started: bool,
}

impl Chunks {
    pub fn new(created: u64) -> Self {
        Self { id: String::new(), model: String::new(), created, tools: Vec::new(), done: false, started: false }
    }

    /// Writes one chunk with `delta`, a `finish_reason` and `usage` if given.
    pub fn write(&mut self, out: &mut String, delta: Value, finish: Option<&str>, usage: Option<Value>) {
        // Nothing follows `[DONE]`, whatever a node sends after its end.
        if self.done {
            return;
        }
        let mut delta = delta;
        if !self.started {
            self.started = true;
            delta["role"] = json!("assistant");
        }
        let mut chunk = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        out.push_str("data: ");
        out.push_str(&chunk.to_string());
        out.push_str("\n\n");
    }

    /// Text.
    pub fn text(&mut self, out: &mut String, text: &str) {
        if !text.is_empty() {
            self.write(out, json!({"content": text}), None, None);
        }
    }

    /// A tool call starts: provider block `block`, call `id`, function
    /// `name`, and the call's `extra_content` unless it is null.
    pub fn tool_start(&mut self, out: &mut String, block: u64, id: &str, name: &str, extra: Value) {
        let index = self.tools.len() as u64;
        self.tools.push((block, false));
        let mut call =
            json!({"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}});
        if !extra.is_null() {
            call["extra_content"] = extra;
        }
        self.write(out, json!({"tool_calls": [call]}), None, None);
    }

    /// More of the arguments of the tool call of provider block `block`.
    pub fn tool_arguments(&mut self, out: &mut String, block: u64, arguments: &str) {
        let Some(index) = self.tools.iter().position(|&(b, _)| b == block) else { return };
        if arguments.is_empty() {
            return;
        }
        self.tools[index].1 = true;
        let call = json!({"index": index, "function": {"arguments": arguments}});
        self.write(out, json!({"tool_calls": [call]}), None, None);
    }

    /// The last chunk: why it finished, and the usage (so the meter and a
    /// client that asked for `stream_options.include_usage` both see it).
    /// A call that got no arguments (Anthropic streams a function without
    /// parameters as an empty `partial_json`) gets `{}`, as OpenAI's do:
    /// clients parse the arguments as JSON.
    pub fn finish(&mut self, out: &mut String, reason: &str, usage: Value) {
        for index in 0..self.tools.len() {
            if !self.tools[index].1 {
                let call = json!({"index": index, "function": {"arguments": "{}"}});
                self.write(out, json!({"tool_calls": [call]}), None, None);
            }
        }
        self.write(out, json!({}), Some(reason), Some(usage));
    }

    /// The node's stream ended without its closing event: the client is
    /// told, rather than left with a stream that just stops.
    pub fn unfinished(&mut self, out: &mut String) {
        if !self.done {
            self.done = true;
            error_event(out, "upstream_incomplete", "the node's stream ended before it finished");
        }
    }

    /// The node reported an error: nothing more is written.
    pub fn fail(&mut self) {
        self.done = true;
    }

    /// `[DONE]`, once.
    pub fn done(&mut self, out: &mut String) {
        if !self.done {
            self.done = true;
            out.push_str("data: [DONE]\n\n");
        }
    }
}

/// OpenAI's `usage` from prompt and completion tokens.
pub(super) fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt.saturating_add(completion)})
}

/// The sum of the token counts `u` has under `keys` (a missing one is 0).
/// An origin's numbers may be anything up to `u64::MAX`: the sum saturates.
pub(super) fn tokens(u: &Value, keys: &[&str]) -> u64 {
    keys.iter().fold(0, |sum, k| sum.saturating_add(u[*k].as_u64().unwrap_or(0)))
}

/// A chat completion with one choice.
pub(super) fn completion(id: &str, model: &str, created: u64, message: Value, finish: &str, usage: Value) -> Value {
    json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage,
    })
}

/// An OpenAI error event, as the last of a stream (the SDKs raise it).
pub(super) fn error_event(out: &mut String, kind: &str, message: &str) {
    out.push_str(&crate::watch::sse_error_event(kind, message));
}
