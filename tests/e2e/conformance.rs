//! The conformance scenarios of `tests/conformance/` (see its README), run
//! through the edge box. `tests/workers/conformance.test.mjs` runs the same
//! files through the Workers build in workerd.

use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use edge_router_e2e::TestRouter;
use fake_origin::{FakeOrigin, Script, Seen};
use http_body_util::{BodyExt, Either, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

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
    assert!(passed.len() >= 30, "expected the whole suite to run, ran {passed:?}");
}

/// Runs one scenario; `Err` says which step broke which expectation.
async fn run(scenario: &Value) -> Result<(), String> {
    let mut origins: Vec<(String, Option<FakeOrigin>)> = Vec::new();
    let mut config = serde_json::to_string(&scenario["config"]).map_err(|e| e.to_string())?;
    for (name, spec) in scenario["origins"].as_object().into_iter().flatten() {
        let script: Script = serde_json::from_value(spec.clone()).map_err(|e| format!("origin {name}: {e}"))?;
        let (url, server) = if script.refuse {
            (edge_router_e2e::refused_addr().await, None)
        } else {
            let origin = FakeOrigin::start(name, script).await.map_err(|e| e.to_string())?;
            (origin.url(), Some(origin))
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
        let reply = send(&router, &step["request"]).await.map_err(|e| format!("step {}: {e}", i + 1))?;
        let seen: Vec<(String, Vec<Seen>)> = origins
            .iter()
            .map(|(name, o)| (name.clone(), o.as_ref().map(FakeOrigin::seen).unwrap_or_default()))
            .collect();
        check(&step["expect"], &reply, &seen).map_err(|e| format!("step {}: {e}", i + 1))?;
    }
    router.shutdown(std::time::Duration::from_secs(1)).await;
    Ok(())
}

/// What a step got: the final response, and the interim ones before it.
struct Got {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
    interim: Vec<u16>,
}

/// Sends a step's request (see the README): with its body in one piece,
/// `chunked` (no `Content-Length`), or stalling `stall_ms` after its first
/// half; interim responses are noted.
async fn send(router: &TestRouter, req: &Value) -> Result<Got, String> {
    let method = req["method"].as_str().unwrap_or("POST");
    let path = req["path"].as_str().unwrap_or("/v1/chat/completions");
    let body = request_body(req);
    let mut builder = http::Request::builder().method(method).uri(format!("http://{}{path}", router.addr()));
    if let Some(country) = req["country"].as_str() {
        builder = builder.header("x-country", country);
    }
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    for (n, v) in req["headers"].as_object().into_iter().flatten() {
        builder = builder.header(n.as_str(), v.as_str().unwrap_or_default());
    }
    let chunked = req["chunked"].as_bool() == Some(true);
    let stall = req["stall_ms"].as_u64().map(Duration::from_millis);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let body_bytes = Bytes::from(body);
    let request = if chunked || stall.is_some() {
        // Sent as it comes, so without a Content-Length (chunked).
        tokio::spawn(async move {
            let half = body_bytes.len() / 2;
            let _ = tx.send(body_bytes.slice(..half)).await;
            if let Some(stall) = stall {
                tokio::time::sleep(stall).await;
            }
            let _ = tx.send(body_bytes.slice(half..)).await;
        });
        builder.body(Either::Right(Channel(rx)))
    } else {
        builder.body(Either::Left(Full::new(body_bytes)))
    };
    let mut request = request.map_err(|e| e.to_string())?;
    let interim = Arc::new(Mutex::new(Vec::new()));
    let seen = interim.clone();
    hyper::ext::on_informational(&mut request, move |res| {
        seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(res.status().as_u16());
    });
    let client: Client<HttpConnector, Either<Full<Bytes>, Channel>> =
        Client::builder(TokioExecutor::new()).build_http();
    let resp = client.request(request).await.map_err(|e| format!("the router did not answer: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let interim = interim.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    Ok(Got { status: parts.status.as_u16(), headers: parts.headers, body, interim })
}

/// A request body fed by a channel, of unknown length.
struct Channel(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for Channel {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(http_body::Frame::data(b))))
    }
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
fn check(expect: &Value, got: &Got, seen: &[(String, Vec<Seen>)]) -> Result<(), String> {
    let text = String::from_utf8_lossy(&got.body);
    let header = |n: &str| got.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(want) = expect["status"].as_u64()
        && u64::from(got.status) != want
    {
        return Err(format!("status {}, expected {want}; body: {text}", got.status));
    }
    for (name, want) in expect["headers"].as_object().into_iter().flatten() {
        let value = header(name);
        let ok = match want.as_str() {
            None => value.is_none(),
            Some(w) if name == "content-type" => value.as_deref().is_some_and(|g| g.starts_with(w)),
            Some(w) => value.as_deref() == Some(w),
        };
        if !ok {
            return Err(format!("header {name} is {value:?}, expected {want}; body: {text}"));
        }
    }
    for (name, range) in expect["header_range"].as_object().into_iter().flatten() {
        let value = header(name).and_then(|v| v.parse::<f64>().ok());
        let (min, max) = (range[0].as_f64().unwrap_or(f64::MIN), range[1].as_f64().unwrap_or(f64::MAX));
        if !value.is_some_and(|v| (min..=max).contains(&v)) {
            return Err(format!("header {name} is {value:?}, expected a number from {min} to {max}"));
        }
    }
    if let Some(want) = expect["body"].as_str()
        && text != want
    {
        return Err(format!("body is {text:?}, expected {want:?}"));
    }
    if let Some(fields) = expect["json"].as_object() {
        let doc: Value = serde_json::from_slice(&got.body).map_err(|e| format!("body is not JSON ({e}): {text}"))?;
        for (path, want) in fields {
            let value = path.split('.').fold(&doc, |v, key| &v[key]);
            if value != want {
                return Err(format!("body field {path} is {value}, expected {want}; body: {text}"));
            }
        }
    }
    if let Some(want) = expect["sse_events"].as_u64() {
        let count = text.lines().filter(|l| l.starts_with("data:")).count() as u64;
        if count != want || !text.contains("data: [DONE]") {
            return Err(format!("{count} SSE data events, expected {want} ending in [DONE]; body: {text}"));
        }
    }
    if let Some(want) = expect["sse_json"].as_object() {
        let events: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("data: ")).filter(|l| *l != "[DONE]").collect();
        if events.is_empty() {
            return Err(format!("no SSE data events to check sse_json against; body: {text}"));
        }
        for line in events {
            let event: Value =
                serde_json::from_str(line).map_err(|e| format!("an SSE event is not JSON ({e}): {line}"))?;
            for (path, w) in want {
                let value = path.split('.').fold(&event, |v, key| &v[key]);
                if value != w {
                    return Err(format!("SSE event field {path} is {value}, expected {w}: {line}"));
                }
            }
        }
    }
    if let Some(want) = expect["interim"].as_array() {
        let want: Vec<u64> = want.iter().filter_map(Value::as_u64).collect();
        let got_interim: Vec<u64> = got.interim.iter().map(|s| u64::from(*s)).collect();
        if got_interim != want {
            return Err(format!("interim responses {got_interim:?}, expected {want:?}"));
        }
    }
    if expect["request_id"].as_bool() == Some(true) {
        let id = header("x-request-id").unwrap_or_default();
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("x-request-id is {id:?}, expected 16 hex digits"));
        }
    }
    let requests = |name: &str| seen.iter().find(|(n, _)| n == name).map(|(_, s)| s.as_slice()).unwrap_or_default();
    for (name, want) in expect["origin_hits"].as_object().into_iter().flatten() {
        let count = requests(name).len() as u64;
        if Some(count) != want.as_u64() {
            return Err(format!("origin {name} got {count} requests in all, expected {want}"));
        }
    }
    for (name, fields) in expect["origin_headers"].as_object().into_iter().flatten() {
        let last = requests(name).last().ok_or_else(|| format!("origin {name} got no request"))?;
        for (field, want) in fields.as_object().into_iter().flatten() {
            let value = last.headers.iter().find(|(n, _)| n == field).map(|(_, v)| v.as_str());
            if value != want.as_str() {
                return Err(format!("origin {name} got {field}: {value:?}, expected {want}"));
            }
        }
    }
    Ok(())
}
