//! Provider adapters end to end: OpenAI-shaped clients, nodes that speak
//! Anthropic's Messages API, Google's Gemini API and Azure OpenAI (the fake
//! origin, from their public references): plain, streamed, tool calls,
//! tool results, images, their errors (and the fallback a 529 or 429
//! leads to), and usage that prices the answer.

use edge_router_e2e::fake_origin::Reply;
use edge_router_e2e::{FakeOrigin, Script, TestRouter};
use serde_json::{Value, json};

const WEATHER_TOOL: &str = r#"{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}"#;

fn chat(model: &str, content: &str) -> Value {
    json!({"model": model, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]})
}

/// The text and tool-call arguments a stream of OpenAI chunks carries, and
/// its finish reason and usage, checking the stream's shape on the way.
fn read_stream(text: &str) -> (String, String, String, Value) {
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let (mut said, mut arguments, mut finish, mut usage) = (String::new(), String::new(), String::new(), Value::Null);
    for data in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).filter(|d| *d != "[DONE]") {
        let chunk: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
        assert_eq!(chunk["object"], "chat.completion.chunk", "{data}");
        let choice = &chunk["choices"][0];
        said.push_str(choice["delta"]["content"].as_str().unwrap_or_default());
        arguments.push_str(choice["delta"]["tool_calls"][0]["function"]["arguments"].as_str().unwrap_or_default());
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = f.to_string();
        }
        if !chunk["usage"].is_null() {
            usage = chunk["usage"].clone();
        }
    }
    (said, arguments, finish, usage)
}

/// What the node got, as JSON, and the header `name` of it.
fn last_seen(origin: &FakeOrigin) -> (String, Value, impl Fn(&str) -> Option<String>) {
    let seen = origin.seen().pop().expect("the node got a request");
    let body = serde_json::from_str(&seen.body).unwrap_or(Value::Null);
    let headers = seen.headers.clone();
    let header = move |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    (seen.target, body, header)
}

/// A chat that offers the weather tool and asks for the weather.
fn ask_weather(model: &str) -> Value {
    let mut ask = chat(model, "what is the weather in Paris?");
    ask["tools"] = json!([serde_json::from_str::<Value>(WEATHER_TOOL).expect("JSON")]);
    ask
}

/// The text, tool-call arguments, finish reason and usage of the answer to
/// `body` asked for as a stream.
async fn streamed(r: &TestRouter, body: &Value) -> (String, String, String, Value) {
    let mut body = body.clone();
    body["stream"] = json!(true);
    read_stream(&String::from_utf8_lossy(&r.chat("US", &body).await.body))
}

/// The weather tool call of a (not streamed) answer, checked: its name,
/// its arguments and the finish reason.
fn weather_call(reply: &Value) -> Value {
    let call = reply["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(
        (call["function"]["name"].as_str(), reply["choices"][0]["finish_reason"].as_str()),
        (Some("get_weather"), Some("tool_calls")),
        "{reply}"
    );
    let arguments = call["function"]["arguments"].as_str().and_then(|a| serde_json::from_str::<Value>(a).ok());
    assert_eq!(arguments, Some(json!({"city": "Paris"})), "{reply}");
    call
}

/// The streamed weather tool call's arguments and finish reason, checked.
fn assert_streamed_call((_, arguments, finish, _): (String, String, String, Value)) {
    assert_eq!(
        (serde_json::from_str::<Value>(&arguments).ok(), finish.as_str()),
        (Some(json!({"city": "Paris"})), "tool_calls")
    );
}

/// `ask` followed by the assistant's `call` and the tool's `result`.
fn with_result(ask: &Value, call: &Value, result: &str) -> Value {
    let mut ask = ask.clone();
    ask["messages"].as_array_mut().expect("messages").extend([
        json!({"role": "assistant", "content": null, "tool_calls": [call.clone()]}),
        json!({"role": "tool", "tool_call_id": call["id"], "content": result}),
    ]);
    ask
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_node_serves_openai_clients_plain_streamed_with_tools_and_images() {
    // SAFETY: set before the router starts; no other test reads this variable.
    unsafe { std::env::set_var("E2E_ANTHROPIC_KEY", "sk-ant-e2e") };
    let claude = FakeOrigin::start("claude", Script::default()).await.expect("start");
    let config = format!(
        "nodes:\n  - {{id: claude, type: cloud, provider: anthropic, host: \"{}\", api_key_env: E2E_ANTHROPIC_KEY, models: [claude-haiku]}}\n",
        claude.url()
    );
    let r = TestRouter::new(&config).await;

    let reply = r.chat("US", &chat("claude-haiku", "hi")).await;
    assert_eq!((reply.status, reply.node()), (200, "claude"), "{:?}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["content"], "hello from claude");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"], json!({"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}));
    let (target, sent, header) = last_seen(&claude);
    assert_eq!(target, "/v1/messages");
    assert_eq!(
        (header("x-api-key").as_deref(), header("anthropic-version").as_deref()),
        (Some("sk-ant-e2e"), Some("2023-06-01"))
    );
    assert_eq!(header("authorization"), None, "the key goes in Anthropic's header only");
    assert_eq!((sent["system"].as_str(), sent["max_tokens"].as_u64()), (Some("be brief"), Some(4096)));
    assert_eq!(sent["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]));

    // Streamed: Anthropic's events become OpenAI's chunks, with usage at the end.
    let mut body = chat("claude-haiku", "hi");
    body["stream"] = json!(true);
    let reply = r.chat("US", &body).await;
    assert_eq!(reply.header("content-type"), "text/event-stream");
    let (said, _, finish, usage) = read_stream(&String::from_utf8_lossy(&reply.body));
    assert_eq!((said.as_str(), finish.as_str()), ("hello from claude", "stop"));
    assert_eq!(usage["total_tokens"], 10);

    // A tool call, plain and streamed, and its result sent back.
    let ask = ask_weather("claude-haiku");
    let call = weather_call(&r.chat("US", &ask).await.json());
    let (_, sent, _) = last_seen(&claude);
    assert_eq!(sent["tools"][0]["input_schema"]["required"], json!(["city"]));
    assert_streamed_call(streamed(&r, &ask).await);
    let reply = r.chat("US", &with_result(&ask, &call, "18C and sunny")).await.json();
    assert_eq!(reply["choices"][0]["message"]["content"], "claude heard: tool said 18C and sunny");
    let (_, sent, _) = last_seen(&claude);
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(
        sent["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": call["id"], "content": "18C and sunny"})
    );

    // An image as a data URL goes as base64, one by URL by reference.
    let image = json!({"model": "claude-haiku", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]});
    assert_eq!(r.chat("US", &image).await.status, 200);
    let (_, sent, _) = last_seen(&claude);
    let blocks = &sent["messages"][0]["content"];
    assert_eq!(blocks[1]["source"], json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}));
    assert_eq!(blocks[2]["source"], json!({"type": "url", "url": "https://example.com/cat.jpg"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_come_back_in_openais_shape_and_overload_falls_back() {
    // SAFETY: set before the router starts; no other test reads this variable.
    unsafe { std::env::set_var("E2E_ANTHROPIC_KEY_2", "sk-ant-e2e") };
    let overloaded = Script::always(Reply { status: Some(529), ..Reply::default() });
    let claude = FakeOrigin::start("claude", overloaded).await.expect("start");
    let limited = Script::always(Reply { status: Some(429), ..Reply::default() });
    let gemini = FakeOrigin::start("gemini", limited).await.expect("start");
    let backup = FakeOrigin::start("backup", Script::default()).await.expect("start");
    let config = format!(
        "nodes:
  - {{id: claude, type: cloud, provider: anthropic, host: \"{}\", api_key_env: E2E_ANTHROPIC_KEY_2}}
  - {{id: gemini, type: cloud, api: gemini, host: \"{}\", api_key_env: E2E_ANTHROPIC_KEY_2}}
  - {{id: backup, type: cloud, host: \"{}\"}}
routing:
  rules:
    - {{match: {{model: claude*}}, target: claude, fallback: [backup]}}
    - {{match: {{model: gemini*}}, target: gemini, fallback: [backup]}}
    - {{match: {{model: alone}}, target: claude}}
",
        claude.url(),
        gemini.url(),
        backup.url()
    );
    let r = TestRouter::new(&config).await;
    // Anthropic's 529 (overloaded) and Gemini's 429 lead to the fallback as OpenAI's would.
    for model in ["claude-haiku", "gemini-pro"] {
        let reply = r.chat("US", &chat(model, "hi")).await;
        assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (200, "backup", "2"), "{model}");
    }
    // With nowhere to fall back to, the client gets the provider's error as OpenAI's.
    let reply = r.chat("US", &chat("alone", "hi")).await;
    assert_eq!(reply.status, 503, "a 529 reaches clients as 503, which their SDKs retry");
    let error = reply.json();
    assert_eq!(error["error"]["type"], "overloaded_error", "{error}");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("told to fail")), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_node_serves_openai_clients_plain_streamed_and_with_tools() {
    // SAFETY: set before the router starts; no other test reads this variable.
    unsafe { std::env::set_var("E2E_GEMINI_KEY", "AIza-e2e") };
    let gemini = FakeOrigin::start("gemini", Script::default()).await.expect("start");
    let config = format!(
        "nodes:\n  - {{id: gemini, type: cloud, provider: gemini, host: \"{}\", api_key_env: E2E_GEMINI_KEY, models: [gemini-pro]}}\n",
        gemini.url()
    );
    let r = TestRouter::new(&config).await;
    let reply = r.chat("US", &chat("gemini-pro", "hi")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let answer = reply.json();
    assert_eq!(
        (answer["choices"][0]["message"]["content"].as_str(), answer["usage"]["total_tokens"].as_u64()),
        (Some("hello from gemini"), Some(10))
    );
    let (target, sent, header) = last_seen(&gemini);
    assert_eq!(target, "/v1beta/models/gemini-pro:generateContent");
    assert_eq!(header("x-goog-api-key").as_deref(), Some("AIza-e2e"));
    assert_eq!(sent["systemInstruction"], json!({"parts": [{"text": "be brief"}]}));
    assert_eq!(sent["contents"], json!([{"role": "user", "parts": [{"text": "hi"}]}]));

    let (said, _, finish, usage) = streamed(&r, &chat("gemini-pro", "hi")).await;
    assert_eq!(
        (said.as_str(), finish.as_str(), usage["total_tokens"].as_u64()),
        ("hello from gemini", "stop", Some(10))
    );
    assert_eq!(last_seen(&gemini).0, "/v1beta/models/gemini-pro:streamGenerateContent?alt=sse");

    let ask = ask_weather("gemini-pro");
    let call = weather_call(&r.chat("US", &ask).await.json());
    let reply = r.chat("US", &with_result(&ask, &call, "18C")).await.json();
    assert_eq!(reply["choices"][0]["message"]["content"], "gemini heard: tool said 18C");
    let (_, sent, _) = last_seen(&gemini);
    assert_eq!(
        sent["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"result": "18C"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_openai_node_gets_its_deployment_path_key_and_api_version() {
    // SAFETY: set before the router starts; no other test reads this variable.
    unsafe { std::env::set_var("E2E_AZURE_KEY", "azure-e2e") };
    let azure = FakeOrigin::start("azure", Script::default()).await.expect("start");
    let config = format!(
        "nodes:\n  - {{id: azure, type: cloud, provider: azure, api_version: \"2024-06-01\", host: \"{}/\", api_key_env: E2E_AZURE_KEY}}\n",
        azure.url()
    );
    let r = TestRouter::new(&config).await;
    let reply = r.chat("US", &chat("gpt-4o", "hi")).await;
    assert_eq!(
        (reply.status, reply.json()["choices"][0]["message"]["content"].as_str()),
        (200, Some("hello from azure"))
    );
    let (target, _, header) = last_seen(&azure);
    assert_eq!(target, "/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01");
    assert_eq!((header("api-key").as_deref(), header("authorization")), (Some("azure-e2e"), None));
    let reply = r
        .request(
            "POST",
            "/v1/embeddings",
            &[("content-type", "application/json")],
            r#"{"model":"text-embedding-3-small","input":["a"]}"#,
        )
        .await;
    assert_eq!((reply.status, reply.json()["data"][0]["object"].as_str()), (200, Some("embedding")));
    assert_eq!(last_seen(&azure).0, "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-06-01");

    // Streamed and with tools: Azure OpenAI's answers are OpenAI's, passed on as they come.
    let (said, _, finish, usage) = streamed(&r, &chat("gpt-4o", "hi")).await;
    assert_eq!(
        (said.as_str(), finish.as_str(), usage["total_tokens"].as_u64()),
        ("hello from azure", "stop", Some(10))
    );
    assert_streamed_call(streamed(&r, &ask_weather("gpt-4o")).await);
    assert_eq!(
        last_seen(&azure).1["tools"][0]["function"]["name"],
        "get_weather",
        "the body goes as the client sent it"
    );

    // A node whose key is not set: Azure's own 401 reaches the client as Azure words it.
    let keyless = format!(
        "nodes:\n  - {{id: azure, type: cloud, provider: azure, host: \"{}\", api_key_env: E2E_AZURE_KEY_UNSET}}\n",
        azure.url()
    );
    let r = TestRouter::new(&keyless).await;
    let reply = r.chat("US", &chat("gpt-4o", "hi")).await;
    assert_eq!(reply.status, 401);
    assert!(
        reply.json()["error"]["message"].as_str().is_some_and(|m| m.contains("invalid subscription key")),
        "{:?}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translated_answers_usage_is_what_the_budget_is_charged() {
    // SAFETY: set before the router starts; no other test reads this variable.
    unsafe { std::env::set_var("E2E_ANTHROPIC_KEY_3", "sk-ant-e2e") };
    let metered = Script::always(Reply { usage: Some([400, 600]), ..Reply::default() });
    let claude = FakeOrigin::start("claude", metered).await.expect("start");
    let backup = FakeOrigin::start("backup", Script::default()).await.expect("start");
    let config = format!(
        "nodes:
  - {{id: claude, type: cloud, provider: anthropic, host: \"{}\", api_key_env: E2E_ANTHROPIC_KEY_3, cost_per_1k_tokens: 1.0, max_cost_per_day: 1.2}}
  - {{id: backup, type: cloud, host: \"{}\", cost_per_1k_tokens: 2.0}}
",
        claude.url(),
        backup.url()
    );
    let r = TestRouter::new(&config).await;
    // The first answer reports 1,000 tokens in Anthropic's usage: 1.0 of the
    // 1.2 budget. Were it not read, the estimate (about 0.27) would be charged
    // and the next request would fit.
    assert_eq!(r.chat("US", &chat("claude-haiku", "hi")).await.node(), "claude");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(r.chat("US", &chat("claude-haiku", "hi")).await.node(), "backup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bedrock_node_gets_signed_converse_requests_and_answers_as_openai_does() {
    // SAFETY: set before the router starts; no other test reads these variables.
    unsafe {
        std::env::set_var("E2E_AWS_KEY_ID", "AKIDEDGEROUTERE2E");
        std::env::set_var("E2E_AWS_SECRET", edge_router_e2e::fake_origin::BEDROCK_SECRET);
        std::env::set_var("E2E_AWS_WRONG_SECRET", "not-the-secret");
    }
    let bedrock = FakeOrigin::start("bedrock", Script::default()).await.expect("start");
    let throttled = FakeOrigin::start("throttled", Script::always(Reply { status: Some(429), ..Reply::default() }))
        .await
        .expect("start");
    let backup = FakeOrigin::start("backup", Script::default()).await.expect("start");
    let config = format!(
        "nodes:
  - {{id: bedrock, type: cloud, provider: bedrock, region: us-east-1, host: \"{}\", models: [\"anthropic.claude-3-haiku-20240307-v1:0\"],
      aws_credentials_env: {{access_key_id: E2E_AWS_KEY_ID, secret_access_key: E2E_AWS_SECRET, session_token: null}}}}
  - {{id: throttled, type: cloud, provider: bedrock, region: eu-west-1, host: \"{}\",
      aws_credentials_env: {{access_key_id: E2E_AWS_KEY_ID, secret_access_key: E2E_AWS_SECRET}}}}
  - {{id: forged, type: cloud, provider: bedrock, region: us-east-1, host: \"{}\",
      aws_credentials_env: {{access_key_id: E2E_AWS_KEY_ID, secret_access_key: E2E_AWS_WRONG_SECRET}}}}
  - {{id: backup, type: cloud, host: \"{}\"}}
routing:
  rules:
    - {{match: {{model: throttled}}, target: throttled, fallback: [backup]}}
    - {{match: {{model: forged}}, target: forged}}
",
        bedrock.url(),
        throttled.url(),
        bedrock.url(),
        backup.url()
    );
    let r = TestRouter::new(&config).await;
    let model = "anthropic.claude-3-haiku-20240307-v1:0";
    let reply = r.chat("US", &chat(model, "hi")).await;
    assert_eq!((reply.status, reply.node()), (200, "bedrock"), "{:?}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["choices"][0]["message"]["content"], "hello from bedrock");
    assert_eq!(answer["usage"]["total_tokens"], 10);
    let (target, sent, header) = last_seen(&bedrock);
    assert_eq!(target, "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse");
    assert!(header("authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEDGEROUTERE2E/")));
    assert_eq!(sent["system"], json!([{"text": "be brief"}]));
    assert_eq!(sent["messages"], json!([{"role": "user", "content": [{"text": "hi"}]}]));

    // ConverseStream's binary frames become OpenAI's SSE chunks.
    let mut body = chat(model, "hi");
    body["stream"] = json!(true);
    let reply = r.chat("US", &body).await;
    assert_eq!(reply.header("content-type"), "text/event-stream");
    let (said, _, finish, usage) = read_stream(&String::from_utf8_lossy(&reply.body));
    assert_eq!(
        (said.as_str(), finish.as_str(), usage["total_tokens"].as_u64()),
        ("hello from bedrock", "stop", Some(10))
    );

    // Tool calls, plain and streamed, and the result sent back.
    let ask = ask_weather(model);
    let call = weather_call(&r.chat("US", &ask).await.json());
    assert_eq!(
        last_seen(&bedrock).1["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"],
        json!(["city"])
    );
    assert_streamed_call(streamed(&r, &ask).await);
    assert_eq!(
        r.chat("US", &with_result(&ask, &call, "18C")).await.json()["choices"][0]["message"]["content"],
        "bedrock heard: tool said 18C"
    );

    // Throttling falls back; a signature made with the wrong secret is refused as Bedrock refuses it.
    let reply = r.chat("US", &chat("throttled", "hi")).await;
    assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (200, "backup", "2"));
    let reply = r.chat("US", &chat("forged", "hi")).await;
    assert_eq!(reply.status, 403);
    assert!(
        reply.json()["error"]["message"].as_str().is_some_and(|m| m.contains("signature we calculated does not match")),
        "{:?}",
        reply.body
    );
}
