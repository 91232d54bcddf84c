use super::*;

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
