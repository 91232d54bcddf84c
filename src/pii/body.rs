//! Personal values in API bodies: found in the texts a model reads of a
//! request, replaced there; restored in a whole JSON answer.
//!
//! The texts of a request are: each message's `content` (a string, or the
//! `text` of its parts, a tool result's `content` and a `tool_use` part's
//! `input` within them), `reasoning_content`, `refusal` and `summary` sent
//! back, the `arguments` of its tool calls, `system` and `instructions`,
//! `input` (`/v1/responses` items' content, function and custom tool call
//! arguments, inputs and outputs; embeddings' strings), `prompt`, `suffix`
//! and `prediction`. The JSON around them (keys, ids,
//! model names, numbers) is not looked at. A body where nothing is found
//! goes on byte for byte; one where something is, is written again with the
//! same keys in the same order.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Detector, Vault};

/// What to do with the values found in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Replace each by a placeholder, and restore the originals in the answer.
    Pseudonymize,
    /// Replace each by its kind, `[EMAIL]`, for good.
    Redact,
    /// Refuse the request, naming the kinds found.
    Block,
}

/// What protecting a request body did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Protected {
    /// The body to send instead, when a value was replaced.
    pub body: Option<Vec<u8>>,
    /// How many values of each kind were found (by name, never the values).
    pub found: BTreeMap<String, u32>,
    /// The body is not JSON (nor empty): nothing could be looked for in it.
    pub unreadable: bool,
}

impl Mode {
    /// Its name in configs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Pseudonymize => "pseudonymize",
            Mode::Redact => "redact",
            Mode::Block => "block",
        }
    }
}

/// Finds the personal values in the texts of `body` (JSON) and, unless
/// `mode` blocks, replaces them (placeholders go into `vault`). An empty
/// body has none; one that is not JSON is `unreadable` (the caller must not
/// send it where a policy applies: what it holds is unknown).
pub fn protect_request(body: &[u8], detector: &Detector, mode: Mode, vault: &mut Vault) -> Protected {
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return Protected { unreadable: !body.trim_ascii().is_empty(), ..Protected::default() };
    };
    // Counted by kind as found, named once at the end.
    let mut counts: Vec<(super::Kind, u32)> = Vec::new();
    let mut changed = false;
    if mode == Mode::Pseudonymize {
        // The client's own look-alikes, in any text, are never handed out.
        vault.note_request(body);
    }
    for_each_request_text(&mut value, &mut |text: &mut String| {
        let findings = detector.find(text);
        if findings.is_empty() {
            return;
        }
        for f in &findings {
            match counts.iter_mut().find(|(k, _)| *k == f.kind) {
                Some((_, n)) => *n += 1,
                None => counts.push((f.kind, 1)),
            }
        }
        match mode {
            Mode::Pseudonymize => *text = vault.pseudonymize(text, &findings, &detector.patterns),
            Mode::Redact => *text = Vault::redact(text, &findings, &detector.patterns),
            Mode::Block => return,
        }
        changed = true;
    });
    let body = changed.then(|| serde_json::to_vec(&value).ok()).flatten();
    let mut found = BTreeMap::new();
    for (kind, n) in counts {
        *found.entry(kind.name(&detector.patterns).to_string()).or_insert(0) += n;
    }
    Protected { body, found, unreadable: false }
}

/// A whole JSON answer with the vault's placeholders restored in every
/// string (a placeholder is only where the model wrote it back); `None` when
/// nothing was restored, or the answer is not JSON.
pub fn restore_answer(answer: &[u8], vault: &Vault) -> Option<Vec<u8>> {
    if vault.is_empty() {
        return None;
    }
    let mut value: Value = serde_json::from_slice(answer).ok()?;
    restore_value(&mut value, vault).then(|| serde_json::to_vec(&value).ok()).flatten()
}

/// [`restore_answer`] on a JSON value already read: whether anything was restored.
pub fn restore_value(value: &mut Value, vault: &Vault) -> bool {
    if vault.is_empty() {
        return false;
    }
    let mut changed = false;
    for_each_string(value, false, &mut |text: &mut String, json: bool| {
        let restored = vault.restore(text, json);
        if restored != *text {
            *text = restored;
            changed = true;
        }
    });
    changed
}

/// Whether the string of a field named `key`, in an object whose `type` is
/// `kind`, is a JSON text: a value restored in it is escaped. That is a tool
/// call's arguments, whole (`arguments`) or streamed (Anthropic's
/// `partial_json`, and the `delta` of a Responses API
/// `response.function_call_arguments.delta` event).
pub fn holds_json(kind: &str, key: &str) -> bool {
    matches!(key, "arguments" | "partial_json") || (key == "delta" && kind.contains("arguments"))
}

/// Calls `f` on every string within `value`, with whether it is a JSON
/// text ([`holds_json`]; `json` says so of `value` itself), but for an
/// Anthropic thinking block's (its `signature` covers it as written).
fn for_each_string(value: &mut Value, json: bool, f: &mut dyn FnMut(&mut String, bool)) {
    match value {
        Value::String(s) => f(s, json),
        Value::Array(items) => items.iter_mut().for_each(|v| for_each_string(v, json, f)),
        Value::Object(map) => {
            let kind = map.get("type").and_then(Value::as_str).map(str::to_owned).unwrap_or_default();
            map.iter_mut()
                .filter(|(k, _)| !matches!(k.as_str(), "thinking" | "signature"))
                .for_each(|(k, v)| for_each_string(v, holds_json(&kind, k), f));
        }
        _ => {}
    }
}

/// Calls `f` on each text of a request that a model reads.
fn for_each_request_text(body: &mut Value, f: &mut dyn FnMut(&mut String)) {
    let Some(map) = body.as_object_mut() else { return };
    for (key, value) in map.iter_mut() {
        match key.as_str() {
            "messages" | "input" => turns(value, f),
            "system" | "instructions" | "prompt" | "suffix" => content(value, f),
            // Predicted output: the text the answer is expected to repeat.
            "prediction" => {
                if let Some(c) = value.get_mut("content") {
                    content(c, f);
                }
            }
            _ => {}
        }
    }
}

/// A list of turns (messages, or `/v1/responses` input items), or a text.
fn turns(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    texts_and_objects(value, f, |turn, f| {
        for (key, v) in turn.iter_mut() {
            match key.as_str() {
                // An earlier answer's reasoning, refusal or
                // summary, sent back with the conversation.
                "content" | "output" | "reasoning_content" | "refusal" | "summary" => content(v, f),
                // A custom tool call's input (`/v1/responses`).
                "arguments" | "input" => text(v, f),
                "tool_calls" => tool_calls(v, f),
                "function_call" => function(v, f),
                _ => {}
            }
        }
    });
}

/// A content: a text, or parts whose `text` (and a tool result's nested
/// `content`) are texts.
fn content(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    texts_and_objects(value, f, |part, f| {
        for (key, v) in part.iter_mut() {
            match key.as_str() {
                "text" => text(v, f),
                "content" => content(v, f),
                // An Anthropic `tool_use` part's arguments, as an object.
                "input" => for_each_string(v, false, &mut |s: &mut String, _| f(s)),
                _ => {}
            }
        }
    });
}

/// What finds the texts in an object of a list ([`texts_and_objects`]).
type InObject = fn(&mut serde_json::Map<String, Value>, &mut dyn FnMut(&mut String));

/// A text, or a list of texts and objects: each text goes to `f`, each
/// object to `object` (which finds the texts in it).
fn texts_and_objects(value: &mut Value, f: &mut dyn FnMut(&mut String), object: InObject) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) => f(s),
                    Value::Object(o) => object(o, f),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn text(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    if let Value::String(s) = value {
        f(s);
    }
}

/// `tool_calls`: each call's `function.arguments`.
fn tool_calls(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    if let Value::Array(calls) = value {
        for call in calls {
            if let Some(function) = call.get_mut("function") {
                self::function(function, f);
            }
        }
    }
}

/// A function call: its `arguments` (a JSON text the model wrote).
fn function(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    if let Some(arguments) = value.get_mut("arguments") {
        text(arguments, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protect(
        body: serde_json::Value,
        mode: Mode,
        vault: &mut Vault,
    ) -> (Option<serde_json::Value>, Vec<(String, u32)>) {
        let p = protect_request(body.to_string().as_bytes(), &Detector::default(), mode, vault);
        let sent = p.body.map(|b| serde_json::from_slice(&b).expect("JSON"));
        (sent, p.found.into_iter().collect())
    }

    #[test]
    fn every_text_a_model_reads_is_protected_and_nothing_else() {
        let body = serde_json::json!({
            "model": "gpt-4o",
            "user": "jane@example.com",
            "messages": [
                {"role": "system", "content": "The customer is jane@example.com."},
                {"role": "user", "content": [
                    {"type": "text", "text": "My card is 4111 1111 1111 1111"},
                    {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"email\":\"jane@example.com\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "found +1 415 555 2671"}
            ],
            "temperature": 0.2
        });
        let mut vault = Vault::new();
        let (sent, found) = protect(body.clone(), Mode::Pseudonymize, &mut vault);
        let sent = sent.expect("rewritten");
        let text = sent.to_string();
        assert!(!text.contains("4111") && !text.contains("555 2671"), "{text}");
        assert_eq!(sent["user"], "jane@example.com", "not a text the model reads");
        assert_eq!(sent["messages"][0]["content"], "The customer is [EMAIL_1].");
        assert_eq!(sent["messages"][1]["content"][0]["text"], "My card is [CARD_1]");
        assert_eq!(sent["messages"][2]["tool_calls"][0]["function"]["arguments"], "{\"email\":\"[EMAIL_1]\"}");
        assert_eq!(sent["messages"][3]["content"], "found [PHONE_1]");
        assert_eq!(sent["temperature"], 0.2);
        assert_eq!(found, [("card".into(), 1), ("email".into(), 2), ("phone".into(), 1)]);
        let keys: Vec<&String> = sent.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["model", "user", "messages", "temperature"], "keys keep their order");

        // The answer gets the originals back, in the message and in a tool call it makes.
        let answer = serde_json::json!({"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant",
            "content": "Charged [CARD_1] for [EMAIL_1].", "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "mail", "arguments": "{\"to\":\"[EMAIL_1]\"}"}}]}}]});
        let restored: serde_json::Value =
            serde_json::from_slice(&restore_answer(answer.to_string().as_bytes(), &vault).expect("restored")).unwrap();
        assert_eq!(restored["choices"][0]["message"]["content"], "Charged 4111 1111 1111 1111 for jane@example.com.");
        assert_eq!(
            restored["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"to\":\"jane@example.com\"}"
        );
        assert_eq!(restored["id"], "chatcmpl-1");
    }

    #[test]
    fn a_placeholder_the_client_wrote_in_any_text_is_never_handed_out() {
        let body = serde_json::json!({"model": "m", "messages": [
            {"role": "system", "content": "Quote [EMAIL_1] and [PHONE_1] as they are."},
            {"role": "user", "content": "I am jane@example.com, +1 415 555 2671"}]});
        let mut vault = Vault::new();
        let (sent, _) = protect(body, Mode::Pseudonymize, &mut vault);
        assert_eq!(sent.expect("replaced")["messages"][1]["content"], "I am [EMAIL_2], [PHONE_2]");
        assert_eq!(vault.restore("[EMAIL_1] [EMAIL_2]", false), "[EMAIL_1] jane@example.com");
    }

    #[test]
    fn responses_input_prompts_and_the_other_modes() {
        let responses = serde_json::json!({"model": "m", "instructions": "Reply to bob@example.org",
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "IBAN DE89 3704 0044 0532 0130 00"}]},
                      {"type": "function_call_output", "call_id": "c", "output": "ip 10.1.2.3"}]});
        let (sent, found) = protect(responses, Mode::Redact, &mut Vault::new());
        let sent = sent.expect("rewritten");
        assert_eq!(sent["instructions"], "Reply to [EMAIL]");
        assert_eq!(sent["input"][0]["content"][0]["text"], "IBAN [IBAN]");
        assert_eq!(sent["input"][1]["output"], "ip [IPV4]");
        assert_eq!(found.len(), 3);

        let mut vault = Vault::new();
        let (sent, found) =
            protect(serde_json::json!({"model": "m", "prompt": ["SSN 123-45-6789"]}), Mode::Block, &mut vault);
        assert_eq!((sent, found), (None, vec![("us_ssn".into(), 1)]), "block only counts");
        assert!(vault.is_empty());

        let clean = br#"{"model":"m",  "messages":[{"role":"user","content":"hello"}]}"#;
        assert_eq!(
            protect_request(clean, &Detector::default(), Mode::Pseudonymize, &mut Vault::new()),
            Protected::default()
        );
        let broken = protect_request(b"{not json", &Detector::default(), Mode::Block, &mut Vault::new());
        assert!(broken.unreadable && broken.found.is_empty());
        // A lone surrogate escape: JSON a lenient reader may pass, and this one does not.
        let lone = br#"{"user":"\ud800","messages":[{"role":"user","content":"jane@example.com"}]}"#;
        assert!(protect_request(lone, &Detector::default(), Mode::Redact, &mut Vault::new()).unreadable);
        assert!(!protect_request(b" ", &Detector::default(), Mode::Redact, &mut Vault::new()).unreadable);
        assert_eq!(restore_answer(b"{}", &Vault::new()), None);
    }
}
