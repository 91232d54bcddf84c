//! Per-decision cost of the router, called natively and through wasmtime.
//!
//! One decision is one exchange: a chat request (rules, residency, strategy),
//! its response head, and its end — the three events the edge box gives the
//! router per proxied request. As in the edge box, the head (whose status the
//! forward did not ask about) and the end are deferred and reach the module
//! with the next request, in one call. Each side runs `ROUNDS` rounds of `PER_ROUND`
//! decisions, interleaved so machine noise hits both alike; the medians are
//! compared. The client key is hashed, and the JSON body read, natively on
//! both sides, as in the edge box: by the native router itself, and for the
//! module by the caller (inside the timed loop), which passes the digest and
//! the body's facts in the event.
//!
//! Usage: decision-cost [CONFIG] [MODULE]
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use edge_router::wire::{Action, Event, Header, Reply, RequestBody};
use edge_router::{Router, RouterConfig};
use edge_router_host::{RouterModule, WasmRouter, default_module_path};

// The edge box's allocator, for both sides: the native router and the
// host's half of the module calls.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 7;
const PER_ROUND: u64 = 20_000;
/// The client key the requests present (a key `examples/hybrid.yaml` knows).
const KEY: &str = "sk-demo-vip";

/// A keyed chat request. `host_side`: the caller hashes the client key and
/// reads the body's facts, as the edge box does for the module (the native
/// router does both itself).
fn request(id: u64, host_side: bool) -> Event {
    let body = br#"{"model":"llama-3-8b","stream":false,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the attached paragraph in one sentence, please."}]}"#;
    Event::Request {
        id,
        method: "POST".into(),
        target: "/v1/chat/completions".into(),
        headers: vec![
            Header::new("host", "edge.example"),
            Header::new("content-type", "application/json"),
            Header::new("authorization", &format!("Bearer {KEY}")),
            Header::new("user-agent", "OpenAI/Python 1.52.0"),
            Header::new("accept", "application/json"),
        ],
        country: Some("DE".into()),
        body: RequestBody::Buffered(body.to_vec()),
        now_ms: 1_700_000_000_000 + id,
        random: id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        key_sha256: host_side.then(|| edge_router::auth::key_digest(KEY.as_bytes())),
        body_facts: host_side.then(|| edge_router::facts::parse_body(body).expect("the body parses")),
    }
}

/// Runs `n` exchanges; `handle` answers an event, `defer` takes one whose
/// answer is not needed. Returns nanoseconds per exchange.
fn round(
    start_id: u64,
    n: u64,
    host_side: bool,
    handle: &mut dyn FnMut(&Event) -> Action,
    defer: &mut dyn FnMut(&Event),
) -> f64 {
    let t = Instant::now();
    for id in start_id..start_id + n {
        match handle(&request(id, host_side)) {
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
    let native = Router::new(config.clone());
    // The native router behind the ABI's encoding: events and replies go
    // through postcard as they do to and from the module. It shows how much
    // of the module's cost is the boundary rather than the compiled code.
    let encoded = std::cell::RefCell::new(Router::new(config));
    let module = RouterModule::from_file(&module_path)?;
    let wasm = WasmRouter::new(&module, &config_path, &text)?;

    let mut native_ns = Vec::new();
    let mut encoded_ns = Vec::new();
    let mut wasm_ns = Vec::new();
    let mut id = 1;
    let native = std::cell::RefCell::new(native);
    let wasm = std::cell::RefCell::new(wasm);
    let mut native_handle = |e: &Event| native.borrow_mut().handle(e.clone());
    let mut native_defer = |e: &Event| native.borrow_mut().absorb(e.clone());
    let mut wasm_handle = |e: &Event| wasm.borrow_mut().handle(e).expect("module call");
    let mut wasm_defer = |e: &Event| wasm.borrow_mut().defer(e);
    // As in the module: deferred events are encoded into a batch that rides
    // with the next call, which is read as `er_handle` reads it.
    let batch = std::cell::RefCell::new(Vec::new());
    let onto =
        |e: &Event, batch: &mut Vec<u8>| *batch = postcard::to_extend(e, std::mem::take(batch)).expect("encode event");
    let mut encoded_handle = |e: &Event| {
        let mut router = encoded.borrow_mut();
        let mut batch = batch.borrow_mut();
        onto(e, &mut batch);
        let action = router.handle_batch(&batch).expect("decode events").expect("an answer");
        batch.clear();
        let mut spent = Vec::new();
        router.take_spent_into(&mut spent);
        let reply = Reply { action, notices: router.take_notices(), spent };
        let bytes = postcard::to_allocvec(&reply).expect("encode reply");
        postcard::from_bytes::<Reply>(&bytes).expect("decode reply").action
    };
    let mut encoded_defer = |e: &Event| onto(e, &mut batch.borrow_mut());
    // Warm-up, then interleaved measured rounds.
    round(id, PER_ROUND / 4, false, &mut native_handle, &mut native_defer);
    round(id, PER_ROUND / 4, true, &mut wasm_handle, &mut wasm_defer);
    round(id, PER_ROUND / 4, true, &mut encoded_handle, &mut encoded_defer);
    // For profiling the module's side alone (see bench/README.md).
    if std::env::var_os("DECISION_COST_WASM_ONLY").is_some() {
        let per = round(id, PER_ROUND * ROUNDS as u64, true, &mut wasm_handle, &mut wasm_defer);
        println!("wasmtime only: {:.2} µs", per / 1000.0);
        return Ok(());
    }
    for _ in 0..ROUNDS {
        id += PER_ROUND;
        native_ns.push(round(id, PER_ROUND, false, &mut native_handle, &mut native_defer));
        wasm_ns.push(round(id, PER_ROUND, true, &mut wasm_handle, &mut wasm_defer));
        encoded_ns.push(round(id, PER_ROUND, true, &mut encoded_handle, &mut encoded_defer));
    }
    let (n, w, e) = (median(native_ns), median(wasm_ns), median(encoded_ns));
    println!("decision (request, deferred response head and finish), median of {ROUNDS} rounds × {PER_ROUND}:");
    println!("  native    {:>8.2} µs", n / 1000.0);
    println!("  wasmtime  {:>8.2} µs", w / 1000.0);
    println!("  ratio     {:>8.2}× (bar: ≤ 2×)", w / n);
    println!("  (native through the ABI's postcard encoding, no wasm: {:.2} µs)", e / 1000.0);
    Ok(())
}
