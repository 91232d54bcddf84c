use super::*;

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
