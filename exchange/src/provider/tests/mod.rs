//! The adapters' translations, and their streams cut in every way: what
//! several APIs share here, each API's own in its file.

use std::collections::VecDeque;

use bytes::Bytes;
use edge_router::RouterConfig;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

mod anthropic_api;
mod bedrock_api;
mod gemini_api;

fn node(api: &str) -> Node {
    let yaml = format!("nodes: [{{id: n, type: cloud, host: \"http://n\", api: {api}}}]\n");
    RouterConfig::load("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}")).nodes.remove(0)
}

/// Runs `input` through a fresh answer transform in chunks cut at `cuts`.
fn run(api: Api, status: u16, sse: bool, input: &[u8], cuts: &[usize]) -> String {
    let status = StatusCode::from_u16(status).expect("a status");
    let mut t = answer(api, status, sse, 1_700_000_000_000).expect("a translated API");
    String::from_utf8(crate::test_support::feed(t.as_mut(), input, cuts)).expect("UTF-8")
}

fn chunks(stream: &str) -> Vec<Value> {
    stream
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

const ANTHROPIC_STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-haiku\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi \\\"there\\\"\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"f\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

#[test]
fn error_bodies_take_openais_shape() {
    let anthropic = br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
    let out: Value = serde_json::from_str(&run(Api::Anthropic, 429, false, anthropic, &[4])).expect("JSON");
    assert_eq!(
        out,
        json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": null}})
    );
    let gemini = br#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
    let out: Value = serde_json::from_str(&run(Api::Gemini, 429, true, gemini, &[])).expect("JSON");
    assert_eq!(out["error"]["type"], "resource_exhausted", "an error is JSON even when a stream was asked for");
    assert_eq!(
        run(Api::Gemini, 502, false, b"<html>bad gateway</html>", &[]),
        "<html>bad gateway</html>",
        "not JSON: as it came"
    );
}

const GEMINI_STREAM: &str = "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hel\"}]},\"index\":0}],\"modelVersion\":\"gemini-pro\",\"responseId\":\"r1\"}\r\n\r\n\
data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"lo\"}]},\"finishReason\":\"MAX_TOKENS\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":2,\"thoughtsTokenCount\":4}}\r\n\r\n";

#[test]
fn azure_openai_gets_its_deployment_path_and_version_and_the_body_as_it_is() {
    let body = &Bytes::from_static(br#"{"model":"gpt-4o mini","messages":[]}"#);
    let t = translate(&node("azure"), "/v1/chat/completions", body).expect("translated");
    assert_eq!(t.target, format!("/openai/deployments/gpt-4o%20mini/chat/completions?api-version={AZURE_API_VERSION}"));
    assert_eq!(&t.body, body);
    assert!(translate(&node("openai"), "/v1/chat/completions", body).is_none());
    assert!(
        translate(&node("anthropic"), "/v1/chat/completions", &Bytes::from_static(b"not json")).is_none(),
        "sent as it came"
    );
    let anthropic = translate(&node("anthropic"), "/v1/chat/completions", body).expect("translated");
    assert_eq!((anthropic.target.as_str(), anthropic.headers[0].1.to_str().ok()), ("/v1/messages", Some("2023-06-01")));
}

#[test]
fn each_api_has_its_own_key_header_and_overload_becomes_503() {
    let name = |api| credential(api, "k").map(|(n, v)| (n.to_string(), v.is_sensitive()));
    assert_eq!(name(Api::OpenAi), Some(("authorization".into(), true)));
    assert_eq!(name(Api::Anthropic), Some(("x-api-key".into(), true)));
    assert_eq!(name(Api::Gemini), Some(("x-goog-api-key".into(), true)));
    assert_eq!(name(Api::Azure), Some(("api-key".into(), true)));
    assert!(credential(Api::OpenAi, "bad\nkey").is_none());
    let mut resp = http::Response::builder().status(529).header("content-length", "9").body(()).expect("a response");
    adapt_head(Api::Anthropic, &mut resp);
    assert_eq!((resp.status().as_u16(), resp.headers().get("content-length")), (503, None));
}

proptest! {
    #[test]
    fn streams_translate_the_same_however_they_are_cut(cuts in prop::collection::vec(0usize..4000, 0..12)) {
        for (api, stream) in [(Api::Anthropic, ANTHROPIC_STREAM), (Api::Gemini, GEMINI_STREAM)] {
            let whole = run(api, 200, true, stream.as_bytes(), &[]);
            prop_assert_eq!(run(api, 200, true, stream.as_bytes(), &cuts), whole);
        }
    }
}

fn frame(kind: &str, payload: Value, exception: bool) -> Vec<u8> {
    use aws_smithy_types::event_stream::{Header, HeaderValue as V, Message};
    let (message_type, type_header) =
        if exception { ("exception", ":exception-type") } else { ("event", ":event-type") };
    let message = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(type_header, V::String(kind.to_string().into())))
        .add_header(Header::new(":message-type", V::String(message_type.into())));
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut out).expect("a frame");
    out
}

#[test]
fn a_stream_that_ends_before_its_closing_event_says_so() {
    let cut = ANTHROPIC_STREAM.split("event: message_delta").next().unwrap_or_default();
    let out = run(Api::Anthropic, 200, true, cut.as_bytes(), &[]);
    assert!(out.ends_with("event: error\ndata: {\"error\":{\"type\":\"upstream_incomplete\",\"message\":\"the node's stream ended before it finished\"}}\n\n"), "{out}");
    assert!(!out.contains("[DONE]"));
    let blocked = br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":7}}"#;
    let out: Value = serde_json::from_str(&run(Api::Gemini, 200, false, blocked, &[])).expect("JSON");
    assert_eq!(out["choices"][0]["finish_reason"], "content_filter", "a blocked prompt is not a normal stop");
}

#[test]
fn answers_that_are_rewritten_are_asked_for_uncompressed() {
    use edge_router::wire::ForwardBody;
    let forward = crate::test_support::forward(ForwardBody::Original);
    let body = Bytes::from_static(br#"{"model":"m","messages":[]}"#);
    let accept = |node: &Node, target: &str| {
        let sent = crate::upstream::outbound(&forward, node, target, &body, false, &Default::default());
        sent.expect("no policy blocks")
            .headers
            .iter()
            .any(|(n, v)| n == http::header::ACCEPT_ENCODING && v == "identity")
    };
    assert!(accept(&node("anthropic"), "/v1/chat/completions"), "a translated answer");
    assert!(accept(&node("openai"), "/v1/responses"), "a response object whose ids are tagged");
    assert!(!accept(&node("openai"), "/v1/chat/completions"), "an answer passed on as it is may come compressed");
}

#[test]
fn token_counts_near_the_maximum_saturate_rather_than_overflow() {
    // An origin's numbers may be anything up to u64::MAX: their sums
    // panicked in a debug build and wrapped to nearly 0 in a release one.
    let max = u64::MAX;
    let answers: [(Api, String); 3] = [
        (
            Api::Anthropic,
            format!(
                r#"{{"id":"m","type":"message","role":"assistant","content":[{{"type":"text","text":"hi"}}],"stop_reason":"end_turn","usage":{{"input_tokens":{max},"cache_read_input_tokens":1,"cache_creation_input_tokens":1,"output_tokens":{max}}}}}"#
            ),
        ),
        (
            Api::Gemini,
            format!(
                r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"text":"hi"}}]}},"finishReason":"STOP","index":0}}],"usageMetadata":{{"promptTokenCount":{max},"candidatesTokenCount":{max},"thoughtsTokenCount":1}}}}"#
            ),
        ),
        (
            Api::Bedrock,
            format!(
                r#"{{"output":{{"message":{{"role":"assistant","content":[{{"text":"hi"}}]}}}},"stopReason":"end_turn","usage":{{"inputTokens":{max},"cacheReadInputTokens":1,"cacheWriteInputTokens":1,"outputTokens":{max}}}}}"#
            ),
        ),
    ];
    for (api, answer) in answers {
        let out: Value = serde_json::from_str(&run(api, 200, false, answer.as_bytes(), &[])).expect("JSON");
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": max, "completion_tokens": max, "total_tokens": max}),
            "{api:?}"
        );
    }
}

#[test]
fn a_streamed_tool_call_without_arguments_gets_an_empty_object_as_openais_do() {
    // Anthropic streams a call of a function without parameters as `input: {}`
    // and an empty `partial_json`; clients parse what they add up as JSON.
    let anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":3}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_time\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"f\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":1}\"}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":5}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let bedrock = [
        frame("messageStart", json!({"role": "assistant"}), false),
        frame(
            "contentBlockStart",
            json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t1", "name": "get_time"}}}),
            false,
        ),
        frame("contentBlockStop", json!({"contentBlockIndex": 0}), false),
        frame("messageStop", json!({"stopReason": "tool_use"}), false),
        frame("metadata", json!({"usage": {"inputTokens": 4, "outputTokens": 6}}), false),
    ]
    .concat();
    for (api, input, calls) in [(Api::Anthropic, anthropic.as_bytes(), 2), (Api::Bedrock, &bedrock[..], 1)] {
        let c = chunks(&run(api, 200, true, input, &[]));
        let arguments = |i: u64| -> String {
            c.iter()
                .flat_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array().cloned().unwrap_or_default())
                .filter(|t| t["index"] == i)
                .filter_map(|t| t["function"]["arguments"].as_str().map(str::to_string))
                .collect()
        };
        assert_eq!(arguments(0), "{}", "{api:?}: {c:?}");
        if calls == 2 {
            assert_eq!(arguments(1), "{\"a\":1}", "a call with arguments gets nothing more");
        }
        let last = c.last().expect("chunks");
        assert_eq!(last["choices"][0]["finish_reason"], "tool_calls", "the arguments come before the end");
    }
}
