//! The dashboard in real headless Chromium (Debian's `chromium`, which
//! `scripts/ops-tools.sh` installs): a box with traffic on a local, a
//! cloud and an edge node; the page opened through a one-time link from
//! `edge-router dashboard`; every number it shows compared with
//! `status --json`; its charts drawn; and a screenshot kept as an artifact.
//! Also its login: the token or a link buys a cookie that reads and never
//! changes.
#![allow(clippy::disallowed_methods)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_origin::{FakeOrigin, Reply, Script};
use http_body_util::{BodyExt, Full};

mod common;

use common::{Client, EdgeBox, TOKEN, chat, client};

fn config(local: &str, cloud: &str, edge: &str) -> String {
    format!(
        "name: dashboard-test
nodes:
  - {{id: gpu, type: local, host: \"{local}\", models: [small], max_concurrent: 8}}
  - {{id: cloud-eu, type: cloud, host: \"{cloud}\", models: [big], cost_per_1k_tokens: 0.37, max_cost_per_day: 5}}
  - {{id: edge-fra, type: edge, host: \"{edge}\", models: [tiny], cost_per_1k_tokens: 0.013}}
routing:
  rules:
    - {{name: small, match: {{model: small}}, target: gpu}}
    - {{name: big, match: {{model: big}}, target: cloud-eu}}
    - {{name: tiny, match: {{model: tiny}}, target: edge-fra}}
admin: {{listen: \"127.0.0.1:0\"}}
monitoring: {{access_log: off, scaling: {{interval: 100ms}}}}
autoscaling:
  - {{node: gpu, metric: active_requests, threshold: 4, action: scale_out, max_instances: 3}}
  - {{node: cloud-eu, metric: budget_usage, threshold: 1, action: scale_out}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_status_says_in_chromium() {
    let answer = |usage: [u64; 2], delay_ms: u64| Reply { usage: Some(usage), delay_ms, ..Reply::default() };
    let local = FakeOrigin::start("gpu", Script::always(answer([30, 70], 5))).await.expect("origin");
    let cloud = FakeOrigin::start("cloud", Script::always(answer([200, 300], 40))).await.expect("origin");
    let edge = FakeOrigin::start("edge", Script::always(answer([11, 13], 1))).await.expect("origin");
    let edge_box = EdgeBox::start_as("dashboard.yaml", &config(&local.url(), &cloud.url(), &edge.url()));
    let c = client();
    // 5 to the local node, 3 to the cloud (the same deterministic question:
    // one miss, then two answers from the cache), 2 to the edge.
    for (model, content, n) in [("small", "hello", 5), ("big", "deterministic", 3), ("tiny", "hi", 2)] {
        for i in 0..n {
            let content = if content == "deterministic" { content.to_string() } else { format!("{content} {i}") };
            let resp = chat(&c, &edge_box.addr, model, &content).await;
            assert_eq!(resp.status(), 200);
            let _ = resp.into_body().collect().await;
        }
    }
    // The autoscaling entries are evaluated every 100 ms: once the cloud
    // node's spend has made its entry signal, the status below and the page agree.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = edge_box.status();
    while status["scaling"][1]["signals"] != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = edge_box.status();
    }
    assert_eq!(status["cache_store"]["hits"], 2, "{status:#}");

    let dom = chromium(&["--dump-dom"], &link(&edge_box));
    assert!(dom.contains("data-loaded=\"1\""), "the page rendered its status:\n{dom}");
    check_numbers(&dom, &status);
    // The routing log's latest requests, and the charts drawn on canvases.
    assert!(dom.matches("data-request-id=").count() >= 10, "ten requests in the routing log");
    for chart in ["routing", "in_flight", "latency"] {
        let at = dom.find(&format!("data-chart=\"{chart}\"")).unwrap_or_else(|| panic!("no {chart} chart"));
        assert!(dom[at..].contains("<canvas"), "the {chart} chart is drawn");
    }

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[&format!("--screenshot={}", shot.display()), "--window-size=1280,900"], &link(&edge_box));
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a real screenshot ({} bytes)", png.len());
    eprintln!("dashboard screenshot: {}", shot.display());
}

/// A one-time link to the dashboard, from `edge-router dashboard`.
fn link(edge_box: &EdgeBox) -> String {
    let url = edge_box.ok(&["dashboard"]).trim().to_string();
    assert!(url.starts_with(&format!("{}/dashboard/login?code=", edge_box.admin)), "{url}");
    url
}

/// Runs headless Chromium on the page at `url` with `flags`, and returns what it printed.
fn chromium(flags: &[&str], url: &str) -> String {
    let profile = tempdir("chromium-profile");
    let mut child = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        // Time enough for the page's scripts, its first status and the routing log.
        .arg("--virtual-time-budget=5000")
        .args(flags)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium runs (scripts/ops-tools.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("chromium").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out).expect("output");
    let _ = std::fs::remove_dir_all(&profile);
    out
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("edge-router-{name}-{}-{:?}", std::process::id(), Instant::now()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The text of the element after `anchor` (what follows its tag up to the
/// first end tag, any tags in it left out), searched from `from`.
fn text_after(dom: &str, from: usize, anchor: &str) -> String {
    let at = from + dom[from..].find(anchor).unwrap_or_else(|| panic!("no {anchor} on the page"));
    let start = at + dom[at..].find('>').expect("a tag") + 1;
    let end = start + dom[start..].find("</").expect("an end tag");
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom[start..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.trim().to_string()
}

/// Whether `shown` (a number the page wrote with `decimals` decimals, a `%`
/// allowed) is `expected` as rounded for display.
fn close(shown: &str, expected: f64, decimals: i32) -> bool {
    let value: f64 = shown.trim_end_matches('%').parse().unwrap_or(f64::NAN);
    (value - expected).abs() <= 0.5 * 10f64.powi(-decimals) + 1e-9
}

fn check_numbers(dom: &str, status: &serde_json::Value) {
    let nodes = status["nodes"].as_array().expect("nodes");
    for node in nodes {
        let id = node["id"].as_str().expect("id");
        let row = dom.find(&format!("data-node=\"{id}\"")).unwrap_or_else(|| panic!("no row for {id}"));
        let field = |name: &str| text_after(dom, row, &format!("data-field=\"{name}\""));
        assert_eq!(field("health"), node["health"].as_str().expect("health"), "{id}");
        assert!(field("breaker").starts_with(node["breaker"]["state"].as_str().expect("state")), "{id}");
        assert_eq!(field("in_flight"), node["in_flight"].to_string(), "{id}");
        let max = node["max_concurrent"].as_u64().map_or("∞".to_string(), |m| m.to_string());
        assert_eq!(field("max_concurrent"), max, "{id}");
        let hour = &node["last_hour"];
        for (name, key) in [("p50_ms", "p50_ms"), ("p99_ms", "p99_ms")] {
            let expected = hour[key].as_f64().unwrap_or_else(|| panic!("{id} has a {key}"));
            assert!(close(&field(name), expected, 1), "{id} {name}: page {} status {expected}", field(name));
        }
        for (name, key) in [("error_rate", "error_rate"), ("share", "share_of_traffic")] {
            let expected = 100.0 * hour[key].as_f64().expect("a share");
            assert!(close(&field(name), expected, 1), "{id} {name}: page {} status {expected}", field(name));
        }
        let spend = node["today"]["cost"].as_f64().expect("cost");
        assert!(close(&field("spend"), spend, 4), "{id} spend: page {} status {spend}", field("spend"));
        match node["today"]["max_cost_per_day"].as_f64() {
            Some(budget) => assert!(close(&field("budget"), budget, 4), "{id} budget"),
            None => assert_eq!(field("budget"), "—", "{id} budget"),
        }
    }
    // The last hour's distribution by node type, as the source documents write it.
    for kind in ["local", "cloud", "edge"] {
        let share: f64 = nodes
            .iter()
            .filter(|n| n["type"] == kind)
            .filter_map(|n| n["last_hour"]["share_of_traffic"].as_f64())
            .sum();
        let shown = text_after(dom, 0, &format!("data-type=\"{kind}\""));
        assert!(close(&shown, 100.0 * share, 1), "{kind}: page {shown} status {share}");
    }
    let page = |name: &str| text_after(dom, 0, &format!("data-field=\"{name}\""));
    let cache = &status["cache_store"];
    let (hits, misses) = (cache["hits"].as_f64().unwrap_or(0.0), cache["misses"].as_f64().unwrap_or(0.0));
    assert!(close(&page("cache_hit_ratio"), 100.0 * hits / (hits + misses), 1), "cache: {}", page("cache_hit_ratio"));
    let spent: f64 = nodes.iter().filter_map(|n| n["today"]["cost"].as_f64()).sum();
    assert!(spent > 0.0 && close(&page("spend_today"), spent, 4), "spend: page {} status {spent}", page("spend_today"));
    assert_eq!(page("requests_in_flight"), status["requests_in_flight"].to_string());
    // Each autoscaling entry: the cloud node's spend is past 1% of its budget.
    for entry in status["scaling"].as_array().expect("scaling") {
        let label = entry["entry"].as_str().expect("entry");
        let row = dom.find(&format!("data-scaling=\"{label}\"")).unwrap_or_else(|| panic!("no row for {label}"));
        let field = |name: &str| text_after(dom, row, &format!("data-field=\"{name}\""));
        assert_eq!(field("action"), entry["action"].as_str().expect("action"));
        assert!(
            close(&field("value"), entry["value"].as_f64().expect("a reading"), 2),
            "{label} value {}",
            field("value")
        );
        assert!(close(&field("threshold"), entry["threshold"].as_f64().expect("threshold"), 0));
        assert_eq!(field("active"), if entry["active"] == true { "active" } else { "idle" });
        assert_eq!(field("signals"), entry["signals"].to_string());
    }
    assert_eq!(status["scaling"][1]["signals"], 1, "{:#}", status["scaling"]);
    assert_eq!(page("webhooks_sent"), status["scaling_webhooks"]["sent"].to_string());
    let sha = status["config"]["sha256"].as_str().expect("sha256");
    assert_eq!(page("config_sha"), sha[..12]);
    assert_eq!(page("generation"), status["config"]["generation"].to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_buys_a_cookie_that_reads_and_never_changes() {
    let origin = FakeOrigin::start("gpu", Script::default()).await.expect("origin");
    let edge_box = EdgeBox::start_as("login.yaml", &config(&origin.url(), &origin.url(), &origin.url()));
    let c = client();
    let admin = &edge_box.admin;
    let (status, headers, body) = call(&c, "GET", &format!("{admin}/dashboard"), None, "").await;
    assert_eq!(status, 401, "no page without the token");
    assert!(body.contains("name=\"token\"") && !body.contains("data-chart"), "the login form instead");
    assert!(
        headers
            .get("content-security-policy")
            .is_some_and(|v| v.to_str().is_ok_and(|v| v.contains("script-src 'self'")))
    );

    let form = |token: &str| format!("token={token}");
    let (status, _, body) = call(&c, "POST", &format!("{admin}/dashboard/login"), None, &form("guess")).await;
    assert_eq!(status, 401);
    assert!(body.contains("That is not the admin token."));
    let (status, headers, _) = call(&c, "POST", &format!("{admin}/dashboard/login"), None, &form(TOKEN)).await;
    assert_eq!(status, 303);
    assert_eq!(headers.get("location").and_then(|v| v.to_str().ok()), Some("/dashboard"));
    let set = headers.get("set-cookie").and_then(|v| v.to_str().ok()).expect("a cookie").to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/dashboard;"), "{set}");
    let cookie = set.split(';').next().expect("name=value").to_string();

    let (status, _, body) = call(&c, "GET", &format!("{admin}/dashboard"), Some(&cookie), "").await;
    assert!(status == 200 && body.contains("data-chart=\"routing\""), "{status}");
    let (status, _, body) = call(&c, "GET", &format!("{admin}/dashboard/api/status"), Some(&cookie), "").await;
    assert!(status == 200 && body.contains("\"dashboard-test\""), "{status}");
    let log = format!("{admin}/dashboard/api/routing-log?recent=1");
    assert_eq!(call(&c, "GET", &log, Some(&cookie), "").await.0, 200);
    let (status, _, _) = call(&c, "GET", &format!("{admin}/dashboard/api/status"), None, "").await;
    assert_eq!(status, 401, "the page's API takes the session");
    for (method, path) in [
        ("GET", "/admin/status"),
        ("GET", "/metrics"),
        ("GET", "/dashboard/api/metrics"),
        ("POST", "/dashboard/api/status"),
        ("POST", "/admin/reload"),
        ("POST", "/admin/nodes/gpu/drain"),
        ("POST", "/admin/dashboard/link"),
    ] {
        let (status, _, _) = call(&c, method, &format!("{admin}{path}"), Some(&cookie), "{}").await;
        assert!(matches!(status, 401 | 404 | 405), "{method} {path} takes the token, not the cookie: {status}");
    }
    let forged = "edge_router_session=forged";
    let (status, _, _) = call(&c, "GET", &format!("{admin}/dashboard/api/status"), Some(forged), "").await;
    assert_eq!(status, 401);

    // A link works once.
    let url = edge_box.ok(&["dashboard"]).trim().to_string();
    let (status, headers, _) = call(&c, "GET", &url, None, "").await;
    assert!(status == 303 && headers.contains_key("set-cookie"), "{status}");
    let (status, _, body) = call(&c, "GET", &url, None, "").await;
    assert!(status == 401 && body.contains("expired or was used"), "{status}");
    let (status, headers, body) = call(&c, "GET", &format!("{admin}/dashboard/uPlot.iife.min.js"), None, "").await;
    assert!(status == 200 && body.contains("uPlot"));
    assert!(headers.get("content-type").is_some_and(|v| v.to_str().is_ok_and(|v| v.starts_with("text/javascript"))));
}

async fn call(c: &Client, method: &str, url: &str, cookie: Option<&str>, body: &str) -> (u16, http::HeaderMap, String) {
    let mut req = http::Request::builder().method(method).uri(url);
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    if method == "POST" {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    let resp = c.request(req.body(Full::new(Bytes::from(body.to_string()))).expect("request")).await.expect("answer");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts.status.as_u16(), parts.headers, String::from_utf8_lossy(&body).into_owned())
}
