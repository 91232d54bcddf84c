use super::*;

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
