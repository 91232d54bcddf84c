//! An operator's session with a running edge box, through the real binary:
//! `serve` in one process, and `status`, `set-weight`, `drain`, `undrain`
//! and `reload` as separate CLI invocations against its admin API. Origins
//! are real HTTP servers on loopback; spending is read from their `usage`.
#![allow(clippy::disallowed_methods)]

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_origin::{FakeOrigin, Reply, Route, Script};
use http_body_util::{BodyExt, Full};

mod common;

use common::{BIN, Client, EdgeBox, TOKEN, chat, client};

async fn served_by(client: &Client, addr: &str) -> String {
    let resp = chat(client, addr, "m", "hello").await;
    assert_eq!(resp.status(), 200);
    let node = resp.headers()["x-edge-node"].to_str().unwrap_or_default().to_string();
    let _ = resp.into_body().collect().await;
    node
}

/// The fake origin streaming: a long stream (100 chunks, 50 ms apart) when
/// the request mentions "long", else three chunks; the last reports usage.
async fn sse_origin() -> FakeOrigin {
    let words = vec!["word"; 100].join(" ");
    let long = Route {
        body_contains: Some("long".into()),
        reply: Reply { sse: Some(true), text: Some(words), gap_ms: 50, usage: Some([10, 20]), ..Reply::default() },
        ..Route::default()
    };
    let short = Reply { sse: Some(true), gap_ms: 50, usage: Some([10, 20]), ..Reply::default() };
    FakeOrigin::start("streamer", Script { routes: vec![long], ..Script::always(short) }).await.expect("start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_budgets_reweights_drains_and_reloads_a_running_edge_box() {
    let answer = Reply { usage: Some([100, 400]), ..Reply::default() };
    let metered = FakeOrigin::start("metered", Script::always(answer)).await.expect("start");
    let backup = FakeOrigin::start("backup", Script::default()).await.expect("start");
    let streaming = sse_origin().await;
    let streamer = streaming.url();
    let config = format!(
        "admin: {{listen: \"127.0.0.1:0\"}}
nodes:
  - {{id: metered, type: cloud, host: \"{}\", cost_per_1k_tokens: 1.0, max_cost_per_day: 1.2}}
  - {{id: backup, type: cloud, host: \"{}\"}}
  - {{id: streamer, type: local, host: \"{streamer}\", cost_per_1k_tokens: 1.0}}
routing:
  rules:
    - {{name: stream, match: {{model: \"stream*\"}}, target: streamer}}
    - {{name: main, match: {{}}, target: metered, fallback: [backup]}}
",
        metered.url(),
        backup.url()
    );
    let edge = EdgeBox::start(&config);
    let addr = edge.addr.clone();
    let client = client();

    // Without the right token the admin API answers 401, and the CLI says so.
    let (ok, _, stderr) = edge.cli(&["status"], "wrong-token");
    assert!(!ok && stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains(TOKEN) && !stderr.contains("wrong-token"), "tokens are never echoed: {stderr}");

    // Each answer costs 500 tokens at 1.0 per 1k, settled when its body has
    // gone out. A third would pass the 1.2 budget with its estimate (about
    // 0.26) reserved, so it goes to the backup.
    assert_eq!(served_by(&client, &addr).await, "metered");
    assert_eq!(served_by(&client, &addr).await, "metered");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = edge.status();
    let today = &status["nodes"][0]["today"];
    assert_eq!((today["cost"].as_f64(), today["tokens"].as_u64()), (Some(1.0), Some(1000)), "{status}");
    assert_eq!(served_by(&client, &addr).await, "backup");
    let table = edge.ok(&["status"]);
    assert!(table.contains("metered") && table.contains("1.0000/1.20"), "{table}");

    // A module reload keeps the day's spending: the node stays over budget.
    let reloaded = edge.ok(&["reload", "--module"]);
    assert!(reloaded.contains("reloaded the router module"), "{reloaded}");
    assert_eq!(edge.status()["nodes"][0]["today"]["cost"], 1.0);
    assert_eq!(served_by(&client, &addr).await, "backup");

    // Weights change at run time.
    edge.ok(&["set-weight", "backup", "0.25"]);
    assert_eq!(edge.status()["nodes"][1]["weight"], 0.25);
    let (ok, _, stderr) = edge.cli(&["set-weight", "nowhere", "1"], TOKEN);
    assert!(!ok && stderr.contains("no node has the id `nowhere`"), "{stderr}");

    // Draining: a stream in flight runs on until the drain's timeout, new
    // requests are refused (the stream rule has no fallback), and undrain
    // brings the node back.
    let long = chat(&client, &addr, "stream-model", "a long story").await;
    assert_eq!(long.status(), 200);
    let drained_at = Instant::now();
    let said = edge.ok(&["drain", "streamer", "--timeout", "1s"]);
    assert!(said.contains("draining"), "{said}");
    let refused = chat(&client, &addr, "stream-model", "hello").await;
    assert_eq!(refused.status(), 503);
    let body = refused.into_body().collect().await.expect("body").to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("nodes_draining"));
    let streamed = long.into_body().collect().await.expect("the stream ends cleanly").to_bytes();
    let streamed = String::from_utf8_lossy(&streamed);
    let elapsed = drained_at.elapsed();
    assert!(streamed.matches("data: {\"id\"").count() >= 10, "it ran on during the drain: {streamed}");
    assert!(streamed.ends_with("\n\n") && streamed.contains("event: error"), "{streamed}");
    assert!(streamed.contains("node_drained"), "{streamed}");
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4), "cut after {elapsed:?}");
    edge.ok(&["undrain", "streamer"]);
    let again = chat(&client, &addr, "stream-model", "hello").await;
    assert_eq!(again.status(), 200);
    let body = again.into_body().collect().await.expect("body").to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("[DONE]"));

    // The complete stream's usage (final chunk: 30 tokens) was priced; the
    // one cut off reported none and was charged its estimate (about 266).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = edge.status();
    let today = &status["nodes"][2]["today"];
    let tokens = today["tokens"].as_u64().unwrap_or(0);
    assert!((30 + 256..30 + 300).contains(&tokens), "{today}");
    assert!((today["cost"].as_f64().unwrap_or(0.0) - tokens as f64 / 1000.0).abs() < 1e-9, "{today}");
    assert_eq!(today["requests"], 2, "{today}");
    // The reload kept the budgets only: tallies count from it (backup, two streams).
    assert_eq!(status["tenants_today"]["anonymous"]["requests"], 3, "{status}");
    assert_eq!(status["nodes"][0]["today"]["cost"], 1.0);

    // Purging the cache: by node, after a deterministic answer was cached.
    let cache_state = |resp: &hyper::Response<hyper::body::Incoming>| resp.headers()["x-edge-cache"].clone();
    assert_eq!(cache_state(&chat(&client, &addr, "m", "deterministic").await), "MISS");
    assert_eq!(cache_state(&chat(&client, &addr, "m", "deterministic").await), "HIT");
    let (ok, _, stderr) = edge.cli(&["purge"], TOKEN);
    assert!(!ok && stderr.contains("say what to purge"), "{stderr}");
    assert!(edge.ok(&["purge", "--node", "metered"]).contains("purged 0 cache entries"));
    assert!(edge.ok(&["purge", "--node", "backup"]).contains("purged 1 cache entries"));
    assert_eq!(cache_state(&chat(&client, &addr, "m", "deterministic").await), "MISS");
    assert_eq!(edge.status()["cache_store"]["entries"], 1);
}

/// `../shared/seed-configs/NAME`, the users' configs, read as written.
fn seed(name: &str) -> (String, String) {
    let path = format!("{}/../../shared/seed-configs/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (path, text)
}

/// The seed with every `host:` pointed at `origin` (tests reach loopback
/// only), a scheme-less host kept scheme-less, and an admin listener added.
fn on_loopback(seed: &str, origin: &str) -> String {
    let mut out: String = seed
        .lines()
        .map(|line| match line.split_once("host: ") {
            Some((indent, written)) if written.contains("://") => format!("{indent}host: \"{origin}\""),
            Some((indent, _)) => format!("{indent}host: \"{}\"", origin.trim_start_matches("http://")),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    out.push_str("\nadmin: {listen: \"127.0.0.1:0\"}\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_configs_check_as_written_and_serve() {
    let seeds = ["hybrid-deploy.yaml", "local-plus-cloud.yaml", "multi-region.yaml", "edge-local-cloud.yaml"];
    for name in seeds {
        let (path, _) = seed(name);
        let out = Command::new(BIN).args(["check", &path]).output().expect("check runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(": OK, "), "{name}: {stdout}");
    }
    let (path, text) = seed("hybrid-deploy.yaml");
    let out = Command::new(BIN).args(["check", &path]).output().expect("check runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("config miaoquai-hybrid-deploy version 1.0: OK, 3 nodes, 4 rules"), "{stdout}");
    assert!(stdout.contains(&format!("warning: {path}:43:18: routing.rules[1].fallback[0]")), "{stdout}");
    assert!(stdout.contains("aws us-east-1") && stdout.contains("cloudflare cn-beijing"), "{stdout}");
    assert!(
        stdout.contains("cloud-aws-us       cloud  openai"),
        "`provider: aws` describes the node; it speaks OpenAI's API: {stdout}"
    );

    // Served, with every host on a loopback origin: the warnings are
    // logged, rules route by the documents' request types, and `status`
    // shows where each node is and the routing split by node type.
    let origin = FakeOrigin::start("seed", Script::default()).await.expect("start");
    let edge = EdgeBox::start_as("hybrid-deploy.yaml", &on_loopback(&text, &origin.url()));
    let log = edge.log.join("\n");
    assert!(log.contains("hybrid-deploy.yaml:43:18") && log.contains("this fallback is skipped"), "{log}");
    let client = client();
    let typed = |kind: &'static str, words: usize| {
        let content = vec!["word"; words].join(" ");
        let body = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]});
        http::Request::post(format!("{}/v1/chat/completions", edge.addr))
            .header("content-type", "application/json")
            .header("x-request-type", kind)
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request")
    };
    for (kind, words, node) in [
        ("realtime_chat", 5, "local-primary"),
        ("realtime_chat", 5, "local-primary"),
        ("complex_reasoning", 3000, "cloud-aws-us"),
    ] {
        let resp = client.request(typed(kind, words)).await.expect("answer");
        assert_eq!(
            (resp.status().as_u16(), resp.headers()["x-edge-node"].to_str().unwrap_or_default()),
            (200, node),
            "{kind}"
        );
        let _ = resp.into_body().collect().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let table = edge.ok(&["status"]);
    assert!(table.contains("routing, last hour: local 66.7% / cloud 33.3% / edge 0.0%"), "{table}");
    assert!(table.contains("aws us-east-1"), "{table}");
    let status = edge.status();
    assert_eq!(status["version"], "1.0");
    assert_eq!(status["nodes"][2]["location"], "cn-beijing");
    assert_eq!(status["nodes"][1]["api"], "openai");
    drop(edge);

    // The other three serve too.
    for name in &seeds[1..] {
        let edge = EdgeBox::start_as(name, &on_loopback(&seed(name).1, &origin.url()));
        let resp = chat(&client, &edge.addr, "gpt-4o", "hello").await;
        assert_eq!(resp.status(), 200, "{name}");
    }
}

/// `check --json` writes what the Workers build reads from KV: the config as
/// compact JSON on standard output alone, which loads to the same routing;
/// warnings go to standard error, and a config Workers would refuse is refused.
#[test]
fn check_json_writes_the_config_the_worker_reads_from_kv() {
    let (path, text) = seed("hybrid-deploy.yaml");
    let out = Command::new(BIN).args(["check", "--json", &path]).output().expect("check runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = String::from_utf8(out.stdout).expect("UTF-8");
    let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(value["nodes"][2]["id"], "edge-cn-beijing", "{json}");
    assert_eq!(json.trim_end().lines().count(), 1, "compact: {json}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("warning: {path}:43:18: routing.rules[1].fallback[0]")), "{stderr}");
    let from_json = edge_router::RouterConfig::load_json("kv", &json).unwrap_or_else(|e| panic!("{e}"));
    let from_yaml = edge_router::RouterConfig::load("seed", &text).unwrap_or_else(|e| panic!("{e}"));
    let labels = |c: &edge_router::RouterConfig| c.rules.iter().map(|r| r.label.clone()).collect::<Vec<_>>();
    assert_eq!(labels(&from_json), labels(&from_yaml));

    let dir = std::env::temp_dir().join(format!("edge-router-check-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jwt = dir.join("jwt.yaml");
    let config = "nodes: [{id: a, type: cloud, host: \"http://127.0.0.1:9\"}]\n\
                  auth: {jwt: {jwks: {keys: [{kty: oct, kid: h1, k: c2VjcmV0}]}, issuer: \"https://idp.example\"}}\n";
    std::fs::write(&jwt, config).unwrap();
    let out = Command::new(BIN).args(["check", "--json"]).arg(&jwt).output().expect("check runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("jwt.yaml:2:8: auth.jwt: JWT bearer tokens are checked by the edge box only"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing to put in KV");
    std::fs::remove_dir_all(&dir).ok();
}

/// Reads `s` until the box closes it, at most `limit` after `since`: what
/// it sent, and when it closed. Panics if it is still open then.
async fn read_until_closed(s: &mut tokio::net::TcpStream, since: Instant, limit: Duration) -> (String, Duration) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((since + limit).into(), s.read(&mut buf)).await {
            Err(_) => panic!("the admin connection is still open after {limit:?}: {}", String::from_utf8_lossy(&got)),
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), since.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_caller_that_stalls_its_head_or_its_body_is_cut_off_after_ten_seconds() {
    use tokio::io::AsyncWriteExt;
    // The admin listener's READ_TIMEOUT, which docs/admin.md states.
    let timeout = Duration::from_secs(10);
    let origin = FakeOrigin::start("a", Script::always(Reply::default())).await.expect("origin");
    // A file of its own: the tests of this binary run at once, and share a directory.
    let edge = EdgeBox::start_as(
        "stalling-admin-callers.yaml",
        &format!(
            "admin: {{listen: \"127.0.0.1:0\"}}\nnodes:\n  - {{id: a, type: cloud, host: \"{}\"}}\n",
            origin.url()
        ),
    );
    let admin = edge.admin.trim_start_matches("http://").to_string();
    let since = Instant::now();
    // Half a head, then nothing.
    let mut head = tokio::net::TcpStream::connect(&admin).await.expect("connect");
    head.write_all(b"GET /status HTTP/1.1\r\nhost: x\r\n").await.expect("write");
    // A whole head with the token, and a body that stops after one byte of 100.
    let mut body = tokio::net::TcpStream::connect(&admin).await.expect("connect");
    let request = format!(
        "POST /admin/nodes/a/weight HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: 100\r\n\r\n{{"
    );
    body.write_all(request.as_bytes()).await.expect("write");
    let limit = timeout + Duration::from_secs(10);
    let ((head_got, head_took), (body_got, body_took)) =
        tokio::join!(read_until_closed(&mut head, since, limit), read_until_closed(&mut body, since, limit));
    assert!(head_took >= timeout, "half a head was cut off after {head_took:?}, before {timeout:?}");
    assert!(head_got.is_empty(), "nothing is answered to half a head: {head_got}");
    assert!(body_took >= timeout, "a stalled body was answered after {body_took:?}, before {timeout:?}");
    assert!(body_got.starts_with("HTTP/1.1 400"), "{body_got}");
    assert!(body_got.contains("the request body did not come within 10s"), "{body_got}");
    // The box still serves its operators.
    assert_eq!(edge.status()["nodes"][0]["id"], "a");
}
