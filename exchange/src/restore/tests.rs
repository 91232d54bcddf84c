//! Restoring placeholders in answers cut in every way a stream may be cut:
//! a placeholder split across events, and the events split across chunks.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::test_support::feed;
use edge_router::pii::{Detector, Mode, protect_request};

/// The vault of a request that names an e-mail address, a phone number and
/// an IBAN, and what the node got instead of them.
fn vault() -> Arc<Vault> {
    let body = json!({"model": "m", "messages": [{"role": "user",
        "content": "Write to jane.doe@example.com or call +44 20 7946 0958; IBAN DE89 3704 0044 0532 0130 00."}]});
    let mut vault = Vault::new();
    let sent = protect_request(body.to_string().as_bytes(), &Detector::default(), Mode::Pseudonymize, &mut vault);
    let sent: Value = serde_json::from_slice(&sent.body.expect("replaced")).expect("JSON");
    assert_eq!(
        sent["messages"][0]["content"], "Write to [EMAIL_1] or call [PHONE_1]; IBAN [IBAN_1].",
        "the node sees placeholders"
    );
    Arc::new(vault)
}

const ANSWER: &str = "Sure: I wrote to [EMAIL_1], rang [PHONE_1] and [PHONE_9]; [IBAN_1] is billed. [EMAIL_";
const RESTORED: &str = "Sure: I wrote to jane.doe@example.com, rang +44 20 7946 0958 and [PHONE_9]; \
    DE89 3704 0044 0532 0130 00 is billed. [EMAIL_";
const VALUES: [&str; 3] = ["jane.doe@example.com", "+44 20 7946 0958", "DE89 3704 0044 0532 0130 00"];

/// A chat completion stream of `text` cut into pieces at `cuts` (character
/// boundaries), the last piece in the chunk that ends the choice when
/// `finish_in_last`, else with a finish chunk of its own; then `[DONE]`.
fn chat_stream(text: &str, cuts: &[usize], finish_in_last: bool) -> String {
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c > 0 && c < text.len()).collect();
    bounds.sort_unstable();
    bounds.dedup();
    let mut pieces = Vec::new();
    let mut from = 0;
    for b in bounds.into_iter().chain([text.len()]) {
        pieces.push(&text[from..b]);
        from = b;
    }
    let chunk = |delta: Value, finish: Value| {
        let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut out = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    for (i, piece) in pieces.iter().enumerate() {
        let finish = if finish_in_last && i + 1 == pieces.len() { json!("stop") } else { Value::Null };
        out.push_str(&chunk(json!({"content": piece}), finish));
    }
    if !finish_in_last {
        out.push_str(&chunk(json!({}), json!("stop")));
    }
    out.push_str("data: [DONE]\n\n");
    out
}

/// The events of an SSE stream's text, each one's JSON (or raw data).
fn events(stream: &[u8]) -> Vec<Value> {
    String::from_utf8(stream.to_vec())
        .expect("UTF-8")
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.to_string())))
        .collect()
}

/// What a client makes of a chat stream: each choice's content, and the
/// pieces it came in.
fn chat_content(stream: &[u8]) -> (String, Vec<String>) {
    let pieces: Vec<String> = events(stream)
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    (pieces.concat(), pieces)
}

/// No piece holds part of an original value without all of it, nor a
/// placeholder of the vault.
fn no_half_values(pieces: &[String]) {
    for piece in pieces {
        for p in ["[EMAIL_1]", "[PHONE_1]", "[IBAN_1]"] {
            assert!(!piece.contains(p), "a placeholder went out: {piece:?}");
        }
        for value in VALUES {
            for cut in 4..value.len() {
                let (head, tail) = value.split_at(cut);
                let split = (piece.ends_with(head) && !piece.contains(value))
                    || (piece.starts_with(tail) && !piece.contains(value) && tail.len() >= 4);
                assert!(!split, "half of {value:?} went out in {piece:?}");
            }
        }
    }
}

#[test]
fn a_placeholder_split_across_events_anywhere_comes_back_whole() {
    let vault = vault();
    let bounds: Vec<usize> = (1..ANSWER.len()).collect();
    for finish_in_last in [false, true] {
        // Every split into two events, and into three around each placeholder.
        for &cut in &bounds {
            for second in [cut + 1, cut + 3, cut + 7] {
                let stream = chat_stream(ANSWER, &[cut, second], finish_in_last);
                let out = feed(&mut RestorePii::new(vault.clone(), true), stream.as_bytes(), &[]);
                let (content, pieces) = chat_content(&out);
                assert_eq!(content, RESTORED, "cut at {cut} and {second}");
                no_half_values(&pieces);
                let last = events(&out).pop();
                assert_eq!(last, Some(Value::String("[DONE]".into())), "the stream still ends with [DONE]");
            }
        }
    }
}

#[test]
fn a_token_a_time_and_every_byte_chunking_of_the_stream() {
    let vault = vault();
    // A piece per character, as a tokenizer might give them.
    let each: Vec<usize> = (1..ANSWER.len()).collect();
    let stream = chat_stream(ANSWER, &each, false);
    let whole = feed(&mut RestorePii::new(vault.clone(), true), stream.as_bytes(), &[]);
    let (content, pieces) = chat_content(&whole);
    assert_eq!(content, RESTORED);
    no_half_values(&pieces);
    // The same stream cut into chunks at every byte gives the same bytes.
    for size in [1usize, 2, 3, 5, 13, 64] {
        let cuts: Vec<usize> = (1..stream.len()).filter(|c| c % size == 0).collect();
        assert_eq!(
            feed(&mut RestorePii::new(vault.clone(), true), stream.as_bytes(), &cuts),
            whole,
            "chunks of {size}"
        );
    }
}

proptest! {
    #[test]
    fn any_events_any_chunks(cuts in proptest::collection::vec(1usize..90, 0..12),
                             chunks in proptest::collection::vec(0usize..4000, 0..30),
                             finish_in_last: bool) {
        let vault = vault();
        let stream = chat_stream(ANSWER, &cuts, finish_in_last);
        let out = feed(&mut RestorePii::new(vault, true), stream.as_bytes(), &chunks);
        let (content, pieces) = chat_content(&out);
        prop_assert_eq!(content, RESTORED);
        no_half_values(&pieces);
    }
}

#[test]
fn tool_call_arguments_stream_back_with_their_values_escaped_as_json() {
    let mut vault = Vault::new();
    let detector = Detector::new(
        vec![],
        vec![edge_router::pii::Pattern { name: "quoted".into(), regex: regex_lite_like("Q\"[0-9]{3}") }],
        &[],
    );
    let body = json!({"messages": [{"role": "user", "content": "ticket Q\"123 for jane@example.com"}]});
    let sent = protect_request(body.to_string().as_bytes(), &detector, Mode::Pseudonymize, &mut vault);
    let sent: Value = serde_json::from_slice(&sent.body.expect("replaced")).unwrap();
    assert_eq!(sent["messages"][0]["content"], "ticket [QUOTED_1] for jane@example.com", "only the pattern looked for");
    let arguments = ["{\"ticket\": \"[QUO", "TED_1]\", \"n\":", " 1}"];
    let mut stream = String::new();
    for (i, a) in arguments.iter().enumerate() {
        let call = if i == 0 {
            json!({"index": 0, "id": "call_1", "type": "function", "function": {"name": "file", "arguments": a}})
        } else {
            json!({"index": 0, "function": {"arguments": a}})
        };
        let c = json!({"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": null}]});
        stream.push_str(&format!("data: {c}\n\n"));
    }
    stream.push_str(&format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    ));
    let out = feed(&mut RestorePii::new(Arc::new(vault), true), stream.as_bytes(), &[]);
    let calls: Vec<Value> = events(&out)
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0].as_object().cloned().map(Value::Object))
        .collect();
    let args: String = calls.iter().filter_map(|c| c["function"]["arguments"].as_str()).collect();
    let parsed: Value = serde_json::from_str(&args).expect("the arguments are JSON still");
    assert_eq!(parsed, json!({"ticket": "Q\"123", "n": 1}));
    let names: Vec<&str> = calls.iter().filter_map(|c| c["function"]["name"].as_str()).collect();
    assert_eq!(names, ["file"], "the name is not sent twice");
}

fn regex_lite_like(pattern: &str) -> edge_router::pii::Regex {
    edge_router::pii::Regex::new(pattern).expect("a pattern")
}

#[test]
fn anthropic_and_responses_events_and_interleaved_choices() {
    let vault = vault();
    // Anthropic Messages: the tail held at the block's end goes out before `content_block_stop`.
    let block = |text: &str| {
        format!(
            "event: content_block_delta\ndata: {}\n\n",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})
        )
    };
    let stream = [
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"content\":[]}}\n\n"
            .to_string(),
        block("Mail [EMA"),
        block("IL_1] and [PHO"),
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n".to_string(),
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_string(),
    ]
    .concat();
    let out = String::from_utf8(feed(&mut RestorePii::new(vault.clone(), true), stream.as_bytes(), &[5, 90])).unwrap();
    let texts: Vec<String> =
        events(out.as_bytes()).iter().filter_map(|e| e["delta"]["text"].as_str().map(str::to_string)).collect();
    assert_eq!(texts.concat(), "Mail jane.doe@example.com and [PHO");
    let stop = out.find("content_block_stop").unwrap();
    assert!(out[..stop].contains("[PHO"), "the tail goes out before the block stops: {out}");
    assert!(out.contains("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"[PHO\"}}"), "{out}");

    // The Responses API: deltas, then the done event's whole text.
    let delta = |d: &str| {
        format!(
            "event: response.output_text.delta\ndata: {}\n\n",
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": d})
        )
    };
    let stream = [
        delta("IBAN [IB"),
        delta("AN_1"),
        delta("]!"),
        format!("event: response.output_text.done\ndata: {}\n\n", json!({"type": "response.output_text.done", "output_index": 0, "content_index": 0, "text": "IBAN [IBAN_1]!"})),
    ]
    .concat();
    let out = feed(&mut RestorePii::new(vault.clone(), true), stream.as_bytes(), &[]);
    let all = events(&out);
    let deltas: String = all.iter().filter_map(|e| e["delta"].as_str()).collect();
    assert_eq!(deltas, "IBAN DE89 3704 0044 0532 0130 00!");
    assert_eq!(all.last().unwrap()["text"], "IBAN DE89 3704 0044 0532 0130 00!");

    // Two choices interleaved: one choice's end does not give out the other's tail.
    let piece = |i: u32, text: &str, finish: Value| {
        format!("data: {}\n\n", json!({"choices": [{"index": i, "delta": {"content": text}, "finish_reason": finish}]}))
    };
    let stream = [
        piece(0, "a [EMA", Value::Null),
        piece(1, "b [PHONE", Value::Null),
        format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})),
        piece(1, "_1] c", json!("stop")),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let out = feed(&mut RestorePii::new(vault, true), stream.as_bytes(), &[]);
    let of = |i: u64| -> String {
        events(&out)
            .iter()
            .filter(|e| e["choices"][0]["index"] == i)
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(of(0), "a [EMA", "an unfinished placeholder goes out as it came");
    assert_eq!(of(1), "b +44 20 7946 0958 c");
}

#[test]
fn a_json_answer_and_a_stream_without_placeholders() {
    let vault = vault();
    let answer = json!({"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant",
        "content": "Wrote [EMAIL_1].", "tool_calls": [{"id": "c", "type": "function",
        "function": {"name": "mail", "arguments": "{\"to\":\"[EMAIL_1]\"}"}}]}}]})
    .to_string();
    let out = feed(&mut RestorePii::new(vault.clone(), false), answer.as_bytes(), &[3, 40, 41]);
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["choices"][0]["message"]["content"], "Wrote jane.doe@example.com.");
    assert_eq!(
        out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"to\":\"jane.doe@example.com\"}"
    );

    // Nothing to restore: the bytes pass as they came, comments and odd events too.
    let plain = ": keep-alive\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\r\n\r\nevent: ping\n\ndata: [DONE]\n\n";
    assert_eq!(feed(&mut RestorePii::new(vault, true), plain.as_bytes(), &[1, 30]), plain.as_bytes());
}

#[test]
fn only_an_end_gives_a_tail_out_and_signed_thinking_keeps_its_placeholders() {
    let vault = vault();
    let event = |kind: &str, data: Value| format!("event: {kind}\ndata: {data}\n\n");
    let text = |t: &str| {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": t}}),
        )
    };
    let stream = [
        event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "user is [EMAIL_1]"}})),
        text("Mail [EMA"),
        // A ping, and a note with no text, in the middle: the tail stays held.
        event("ping", json!({"type": "ping"})),
        text("IL_1] now"),
        event("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
    ]
    .concat();
    let out = String::from_utf8(feed(&mut RestorePii::new(vault.clone(), true), stream.as_bytes(), &[])).unwrap();
    let texts: Vec<String> =
        events(out.as_bytes()).iter().filter_map(|e| e["delta"]["text"].as_str().map(str::to_string)).collect();
    assert_eq!(texts, ["Mail ", "jane.doe@example.com now"], "{out}");
    assert!(out.contains("user is [EMAIL_1]"), "thinking is signed as written: {out}");

    // The Responses API's streamed call arguments are JSON: a value goes in escaped.
    let quoted = quoted_vault();
    let args = |d: &str| {
        event(
            "response.function_call_arguments.delta",
            json!({"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": "fc_1", "delta": d, "sequence_number": 3}),
        )
    };
    let stream = [args("{\"t\": \"[Q"), args("_1]\"}"), event("response.function_call_arguments.done", json!({"type": "response.function_call_arguments.done", "output_index": 0, "arguments": "{\"t\": \"[Q_1]\"}"}))].concat();
    let all = events(&feed(&mut RestorePii::new(quoted, true), stream.as_bytes(), &[]));
    let streamed: String = all.iter().filter_map(|e| e["delta"].as_str()).collect();
    assert_eq!(serde_json::from_str::<Value>(&streamed).unwrap(), json!({"t": "Q\"1"}));
    assert_eq!(
        serde_json::from_str::<Value>(all.last().unwrap()["arguments"].as_str().unwrap()).unwrap(),
        json!({"t": "Q\"1"})
    );

    // A stream cut off: a tail held comes out at the end, after the last
    // (unfinished) event, which is ended first.
    let cut = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x [IBA\"},\"finish_reason\":null}],\"usage\":{\"total_tokens\":3}}\n\ndata: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"y\"}}]}";
    let out = String::from_utf8(feed(&mut RestorePii::new(vault, true), cut.as_bytes(), &[])).unwrap();
    assert!(
        out.ends_with("\"content\":\"y\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"[IBA\"},\"finish_reason\":null}]}\n\n"),
        "{out:?}"
    );
    assert_eq!(out.matches("total_tokens").count(), 1, "usage is not repeated");
}

/// The vault of a request that names `Q"1`, a value with a quote in it, as `[Q_1]`.
fn quoted_vault() -> Arc<Vault> {
    let mut quoted = Vault::new();
    let detector = Detector::new(
        vec![],
        vec![edge_router::pii::Pattern { name: "q".into(), regex: regex_lite_like("Q\"[0-9]") }],
        &[],
    );
    protect_request(
        json!({"messages": [{"role": "user", "content": "Q\"1"}]}).to_string().as_bytes(),
        &detector,
        Mode::Pseudonymize,
        &mut quoted,
    );
    Arc::new(quoted)
}

/// A chat chunk of choice `index` with `delta`, as an SSE event.
fn choice_chunk(index: usize, delta: Value) -> String {
    let c = json!({"object": "chat.completion.chunk", "choices": [{"index": index, "delta": delta, "finish_reason": null}]});
    format!("data: {c}\n\n")
}

/// Each choice's content, as a client adds it up.
fn contents(stream: &[u8]) -> std::collections::BTreeMap<u64, String> {
    let mut by_choice = std::collections::BTreeMap::new();
    for e in events(stream) {
        if let (Some(i), Some(text)) = (e["choices"][0]["index"].as_u64(), e["choices"][0]["delta"]["content"].as_str())
        {
            by_choice.entry(i).or_insert_with(String::new).push_str(text);
        }
    }
    by_choice
}

#[test]
fn no_more_than_max_holding_texts_hold_a_tail_and_none_is_lost() {
    // More choices than may hold a tail, each starting a placeholder and
    // finishing it in a later event: the first MAX_HOLDING come back
    // restored, the others as they came, and every byte is there.
    let n = MAX_HOLDING + 40;
    let mut stream = String::new();
    for i in 0..n {
        stream.push_str(&choice_chunk(i, json!({"content": "to [EMAIL"})));
    }
    let mut restore = RestorePii::new(vault(), true);
    let mut out = VecDeque::new();
    restore.chunk(Bytes::from(stream.clone()), &mut out);
    assert_eq!(restore.holding.len(), MAX_HOLDING);
    let mut rest = String::new();
    for i in 0..n {
        rest.push_str(&choice_chunk(i, json!({"content": "_1] ok"})));
    }
    restore.chunk(Bytes::from(rest), &mut out);
    restore.end(&mut out);
    let out: Vec<u8> = out.into_iter().flatten().collect();
    let got = contents(&out);
    assert_eq!(got.len(), n);
    for (i, text) in got {
        let want = if (i as usize) < MAX_HOLDING { "to jane.doe@example.com ok" } else { "to [EMAIL_1] ok" };
        assert_eq!(text, want, "choice {i}");
    }
}

#[test]
fn an_event_too_large_to_keep_gives_its_tail_out_at_once() {
    // An event's copy is kept to give a held tail out in: past HOLD_BUDGET
    // the tail goes out in the event itself.
    let big = "x".repeat(HOLD_BUDGET);
    let event = format!(
        "data: {}\n\n",
        json!({"object": "chat.completion.chunk", "note": big,
            "choices": [{"index": 0, "delta": {"content": "mail [EMAIL"}, "finish_reason": null}]})
    );
    let mut restore = RestorePii::new(vault(), true);
    let mut out = VecDeque::new();
    restore.chunk(Bytes::from(event), &mut out);
    assert!(restore.holding.is_empty(), "nothing is kept");
    restore.end(&mut out);
    let out: Vec<u8> = out.into_iter().flatten().collect();
    assert_eq!(contents(&out).get(&0).map(String::as_str), Some("mail [EMAIL"));
}

/// A restore that has had choice 0's `content` and holds a tail of it.
fn holding_a_tail(content: &str) -> (RestorePii, VecDeque<Bytes>) {
    let mut restore = RestorePii::new(vault(), true);
    let mut out = VecDeque::new();
    restore.chunk(Bytes::from(choice_chunk(0, json!({"content": content}))), &mut out);
    assert_eq!(restore.holding.len(), 1);
    (restore, out)
}

#[test]
fn an_event_with_more_pieces_than_are_followed_is_restored_string_by_string() {
    // Thousands of pieces in one event (no model writes that): no piece is
    // followed, a tail held before goes out first, and whole placeholders
    // are still restored.
    let (mut restore, mut out) = holding_a_tail("a [PHONE");
    let mut pieces = vec![json!("["); 3 * MAX_PIECES];
    pieces.push(json!("[EMAIL_1]"));
    restore.chunk(Bytes::from(choice_chunk(1, json!({"content": "x", "parts": pieces}))), &mut out);
    assert!(restore.holding.is_empty(), "the held tail went out before it");
    restore.end(&mut out);
    let out: Vec<u8> = out.into_iter().flatten().collect();
    let events = events(&out);
    assert_eq!(events[0]["choices"][0]["delta"]["content"], "a ", "what cannot become a placeholder");
    assert_eq!(events[1]["choices"][0]["delta"]["content"], "[PHONE", "the tail, in an event of its own");
    let parts = &events[2]["choices"][0]["delta"]["parts"];
    assert_eq!(parts.as_array().map(Vec::len), Some(3 * MAX_PIECES + 1));
    assert_eq!(parts[3 * MAX_PIECES], "jane.doe@example.com");
    assert_eq!(parts[0], "[");
}

#[test]
fn a_crowded_responses_arguments_event_still_escapes_its_values_as_json() {
    // Restored string by string, a Responses call's `delta` is still a
    // piece of JSON text: the quote in the value goes in escaped.
    let crowd = vec![json!("["); 3 * MAX_PIECES];
    let delta = json!({"type": "response.function_call_arguments.delta", "output_index": 0,
        "item_id": "fc_1", "delta": "{\"t\": \"[Q_1]\"}", "crowd": crowd});
    let mut out = VecDeque::new();
    let mut restore = RestorePii::new(quoted_vault(), true);
    restore.chunk(Bytes::from(format!("event: response.function_call_arguments.delta\ndata: {delta}\n\n")), &mut out);
    restore.end(&mut out);
    let out: Vec<u8> = out.into_iter().flatten().collect();
    let event = &events(&out)[0];
    assert_eq!(event["crowd"].as_array().map(Vec::len), Some(3 * MAX_PIECES), "crowded: {}", out.len());
    let arguments = event["delta"].as_str().expect("a delta");
    assert_eq!(serde_json::from_str::<Value>(arguments).ok(), Some(json!({"t": "Q\"1"})), "{arguments}");
}

#[test]
fn an_event_too_long_to_hold_goes_on_as_it_came_after_every_held_tail() {
    // The tail goes out before the long event starts, not in its middle,
    // where a client would read it as part of that event.
    let (mut restore, mut out) = holding_a_tail("to [EMAIL");
    let comment = [b": ".as_slice(), &vec![b'x'; crate::transform::MAX_EVENT + 10]].concat();
    restore.chunk(Bytes::from(comment.clone()), &mut out);
    assert!(restore.holding.is_empty(), "the tail went out before it");
    restore
        .chunk(Bytes::from(format!("\n\n{}data: [DONE]\n\n", choice_chunk(0, json!({"content": "_1] ok"})))), &mut out);
    restore.end(&mut out);
    let out: Vec<u8> = out.into_iter().flatten().collect();
    assert_eq!(
        contents(&out).get(&0).map(String::as_str),
        Some("to [EMAIL_1] ok"),
        "split by the long event: as it came"
    );
    let text = String::from_utf8(out).expect("UTF-8");
    let events: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(events.len(), 6, "the first piece, its tail, the comment, the next, [DONE] and the end");
    assert!(events[1].ends_with("\"[EMAIL\"},\"finish_reason\":null}]}") && events[2].len() == comment.len());
}

#[test]
fn one_event_makes_a_bounded_number_of_copies_for_its_tails() {
    // 300 texts in one event, each holding a tail: each copy kept for a
    // tail has the other 300 pieces taken out, so only 4 × MAX_PIECES / 301
    // are made; the other tails go out at once. None is lost.
    let mut delta = serde_json::Map::new();
    delta.insert("content".into(), json!("x"));
    for i in 0..300 {
        delta.insert(format!("k{i}"), json!("[EMAIL"));
    }
    let mut restore = RestorePii::new(vault(), true);
    let mut out = VecDeque::new();
    restore.chunk(Bytes::from(choice_chunk(0, Value::Object(delta))), &mut out);
    assert_eq!(restore.holding.len(), 4 * MAX_PIECES / 301);
    restore.end(&mut out);
    let text = String::from_utf8(out.into_iter().flatten().collect()).expect("UTF-8");
    assert_eq!(text.matches("[EMAIL").count(), 300, "{text}");
}

#[test]
fn a_legacy_completion_stream_restores_each_choices_text_split_anywhere() {
    // `/v1/completions` with `n: 2` and `stream: true`, as OpenAI and vLLM
    // send it: one choice per event, its text outside any `delta`, the two
    // choices' events interleaved, then a finish event for each and `[DONE]`.
    let vault = vault();
    let event = |index: usize, text: &str, finish: Value| {
        let c = json!({"id": "cmpl-1", "object": "text_completion", "model": "m",
            "choices": [{"text": text, "index": index, "logprobs": null, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let texts = |stream: &[u8]| {
        let mut by_choice = std::collections::BTreeMap::new();
        let mut pieces = Vec::new();
        for e in events(stream) {
            if let (Some(i), Some(text)) = (e["choices"][0]["index"].as_u64(), e["choices"][0]["text"].as_str()) {
                by_choice.entry(i).or_insert_with(String::new).push_str(text);
                pieces.push(text.to_string());
            }
        }
        (by_choice, pieces)
    };
    for cut in 1..ANSWER.len() {
        // Choice 1 is cut elsewhere, so its tails and choice 0's are held at once.
        let other = ANSWER.len() - cut;
        let mut stream = String::new();
        stream.push_str(&event(0, &ANSWER[..cut], Value::Null));
        stream.push_str(&event(1, &ANSWER[..other], Value::Null));
        stream.push_str(&event(0, &ANSWER[cut..], Value::Null));
        stream.push_str(&event(1, &ANSWER[other..], Value::Null));
        stream.push_str(&event(0, "", json!("length")));
        stream.push_str(&event(1, "", json!("length")));
        stream.push_str("data: [DONE]\n\n");
        let out = feed(&mut RestorePii::new(vault.clone(), true), stream.as_bytes(), &[]);
        let (by_choice, pieces) = texts(&out);
        assert_eq!(by_choice.get(&0).map(String::as_str), Some(RESTORED), "choice 0 cut at {cut}");
        assert_eq!(by_choice.get(&1).map(String::as_str), Some(RESTORED), "choice 1 cut at {other}");
        no_half_values(&pieces);
        assert_eq!(events(&out).pop(), Some(Value::String("[DONE]".into())), "cut at {cut}");
    }
}

#[test]
fn a_legacy_chunk_with_two_choices_gives_a_held_tail_out_without_the_other_choices_text_or_end() {
    // Both choices in one chunk, choice 0 ending in what may become a
    // placeholder: at `[DONE]` its tail goes out in an event of its own,
    // which must not carry choice 1's text again (clients add texts up).
    // Choice 1 ends in it: it ends once.
    let chunk = json!({"id": "cmpl-1", "object": "text_completion", "model": "m", "choices": [
        {"text": "a [EMAIL_", "index": 0, "logprobs": null, "finish_reason": null},
        {"text": "b", "index": 1, "logprobs": null, "finish_reason": "length"}]});
    let stream = format!("data: {chunk}\n\ndata: [DONE]\n\n");
    let out = feed(&mut RestorePii::new(vault(), true), stream.as_bytes(), &[]);
    let mut by_choice = std::collections::BTreeMap::new();
    for event in events(&out) {
        for choice in event["choices"].as_array().into_iter().flatten() {
            if let (Some(i), Some(text)) = (choice["index"].as_u64(), choice["text"].as_str()) {
                by_choice.entry(i).or_insert_with(String::new).push_str(text);
            }
        }
    }
    let choices: Vec<Value> = events(&out).iter().filter_map(|e| e["choices"].as_array()).flatten().cloned().collect();
    let every_choice_has_a_text = choices.iter().all(|c| c["text"].is_string());
    let ends = choices.iter().filter(|c| !c["finish_reason"].is_null()).count();
    let out = String::from_utf8_lossy(&out);
    assert!(every_choice_has_a_text, "{out}");
    assert_eq!(ends, 1, "{out}");
    assert_eq!(by_choice.get(&0).map(String::as_str), Some("a [EMAIL_"), "{out}");
    assert_eq!(by_choice.get(&1).map(String::as_str), Some("b"), "{out}");
}
