//! The conformance scenarios of `tests/conformance/` (see its README), run
//! through the edge box. `tests/workers/conformance.test.mjs` runs the same
//! files through the Workers build in workerd.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use edge_router_e2e::TestRouter;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// This host's name in a scenario's `only.host`.
const HOST: &str = "edge-box";

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_scenario_holds_on_the_edge_box() {
    let (mut passed, mut other_host, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for file in scenario_files() {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let scenario: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()));
        let name = scenario["name"].as_str().unwrap_or("?").to_string();
        if let Some(host) = scenario["only"]["host"].as_str().filter(|h| *h != HOST) {
            other_host.push(format!("{name} (only {host}: {})", scenario["only"]["reason"].as_str().unwrap_or("?")));
            continue;
        }
        match run(&scenario).await {
            Ok(()) => passed.push(name),
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    eprintln!(
        "conformance on the {HOST}: {} passed, {} failed, {} skipped as the other host's only:\n  {}",
        passed.len(),
        failed.len(),
        other_host.len(),
        other_host.join("\n  ")
    );
    assert!(failed.is_empty(), "conformance failures on the {HOST}:\n{}", failed.join("\n"));
    assert!(passed.len() >= 15, "expected the whole suite to run, ran {passed:?}");
}

/// Runs one scenario; `Err` says which step broke which expectation.
async fn run(scenario: &Value) -> Result<(), String> {
    let mut origins: Vec<(String, Option<MockServer>)> = Vec::new();
    let mut config = serde_json::to_string(&scenario["config"]).map_err(|e| e.to_string())?;
    for (name, spec) in scenario["origins"].as_object().into_iter().flatten() {
        let (url, server) = if spec["refuse"].as_bool() == Some(true) {
            (edge_router_e2e::refused_addr().await, None)
        } else {
            let server = MockServer::start().await;
            Mock::given(wiremock::matchers::any())
                .respond_with(Scripted { name: name.clone(), spec: spec.clone(), served: AtomicUsize::new(0) })
                .mount(&server)
                .await;
            (server.uri(), Some(server))
        };
        config = config.replace(&format!("{{{{origin:{name}}}}}"), &url);
        origins.push((name.clone(), server));
    }
    // The edge box learns the client's country from a trusted header.
    let mut config: Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
    config["server"]["country_header"] = json!("x-country");
    config["server"]["trusted_proxies"] = json!(["127.0.0.1"]);
    let router = TestRouter::start(&config.to_string()).await.map_err(|e| format!("config refused: {e:#}"))?;

    for (i, step) in scenario["steps"].as_array().into_iter().flatten().enumerate() {
        let req = &step["request"];
        let mut headers: Vec<(String, String)> = Vec::new();
        if let Some(country) = req["country"].as_str() {
            headers.push(("x-country".into(), country.into()));
        }
        let body = request_body(req);
        if !body.is_empty() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        for (n, v) in req["headers"].as_object().into_iter().flatten() {
            headers.push((n.clone(), v.as_str().unwrap_or_default().to_string()));
        }
        let borrowed: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let method = req["method"].as_str().unwrap_or("POST");
        let path = req["path"].as_str().unwrap_or("/v1/chat/completions");
        let reply = router.request(method, path, &borrowed, &body).await;
        let mut hits = Vec::new();
        for (name, server) in &origins {
            let count = match server {
                Some(s) => s.received_requests().await.map_or(0, |r| r.len()),
                None => 0,
            };
            hits.push((name.clone(), count));
        }
        check(
            &step["expect"],
            reply.status,
            &|n| reply.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string),
            &reply.body,
            &hits,
        )
        .map_err(|e| format!("step {}: {e}", i + 1))?;
    }
    router.shutdown(std::time::Duration::from_secs(1)).await;
    Ok(())
}

/// The request body a step describes: `chat` (a chat completion with
/// `words` words of prompt), `json`, `raw` text or `bytes` filler bytes.
fn request_body(req: &Value) -> String {
    if let Some(chat) = req["chat"].as_object() {
        let words = chat.get("words").and_then(Value::as_u64).unwrap_or(10) as usize;
        let mut body = json!({"messages": [{"role": "user", "content": vec!["hello"; words].join(" ")}]});
        for (k, v) in chat.iter().filter(|(k, _)| *k != "words") {
            body[k] = v.clone();
        }
        return body.to_string();
    }
    if !req["json"].is_null() {
        return req["json"].to_string();
    }
    if let Some(raw) = req["raw"].as_str() {
        return raw.to_string();
    }
    "x".repeat(req["bytes"].as_u64().unwrap_or(0) as usize)
}

/// Checks a response against a step's `expect` (see the README).
fn check(
    expect: &Value,
    status: u16,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    hits: &[(String, usize)],
) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    if let Some(want) = expect["status"].as_u64()
        && u64::from(status) != want
    {
        return Err(format!("status {status}, expected {want}; body: {text}"));
    }
    for (name, want) in expect["headers"].as_object().into_iter().flatten() {
        let got = header(name);
        let ok = match want.as_str() {
            None => got.is_none(),
            Some(w) if name == "content-type" => got.as_deref().is_some_and(|g| g.starts_with(w)),
            Some(w) => got.as_deref() == Some(w),
        };
        if !ok {
            return Err(format!("header {name} is {got:?}, expected {want}; body: {text}"));
        }
    }
    if let Some(fields) = expect["json"].as_object() {
        let doc: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON ({e}): {text}"))?;
        for (path, want) in fields {
            let got = path.split('.').fold(&doc, |v, key| &v[key]);
            if got != want {
                return Err(format!("body field {path} is {got}, expected {want}; body: {text}"));
            }
        }
    }
    if let Some(want) = expect["sse_events"].as_u64() {
        let got = text.lines().filter(|l| l.starts_with("data:")).count() as u64;
        if got != want || !text.contains("data: [DONE]") {
            return Err(format!("{got} SSE data events, expected {want} ending in [DONE]; body: {text}"));
        }
    }
    for (name, want) in expect["origin_hits"].as_object().into_iter().flatten() {
        let got = hits.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c) as u64;
        if Some(got) != want.as_u64() {
            return Err(format!("origin {name} got {got} requests in all, expected {want}"));
        }
    }
    Ok(())
}

/// An origin scripted by a scenario (see the README): it answers with
/// `status` (200 by default) and `headers`, and with a chat completion naming
/// itself and the model it was asked for, as JSON or (with `sse`) as four SSE
/// events; with `etag`, a matching `If-None-Match` gets a 304; with
/// `responses`, the n-th request is answered by the n-th of them (the last
/// one repeats).
struct Scripted {
    name: String,
    spec: Value,
    served: AtomicUsize,
}

impl Respond for Scripted {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.served.fetch_add(1, Ordering::SeqCst);
        let spec = match self.spec["responses"].as_array() {
            Some(list) if !list.is_empty() => &list[n.min(list.len() - 1)],
            _ => &self.spec,
        };
        let model = serde_json::from_slice::<Value>(&request.body).ok().and_then(|b| b.get("model").cloned());
        let status = spec["status"].as_u64().unwrap_or(200) as u16;
        let usage = json!({"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10});
        let etag = spec["etag"].as_str();
        let matched =
            etag.is_some_and(|e| request.headers.get("if-none-match").is_some_and(|v| v.as_bytes() == e.as_bytes()));
        let mut template = ResponseTemplate::new(if matched { 304 } else { status });
        for (n, v) in spec["headers"].as_object().into_iter().flatten() {
            template = template.insert_header(n.as_str(), v.as_str().unwrap_or_default());
        }
        if let Some(etag) = etag {
            template = template.insert_header("etag", etag);
        }
        if matched {
            return template;
        }
        if spec["sse"].as_bool() == Some(true) {
            let chunk = |content: &str, usage: Value| {
                let c = json!({"object": "chat.completion.chunk", "origin": self.name, "model": model,
                    "choices": [{"index": 0, "delta": {"content": content}}], "usage": usage});
                format!("data: {c}\n\n")
            };
            let body = [
                chunk("hello", Value::Null),
                chunk(" from", Value::Null),
                chunk(" here", usage),
                "data: [DONE]\n\n".into(),
            ]
            .concat();
            return template.set_body_raw(body, "text/event-stream");
        }
        if status == 204 {
            return template;
        }
        let body = json!({"object": "chat.completion", "origin": self.name, "model": model, "method": request.method.as_str(),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("hello from {}", self.name)}, "finish_reason": "stop"}],
            "usage": usage});
        template.set_body_raw(body.to_string(), "application/json")
    }
}
