use super::*;

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
