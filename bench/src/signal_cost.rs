//! Per-request cost of what the edge box tells operators (`docs/operations.md`):
//! each request's record made from its response head and closed with its
//! usage, counted in the Prometheus metrics, and (with `log`) written to
//! the access log. Everything runs as it does for a proxied request, in
//! this process, without the network: the median of `ROUNDS` rounds of
//! `PER_ROUND` records is reported, as ns per request, with each step's
//! share.
//!
//! Usage: signal-cost [CONFIG]
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use edge_router::RouterConfig;
use edge_router::facts::{BodyFacts, Endpoint};
use edge_router::wire::{CacheStatus, Explain, Usage};
use edge_router_host::signals::Signals;
use exchange::record::{Begun, Outcome, Record};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 21;
const PER_ROUND: u64 = 20_000;

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "examples/hybrid.yaml".into());
    let text = std::fs::read_to_string(&path)?;
    let quiet = format!("{text}\nmonitoring: {{access_log: \"off\"}}\n");
    let logged = format!("{text}\nmonitoring: {{access_log: \"/dev/null\"}}\n");
    let load = |t: &str| RouterConfig::load(&path, t).map_err(|e| anyhow::anyhow!("{e}"));
    let (config, config_logged) = (load(&quiet)?, load(&logged)?);
    let node = &config.nodes[0];
    let model = node.models.first().cloned();
    let explain = Explain {
        node: node.id.clone(),
        rule: config.rules.first().map_or("strategy:cost_aware".into(), |r| r.label.clone()),
        attempts: 1,
        country: "DE".into(),
        model: None,
        difficulty: None,
        cache: CacheStatus::Miss,
        panic: false,
        ratelimit: Default::default(),
    };
    let mut head = http::HeaderMap::new();
    exchange::explain::set_explanation(&mut head, &explain);
    head.insert("content-type", http::HeaderValue::from_static("application/json"));
    let facts = BodyFacts { model, ..BodyFacts::default() };
    let usage = Some(Usage { prompt_tokens: 31, completion_tokens: 14 });
    let (signals, signals_logged) = (Signals::new(&config)?, Signals::new(&config_logged)?);

    let record = |id: u64| {
        let mut begun = Begun::new(id, 1_000, &http::Method::POST, "/v1/chat/completions");
        begun.read(&config, Endpoint::ChatCompletions, None, None, Some(&facts));
        let mut r = Record::at_head(begun, http::StatusCode::OK, &head, &http::Extensions::new(), 1_010);
        r.close(Outcome::Complete, usage, &config, 1_030);
        r
    };
    let time = |f: &dyn Fn(u64)| {
        let start = Instant::now();
        for id in 0..PER_ROUND {
            f(id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        start.elapsed().as_nanos() as f64 / PER_ROUND as f64
    };
    // Two threads at once, as the edge box's workers: the metrics they share move between cores.
    let both = |f: &(dyn Fn(u64) + Sync)| {
        std::thread::scope(|s| {
            let one = s.spawn(|| time(f));
            let two = time(f);
            (one.join().unwrap_or(two) + two) / 2.0
        })
    };
    // The bench origin's answer (bench/lib.sh), as the watchdog keeps and reads it for its usage.
    let answer = bytes::Bytes::from_static(br#"{"id":"bench-1","object":"chat.completion","model":"llama-3-8b","choices":[{"index":0,"message":{"role":"assistant","content":"Edge routing keeps cheap work local and sensitive data in its jurisdiction."},"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":14,"total_tokens":45}}"#);
    let metered = |meter: bool| {
        let mut watch = exchange::watch::Watch::new(exchange::watch::WatchSetup {
            node: std::sync::Arc::from("origin"),
            idle_ms: 1_000,
            total_ms: 10_000,
            sent_ms: 1_000,
            head_ms: 1_010,
            sse: false,
            meter,
            capture: None,
            transform: None,
        });
        watch.on_chunk(answer.clone(), 1_020);
        std::hint::black_box(watch.next_out());
        std::hint::black_box(watch.on_end(1_030).usage)
    };
    let mut rows: Vec<[f64; 6]> = Vec::new();
    for _ in 0..ROUNDS {
        let plain = time(&|_| {
            metered(false);
        });
        let usage = time(&|_| {
            metered(true);
        });
        let made = time(&|id| drop(std::hint::black_box(record(id))));
        let counted = time(&|id| signals.closed(record(id), &config));
        let logged = time(&|id| signals_logged.closed(record(id), &config_logged));
        let shared = both(&|id| signals_logged.closed(record(id), &config_logged));
        rows.push([made, counted, logged, shared, plain, usage]);
    }
    let median = |i: usize| {
        let mut v: Vec<f64> = rows.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (made, counted, logged, shared) = (median(0), median(1), median(2), median(3));
    let usage = median(5) - median(4);
    println!("signal cost per request ({path}, median of {ROUNDS} rounds of {PER_ROUND}):");
    println!("  the record, made and closed:            {made:>7.0} ns");
    println!("  ... and counted in the metrics:         {counted:>7.0} ns (metrics {:.0} ns)", counted - made);
    println!("  ... and written to the access log too:  {logged:>7.0} ns (log {:.0} ns)", logged - counted);
    println!("  all of it, on two threads at once:      {shared:>7.0} ns per request per thread");
    println!("  the usage read from an answer's body:   {usage:>7.0} ns (for the token metrics)");
    Ok(())
}
