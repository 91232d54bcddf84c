//! The adapters' translations, and their streams cut in every way.

use std::collections::VecDeque;

use bytes::Bytes;
use edge_router::RouterConfig;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

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

#[test]
fn an_openai_chat_becomes_a_messages_request() {
    let openai = json!({
        "model": "claude-haiku", "temperature": 0.2, "stop": "END", "user": "u-1", "parallel_tool_calls": false,
        "max_completion_tokens": 300, "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "not json"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "21C"}]},
        ]
    });
    let m = anthropic::request(&openai);
    assert_eq!(m["system"], "be brief\n\nand kind");
    assert_eq!((m["max_tokens"].as_u64(), m["stop_sequences"].clone()), (Some(300), json!(["END"])));
    assert_eq!(m["tool_choice"], json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true}));
    assert_eq!(m["metadata"], json!({"user_id": "u-1"}));
    assert_eq!(m["tools"], json!([{"name": "get_weather", "input_schema": {"type": "object"}}]));
    let messages = m["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3, "the two tool results answer in one user turn: {m}");
    assert_eq!(
        messages[1]["content"][0],
        json!({"type": "tool_use", "id": "c1", "name": "get_weather", "input": {"city": "Paris"}})
    );
    assert_eq!(messages[1]["content"][1]["input"], json!({}), "arguments that are not JSON become an empty input");
    assert_eq!(messages[2]["content"][1], json!({"type": "tool_result", "tool_use_id": "c2", "content": "21C"}));
    // No limit from the client: the Messages API needs one.
    assert_eq!(anthropic::request(&json!({"model": "m", "messages": []}))["max_tokens"], anthropic::DEFAULT_MAX_TOKENS);
}

#[test]
fn a_message_becomes_a_chat_completion() {
    let message = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku","content":[{"type":"text","text":"Let me check. "},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}],"stop_reason":"tool_use","usage":{"input_tokens":10,"cache_read_input_tokens":90,"output_tokens":7}}"#;
    let out: Value = serde_json::from_str(&run(Api::Anthropic, 200, false, message, &[9, 70])).expect("JSON");
    assert_eq!((out["object"].as_str(), out["created"].as_u64()), (Some("chat.completion"), Some(1_700_000_000)));
    let choice = &out["choices"][0];
    assert_eq!(
        (choice["message"]["content"].as_str(), choice["finish_reason"].as_str()),
        (Some("Let me check. "), Some("tool_calls"))
    );
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"],
        json!({"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"})
    );
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}),
        "cached input counts"
    );
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
fn anthropics_events_become_openais_chunks() {
    let out = run(Api::Anthropic, 200, true, ANTHROPIC_STREAM.as_bytes(), &[]);
    assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
    let c = chunks(&out);
    assert_eq!(c[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert!(
        c.iter().all(|c| c["id"] == "msg_1" && c["model"] == "claude-haiku" && c["object"] == "chat.completion.chunk")
    );
    let text: String = c.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Hi \"there\"");
    let call = &c.iter().find(|c| !c["choices"][0]["delta"]["tool_calls"].is_null()).expect("a tool call")["choices"]
        [0]["delta"]["tool_calls"][0];
    assert_eq!(
        (call["index"].as_u64(), call["id"].as_str(), call["function"]["name"].as_str()),
        (Some(0), Some("toolu_1"), Some("f"))
    );
    let arguments: String =
        c.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()).collect();
    assert_eq!(arguments, "{\"a\":1}");
    let last = c.last().expect("chunks");
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(last["usage"], json!({"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}));
}

#[test]
fn a_provider_error_mid_stream_becomes_openais_error_event() {
    let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"x\",\"usage\":{}}}\n\n\
event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let out = run(Api::Anthropic, 200, true, stream.as_bytes(), &[]);
    assert!(
        out.contains("event: error\ndata: {\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"),
        "{out}"
    );
    assert!(!out.contains("[DONE]"), "a stream that failed is not done: {out}");
}

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

#[test]
fn an_openai_chat_becomes_a_gemini_request() {
    let openai = json!({
        "model": "gemini-pro", "temperature": 0.5, "max_tokens": 50, "stop": ["x"], "response_format": {"type": "json_object"},
        "tool_choice": "required",
        "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}],
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"q\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "{\"answer\": 42}"},
        ]
    });
    let g = gemini::request(&openai);
    assert_eq!(g["systemInstruction"], json!({"parts": [{"text": "be brief"}]}));
    assert_eq!(g["contents"][0]["parts"][1], json!({"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}}));
    assert_eq!(
        g["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"q": 1}}, "thoughtSignature": "skip_thought_signature_validator"}]}),
        "a call the client kept no signature for says so"
    );
    assert_eq!(g["contents"][2]["parts"][0]["functionResponse"], json!({"name": "f", "response": {"answer": 42}}));
    assert_eq!(
        g["generationConfig"],
        json!({"temperature": 0.5, "maxOutputTokens": 50, "stopSequences": ["x"], "responseMimeType": "application/json"})
    );
    assert_eq!(g["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY"}}));
    assert_eq!(
        g["tools"][0]["functionDeclarations"][0],
        json!({"name": "f", "description": "d", "parametersJsonSchema": {"type": "object"}})
    );
    assert_eq!(gemini::target("models/gemini 2", true), "/v1beta/models/gemini%202:streamGenerateContent?alt=sse");
}

const GEMINI_STREAM: &str = "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hel\"}]},\"index\":0}],\"modelVersion\":\"gemini-pro\",\"responseId\":\"r1\"}\r\n\r\n\
data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"lo\"}]},\"finishReason\":\"MAX_TOKENS\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":2,\"thoughtsTokenCount\":4}}\r\n\r\n";

#[test]
fn geminis_responses_become_openais_chunks() {
    let out = run(Api::Gemini, 200, true, GEMINI_STREAM.as_bytes(), &[]);
    let c = chunks(&out);
    let text: String = c.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Hello");
    let last = c.last().expect("chunks");
    assert_eq!((last["id"].as_str(), last["choices"][0]["finish_reason"].as_str()), (Some("r1"), Some("length")));
    assert_eq!(
        last["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}),
        "thinking is output"
    );
    assert!(out.ends_with("data: [DONE]\n\n"));
    // A stream that ends without saying why was cut: no [DONE].
    let cut = GEMINI_STREAM.split("\r\n\r\n").next().unwrap_or_default().to_string() + "\r\n\r\n";
    assert!(!run(Api::Gemini, 200, true, cut.as_bytes(), &[]).contains("[DONE]"));
}

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

#[test]
fn a_messages_request_becomes_an_openai_chat() {
    let m = json!({
        "model": "gpt-4o", "max_tokens": 100, "system": [{"type": "text", "text": "be brief"}], "stream": true,
        "stop_sequences": ["END"], "metadata": {"user_id": "u-1"},
        "tools": [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "checking"}, {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "18C"}]}, {"type": "text", "text": "and?"}]},
        ]
    });
    let c = messages::to_chat(&m);
    assert_eq!(c["messages"][0], json!({"role": "system", "content": "be brief"}));
    assert_eq!(
        c["messages"][1]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}})
    );
    assert_eq!(
        c["messages"][2]["tool_calls"][0]["function"],
        json!({"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"})
    );
    assert_eq!(c["messages"][3], json!({"role": "tool", "tool_call_id": "t1", "content": "18C"}));
    assert_eq!(c["messages"][4], json!({"role": "user", "content": "and?"}));
    assert_eq!((c["tool_choice"].as_str(), c["parallel_tool_calls"].as_bool()), (Some("required"), Some(false)));
    assert_eq!((c["stop"].clone(), c["user"].clone()), (json!(["END"]), json!("u-1")));
    assert_eq!(c["stream_options"], json!({"include_usage": true}), "the usage the last event reports");
    assert_eq!(
        c["tools"][0]["function"],
        json!({"name": "get_weather", "parameters": {"type": "object"}, "description": "d"})
    );
}

/// Runs `input` through a fresh `ToMessages` cut at `cuts`.
fn to_messages(ok: bool, sse: bool, input: &[u8], cuts: &[usize]) -> String {
    let mut t = messages::ToMessages::new(ok, sse);
    String::from_utf8(crate::test_support::feed(&mut t, input, cuts)).expect("UTF-8")
}

#[test]
fn openais_answers_become_anthropics_for_claude_native_clients() {
    let completion = br#"{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hi","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
    let m: Value = serde_json::from_str(&to_messages(true, false, completion, &[7])).expect("JSON");
    assert_eq!(
        m["content"],
        json!([{"type": "text", "text": "hi"}, {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}])
    );
    assert_eq!(
        (m["stop_reason"].as_str(), m["usage"].clone()),
        (Some("tool_use"), json!({"input_tokens": 3, "output_tokens": 4}))
    );
    let error = br#"{"error":{"type":"rate_limited","message":"slow down"}}"#;
    let e: Value = serde_json::from_str(&to_messages(false, true, error, &[])).expect("JSON");
    assert_eq!(e, json!({"type": "error", "error": {"type": "rate_limited", "message": "slow down"}}));
    // A stream: text, then a tool call, then the usage chunk and [DONE].
    let stream = concat!(
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n",
        "data: [DONE]\n\n",
    );
    let whole = to_messages(true, true, stream.as_bytes(), &[]);
    let kinds: Vec<&str> = whole.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(
        whole.contains("\"usage\":{\"input_tokens\":3,\"output_tokens\":4}")
            && whole.contains("\"stop_reason\":\"tool_use\""),
        "{whole}"
    );
    for cuts in [&[5usize, 90, 91, 300][..], &[1, 2, 3, 400, 401]] {
        assert_eq!(to_messages(true, true, stream.as_bytes(), cuts), whole, "cut at {cuts:?}");
    }
}

#[test]
fn an_anthropic_nodes_own_stream_reports_its_input_tokens_at_the_end() {
    let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n";
    let mut t = messages::carry_input_tokens();
    let mut out = VecDeque::new();
    t.chunk(Bytes::from_static(stream.as_bytes()), &mut out);
    t.end(&mut out);
    let out = String::from_utf8(out.into_iter().flatten().collect()).expect("UTF-8");
    let usage = crate::usage::find_usage(out.as_bytes()).expect("usage");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 9), "{out}");
}

#[test]
fn an_openai_chat_becomes_a_converse_request() {
    let openai = json!({
        "model": "amazon.nova-lite-v1:0", "max_tokens": 64, "temperature": 0.1, "stop": "END", "tool_choice": {"type": "function", "function": {"name": "f"}},
        "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}],
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}, {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"q\":1}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "42"},
        ]
    });
    let c = bedrock::request(&openai);
    assert_eq!(c["system"], json!([{"text": "be brief"}]));
    assert_eq!(
        c["messages"][0]["content"],
        json!([{"text": "look"}, {"image": {"format": "png", "source": {"bytes": "AAAA"}}}]),
        "an image by URL is left out"
    );
    assert_eq!(c["messages"][1]["content"][0], json!({"toolUse": {"toolUseId": "t1", "name": "f", "input": {"q": 1}}}));
    assert_eq!(c["messages"][2]["content"][0], json!({"toolResult": {"toolUseId": "t1", "content": [{"text": "42"}]}}));
    assert_eq!(c["inferenceConfig"], json!({"maxTokens": 64, "temperature": 0.1, "stopSequences": ["END"]}));
    assert_eq!(c["toolConfig"]["toolChoice"], json!({"tool": {"name": "f"}}));
    assert_eq!(c["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"], json!({"json": {"type": "object"}}));
    assert_eq!(bedrock::target("amazon.nova-lite-v1:0", true), "/model/amazon.nova-lite-v1%3A0/converse-stream");
    let none = json!({"model": "m", "messages": [], "tool_choice": "none", "tools": openai["tools"]});
    assert!(bedrock::request(&none)["toolConfig"].is_null(), "Converse has no `none`: no tools offered");
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

fn converse_stream() -> Vec<u8> {
    [
        frame("messageStart", json!({"role": "assistant"}), false),
        frame("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}), false),
        frame("contentBlockStop", json!({"contentBlockIndex": 0}), false),
        frame(
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}),
            false,
        ),
        frame("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":"}}}), false),
        frame("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "1}"}}}), false),
        frame("messageStop", json!({"stopReason": "tool_use"}), false),
        frame("metadata", json!({"usage": {"inputTokens": 4, "outputTokens": 6, "totalTokens": 10}}), false),
    ]
    .concat()
}

#[test]
fn converse_stream_frames_become_openais_chunks_however_they_are_cut() {
    let input = converse_stream();
    let whole = run(Api::Bedrock, 200, true, &input, &[]);
    let c = chunks(&whole);
    let text: String = c.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    let arguments: String =
        c.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()).collect();
    assert_eq!((text.as_str(), arguments.as_str()), ("Hi", "{\"a\":1}"));
    let last = c.last().expect("chunks");
    assert_eq!(
        (last["choices"][0]["finish_reason"].as_str(), last["usage"]["total_tokens"].as_u64()),
        (Some("tool_calls"), Some(10))
    );
    assert!(whole.ends_with("data: [DONE]\n\n"));
    for cuts in [&[1usize, 2, 3, 11, 12][..], &[50, 51, 52, 53, 200, 201], &[input.len() - 1]] {
        assert_eq!(run(Api::Bedrock, 200, true, &input, cuts), whole, "cut at {cuts:?}");
    }
    // An exception mid-stream becomes OpenAI's error event; a broken frame is said to be one.
    let throttled = [
        frame("messageStart", json!({"role": "assistant"}), false),
        frame("throttlingException", json!({"message": "Too many requests"}), true),
    ]
    .concat();
    let out = run(Api::Bedrock, 200, true, &throttled, &[]);
    assert!(
        out.contains("event: error") && out.contains("throttlingException") && out.contains("Too many requests"),
        "{out}"
    );
    // Frames after the exception, in the same chunk, are not read: the stream has ended.
    let after = [
        throttled.clone(),
        frame("internalServerException", json!({"message": "again"}), true),
        frame("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "more"}}), false),
        frame("metadata", json!({"usage": {"inputTokens": 1, "outputTokens": 1}}), false),
    ]
    .concat();
    let out = run(Api::Bedrock, 200, true, &after, &[]);
    assert!(out.ends_with("\n\n") && out.matches("event: error").count() == 1, "{out}");
    assert!(!out.contains("more") && !out.contains("[DONE]"), "{out}");
    let mut broken = converse_stream();
    broken[20] ^= 0xff;
    assert!(run(Api::Bedrock, 200, true, &broken, &[]).contains("event stream is malformed"));
}

#[test]
fn a_converse_answer_becomes_a_chat_completion() {
    let answer = br#"{"output":{"message":{"role":"assistant","content":[{"text":"Hi"}]}},"stopReason":"max_tokens","usage":{"inputTokens":3,"outputTokens":2,"totalTokens":5}}"#;
    let out: Value = serde_json::from_str(&run(Api::Bedrock, 200, false, answer, &[10])).expect("JSON");
    assert_eq!(
        (out["choices"][0]["message"]["content"].as_str(), out["choices"][0]["finish_reason"].as_str()),
        (Some("Hi"), Some("length"))
    );
    assert_eq!(out["usage"]["total_tokens"], 5);
    let error: Value =
        serde_json::from_str(&run(Api::Bedrock, 400, false, br#"{"message":"Malformed input request"}"#, &[]))
            .expect("JSON");
    assert_eq!(error["error"]["message"], "Malformed input request");
}

#[test]
fn bedrock_requests_are_signed_for_their_region_time_and_body() {
    let creds = bedrock::AwsCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "secret".into(),
        session_token: Some("tok".into()),
    };
    let at = 1_440_938_160_000; // 2015-08-30T12:36:00Z
    let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse";
    let signed = bedrock::sign(url, b"{}", &creds, "us-east-1", at).expect("signed");
    let get =
        |name: &str| signed.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_str().unwrap_or_default().to_string());
    let auth = get("authorization").expect("authorization");
    assert!(
        auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders="
        ),
        "{auth}"
    );
    assert!(auth.contains("content-type;host;x-amz-date;x-amz-security-token"), "{auth}");
    assert_eq!(
        (get("x-amz-date").as_deref(), get("x-amz-security-token").as_deref()),
        (Some("20150830T123600Z"), Some("tok"))
    );
    assert!(format!("{creds:?}").find("secret").is_none(), "credentials never show in debug output");
    let other = bedrock::sign(url, b"{\"a\":1}", &creds, "us-east-1", at).expect("signed");
    let auth_of =
        |h: &[(HeaderName, HeaderValue)]| h.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v.clone());
    assert_ne!(auth_of(&other), auth_of(&signed), "the body is signed");
    for secret in ["authorization", "x-amz-security-token"] {
        assert!(signed.iter().find(|(n, _)| n == secret).is_some_and(|(_, v)| v.is_sensitive()), "{secret}");
    }
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

#[test]
fn a_messages_request_leaves_out_what_claude_refuses() {
    let openai = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}],
        "stop": ["\n", " \t", "END"], "temperature": 0.3, "top_p": 0.9});
    let m = anthropic::request(&openai);
    assert_eq!(m["stop_sequences"], json!(["END"]), "whitespace alone is not a stop sequence to Claude");
    assert_eq!((m["temperature"].as_f64(), m.get("top_p")), (Some(0.3), None), "not both");
    let only_newline = json!({"model": "claude", "messages": [], "stop": "\n", "top_p": 0.9});
    let m = anthropic::request(&only_newline);
    assert_eq!((m.get("stop_sequences"), m["top_p"].as_f64()), (None, Some(0.9)));
    let cut = br#"{"id":"m","model":"c","content":[{"type":"text","text":"long"}],"stop_reason":"model_context_window_exceeded","usage":{}}"#;
    let out: Value = serde_json::from_str(&run(Api::Anthropic, 200, false, cut, &[])).expect("JSON");
    assert_eq!(out["choices"][0]["finish_reason"], "length", "cut off by the context window");
}

#[test]
fn a_converse_request_offering_no_tools_tells_past_calls_as_text() {
    let history = json!([
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "12:00"},
    ]);
    let tools = json!([{"type": "function", "function": {"name": "get_time"}}]);
    for openai in [
        json!({"model": "m", "messages": history, "tools": tools, "tool_choice": "none", "temperature": 1.5, "top_p": 0.5}),
        json!({"model": "m", "messages": history, "temperature": 1.5}),
    ] {
        let c = bedrock::request(&openai);
        assert!(c["toolConfig"].is_null(), "{c}");
        let text = c.to_string();
        assert!(!text.contains("toolUse") && !text.contains("toolResult"), "Converse refuses them without tools: {c}");
        assert_eq!(c["messages"][1]["content"], json!([{"text": "(tool call t1: get_time({}))"}]));
        assert_eq!(c["messages"][2]["content"], json!([{"text": "(result of tool call t1: 12:00)"}]));
        assert_eq!(c["inferenceConfig"]["temperature"], 1.0, "Bedrock's models take up to 1");
        assert!(c["inferenceConfig"].get("topP").is_none(), "not both: Claude on Bedrock refuses them together");
    }
    let offered = bedrock::request(&json!({"model": "m", "messages": history, "tools": tools}));
    assert_eq!(offered["messages"][1]["content"][0]["toolUse"]["toolUseId"], "t1", "with tools, calls stay calls");
}

#[test]
fn geminis_thought_signatures_go_to_the_client_and_come_back_with_the_call() {
    let part = json!({"functionCall": {"name": "f", "args": {"q": 1}}, "thoughtSignature": "c2lnbmVk"});
    let response = json!({"candidates": [{"content": {"role": "model", "parts": [part, {"functionCall": {"name": "g", "args": {}}}]},
        "finishReason": "STOP"}], "responseId": "r"});
    let whole: Value =
        serde_json::from_str(&run(Api::Gemini, 200, false, response.to_string().as_bytes(), &[])).expect("JSON");
    let calls = &whole["choices"][0]["message"]["tool_calls"];
    let extra = json!({"google": {"thought_signature": "c2lnbmVk"}});
    assert_eq!((&calls[0]["extra_content"], calls[1].get("extra_content")), (&extra, None), "{whole}");
    let stream = format!("data: {response}\r\n\r\n");
    let c = chunks(&run(Api::Gemini, 200, true, stream.as_bytes(), &[]));
    let started: Vec<&Value> =
        c.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0].get("id").map(|_| c)).collect();
    assert_eq!(started[0]["choices"][0]["delta"]["tool_calls"][0]["extra_content"], extra);
    // The client sends the calls back as it got them, or without the signature.
    for (kept, first) in [(true, "c2lnbmVk"), (false, "skip_thought_signature_validator")] {
        let mut sent = calls.clone();
        if !kept {
            sent[0].as_object_mut().expect("a call").remove("extra_content");
        }
        let openai = json!({"model": "gemini-3", "messages": [{"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "tool_calls": sent}]});
        let g = gemini::request(&openai);
        let parts = &g["contents"][1]["parts"];
        assert_eq!(
            (parts[0]["thoughtSignature"].as_str(), parts[1].get("thoughtSignature")),
            (Some(first), None),
            "{g}"
        );
    }
}
