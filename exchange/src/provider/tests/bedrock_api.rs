//! Bedrock's Converse API: OpenAI requests translated into it, signed, and
//! its answers and event-stream frames into OpenAI's.

use super::*;

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
