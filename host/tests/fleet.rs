//! Two edge boxes sharing rate limits through a real Redis (Valkey's
//! protocol): together they hold one limit; with the store killed each
//! serves its local share, and what they counted alone reaches the store
//! when it is back.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{EdgeBox, client};
use http_body_util::Full;

/// A store on `port`, killed when dropped.
struct Store(Child);

impl Store {
    fn start(port: u16) -> Self {
        let binary = ["valkey-server", "redis-server"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect("valkey-server or redis-server (scripts/ops-tools.sh installs it)");
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("the store starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the store did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn call(edge: &EdgeBox) -> (u16, String) {
    let (status, remaining, _) = call_with(edge, serde_json::json!({})).await;
    (status, remaining)
}

/// A chat request with `extra` fields; its status, `x-ratelimit-remaining-requests` and node.
async fn call_with(edge: &EdgeBox, extra: serde_json::Value) -> (u16, String, String) {
    let mut body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    let req = http::Request::post(format!("{}/v1/chat/completions", edge.addr))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-fleet")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = client().request(req).await.expect("the box answers");
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    (resp.status().as_u16(), header("x-ratelimit-remaining-requests"), header("x-edge-node"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_boxes_hold_one_limit_and_count_alone_on_their_share_while_the_store_is_down() {
    let port = free_port();
    let mut store = Store::start(port);
    let origin = fake_origin::FakeOrigin::start("n", fake_origin::Script::default()).await.expect("origin");
    let digest: String = {
        use sha2::Digest;
        sha2::Sha256::digest(b"sk-fleet").iter().map(|b| format!("{b:02x}")).collect()
    };
    let config = format!(
        "nodes:\n  - {{id: n, type: cloud, host: \"{}\"}}\n\
         admin: {{listen: \"127.0.0.1:0\"}}\n\
         state: {{redis: \"redis://127.0.0.1:{port}\", local_share: 50, timeout: 300ms}}\n\
         auth:\n  required: true\n  keys:\n    - {{sha256: \"{digest}\", tenant: acme}}\n\
         \x20 tenants:\n    acme: {{limits: {{requests_per_minute: 10}}}}\n",
        origin.url()
    );
    let a = EdgeBox::start_as("fleet-a.yaml", &config);
    let b = EdgeBox::start_as("fleet-b.yaml", &config);

    // Together: ten a minute, whichever box a request reaches.
    let started = Instant::now();
    let mut served = 0;
    for i in 0..16 {
        let (status, remaining) = call(if i % 2 == 0 { &a } else { &b }).await;
        assert!(status == 200 || status == 429, "{status}");
        if status == 200 {
            served += 1;
        } else {
            assert_eq!(remaining, "0", "a refusal reports the fleet's bucket empty");
        }
    }
    // A request comes back every six seconds.
    let refilled = started.elapsed().as_secs() / 6;
    assert!((10..=10 + refilled).contains(&served), "the fleet served {served} of its 10 a minute");
    assert_eq!(origin.hits(), served as usize, "refused requests never reached the origin");
    assert_eq!(a.status()["fleet"]["reachable"], true);

    // The store dies: each box serves its own half of the limit, and says so.
    let _ = store.0.kill();
    let _ = store.0.wait();
    let mut alone = 0;
    for _ in 0..8 {
        let (status, _) = call(&a).await;
        assert!(status == 200 || status == 429, "no request fails for the store: {status}");
        alone += usize::from(status == 200);
    }
    assert_eq!(alone, 5, "half of ten, on a's own count");
    let fleet = a.status()["fleet"].clone();
    assert_eq!((fleet["reachable"].as_bool(), fleet["counted_alone"].as_u64()), (Some(false), Some(5)), "{fleet}");
    for _ in 0..5 {
        assert_eq!(call(&b).await.0, 200, "b has its own half");
    }

    // The store is back (empty): the boxes add what they counted alone.
    store = Store::start(port);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (first, _) = call(&a).await;
    let (second, _) = call(&b).await;
    assert_eq!((first, second), (200, 429), "a's five and b's five are in the store again: ten of ten");
    for edge in [&a, &b] {
        let fleet = edge.status()["fleet"].clone();
        assert_eq!((fleet["reachable"].as_bool(), fleet["backlog_buckets"].as_u64()), (Some(true), Some(0)), "{fleet}");
    }
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_boxes_hold_one_daily_budget() {
    let port = free_port();
    let _store = Store::start(port);
    // Each answer reports 10 tokens: at 1,000 per 1k tokens, it costs 10.
    let paid = fake_origin::FakeOrigin::start("paid", fake_origin::Script::default()).await.expect("origin");
    let spare = fake_origin::FakeOrigin::start("spare", fake_origin::Script::default()).await.expect("origin");
    let digest: String = {
        use sha2::Digest;
        sha2::Sha256::digest(b"sk-fleet").iter().map(|b| format!("{b:02x}")).collect()
    };
    let config = format!(
        "nodes:\n  - {{id: paid, type: cloud, host: \"{}\", cost_per_1k_tokens: 1000, max_cost_per_day: 50}}\n\
         \x20 - {{id: spare, type: local, host: \"{}\"}}\n\
         routing:\n  rules:\n    - {{match: {{}}, target: paid, fallback: [spare]}}\n\
         admin: {{listen: \"127.0.0.1:0\"}}\n\
         state: {{redis: \"redis://127.0.0.1:{port}\", timeout: 300ms}}\n\
         auth:\n  keys:\n    - {{sha256: \"{digest}\", tenant: acme}}\n",
        paid.url(),
        spare.url()
    );
    let a = EdgeBox::start_as("budget-a.yaml", &config);
    let b = EdgeBox::start_as("budget-b.yaml", &config);
    // A request reserves its estimate (a few prompt tokens and max_tokens
    // 10: about 15) and settles at 10: the fleet's 50 a day fit four.
    let mut by_box = [0, 0];
    for i in 0..10 {
        let edge = if i % 2 == 0 { &a } else { &b };
        let (status, _, node) = call_with(edge, serde_json::json!({"max_tokens": 10})).await;
        assert_eq!(status, 200, "a request over budget goes to the spare node");
        if node == "paid" {
            by_box[i % 2] += 1;
        }
        // Settlements reach the store after the answer.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let served = by_box[0] + by_box[1];
    assert!(
        (3..=4).contains(&served),
        "the fleet spent its budget on {served} requests ({by_box:?}); alone, each box would take four"
    );
    assert!(by_box[0] > 0 && by_box[1] > 0, "both boxes drew on the one budget: {by_box:?}");
    assert_eq!(paid.hits(), served);
    assert_eq!(spare.hits(), 10 - served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_spends_only_its_share_of_a_budget_while_the_store_is_down() {
    let port = free_port();
    let mut store = Store::start(port);
    let paid = fake_origin::FakeOrigin::start("paid", fake_origin::Script::default()).await.expect("origin");
    let spare = fake_origin::FakeOrigin::start("spare", fake_origin::Script::default()).await.expect("origin");
    let config = format!(
        "nodes:\n  - {{id: paid, type: cloud, host: \"{}\", cost_per_1k_tokens: 1000, max_cost_per_day: 100}}\n\
         \x20 - {{id: spare, type: local, host: \"{}\"}}\n\
         routing:\n  rules:\n    - {{match: {{}}, target: paid, fallback: [spare]}}\n\
         admin: {{listen: \"127.0.0.1:0\"}}\n\
         state: {{redis: \"redis://127.0.0.1:{port}\", timeout: 300ms, local_share: 50}}\n",
        paid.url(),
        spare.url()
    );
    let a = EdgeBox::start_as("share-a.yaml", &config);
    // Two answers at 10 each with the store there: the fleet has spent 20 of 100.
    for _ in 0..2 {
        assert_eq!(call_with(&a, serde_json::json!({"max_tokens": 10})).await.2, "paid");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = store.0.kill();
    let _ = store.0.wait();
    // Alone, the box may spend half of what it last knew was left (about
    // 40 or 45 of 80): three or four answers, each reserving about 15.
    let mut alone = 0;
    for _ in 0..8 {
        let (status, _, node) = call_with(&a, serde_json::json!({"max_tokens": 10})).await;
        assert_eq!(status, 200, "over its share, requests go to the spare node");
        alone += usize::from(node == "paid");
    }
    assert!((3..=4).contains(&alone), "the box spent alone on {alone} answers");
    let fleet = a.status()["fleet"].clone();
    assert_eq!((fleet["reachable"].as_bool(), fleet["budget_costs_alone"].as_u64()), (Some(false), Some(1)), "{fleet}");

    // The store is back: the costs spent alone reach it.
    store = Store::start(port);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    call_with(&a, serde_json::json!({"max_tokens": 10})).await;
    let fleet = a.status()["fleet"].clone();
    assert_eq!((fleet["reachable"].as_bool(), fleet["budget_costs_alone"].as_u64()), (Some(true), Some(0)), "{fleet}");
    drop(store);
}
