//! Operating a running edge box, through the real binary: the Prometheus
//! metrics and the JSON access log counted against the traffic sent, and
//! `routing-log` following requests as they finish, with a reader too slow
//! to keep up. Origins are real HTTP servers on loopback.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_origin::{FakeOrigin, Reply, Script};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::{BIN, Client, EdgeBox, TOKEN, client};

/// A client key and its SHA-256, as `auth.keys` lists it.
const KEY: &str = "sk-client-acme-4242";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A chat request from `country`, streamed or not, with `key` if given.
async fn send(client: &Client, addr: &str, country: &str, model: &str, stream: bool, key: Option<&str>) -> u16 {
    let body = serde_json::json!({"model": model, "stream": stream, "stream_options": {"include_usage": stream},
        "messages": [{"role": "user", "content": "hello there"}]});
    let mut req = http::Request::post(format!("{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-country", country);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let resp = client.request(req.body(Full::new(Bytes::from(body.to_string()))).expect("request")).await;
    let resp = resp.expect("the router answers");
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

/// `GET /metrics` with `token`: its status and text.
async fn scrape(client: &Client, admin: &str, token: &str) -> (u16, String) {
    let req = http::Request::get(format!("{admin}/metrics"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client.request(req).await.expect("the admin API answers");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("the metrics").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The samples of a Prometheus text: each series (name and labels) and its value.
fn samples(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("a sample is a series and a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once("=\""))
            .map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string()))
            .collect();
        out.push((name.to_string(), labels, value.parse().expect("a number")));
    }
    out
}

/// The sum of `name`'s samples whose labels include `with`.
fn total(text: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    samples(text)
        .iter()
        .filter(|(n, labels, _)| n == name && with.iter().all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| v)
        .sum()
}

fn temp_file(name: &str) -> std::path::PathBuf {
    // Cargo's folder for integration tests' files (in target/), not /tmp.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("edge-router-operations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_and_the_access_log_count_the_traffic_sent() {
    // Every answer reports 10 prompt and 20 completion tokens.
    let answer = Reply { usage: Some([10, 20]), ..Reply::default() };
    let origin = FakeOrigin::start("gpu", Script::always(answer)).await.expect("start");
    let log = temp_file("access.log");
    let config = format!(
        "admin: {{listen: \"127.0.0.1:0\"}}
server: {{country_header: x-country, trusted_proxies: [127.0.0.1]}}
geofence: {{deny: [KP]}}
auth:
  keys:
    - {{sha256: \"{}\", tenant: acme}}
monitoring: {{access_log: \"{}\"}}
nodes:
  - {{id: gpu, type: local, host: \"{}\", models: [llama-3-8b], cost_per_1k_tokens: 2.0}}
routing:
  rules:
    - {{name: local-first, match: {{model: \"llama-*\"}}, target: gpu}}
",
        sha256_hex(KEY),
        log.display(),
        origin.url()
    );
    let edge = EdgeBox::start_as("metrics.yaml", &config);
    let (addr, client) = (edge.addr.clone(), client());

    for _ in 0..5 {
        assert_eq!(send(&client, &addr, "DE", "llama-3-8b", false, Some(KEY)).await, 200);
    }
    for _ in 0..3 {
        assert_eq!(send(&client, &addr, "FR", "llama-3-8b", true, None).await, 200);
    }
    for _ in 0..2 {
        assert_eq!(send(&client, &addr, "KP", "llama-3-8b", false, None).await, 451);
    }
    assert_eq!(send(&client, &addr, "DE", "no-such-model", false, None).await, 503);

    // Without the admin token there are no metrics.
    assert_eq!(scrape(&client, &edge.admin, "wrong").await.0, 401);
    let (status, text) = scrape(&client, &edge.admin, TOKEN).await;
    assert_eq!(status, 200, "{text}");
    let served = [("node", "gpu"), ("rule", "local-first"), ("status_class", "2xx"), ("refusal", "")];
    assert_eq!(total(&text, "edge_router_requests_total", &served), 8.0, "{text}");
    assert_eq!(total(&text, "edge_router_requests_total", &[("refusal", "geofence"), ("node", "-")]), 2.0);
    assert_eq!(total(&text, "edge_router_requests_total", &[("refusal", "no_node_available")]), 1.0);
    assert_eq!(total(&text, "edge_router_requests_total", &[]), 11.0);
    assert_eq!(total(&text, "edge_router_request_duration_seconds_count", &[("node", "gpu")]), 8.0);
    assert_eq!(total(&text, "edge_router_attempts_total", &[("rule", "local-first")]), 8.0);
    // The GenAI conventions: tokens by type, as the origin reported them.
    let tokens = |kind: &str, what: &str| {
        let labels = [
            ("gen_ai_token_type", kind),
            ("gen_ai_operation_name", "chat"),
            ("gen_ai_provider_name", "openai"),
            ("gen_ai_request_model", "llama-3-8b"),
            ("node", "gpu"),
        ];
        total(&text, &format!("gen_ai_client_token_usage_{what}"), &labels)
    };
    assert_eq!((tokens("input", "count"), tokens("input", "sum")), (8.0, 80.0), "{text}");
    assert_eq!((tokens("output", "count"), tokens("output", "sum")), (8.0, 160.0));
    assert_eq!(
        total(&text, "gen_ai_client_token_usage_bucket", &[("gen_ai_token_type", "output"), ("le", "16")]),
        0.0,
        "20 tokens are above the 16 bucket"
    );
    assert_eq!(total(&text, "gen_ai_server_time_to_first_token_seconds_count", &[("node", "gpu")]), 8.0);
    assert_eq!(total(&text, "gen_ai_server_request_duration_seconds_count", &[("error_type", "")]), 8.0);
    assert!((total(&text, "edge_router_cost_total", &[("node", "gpu")]) - 8.0 * 30.0 * 2.0 / 1000.0).abs() < 1e-9);
    // State, as the status report has it.
    assert_eq!(total(&text, "edge_router_node_in_flight", &[("node", "gpu")]), 0.0);
    assert_eq!(total(&text, "edge_router_node_breaker", &[("node", "gpu"), ("state", "closed")]), 1.0);
    assert!(!text.contains(KEY) && !text.contains("acme"), "no key, and no tenant unless asked for");

    // One access log line per request, the tenant named and the key never.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 11 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!lines.contains(KEY), "the key is never logged");
    let records: Vec<serde_json::Value> =
        lines.lines().map(|l| serde_json::from_str(l).expect("each line is one JSON object")).collect();
    assert_eq!(records.len(), 11, "{lines}");
    let count = |f: &dyn Fn(&serde_json::Value) -> bool| records.iter().filter(|r| f(r)).count();
    assert_eq!(count(&|r| r["tenant"] == "acme" && r["node"] == "gpu" && r["tokens_out"] == 20), 5);
    assert_eq!(count(&|r| r["country"] == "FR" && r["outcome"] == "complete" && r["tokens_in"] == 10), 3);
    assert_eq!(count(&|r| r["refusal"] == "geofence" && r["status"] == 451 && r["country"] == "KP"), 2);
    assert!(records.iter().all(|r| r["request_id"].as_str().is_some_and(|id| id.len() == 16)));
    let first = &records[0];
    for field in
        ["time", "rule", "attempts", "requested_model", "served_model", "cache", "cost", "ttfb_ms", "duration_ms"]
    {
        assert!(first.get(field).is_some(), "the line has `{field}`: {first}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_log_follows_requests_and_a_slow_reader_misses_records_without_slowing_the_proxy() {
    let origin = FakeOrigin::start("gpu", Script::default()).await.expect("start");
    let config = format!(
        "admin: {{listen: \"127.0.0.1:0\"}}
server: {{country_header: x-country, trusted_proxies: [127.0.0.1]}}
geofence: {{deny: [KP]}}
monitoring: {{access_log: \"off\"}}
nodes:
  - {{id: gpu, type: local, host: \"{}\", models: [llama-3-8b]}}
",
        origin.url()
    );
    let edge = EdgeBox::start_as("routing-log.yaml", &config);
    let (addr, client) = (edge.addr.clone(), client());

    // `routing-log --follow --node gpu` prints what gpu serves, as it does.
    let mut follower = Command::new(BIN)
        .args(["routing-log", "--follow", "--node", "gpu", "--admin", &edge.admin])
        .env("EDGE_ROUTER_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the CLI runs");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The follower is subscribed once a request it would print comes through.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        assert_eq!(send(&client, &addr, "DE", "llama-3-8b", false, None).await, 200);
        if let Ok(line) = printed.recv_timeout(Duration::from_millis(200)) {
            break line;
        }
        assert!(Instant::now() < deadline, "routing-log --follow printed nothing");
    };
    assert!(first.contains("-> gpu") && first.contains(" 200 "), "{first}");
    assert_eq!(send(&client, &addr, "KP", "llama-3-8b", false, None).await, 451);
    assert_eq!(send(&client, &addr, "DE", "llama-3-8b", false, None).await, 200);
    let next = printed.recv_timeout(Duration::from_secs(10)).expect("the next request is printed");
    assert!(next.contains("-> gpu") && next.contains(" DE "), "the refused request (node -) is not: {next}");
    let _ = follower.kill();
    let _ = follower.wait();

    // Without --follow: the latest records, here as JSON.
    let recent = edge.ok(&["routing-log", "--json"]);
    let records: Vec<serde_json::Value> = recent.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert!(records.iter().any(|r| r["refusal"] == "geofence"), "{recent}");

    // A reader that reads nothing: the proxy goes on at full speed, and
    // when the reader reads again it is told how many records it missed.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("a small receive buffer");
    let mut slow =
        socket.connect(edge.admin.trim_start_matches("http://").parse().expect("an address")).await.expect("connect");
    let request = format!("GET /admin/routing-log HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {TOKEN}\r\n\r\n");
    slow.write_all(request.as_bytes()).await.expect("sent");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Until the reader has missed records: rounds of 2000 refused requests.
    // The follower counts a miss only when it takes a record again, so the
    // rounds go on until, whatever the counter says, more lines have been
    // made than everything between the proxy and the reader can hold: the
    // box's socket buffer (at most tcp_wmem's largest), hyper's write
    // buffer (about 400 KiB), the reader's small one, and the follower's
    // queues.
    let line = records.iter().find(|r| r["refusal"] == "geofence").map_or(0, |r| r.to_string().len());
    assert!(line > 100, "a refused request's record is a line of {line} bytes");
    let send_buffer = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().last().and_then(|n| n.parse::<usize>().ok()))
        .unwrap_or(4 << 20);
    let queues = (edge_router_host::signals::ROUTING_LOG_QUEUE + edge_router_host::signals::LINES_AHEAD) * line;
    let held = send_buffer + (1 << 20) + 2 * 4096 + queues;
    let enough = u32::try_from(held / line * 5 / 4).expect("a count of requests");
    let started = Instant::now();
    let mut sent = 0u32;
    while sent < enough {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (client, addr) = (client.clone(), addr.clone());
                tokio::spawn(async move {
                    for _ in 0..500 {
                        assert_eq!(send(&client, &addr, "KP", "llama-3-8b", false, None).await, 451);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("the requests went through");
        }
        sent += 2000;
        if total(&scrape(&client, &edge.admin, TOKEN).await.1, "edge_router_routing_log_missed_total", &[]) > 0.0 {
            break;
        }
    }
    let took = started.elapsed();
    // Everything read is searched once: the reader takes megabytes in
    // small reads, and searching all of them again after each read took
    // longer than the deadline on a busy machine.
    let marker = b"{\"missed\":";
    let (mut seen, mut searched, mut buf) = (Vec::new(), 0, vec![0u8; 64 << 10]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let missed: Option<u64> = loop {
        let at = seen[searched..].windows(marker.len()).position(|w| w == marker).map(|p| searched + p);
        if let Some(number) = at.map(|at| &seen[at + marker.len()..])
            && let Some(end) = number.iter().position(|&b| b == b'}')
        {
            break std::str::from_utf8(&number[..end]).ok().and_then(|n| n.parse().ok());
        }
        searched = at.unwrap_or(seen.len().saturating_sub(marker.len()));
        if Instant::now() > deadline {
            break None;
        }
        match tokio::time::timeout(Duration::from_secs(2), slow.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => break None,
        }
    };
    let missed = missed.unwrap_or_else(|| {
        panic!("the slow reader was told it missed records ({took:?} for {sent} requests, {} bytes read)", seen.len())
    });
    assert!(missed > 0 && missed < u64::from(sent), "{missed}");
    let (_, text) = scrape(&client, &edge.admin, TOKEN).await;
    assert!(total(&text, "edge_router_routing_log_missed_total", &[]) >= missed as f64, "{text}");
    // Every request was answered and counted, whatever the reader did.
    assert_eq!(total(&text, "edge_router_requests_total", &[("refusal", "geofence")]), f64::from(sent + 1));
}

/// A config of the node `b`, the node `streamer` if given (the only one
/// serving `stream-model`), and `extra_nodes`.
fn reload_config(streamer: &str, b: &str, extra_nodes: &str) -> String {
    format!(
        "admin: {{listen: \"127.0.0.1:0\"}}
monitoring: {{access_log: \"off\"}}
nodes:
  - {{id: b, type: cloud, host: \"{b}\", models: [gpt-4o, m], cost_per_1k_tokens: 1.0}}
{streamer}{extra_nodes}routing:
  default: weighted
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_streams_in_flight_and_node_state_and_a_bad_config_is_refused() {
    // 40 chunks, 50 ms apart: a stream of two seconds.
    let words = vec!["word"; 40].join(" ");
    let long = Reply { sse: Some(true), text: Some(words), gap_ms: 50, usage: Some([10, 20]), ..Reply::default() };
    let streaming = FakeOrigin::start("streamer", Script::always(long)).await.expect("start");
    let answer = Reply { usage: Some([100, 400]), ..Reply::default() };
    let b = FakeOrigin::start("b", Script::always(answer)).await.expect("start");
    let c = FakeOrigin::start("c", Script::default()).await.expect("start");
    let streamer =
        format!("  - {{id: streamer, type: local, host: \"{}\", models: [stream-model]}}\n", streaming.url());
    let first = reload_config(&streamer, &b.url(), "");
    let edge = EdgeBox::start_with("reload.yaml", &first, &["--watch"]);
    let (addr, client) = (edge.addr.clone(), client());
    let status = edge.status();
    let live = &status["config"];
    assert_eq!((live["generation"].as_u64(), live["reloadable"].as_bool()), (Some(0), Some(true)), "{status}");
    let sha_first = live["sha256"].as_str().unwrap_or_default().to_string();

    // State of `b` to keep: an operator's weight, and 0.5 spent.
    edge.ok(&["set-weight", "b", "0.5"]);
    assert_eq!(send(&client, &addr, "DE", "gpt-4o", false, None).await, 200);
    // A stream in flight at `streamer`.
    let body =
        serde_json::json!({"model": "stream-model", "stream": true, "messages": [{"role": "user", "content": "go"}]});
    let req = http::Request::post(format!("{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let stream = client.request(req).await.expect("the router answers");
    assert_eq!(stream.headers()["x-edge-node"], "streamer");
    let reading = tokio::spawn(async move { stream.into_body().collect().await.map(|b| b.to_bytes()) });

    // The new config drops `streamer` and adds `c`; `reload` puts it in force.
    let extra_c = format!("  - {{id: c, type: edge, host: \"{}\", models: [m]}}\n", c.url());
    std::fs::write(&edge.path, reload_config("", &b.url(), &extra_c)).expect("config written");
    let said = edge.ok(&["reload"]);
    assert!(said.contains("reloaded") && said.contains("generation 1"), "{said}");
    let status = edge.status();
    let ids: Vec<&str> = status["nodes"].as_array().expect("nodes").iter().filter_map(|n| n["id"].as_str()).collect();
    assert_eq!(ids, ["b", "c"], "{status}");
    let b_now = &status["nodes"][0];
    assert_eq!(b_now["weight"], 0.5, "the operator's weight stays");
    assert_eq!(b_now["today"]["cost"], 0.5, "so does the day's spending");
    assert_eq!(status["config"]["generation"], 1);
    assert_ne!(status["config"]["sha256"].as_str(), Some(sha_first.as_str()));
    assert!(edge.ok(&["status"]).contains("live config:"), "the table names the live config");

    // The stream started under the old config runs to its end.
    let streamed = reading.await.expect("joined").expect("the stream went through whole");
    let text = String::from_utf8_lossy(&streamed);
    assert_eq!(text.matches("\"content\":").count(), 40, "every chunk came: {text}");
    assert!(text.contains("[DONE]"), "{text}");
    // New requests follow the new config: no `streamer` any more.
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let req = http::Request::post(format!("{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)))
            .expect("request");
        let resp = client.request(req).await.expect("answer");
        served.insert(resp.headers()["x-edge-node"].to_str().unwrap_or_default().to_string());
        let _ = resp.into_body().collect().await;
    }
    assert!(served.contains("c") && !served.contains("streamer"), "{served:?}");

    // A config that does not load is refused with file, line and column;
    // the running one stays.
    std::fs::write(&edge.path, "nodes:\n  - {id: b, type: cloud, host: \"http://b\", weight: heavy}\n")
        .expect("written");
    let (ok, _, stderr) = edge.cli(&["reload"], TOKEN);
    assert!(!ok, "a bad config is refused");
    assert!(stderr.contains("reload.yaml:2:") && stderr.contains("weight"), "file, line and what: {stderr}");
    assert!(stderr.contains("what ran before still runs"), "{stderr}");
    assert_eq!(edge.status()["config"]["generation"], 1);
    assert_eq!(send(&client, &addr, "DE", "gpt-4o", false, None).await, 200, "still serving");

    // SIGHUP does the same as `reload`, and the box lives on.
    std::fs::write(&edge.path, reload_config("", &b.url(), "")).expect("config written");
    let status = std::process::Command::new("kill").args(["-HUP", &edge.child.id().to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()));
    edge.wait_for_log("SIGHUP: config");
    assert_eq!(edge.status()["config"]["generation"], 2);
    assert_eq!(send(&client, &addr, "DE", "gpt-4o", false, None).await, 200);

    // --watch reloads a changed file by itself.
    let extra_c = format!("  - {{id: c, type: edge, host: \"{}\", models: [m]}}\n", c.url());
    std::fs::write(&edge.path, reload_config("", &b.url(), &extra_c)).expect("config written");
    edge.wait_for_log("the config file changed: config");
    assert_eq!(edge.status()["nodes"].as_array().map(Vec::len), Some(2));
}

/// The scrape job `docs/operations.md` gives, as written there, with this
/// box's admin address and a file holding its token.
fn documented_scrape_job(admin: &str, token_file: &std::path::Path) -> String {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md")).expect("docs");
    let block = docs
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("scrape_configs:"))
        .expect("a scrape job in docs/operations.md");
    let target = admin.trim_start_matches("http://");
    assert!(block.contains("edge-box-1:9901") && block.contains("/etc/prometheus/edge-router-token"), "{block}");
    let job = block
        .replace("edge-box-1:9901", target)
        .replace("/etc/prometheus/edge-router-token", &token_file.display().to_string());
    // Scraped every second rather than the documented 15 s, to be quick.
    format!("global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n{job}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_box_as_the_docs_say() {
    let origin = FakeOrigin::start("gpu", Script::default()).await.expect("start");
    let config = format!(
        "admin: {{listen: \"127.0.0.1:0\"}}\nmonitoring: {{access_log: off}}\nnodes:\n  - {{id: gpu, type: local, host: \"{}\", models: [m]}}\nautoscaling:\n  - {{node: gpu, metric: active_requests, threshold: 100, action: scale_out}}\n",
        origin.url()
    );
    let edge = EdgeBox::start_as("prometheus.yaml", &config);
    let client = client();
    for _ in 0..4 {
        assert_eq!(send(&client, &edge.addr, "DE", "m", false, None).await, 200);
    }
    // The exposition passes Prometheus's own linter (the autoscaling entry's
    // series among it, once evaluated).
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape(&client, &edge.admin, TOKEN).await.1;
        if text.contains("edge_router_scaling_value{") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.contains("edge_router_scaling_value{"), "{text}");
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (scripts/ops-tools.sh installs it)");
    std::io::Write::write_all(&mut lint.stdin.take().expect("stdin"), text.as_bytes()).expect("write");
    let out = lint.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = temp_file("prometheus");
    std::fs::create_dir_all(&dir).expect("dir");
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    std::fs::write(dir.join("prometheus.yml"), documented_scrape_job(&edge.admin, &token_file)).expect("config");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus runs (scripts/ops-tools.sh installs it)");
    let query = |q: &str| {
        let encoded: String = q
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        let url = format!("http://127.0.0.1:{port}/api/v1/query?query={encoded}");
        let client = client.clone();
        async move {
            let req = http::Request::get(url).body(Full::new(Bytes::new())).expect("request");
            let resp = client.request(req).await.ok()?;
            let body = resp.into_body().collect().await.ok()?.to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
            json["data"]["result"][0]["value"][1].as_str()?.parse::<f64>().ok()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut counted = None;
    while Instant::now() < deadline {
        if query("up{job=\"edge-router\"}").await == Some(1.0) {
            counted = query("sum(edge_router_requests_total)").await;
            if counted.is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(counted, Some(4.0), "Prometheus scraped the box and counts the four requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_admin_actions_reloads_and_refusals_and_never_a_secret() {
    let answer = Reply { usage: Some([100, 400]), ..Reply::default() };
    let origin = FakeOrigin::start("metered", Script::always(answer)).await.expect("start");
    let audit = temp_file("audit.log");
    let config = format!(
        "admin: {{listen: \"127.0.0.1:0\", audit_log: \"{}\"}}
monitoring: {{access_log: off}}
auth:
  required: true
  keys:
    - {{sha256: \"{}\", tenant: acme}}
nodes:
  - {{id: metered, type: cloud, host: \"{}\", models: [llama-3-8b], cost_per_1k_tokens: 1.0, max_cost_per_day: 1.2}}
",
        audit.display(),
        sha256_hex(KEY),
        origin.url()
    );
    let edge = EdgeBox::start_as("audit.yaml", &config);
    let (addr, client) = (edge.addr.clone(), client());
    // A wrong key; then two answers of 500 tokens at 1.0 per 1k, and a third
    // that the 1.2 budget refuses.
    assert_eq!(send(&client, &addr, "DE", "llama-3-8b", false, Some("sk-not-a-known-key-77")).await, 401);
    for _ in 0..2 {
        assert_eq!(send(&client, &addr, "DE", "llama-3-8b", false, Some(KEY)).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = send(&client, &addr, "DE", "llama-3-8b", false, Some(KEY)).await;
    assert!(refused >= 400, "over budget: {refused}");
    // Admin actions: one with the token, one without; a reload refused, one made.
    edge.ok(&["set-weight", "metered", "0.5"]);
    let (ok, _, _) = edge.cli(&["drain", "metered"], "a-wrong-admin-token");
    assert!(!ok);
    std::fs::write(&edge.path, config.replace("max_cost_per_day: 1.2", "max_cost_per_day: \"lots\"")).expect("write");
    let (ok, _, _) = edge.cli(&["reload"], TOKEN);
    assert!(!ok, "a bad config is refused");
    std::fs::write(&edge.path, config.replace("max_cost_per_day: 1.2", "max_cost_per_day: 2.4")).expect("write");
    edge.ok(&["reload"]);
    let sha = edge.status()["config"]["sha256"].as_str().expect("sha").to_string();
    edge.ok(&["reload", "--module"]);
    let module = std::fs::read(edge_router_host::default_module_path()).expect("the module");
    let module_sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&module).iter().map(|b| format!("{b:02x}")).collect()
    };

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines: Vec<serde_json::Value> = Vec::new();
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        for secret in [TOKEN, KEY, "sk-not-a-known-key-77", "a-wrong-admin-token"] {
            assert!(!text.contains(secret), "the audit log holds no secret:\n{text}");
        }
        lines = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
        if lines.iter().filter(|l| l["kind"] == "reload").count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| lines.iter().find(|l| pred(l)).cloned();
    let auth = find(&|l| l["kind"] == "refusal" && l["reason"] == "auth").expect("the wrong key");
    assert_eq!((auth["status"].as_u64(), auth["tenant"].as_str()), (Some(401), Some("anonymous")), "{auth}");
    let budget = find(&|l| l["kind"] == "refusal" && l["reason"] == "budget").expect("the budget refusal");
    assert_eq!(budget["tenant"], "acme", "{budget}");
    assert_eq!(lines.iter().filter(|l| l["kind"] == "refusal").count(), 2, "served requests are not audited");
    let weight = find(&|l| l["path"] == "/admin/nodes/metered/weight").expect("set-weight");
    assert_eq!(weight["actor"], "admin-token", "{weight}");
    assert_eq!((weight["status"].as_u64(), weight["request"]["weight"].as_f64()), (Some(200), Some(0.5)));
    let intruder = find(&|l| l["kind"] == "admin" && l["status"] == 401).expect("the wrong admin token");
    assert_eq!(intruder["actor"], serde_json::Value::Null, "{intruder}");
    let reloads: Vec<&serde_json::Value> = lines.iter().filter(|l| l["kind"] == "reload").collect();
    assert_eq!(reloads[0]["result"], "refused");
    assert!(reloads[0]["error"].as_str().is_some_and(|e| e.contains("max_cost_per_day")), "{}", reloads[0]);
    assert_eq!((reloads[1]["result"].as_str(), reloads[1]["sha256"].as_str()), (Some("reloaded"), Some(sha.as_str())));
    assert_eq!((reloads[2]["what"].as_str(), reloads[2]["result"].as_str()), (Some("module"), Some("reloaded")));
    assert_eq!(reloads[2]["sha256"].as_str(), Some(module_sha.as_str()), "the module file's hash");
    assert!(lines.iter().all(|l| l["time"].as_str().is_some_and(|t| t.ends_with('Z'))));
}
