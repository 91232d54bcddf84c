//! Per-decision cost of the router, called natively and through wasmtime.
//!
//! One decision is one exchange: a chat request (rules, residency, strategy),
//! its response head, and its end — the three events the edge box gives the
//! router per proxied request. As in the edge box, the head (whose status the
//! forward did not ask about) and the end are deferred and reach the module
//! with the next request, in one call. Each side runs `ROUNDS` rounds of `PER_ROUND`
//! decisions, interleaved so machine noise hits both alike; the medians are
//! compared.
//!
//! Usage: decision-cost [CONFIG] [MODULE]
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use edge_router::wire::{Action, Event, Header, RequestBody};
use edge_router::{Router, RouterConfig};
use edge_router_host::{RouterModule, WasmRouter, default_module_path};

const ROUNDS: usize = 7;
const PER_ROUND: u64 = 20_000;

fn request(id: u64) -> Event {
    let body = br#"{"model":"llama-3-8b","stream":false,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the attached paragraph in one sentence, please."}]}"#;
    Event::Request {
        id,
        method: "POST".into(),
        target: "/v1/chat/completions".into(),
        headers: vec![
            Header::new("host", "edge.example"),
            Header::new("content-type", "application/json"),
            Header::new("authorization", "Bearer sk-demo-vip"),
            Header::new("user-agent", "OpenAI/Python 1.52.0"),
            Header::new("accept", "application/json"),
        ],
        country: Some("DE".into()),
        body: RequestBody::Buffered(body.to_vec()),
        now_ms: 1_700_000_000_000 + id,
        random: id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
    }
}

/// Runs `n` exchanges; `handle` answers an event, `defer` takes one whose
/// answer is not needed. Returns nanoseconds per exchange.
fn round(start_id: u64, n: u64, handle: &mut dyn FnMut(&Event) -> Action, defer: &mut dyn FnMut(&Event)) -> f64 {
    let t = Instant::now();
    for id in start_id..start_id + n {
        match handle(&request(id)) {
            Action::Forward(f) => assert!(!f.ask_on_status.contains(&200)),
            other => panic!("expected a forward, got {other:?}"),
        }
        defer(&Event::ResponseHead { id, status: 200, retry_after_s: None, now_ms: 1_700_000_000_100 + id });
        defer(&Event::Finished { id, usage: None, now_ms: 1_700_000_000_200 + id });
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let config_path = args.next().unwrap_or_else(|| "examples/hybrid.yaml".into());
    let module_path = args.next().map_or_else(default_module_path, Into::into);
    let text = std::fs::read_to_string(&config_path)?;
    let config = RouterConfig::load(&config_path, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let native = Router::new(config);
    let module = RouterModule::from_file(&module_path)?;
    let wasm = WasmRouter::new(&module, &config_path, &text)?;

    let mut native_ns = Vec::new();
    let mut wasm_ns = Vec::new();
    let mut id = 1;
    let native = std::cell::RefCell::new(native);
    let wasm = std::cell::RefCell::new(wasm);
    let mut native_handle = |e: &Event| native.borrow_mut().handle(e.clone());
    let mut native_defer = |e: &Event| drop(native.borrow_mut().handle(e.clone()));
    let mut wasm_handle = |e: &Event| wasm.borrow_mut().handle(e).expect("module call");
    let mut wasm_defer = |e: &Event| wasm.borrow_mut().defer(e);
    // Warm-up, then interleaved measured rounds.
    round(id, PER_ROUND / 4, &mut native_handle, &mut native_defer);
    round(id, PER_ROUND / 4, &mut wasm_handle, &mut wasm_defer);
    for _ in 0..ROUNDS {
        id += PER_ROUND;
        native_ns.push(round(id, PER_ROUND, &mut native_handle, &mut native_defer));
        wasm_ns.push(round(id, PER_ROUND, &mut wasm_handle, &mut wasm_defer));
    }
    let (n, w) = (median(native_ns), median(wasm_ns));
    println!("decision (request, deferred response head and finish), median of {ROUNDS} rounds × {PER_ROUND}:");
    println!("  native    {:>8.2} µs", n / 1000.0);
    println!("  wasmtime  {:>8.2} µs", w / 1000.0);
    println!("  ratio     {:>8.2}× (bar: ≤ 2×)", w / n);
    Ok(())
}
