//! Gemini's API: OpenAI requests translated into it, and its answers into
//! OpenAI's, thought signatures included.

use super::*;

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
