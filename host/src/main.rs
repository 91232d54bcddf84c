//! `edge-router`: the self-hosted edge box.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edge_router::RouterConfig;
use edge_router_host::demo::{DemoFleet, control_server};
use edge_router_host::{RouterModule, ServerHandle, default_module_path, start, start_file};
use report::{routing_line, routing_table, status_table};
use tokio::net::TcpListener;

mod report;

/// An edge router for OpenAI-compatible LLM traffic.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config file.
    Serve {
        /// The config file (YAML or JSON).
        #[arg(long, short)]
        config: PathBuf,
        /// Address to listen on; overrides `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The router module (edge_router.wasm).
        #[arg(long, env = "EDGE_ROUTER_MODULE")]
        module: Option<PathBuf>,
        /// Reload the config file whenever it changes (looked at every second), as SIGHUP does.
        #[arg(long)]
        watch: bool,
    },
    /// Validate a config and print its routing table.
    Check {
        /// The config file (YAML or JSON).
        file: PathBuf,
        /// Print the config, once it loads, as the compact JSON the Workers build reads from its
        /// KV namespace (warnings go to standard error).
        #[arg(long)]
        json: bool,
    },
    /// Run the router on a built-in example with demo origins, and print curl commands to try.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Serve HTTPS (HTTP/2 and HTTP/1.1), with a certificate for localhost made at start.
        #[arg(long)]
        tls: bool,
        /// The router module (edge_router.wasm).
        #[arg(long, env = "EDGE_ROUTER_MODULE")]
        module: Option<PathBuf>,
    },
    /// Print the JSON Schema of the config file.
    Schema,
    /// Score labelled prompts (JSON lines with `prompt`, `weak_correct`, `strong_correct`) as
    /// `model: auto` with `strategy: learned` would, and print APGR and CPT beside the baselines.
    Eval {
        /// The labelled prompts, one JSON object a line.
        file: PathBuf,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show each node's health, load, latency, cost and share of traffic (from the admin API).
    Status {
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Change a node's weight at run time, e.g. `set-weight cloud-eu 0.6`.
    SetWeight {
        /// Node id.
        node: String,
        /// The new weight (zero or more).
        weight: f64,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Stop sending a node new requests; those in flight may finish until the timeout.
    Drain {
        /// Node id.
        node: String,
        /// How long in-flight responses may run on before they are cut off.
        #[arg(long, default_value = "5m")]
        timeout: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Send a drained node requests again.
    Undrain {
        /// Node id.
        node: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Read the config file again and put it in force without a restart (as SIGHUP does);
    /// with --module, load the router module afresh from its file (a new build) instead.
    Reload {
        /// Reload the router module, not the config.
        #[arg(long)]
        module: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print the latest routing decisions, or follow them as they happen (`--follow`).
    RoutingLog {
        /// Keep printing decisions as requests finish, until interrupted.
        #[arg(long, short)]
        follow: bool,
        /// Only requests this node served (`-`: those the router answered itself).
        #[arg(long)]
        node: Option<String>,
        /// Only requests this rule (its label) routed.
        #[arg(long)]
        rule: Option<String>,
        /// Print each record as the access log's JSON line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print a link that opens the dashboard in a browser, once, within a minute (no token to type).
    Dashboard {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Drop cached answers: by key prefix (`ai/<tenant>/`), by the node that answered, or all.
    Purge {
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Only answers this node gave.
        #[arg(long)]
        node: Option<String>,
        /// Everything.
        #[arg(long, conflicts_with_all = ["prefix", "node"])]
        all: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the admin API is and how to authenticate to it.
#[derive(clap::Args)]
struct AdminArgs {
    /// Base URL of the router's admin API (`admin.listen`).
    #[arg(long, env = "EDGE_ROUTER_ADMIN_URL", default_value = "http://127.0.0.1:9901")]
    admin: String,
    /// Environment variable holding the admin token.
    #[arg(long, default_value = "EDGE_ROUTER_ADMIN_TOKEN")]
    token_env: String,
}

// A request makes a few dozen short-lived allocations (headers, bodies,
// events); mimalloc serves them with less CPU than glibc's malloc under
// several threads (see bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGE_ROUTER_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { file, json: false } => check(&file),
        Command::Check { file, json: true } => check_json(&file),
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&edge_router::config::json_schema()).unwrap_or_default());
            Ok(())
        }
        Command::Eval { file, json } => edge_router_host::eval::evaluate(&file).map(|e| {
            if json {
                println!("{}", e.json());
            } else {
                print!("{}", e.table());
            }
        }),
        Command::Serve { config, listen, module, watch } => {
            runtime().and_then(|rt| rt.block_on(serve(config, listen, module, watch)))
        }
        Command::Demo { listen, module, tls } => runtime().and_then(|rt| rt.block_on(demo(listen, module, tls))),
        Command::Status { json, admin } => admin_call(&admin, "GET", "/admin/status", None)
            .map(|body| if json { println!("{body}") } else { print!("{}", status_table(&body)) }),
        Command::SetWeight { node, weight, admin } => {
            let body = serde_json::json!({ "weight": weight });
            admin_call(&admin, "POST", &format!("/admin/nodes/{node}/weight"), Some(body))
                .map(|_| println!("{node}: weight {weight}"))
        }
        Command::Drain { node, timeout, admin } => {
            let body = serde_json::json!({ "timeout": timeout });
            admin_call(&admin, "POST", &format!("/admin/nodes/{node}/drain"), Some(body))
                .map(|_| println!("{node}: draining; responses still running after {timeout} will be cut off"))
        }
        Command::Undrain { node, admin } => admin_call(&admin, "POST", &format!("/admin/nodes/{node}/undrain"), None)
            .map(|_| println!("{node}: taking requests again")),
        Command::Purge { prefix, node, all, admin } => {
            let body = serde_json::json!({ "prefix": prefix, "node": node, "all": all });
            admin_call(&admin, "POST", "/admin/cache/purge", Some(body))
                .map(|r| println!("purged {} cache entries", r["purged"]))
        }
        Command::Dashboard { admin } => admin_call(&admin, "POST", "/admin/dashboard/link", None).map(|r| {
            let path = r["path"].as_str().unwrap_or("/dashboard");
            println!("{}{path}", admin.admin.trim_end_matches('/'));
            eprintln!(
                "open it within {} s; it works once and leaves the browser logged in for 12 hours",
                r["expires_in_s"]
            );
        }),
        Command::RoutingLog { follow, node, rule, json, admin } => routing_log(&admin, follow, node, rule, json),
        Command::Reload { module: true, admin } => admin_call(&admin, "POST", "/admin/reload/module", None)
            .map(|r| println!("reloaded the router module from {}", r["reloaded"].as_str().unwrap_or("?"))),
        Command::Reload { module: false, admin } => admin_call(&admin, "POST", "/admin/reload", None).map(|r| {
            let c = &r["config"];
            let sha = c["sha256"].as_str().unwrap_or_default();
            match r["reloaded"].as_bool() {
                Some(true) => println!(
                    "config {} reloaded: sha256 {}, generation {}",
                    c["file"].as_str().unwrap_or("?"),
                    sha.get(..12).unwrap_or(sha),
                    c["generation"]
                ),
                _ => println!(
                    "config {} unchanged (sha256 {})",
                    c["file"].as_str().unwrap_or("?"),
                    sha.get(..12).unwrap_or(sha)
                ),
            }
            for setting in r["restart_needed"].as_array().map(Vec::as_slice).unwrap_or_default() {
                println!("note: {} changed; it takes effect at the next restart", setting.as_str().unwrap_or("?"));
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-router: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A request to the admin API, with the token from `args.token_env`.
fn admin_request(
    args: &AdminArgs,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<http::Request<http_body_util::Full<bytes::Bytes>>> {
    let token = std::env::var(&args.token_env)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .with_context(|| format!("set {} to the router's admin token", args.token_env))?;
    let url = format!("{}{path}", args.admin.trim_end_matches('/'));
    http::Request::builder()
        .method(method)
        .uri(&url)
        .header(http::header::AUTHORIZATION, format!("Bearer {}", token.trim()))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
        .with_context(|| format!("`{url}` is not a valid admin URL"))
}

/// Calls the admin API and returns the JSON body of a 2xx answer; any other
/// answer becomes an error carrying the API's message.
fn admin_call(
    args: &AdminArgs,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    use http_body_util::BodyExt;
    let url = format!("{}{path}", args.admin.trim_end_matches('/'));
    let request = admin_request(args, method, path, body)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, bytes) = rt.block_on(async {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(request))
            .await
            .with_context(|| format!("no answer from {url} within 10s"))?
            .with_context(|| format!("cannot reach the admin API at {url}"))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.context("the admin API's answer broke off")?.to_bytes();
        anyhow::Ok((status, bytes))
    })?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        let message =
            json["error"]["message"].as_str().map_or_else(|| String::from_utf8_lossy(&bytes).into(), String::from);
        anyhow::bail!("{status}: {message}");
    }
    Ok(json)
}

/// Prints routing-log records from the admin API, one a line: the latest,
/// or (`follow`) those to come until the connection or the process ends.
fn routing_log(
    args: &AdminArgs,
    follow: bool,
    node: Option<String>,
    rule: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    use http_body_util::BodyExt;
    let mut query: Vec<String> = Vec::new();
    for (name, value) in [("node", node), ("rule", rule)] {
        if let Some(v) = value {
            query.push(format!("{name}={}", query_escaped(&v)));
        }
    }
    if !follow {
        query.push("recent=1".into());
    }
    let path = format!("/admin/routing-log?{}", query.join("&"));
    let request = admin_request(args, "GET", &path, None)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let resp = client.request(request).await.context("cannot reach the admin API")?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            anyhow::bail!("{status}: {}", String::from_utf8_lossy(&body));
        }
        let mut body = resp.into_body();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.context("the routing log broke off")?.into_data() else { continue };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..end]);
                if json {
                    println!("{line}");
                } else {
                    println!("{}", routing_line(&serde_json::from_str(&line).unwrap_or_default()));
                }
            }
        }
        anyhow::Ok(())
    })
}

/// A query value with everything but unreserved characters escaped.
fn query_escaped(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn check(file: &PathBuf) -> anyhow::Result<()> {
    let text = read(file)?;
    let name = file.display().to_string();
    let config = RouterConfig::load(&name, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    print!("{}", routing_table(&config));
    for w in &config.warnings {
        println!("\nwarning: {}", w.in_file(&name));
    }
    // The certificates are files of their own: read and checked as serving would.
    if let Some(tls) = &config.server.tls {
        let tls = edge_router_host::tls::load(tls).context("server.tls")?;
        println!("\nTLS certificates (the first serves clients that name no other):");
        for c in &tls.certificates {
            let (expires, warning) = c.expiry();
            println!("  {}: {} (expires {expires})", c.file, c.names.join(", "));
            if let Some(w) = warning {
                println!("\nwarning: server.tls: {w}");
            }
        }
    }
    if let Some(path) = &config.server.geoip_database {
        let db = edge_router_host::geoip::GeoIp::load(path).context("server.geoip_database")?;
        println!("\nIP database: {}", db.describe());
    }
    Ok(())
}

/// `check --json`: the config as the Workers build reads it from KV, on
/// standard output alone, so that it can be piped to `wrangler kv key put`.
fn check_json(file: &PathBuf) -> anyhow::Result<()> {
    let text = read(file)?;
    let name = file.display().to_string();
    let (config, json) = RouterConfig::load_to_json(&name, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &config.warnings {
        eprintln!("warning: {}", w.in_file(&name));
    }
    println!("{json}");
    Ok(())
}

fn load_module(path: Option<PathBuf>) -> anyhow::Result<RouterModule> {
    let path = path.unwrap_or_else(default_module_path);
    RouterModule::from_file(&path)
}

async fn serve(
    config: PathBuf,
    listen: Option<SocketAddr>,
    module: Option<PathBuf>,
    watch: bool,
) -> anyhow::Result<()> {
    let module = load_module(module)?;
    let text = read(&config)?;
    let file = config.display().to_string();
    let parsed = RouterConfig::load(&file, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &parsed.warnings {
        tracing::warn!("config: {}", w.in_file(&file));
    }
    let addr = listen.unwrap_or(parsed.listen);
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let handle = start_file(&module, &config, listener)?;
    let signals = StopSignals::listen()?;
    let scheme = if parsed.server.tls.is_some() { "https" } else { "http" };
    tracing::info!("edge-router serving {} nodes on {scheme}://{}", parsed.nodes.len(), handle.addr());
    if watch {
        handle.watch_config(std::time::Duration::from_secs(1));
        tracing::info!("watching {file}: a change is reloaded");
    }
    wait_and_shut_down(handle, parsed.server.shutdown_grace.0, signals).await
}

/// The signals a running box answers: SIGTERM and SIGINT (Ctrl-C) stop it
/// gracefully, SIGHUP reloads its config file. Each is caught from the moment
/// this is made: one that comes before the box waits for it is kept, and
/// takes the graceful path, instead of killing the process.
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn listen() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
                interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
                hangup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }
}

async fn wait_and_shut_down(
    handle: ServerHandle,
    grace: std::time::Duration,
    mut signals: StopSignals,
) -> anyhow::Result<()> {
    #[cfg(unix)]
    loop {
        tokio::select! {
            _ = signals.term.recv() => break,
            _ = signals.interrupt.recv() => break,
            _ = signals.hangup.recv() => {
                // SIGHUP reloads the config file; it does not stop the box.
                let reloaded = tokio::task::block_in_place(|| handle.reload_config());
                edge_router_host::server::report_reload("SIGHUP", reloaded);
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = &mut signals;
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down: letting requests in flight finish (up to {grace:?})");
    handle.shutdown(grace).await;
    Ok(())
}

async fn demo(listen: SocketAddr, module: Option<PathBuf>, tls: bool) -> anyhow::Result<()> {
    let module = load_module(module)?;
    let fleet = DemoFleet::start().await.context("cannot start the demo origins")?;
    let mut config = fleet.config.clone();
    // Caught from here on: a stop from now takes the path that removes the certificate.
    let signals = StopSignals::listen()?;
    // Kept to the end: dropping it removes the certificate's folder.
    let certificate = if tls {
        let made = edge_router_host::demo::certificate().context("cannot make the demo's certificate")?;
        anyhow::ensure!(config.contains("server:\n"), "the demo config has no `server:` section to serve HTTPS from");
        config = config.replacen("server:\n", &format!("server:\n{}", made.config), 1);
        Some(made)
    } else {
        None
    };
    let ca_file = certificate.as_ref().map(|c| c.cert.as_str());
    // The admin API needs a token the operator chose; without one the demo has none.
    let admin = std::env::var("EDGE_ROUTER_ADMIN_TOKEN").is_ok_and(|t| !t.trim().is_empty());
    if admin {
        config.push_str("admin:\n  listen: \"127.0.0.1:0\"\n");
    }
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let handle = start(&module, "examples/demo.yaml", &config, listener)?;
    let control = TcpListener::bind("127.0.0.1:0").await?;
    let control_addr = control.local_addr()?;
    let fleet = Arc::new(tokio::sync::Mutex::new(fleet));
    tokio::spawn(control_server(control, fleet.clone()));
    print!("{}", demo_instructions(handle.addr(), control_addr, &*fleet.lock().await, ca_file));
    print!("{}", admin_instructions(handle.admin_addr()));
    println!("\nPress Ctrl-C to stop.");
    let stopped = wait_and_shut_down(handle, std::time::Duration::from_secs(5), signals).await;
    drop(certificate);
    stopped
}

fn admin_instructions(admin: Option<SocketAddr>) -> String {
    let Some(admin) = admin else {
        return "\n6. Status, weights and draining: run the demo with EDGE_ROUTER_ADMIN_TOKEN set (any secret you choose)\n   \
                to get the admin API, then `edge-router status` shows health, load, latency and cost per node.\n"
            .to_string();
    };
    format!(
        "\n6. Status, weights and draining, through the admin API on http://{admin} (token: your EDGE_ROUTER_ADMIN_TOKEN):\n   \
         export EDGE_ROUTER_ADMIN_URL=http://{admin}\n   \
         target/release/edge-router status\n   \
         target/release/edge-router set-weight cloud-us 0.5\n   \
         target/release/edge-router drain local-gpu --timeout 30s   # then command 1 is served by cloud-eu\n   \
         target/release/edge-router undrain local-gpu\n   \
         Cost comes from each answer's usage; a stream reports it with \"stream_options\":{{\"include_usage\":true}}.\n"
    )
}

fn demo_instructions(addr: SocketAddr, control: SocketAddr, fleet: &DemoFleet, ca_file: Option<&str>) -> String {
    // With TLS, curl trusts the demo's own certificate, and speaks HTTP/2 to it.
    let (scheme, host, trust) = match ca_file {
        Some(file) => ("https", format!("localhost:{}", addr.port()), format!(" --cacert {file}")),
        None => ("http", addr.to_string(), String::new()),
    };
    let base = format!("{scheme}://{host}/v1/chat/completions");
    let body = |model: &str, stream: bool| {
        format!(r#"'{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"Say hello"}}]}}'"#)
    };
    let curl = |country: &str, model: &str, stream: bool| {
        format!(
            "curl -si{trust} {base} -H 'x-demo-country: {country}' -H 'content-type: application/json' -d {}",
            body(model, stream)
        )
    };
    let origins: Vec<String> =
        fleet.origins.iter().map(|(id, o)| format!("  {id:<11} {} (demo origin)", o.url())).collect();
    format!(
        "edge-router demo: router on {scheme}://{host}, demo origins answering canned completions:\n{}\n\n\
         The country header x-demo-country is trusted from loopback in this demo only.\n\n\
         1. Local route: an EU client asking for llama-3-8b is served on-prem (x-edge-node: local-gpu):\n   {}\n\n\
         2. Cloud route: a US client asking for gpt-4o goes to the cheapest US-resident cloud (x-edge-node: cloud-us):\n   {}\n\n\
         3. Small-model routing: model \"auto\" with a short prompt goes to the edge and is rewritten to its smallest model, streamed:\n   {}\n\n\
         4. Geofence refusal: a client from KP gets 451 with a JSON error:\n   {}\n\n\
         5. Fallback: stop the local origin, then repeat command 1; it is served by cloud-eu (x-edge-attempts: 2),\n   never by cloud-us, because EU data stays in the EU. After 3 failures in a row local-gpu rests (the log says so)\n   and cloud-eu answers at the first attempt; once restarted, local-gpu is back after one probe (up to 10s):\n   curl -X POST http://{control}/stop/local-gpu\n   {}\n   curl -X POST http://{control}/start/local-gpu\n",
        origins.join("\n"),
        curl("DE", "llama-3-8b", false),
        curl("US", "gpt-4o", false),
        curl("FR", "auto", true).replace("curl -si", "curl -sNi"),
        curl("KP", "gpt-4o", false),
        curl("DE", "llama-3-8b", false),
    )
}
