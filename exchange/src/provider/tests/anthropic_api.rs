//! Anthropic's Messages API: OpenAI requests translated into it, its answers
//! and events into OpenAI's, and Claude-native clients served by OpenAI nodes.

use super::*;

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
