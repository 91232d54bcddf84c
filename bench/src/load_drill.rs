//! Load drill: a fixed number of chat requests at fixed concurrency through
//! the real edge box and wasm module, while the primary origin *process* is
//! killed (SIGKILL) a third of the way through and restarted at two thirds.
//! Every request has a healthy fallback, so every one must succeed: the drill
//! reports `lost` (requests without a 200) and fails unless it is 0.
//!
//! Usage: load-drill [REQUESTS [CONCURRENCY]]   (defaults 10000, 32)
//! The origins are the project's fake origin (`fake-origin`), run by this same
//! binary as `load-drill origin PORT NAME`, so that killing one kills a process.

#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.first().map(String::as_str) == Some("origin") {
        let port: u16 = args.get(1).ok_or_else(|| anyhow::anyhow!("PORT missing"))?.parse()?;
        let name = args.get(2).cloned().unwrap_or_default();
        return rt.block_on(origin(port, name));
    }
    let requests: usize = args.first().map_or(Ok(10_000), |a| a.parse())?;
    let concurrency: usize = args.get(1).map_or(Ok(32), |a| a.parse())?;
    rt.block_on(drill(requests, concurrency))
}

/// The project's fake origin on `port`, named `name`, until killed.
async fn origin(port: u16, name: String) -> anyhow::Result<()> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let _origin = fake_origin::FakeOrigin::start_on(&name, fake_origin::Script::default(), addr).await?;
    std::future::pending::<()>().await;
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn_origin(port: u16, name: &str) -> anyhow::Result<Child> {
    let child = Command::new(std::env::current_exe()?)
        .args(["origin", &port.to_string(), name])
        .stdout(Stdio::null())
        .spawn()?;
    Ok(child)
}

async fn wait_listening(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "origin on port {port} did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    lost: AtomicUsize,
    by_primary: AtomicUsize,
    by_backup: AtomicUsize,
    retried: AtomicUsize,
    /// Served by the primary after its restart.
    back: AtomicUsize,
    restarted: std::sync::atomic::AtomicBool,
}

async fn drill(requests: usize, concurrency: usize) -> anyhow::Result<()> {
    let (primary_port, backup_port) = (free_port()?, free_port()?);
    let mut primary = spawn_origin(primary_port, "primary")?;
    let mut backup = spawn_origin(backup_port, "backup")?;
    wait_listening(primary_port).await?;
    wait_listening(backup_port).await?;

    let config = format!(
        "nodes:\n  - {{id: primary, type: local, host: \"http://127.0.0.1:{primary_port}\", health_path: /health}}\n  - {{id: backup, type: cloud, host: \"http://127.0.0.1:{backup_port}\", health_path: /health}}\nrouting:\n  rules:\n    - {{name: drill, match: {{}}, target: primary, fallback: [backup]}}\nhealth_check: {{interval: 200ms, timeout: 100ms, unhealthy_threshold: 3, cool_down: 100ms, max_cool_down: 400ms}}\n"
    );
    let module = edge_router_host::RouterModule::from_file(&edge_router_host::default_module_path())?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let server = edge_router_host::start(&module, "drill.yaml", &config, listener)?;
    let addr: SocketAddr = server.addr();

    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, done, tally) = (client.clone(), next.clone(), done.clone(), tally.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let body = r#"{"model":"m","messages":[{"role":"user","content":"drill"}]}"#;
                    let req = Request::post(format!("http://{addr}/v1/chat/completions"))
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(body.as_bytes())))
                        .expect("static request");
                    let outcome = tokio::time::timeout(Duration::from_secs(30), client.request(req)).await;
                    match outcome {
                        Ok(Ok(resp)) if resp.status() == 200 => {
                            let node = resp.headers().get("x-edge-node").map(|v| v.as_bytes().to_vec());
                            let retried = resp.headers().get("x-edge-attempts").is_some_and(|v| v != "1");
                            if resp.into_body().collect().await.is_ok() {
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                                if node.as_deref() == Some(b"primary") {
                                    tally.by_primary.fetch_add(1, Ordering::Relaxed);
                                    if tally.restarted.load(Ordering::Relaxed) {
                                        tally.back.fetch_add(1, Ordering::Relaxed);
                                    }
                                } else {
                                    tally.by_backup.fetch_add(1, Ordering::Relaxed);
                                }
                                if retried {
                                    tally.retried.fetch_add(1, Ordering::Relaxed);
                                }
                            } else {
                                tally.lost.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            tally.lost.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // Kill the primary a third of the way through, restart it at two thirds.
    while done.load(Ordering::Relaxed) < requests / 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    primary.kill()?;
    primary.wait()?;
    let killed_at = done.load(Ordering::Relaxed);
    while done.load(Ordering::Relaxed) < requests * 2 / 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    primary = spawn_origin(primary_port, "primary")?;
    tally.restarted.store(true, Ordering::Relaxed);
    let restarted_at = done.load(Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    let elapsed = start.elapsed();
    server.shutdown(Duration::from_secs(1)).await;
    let _ = primary.kill();
    let _ = backup.kill();
    let _ = primary.wait();
    let _ = backup.wait();

    let get = |a: &AtomicUsize| a.load(Ordering::Relaxed);
    println!("load drill: {requests} requests at concurrency {concurrency} in {:.1}s", elapsed.as_secs_f64());
    println!("  primary killed after {killed_at} requests, restarted after {restarted_at}");
    println!(
        "  ok {}  (primary {}, of which after its restart {}; backup {}; after a failed attempt {})",
        get(&tally.ok),
        get(&tally.by_primary),
        get(&tally.back),
        get(&tally.by_backup),
        get(&tally.retried)
    );
    println!("  lost = {}", get(&tally.lost));
    anyhow::ensure!(get(&tally.lost) == 0, "requests were lost although a healthy fallback was there");
    anyhow::ensure!(get(&tally.by_primary) > 0 && get(&tally.by_backup) > 0, "the drill did not exercise both nodes");
    Ok(())
}
