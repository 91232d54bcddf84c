//! Personal data at the edge, through the real edge box and its wasm
//! module, against real origins: a cloud node gets placeholders and the
//! client its own values back (in JSON, in a stream cut into 3-character
//! pieces and 7-byte chunks, and in a streamed tool call), a local node
//! gets the request as it came, `redact` masks for good, `block` refuses,
//! a restored answer is never cached, and the logs hold counts, never values.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_origin::{FakeOrigin, Reply, Script};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

mod common;

use common::{Client, EdgeBox, client};

const PROMPT: &str = "Mail jane.doe@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111.";
const VALUES: [&str; 3] = ["jane.doe@example.com", "+44 20 7946 0958", "4111 1111 1111 1111"];

/// An origin that repeats the prompt, streaming it 3 characters an event
/// and 7 bytes a chunk, and puts it into a tool call's arguments when tools are offered.
async fn repeating(name: &str, arguments: bool) -> FakeOrigin {
    let reply = Reply {
        text: Some("Noted: {prompt}".into()),
        piece_chars: Some(3),
        chunk_bytes: Some(7),
        arguments: arguments.then(|| "{\"note\": \"{prompt}\", \"n\": 1}".into()),
        ..Reply::default()
    };
    FakeOrigin::start(name, Script::always(reply)).await.expect("start")
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    /// A stream's events' JSON (`[DONE]` left out).
    fn events(&self) -> Vec<Value> {
        let text = String::from_utf8(self.body.to_vec()).expect("UTF-8");
        text.split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
            .collect()
    }
}

async fn post(client: &Client, addr: &str, body: &Value) -> Answer {
    post_to(client, addr, "/v1/chat/completions", &[], body.to_string()).await
}

/// A JSON `body` (as sent, so it may be broken) POSTed to `path`, with
/// `headers` (and `Content-Type: application/json` unless they set one).
async fn post_to(client: &Client, addr: &str, path: &str, headers: &[(&str, &str)], body: String) -> Answer {
    let mut req = http::Request::post(format!("{addr}{path}"));
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
        req = req.header("content-type", "application/json");
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let resp = client.request(req).await.expect("the router answers");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("the whole answer").to_bytes();
    Answer { status: parts.status.as_u16(), headers: parts.headers, body }
}

/// The header Anthropic's API asks of every request.
const ANTHROPIC: [(&str, &str); 1] = [("anthropic-version", "2023-06-01")];

fn ask(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "temperature": 0, "messages": [{"role": "user", "content": PROMPT}]})
}

/// What an origin was sent, last request first.
fn last_sent(origin: &FakeOrigin) -> String {
    origin.seen().last().map(|s| s.body.clone()).unwrap_or_default()
}

fn no_originals(text: &str, what: &str) {
    for value in VALUES {
        assert!(!text.contains(value), "{what} holds {value:?}: {text}");
    }
}

/// Waits for `path` to hold `lines` lines.
async fn lines_of(path: &std::path::Path, lines: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= lines || Instant::now() > deadline {
            return text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_sees_placeholders_and_the_client_its_own_values() {
    let cloud = repeating("cloud", true).await;
    let gpu = repeating("gpu", false).await;
    let strict = repeating("strict", false).await;
    let masked = repeating("masked", false).await;
    let dir = std::env::temp_dir().join(format!("edge-router-pii-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (access, audit) = (dir.join("access.log"), dir.join("audit.log"));
    let _ = (std::fs::remove_file(&access), std::fs::remove_file(&audit));
    let config = format!(
        "admin: {{listen: \"127.0.0.1:0\", audit_log: \"{}\"}}
monitoring: {{access_log: \"{}\"}}
cache: {{enabled: true, default_ttl: 5m}}
nodes:
  - {{id: cloud, type: cloud, host: \"{}\", models: [gpt]}}
  - {{id: gpu, type: local, host: \"{}\", models: [llama]}}
  - {{id: strict, type: cloud, host: \"{}\", models: [strict]}}
  - {{id: masked, type: cloud, host: \"{}\", models: [masked]}}
pii:
  apply_to: [cloud]
  mode: pseudonymize
  policies:
    - {{apply_to: [strict], mode: block}}
    - {{apply_to: [masked], mode: redact}}
",
        audit.display(),
        access.display(),
        cloud.url(),
        gpu.url(),
        strict.url(),
        masked.url()
    );
    let edge = EdgeBox::start_as("pii.yaml", &config);
    let client = client();
    let addr = edge.addr.as_str();
    let restored = format!("Noted: {PROMPT}");

    // A JSON answer.
    let a = post(&client, addr, &ask("gpt", false)).await;
    assert_eq!((a.status, a.header("x-edge-node")), (200, "cloud"));
    assert_eq!(a.json()["choices"][0]["message"]["content"], restored.as_str());
    let sent = last_sent(&cloud);
    no_originals(&sent, "the cloud's request");
    assert!(sent.contains("[EMAIL_1]") && sent.contains("[PHONE_1]") && sent.contains("[CARD_1]"), "{sent}");
    assert_eq!(a.header("x-edge-cache"), "MISS");

    // The same again: a restored answer holds the client's values, so it was not stored.
    let again = post(&client, addr, &ask("gpt", false)).await;
    assert_eq!((again.status, again.header("x-edge-cache")), (200, "MISS"));
    assert_eq!(cloud.seen().len(), 2, "both went to the cloud");

    // A stream: 3 characters an event, 7 bytes a chunk, placeholders split everywhere.
    let s = post(&client, addr, &ask("gpt", true)).await;
    assert_eq!(s.status, 200);
    let pieces: Vec<String> =
        s.events().iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str().map(str::to_string)).collect();
    assert_eq!(pieces.concat(), restored);
    assert!(pieces.len() > 12, "it came in pieces: {pieces:?}");
    for piece in &pieces {
        assert!(!piece.contains('[') && !piece.contains(']'), "no placeholder, whole or in part: {piece:?}");
    }
    no_originals(&last_sent(&cloud), "the cloud's streamed request");

    // A tool call, streamed: its arguments come back as JSON holding the values.
    let mut with_tools = ask("gpt", true);
    with_tools["tools"] =
        json!([{"type": "function", "function": {"name": "file_note", "parameters": {"type": "object"}}}]);
    let t = post(&client, addr, &with_tools).await;
    let arguments: String = t
        .events()
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str().map(str::to_string))
        .collect();
    let arguments: Value = serde_json::from_str(&arguments).unwrap_or_else(|e| panic!("{e}: {arguments}"));
    assert_eq!(arguments, json!({"note": PROMPT, "n": 1}));
    no_originals(&last_sent(&cloud), "the cloud's request with tools");

    // A local node gets the request as it came.
    let l = post(&client, addr, &ask("llama", false)).await;
    assert_eq!((l.status, l.header("x-edge-node")), (200, "gpu"));
    assert!(last_sent(&gpu).contains(VALUES[0]), "{}", last_sent(&gpu));

    // `block` refuses, naming the kinds, never the values; the node sees nothing.
    let b = post(&client, addr, &ask("strict", false)).await;
    assert_eq!(b.status, 400);
    let error = &b.json()["error"];
    assert_eq!(error["type"], "personal_data");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("card: 1, email: 1, phone: 1"), "{message}");
    no_originals(message, "the error");
    assert!(strict.seen().is_empty(), "the blocking node got nothing");
    // A request with nothing personal in it goes to that node as usual.
    let clean = json!({"model": "strict", "messages": [{"role": "user", "content": "What is 2 + 2?"}]});
    assert_eq!(post(&client, addr, &clean).await.status, 200);
    assert_eq!(strict.seen().len(), 1);

    // `redact` masks for good, and such an answer may be cached: it holds no value.
    let r = post(&client, addr, &ask("masked", false)).await;
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Noted: Mail [EMAIL] or call [PHONE]; card [CARD].");
    no_originals(&last_sent(&masked), "the redacted request");
    assert_eq!(r.header("x-edge-cache"), "MISS");
    assert_eq!(post(&client, addr, &ask("masked", false)).await.header("x-edge-cache"), "HIT");

    // The access log counts what was found, by kind; neither log holds a value.
    let records = lines_of(&access, 9).await;
    let found: Vec<(&str, &str, &Value)> = records
        .iter()
        .filter(|r| r.get("pii").is_some())
        .map(|r| (r["node"].as_str().unwrap(), r["pii_mode"].as_str().unwrap(), &r["pii"]))
        .collect();
    let counts = json!({"card": 1, "email": 1, "phone": 1});
    // The cache's answer to the second redacted request is no exchange with a node.
    assert_eq!(found.len(), 6, "{records:#?}");
    assert!(found.iter().all(|(_, _, c)| **c == counts), "{found:?}");
    // Lines are written as answers end, not in the order they were asked.
    let mut modes: Vec<(&str, &str)> = found.iter().map(|(n, m, _)| (*n, *m)).collect();
    modes.sort_unstable();
    let mut expected = vec![("cloud", "pseudonymize"); 4];
    expected.extend([("-", "block"), ("masked", "redact")]);
    expected.sort_unstable();
    assert_eq!(modes, expected);
    assert!(records.iter().any(|r| r["refusal"] == "pii"), "the block is a refusal");
    let audit_lines = lines_of(&audit, 6).await;
    let audited: Vec<&Value> = audit_lines.iter().filter(|l| l["kind"] == "personal_data").collect();
    assert_eq!(audited.len(), 6, "{audit_lines:#?}");
    assert!(audited.iter().all(|l| l["found"] == counts && l["request_id"].is_string()));
    for file in [&access, &audit] {
        no_originals(&std::fs::read_to_string(file).unwrap(), &file.display().to_string());
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_providers_node_gets_placeholders_in_its_own_api_and_answers_are_restored_in_the_clients() {
    let claude = repeating("claude", false).await;
    let config = format!(
        "admin: {{listen: \"127.0.0.1:0\"}}
nodes:
  - {{id: claude, type: cloud, provider: anthropic, host: \"{}\", api_key_env: PII_TEST_ANTHROPIC_KEY, models: [claude]}}
routing: {{passthrough: claude}}
pii: {{mode: pseudonymize}}
",
        claude.url()
    );
    let edge =
        EdgeBox::start_with_env("pii-anthropic.yaml", &config, &[], &[("PII_TEST_ANTHROPIC_KEY", "sk-ant-test")]);
    let client = client();
    let restored = format!("Noted: {PROMPT}");

    // An OpenAI client: its request translated into Anthropic's, the stream back into OpenAI's chunks.
    let s = post(&client, &edge.addr, &ask("claude", true)).await;
    assert_eq!(s.status, 200, "{:?}", s.body);
    let pieces: Vec<String> =
        s.events().iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str().map(str::to_string)).collect();
    assert_eq!(pieces.concat(), restored);
    let sent = last_sent(&claude);
    assert!(
        sent.contains("\"max_tokens\"") && sent.contains("[EMAIL_1]"),
        "Anthropic's shape, with placeholders: {sent}"
    );
    no_originals(&sent, "the Anthropic node's request");

    // An Anthropic client: its own events, restored.
    let body = json!({"model": "claude", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": PROMPT}]});
    let answer = post_to(&client, &edge.addr, "/v1/messages", &ANTHROPIC, body.to_string()).await;
    assert_eq!(answer.status, 200);
    let text = String::from_utf8(answer.body.to_vec()).expect("UTF-8");
    let deltas: String = text
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|e| e["delta"]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(deltas, restored, "{text}");

    // A path the router passes through: its JSON body is read and protected too.
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": PROMPT}]});
    let answer = post_to(&client, &edge.addr, "/v1/messages/count_tokens", &ANTHROPIC, body.to_string()).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let answer = answer.body;
    let seen = claude.seen();
    let counted = seen.last().expect("the node was asked");
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert!(counted.target.starts_with("/v1/messages/count_tokens"), "{targets:?} {answer:?}");
    assert!(counted.body.contains("[EMAIL_1]"), "{}", counted.body);
    no_originals(&counted.body, "the passed-through request");
    // A body that says it is JSON and is not goes nowhere a policy applies.
    let broken = format!("{{\"messages\": \"{PROMPT}\"");
    let answer = post_to(&client, &edge.addr, "/v1/messages/count_tokens", &[], broken).await;
    assert_eq!(answer.status, 400);
    assert_eq!(claude.seen().len(), seen.len(), "the node got nothing");
    // Nor does a JSON body that does not say it is JSON: it would stream
    // through unread, so a node with a policy does not get it.
    let plain = json!({"model": "claude", "messages": [{"role": "user", "content": PROMPT}]}).to_string();
    let answer =
        post_to(&client, &edge.addr, "/v1/messages/count_tokens", &[("content-type", "text/plain")], plain).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(String::from_utf8_lossy(&answer.body).contains("declared as JSON"), "{:?}", answer.body);
    assert_eq!(claude.seen().len(), seen.len(), "the node got nothing");
    let stop = text.find("content_block_stop").expect("the block stops");
    assert!(!text[stop..].contains("text_delta"), "no text after its block stopped: {text}");
    no_originals(&last_sent(&claude), "the Anthropic client's request");
}

#[test]
fn check_says_which_nodes_get_what() {
    let dir = std::env::temp_dir().join(format!("edge-router-pii-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pii.yaml");
    std::fs::write(
        &path,
        "nodes:\n  - {id: gpu, type: local, host: \"http://10.0.0.5:8000\"}\n  - {id: gpt, type: cloud, host: \"https://api.openai.com\"}\n  - {id: eu, type: cloud, host: \"https://eu.example\"}\npii:\n  mode: pseudonymize\n  detect: [email, card]\n  words: [Falcon]\n  policies: [{apply_to: [eu], mode: block}]\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN).arg("check").arg(&path).output().expect("check runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("personal data (email, card, word):"), "{text}");
    assert!(text.contains("gpt") && text.contains("-> pseudonymized, restored in the answer"), "{text}");
    assert!(text.contains("eu") && text.contains("-> the request refused"), "{text}");
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("gpu") && l.contains("->") && l.contains("pseudonymized")),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
