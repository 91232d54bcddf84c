//! Scaling signals, through the real binary: a node's own Prometheus
//! endpoint and a webhook receiver are a real HTTP server on loopback, and
//! so are the origins. A metric past its threshold posts one signal (retried
//! once when the receiver fails), none more within the cool-down however the
//! metric hovers, another after it, and one the other way when the metric
//! falls; what the router observes itself (requests in flight) signals too.
#![allow(clippy::disallowed_methods)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_origin::{FakeOrigin, Reply, Script};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

mod common;

use common::{Client, EdgeBox, TOKEN, client};

/// A POST the webhook receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    key: String,
    authorization: Option<String>,
    body: serde_json::Value,
}

/// A node's metrics page (`cpu_usage`, set by the test) and a webhook
/// receiver that fails its first POST with 503.
#[derive(Default)]
struct Node {
    cpu: AtomicU64,
    deliveries: Mutex<Vec<Delivery>>,
}

impl Node {
    fn set(&self, cpu: f64) {
        self.cpu.store(cpu.to_bits(), Ordering::SeqCst);
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().expect("lock").clone()
    }

    /// The distinct signals taken (a retry repeats its key).
    fn signals(&self) -> Vec<Delivery> {
        let mut seen: Vec<Delivery> = Vec::new();
        for d in self.deliveries() {
            if !seen.iter().any(|s| s.key == d.key) {
                seen.push(d);
            }
        }
        seen
    }

    /// Waits up to `within` for `n` distinct signals.
    async fn wait_for_signals(&self, n: usize, within: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + within;
        while self.signals().len() < n {
            assert!(Instant::now() < deadline, "{n} signals expected, got {:?}", self.signals());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.signals()
    }
}

async fn serve_node(node: Arc<Node>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let node = node.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let node = node.clone();
                    async move { Ok::<_, Infallible>(answer(&node, req).await) }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    format!("http://{addr}")
}

async fn answer(node: &Node, req: http::Request<hyper::body::Incoming>) -> http::Response<Full<Bytes>> {
    let respond = |status: u16, body: String| {
        http::Response::builder().status(status).body(Full::new(Bytes::from(body))).expect("response")
    };
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => {
            let cpu = f64::from_bits(node.cpu.load(Ordering::SeqCst));
            respond(
                200,
                format!("# HELP cpu_usage CPU in use.\n# TYPE cpu_usage gauge\ncpu_usage{{cpu=\"0\"}} {cpu}\n"),
            )
        }
        ("POST", "/hook") => {
            let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let (key, authorization) = (header("idempotency-key").unwrap_or_default(), header("authorization"));
            let body = req.into_body().collect().await.expect("body").to_bytes();
            let body = serde_json::from_slice(&body).expect("the signal is JSON");
            let mut deliveries = node.deliveries.lock().expect("lock");
            let first = deliveries.is_empty();
            deliveries.push(Delivery { key, authorization, body });
            respond(if first { 503 } else { 200 }, String::new())
        }
        _ => respond(404, String::new()),
    }
}

fn config(origin: &str, node_url: &str, entries: &str) -> String {
    format!(
        "nodes:
  - {{id: gpu, type: local, host: \"{origin}\", models: [m], max_concurrent: 8, metrics_url: \"{node_url}/metrics\"}}
  - {{id: blind, type: cloud, host: \"{origin}\", models: [other]}}
admin: {{listen: \"127.0.0.1:0\"}}
monitoring:
  access_log: off
  scaling: {{interval: 100ms, webhook: \"{node_url}/hook\", webhook_retries: 2, webhook_timeout: 1s, webhook_token_env: HOOK_TOKEN}}
autoscaling:
{entries}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_metric_past_its_threshold_posts_one_signal_per_cooldown_and_one_back() {
    let origin = FakeOrigin::start("gpu", Script::default()).await.expect("origin");
    let node = Arc::new(Node::default());
    node.set(50.0);
    let node_url = serve_node(node.clone()).await;
    let entries = "  - {node: gpu, metric: cpu_usage, series: 'cpu_usage{cpu=\"0\"}', threshold: 80, action: scale_out, max_instances: 10, cooldown: 4s}
  - {node: gpu, metric: cpu_usage, threshold: 30, action: scale_in, min_instances: 2, cooldown: 4s}
  - {node: blind, metric: gpu_usage, threshold: 80, action: scale_out}
";
    let config = config(&origin.url(), &node_url, entries);
    let edge = EdgeBox::start_with_env("scaling.yaml", &config, &[], &[("HOOK_TOKEN", "hook-secret")]);
    // Said at start: before or after the line the harness waits for.
    let skipped = "autoscaling[2] (scale_out gpu_usage on blind) gives no signal";
    if !edge.log.iter().any(|line| line.contains(skipped)) {
        edge.wait_for_log(skipped);
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(node.deliveries().is_empty(), "50 is between the thresholds: {:?}", node.deliveries());

    // Past 80: one signal, refused once (503) and taken on the retry.
    node.set(90.0);
    let first = node.wait_for_signals(1, Duration::from_secs(5)).await.remove(0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.deliveries().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tries: Vec<Delivery> = node.deliveries().into_iter().filter(|d| d.key == first.key).collect();
    assert_eq!(tries.len(), 2, "the 503 is retried with the same key: {tries:?}");
    let b = &first.body;
    assert_eq!(
        (b["action"].as_str(), b["node"].as_str(), b["metric"].as_str()),
        (Some("scale_out"), Some("gpu"), Some("cpu_usage"))
    );
    assert_eq!(
        (b["value"].as_f64(), b["threshold"].as_f64(), b["max_instances"].as_u64()),
        (Some(90.0), Some(80.0), Some(10))
    );
    assert_eq!(first.authorization.as_deref(), Some("Bearer hook-secret"));
    let line = edge.wait_for_log("scaling signal");
    assert!(line.contains("scale_out node gpu: cpu_usage 90 > 80"), "{line}");

    // Hovering about the threshold (78 is not back to 72, so it is the same
    // condition) for longer than the 4 s cool-down: nothing more, as the
    // metric never stays past 80 for a cool-down without a break.
    let t1 = epoch_ms(&first);
    while now_ms() < t1 + 5_000 {
        node.set(78.0);
        tokio::time::sleep(Duration::from_millis(150)).await;
        node.set(85.0);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(node.signals().len(), 1, "hovering: {:?}", node.signals());

    // Staying past it for a whole cool-down: a second signal. (A reading of
    // 78 first, so that the run past 80 starts after `steady`.)
    node.set(78.0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let steady = now_ms();
    node.set(90.0);
    let second = node.wait_for_signals(2, Duration::from_secs(8)).await.remove(1);
    assert_eq!(second.body["action"], "scale_out");
    let waited = epoch_ms(&second) - steady;
    assert!(waited >= 3_950, "the second signal came {waited} ms after the metric stayed past 80");

    // Down below 30: the other entry signals at once (its own cool-down).
    node.set(20.0);
    let third = node.wait_for_signals(3, Duration::from_secs(5)).await.remove(2);
    assert_eq!((third.body["action"].as_str(), third.body["min_instances"].as_u64()), (Some("scale_in"), Some(2)));

    // What status and /metrics say of it.
    let status = edge.status();
    let scaling = status["scaling"].as_array().expect("scaling entries");
    assert_eq!(scaling.len(), 2, "the blind entry is not evaluated: {scaling:?}");
    assert_eq!((scaling[0]["signals"].as_u64(), scaling[1]["signals"].as_u64()), (Some(2), Some(1)));
    assert_eq!(scaling[1]["value"].as_f64(), Some(20.0));
    // The third webhook is counted once its answer is read.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut metrics = scrape(&client(), &edge.admin).await;
    while !metrics.contains("edge_router_scaling_webhooks_total{outcome=\"sent\"} 3") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        metrics = scrape(&client(), &edge.admin).await;
    }
    let out = "edge_router_scaling_signals_total{entry=\"autoscaling[0]\",node=\"gpu\",action=\"scale_out\",metric=\"cpu_usage\"} 2";
    assert!(metrics.contains(out), "{metrics}");
    assert!(metrics.contains("edge_router_scaling_webhooks_total{outcome=\"sent\"} 3"), "{metrics}");
    assert!(metrics.contains(
        "edge_router_scaling_active{entry=\"autoscaling[1]\",node=\"gpu\",action=\"scale_in\",metric=\"cpu_usage\"} 1"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_a_metric_the_router_observes() {
    // Each answer takes 1.5 s, so the requests sent below are in flight together.
    let slow = Reply { delay_ms: 1_500, ..Reply::default() };
    let origin = FakeOrigin::start("gpu", Script::always(slow)).await.expect("origin");
    let node = Arc::new(Node::default());
    let node_url = serve_node(node.clone()).await;
    let entries = "  - {node: gpu, metric: utilization, threshold: 25, action: scale_out, cooldown: 1m}\n";
    let edge = EdgeBox::start_as("observed.yaml", &config(&origin.url(), &node_url, entries));
    let c = client();
    let sends: Vec<_> = (0..3).map(|_| tokio::spawn(chat(c.clone(), edge.addr.clone()))).collect();
    let signal = node.wait_for_signals(1, Duration::from_secs(5)).await.remove(0);
    assert_eq!(signal.body["action"], "scale_out");
    let value = signal.body["value"].as_f64().expect("value");
    assert!(value > 25.0 && value <= 37.5, "3 of max_concurrent 8 is 37.5%; got {value}");
    for s in sends {
        assert_eq!(s.await.expect("request"), 200);
    }
}

async fn chat(client: Client, addr: String) -> u16 {
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let req = http::Request::post(format!("{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = client.request(req).await.expect("the router answers");
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

async fn scrape(client: &Client, admin: &str) -> String {
    let req = http::Request::get(format!("{admin}/metrics"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let body = client.request(req).await.expect("metrics").into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// The signal's `time` (RFC 3339 in UTC, such as `2026-12-05T16:54:24.088Z`)
/// in milliseconds since the epoch.
fn epoch_ms(d: &Delivery) -> i64 {
    let time = d.body["time"].as_str().expect("time");
    let n = |range: std::ops::Range<usize>| time[range].parse::<i64>().expect("a number");
    let (y, m, day) = (n(0..4), n(5..7), n(8..10));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + n(20..23)
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    i64::try_from(since.as_millis()).expect("ms")
}
