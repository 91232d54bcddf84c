//! Per-decision cost of the router, called natively and through wasmtime.
//!
//! One decision is one exchange: a chat request (rules, residency, strategy),
//! its response head, and its end — the three events the edge box gives the
//! router per proxied request. As in the edge box, the head (whose status the
//! forward did not ask about) and the end are deferred and reach the module
//! with the next request, in one call. Each side runs `ROUNDS` rounds of
//! `PER_ROUND` decisions, interleaved so machine noise hits both alike; each
//! round gives a ratio, and the median ratio is reported.
//!
//! Both sides start from the same request, already parsed (as hyper hands it
//! to the edge box), and borrow it. The native router hashes the client key,
//! reads the JSON body and scans the headers itself. For the module the
//! caller does what the edge box does, inside the timed loop, with the edge
//! box's own code (`exchange::intake::host_reads_of`): it hashes the key and reads the body
//! natively (once it has checked that the router will not refuse the request
//! first), passes the digest, the body's facts and only the headers the
//! router reads, encodes the request and decodes the reply.
//!
//! With `DECISION_COST_AUTO_PROMPT=N` the requests ask for `model: auto`
//! with a user prompt of N bytes (a question in English prose), and every
//! forward must rewrite the model: run it on a config with
//! `model_routing.strategy: learned` and on the same config without to see
//! what scoring the prompt costs (`bench/difficulty.sh` does).
//!
//! Usage: decision-cost [CONFIG] [MODULE]
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use edge_router::facts::Endpoint;
use edge_router::geo::Country;
use edge_router::wire::{Action, BodyRef, Event, Header, Reply, RequestBody, RequestRef};
use edge_router::{Router, RouterConfig};
use edge_router_host::{RouterModule, WasmRouter, default_module_path, module};
use exchange::intake::{HostReads, host_reads_of};

// The edge box's allocator, for both sides: the native router and the
// host's half of the module calls.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 41;
const PER_ROUND: u64 = 5_000;
/// The client key the requests present (a key `examples/hybrid.yaml` knows).
const KEY: &str = "sk-demo-vip";

/// A keyed chat request with the headers of OpenAI's Python client, as the
/// edge box holds it once hyper has parsed it. Built before the clock starts:
/// what is timed is what the edge box does from here on.
fn request(id: u64) -> Event {
    let body = match auto_prompt() {
        Some(bytes) => auto_body(bytes),
        None => br#"{"model":"llama-3-8b","stream":false,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the attached paragraph in one sentence, please."}]}"#.to_vec(),
    };
    let headers = [
        ("host", "edge.example"),
        ("accept-encoding", "gzip, deflate"),
        ("connection", "keep-alive"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("user-agent", "OpenAI/Python 1.52.0"),
        ("x-stainless-lang", "python"),
        ("x-stainless-package-version", "1.52.0"),
        ("x-stainless-os", "Linux"),
        ("x-stainless-arch", "x64"),
        ("x-stainless-runtime", "CPython"),
        ("x-stainless-runtime-version", "3.11.7"),
        ("authorization", &format!("Bearer {KEY}")),
        ("x-stainless-async", "false"),
        ("x-stainless-retry-count", "0"),
        ("content-length", "160"),
    ];
    Event::Request {
        id,
        method: "POST".into(),
        target: "/v1/chat/completions".into(),
        headers: headers.into_iter().map(|(name, value)| Header::new(name, value)).collect(),
        country: Some("DE".into()),
        client: None,
        body: RequestBody::Buffered(body),
        now_ms: 1_700_000_000_000 + id,
        random: id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        key_sha256: None,
        body_facts: None,
        token: None,
        fleet: None,
    }
}

/// `DECISION_COST_AUTO_PROMPT`: the size of an `auto` request's prompt, in bytes.
fn auto_prompt() -> Option<usize> {
    static BYTES: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| std::env::var("DECISION_COST_AUTO_PROMPT").ok().and_then(|n| n.parse().ok()))
}

/// A chat body asking for `model: auto` whose user turn is `bytes` of prose
/// (with the line breaks and digits a real question has).
fn auto_body(bytes: usize) -> Vec<u8> {
    const PROSE: &str = "A farmer has 3 fields of 12.5 hectares each.\nThe first yields 4 tonnes of wheat per hectare, \
        the second 20% less, and the third is left fallow this year. Which of the following is the total harvest, \
        and how would the answer change if the fallow field were planted with barley yielding 3 tonnes per hectare? ";
    let prompt: String = PROSE.chars().cycle().take(bytes).collect();
    let body = serde_json::json!({"model": "auto", "stream": false, "messages": [
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": prompt}]});
    body.to_string().into_bytes()
}

/// `request` borrowed, as the router reads it. With `host`, the config the
/// edge box runs with: as the edge box hands it to the module, read by its
/// own `exchange::intake::host_reads_of` (the key hashed, the body's facts read, only the
/// headers the router reads). Without: as the native router takes it, which
/// does all of that itself.
fn borrowed<'e>(request: &'e Event, host: Option<&RouterConfig>) -> RequestRef<'e> {
    let Event::Request {
        id, method, target, headers, country, body: RequestBody::Buffered(body), now_ms, random, ..
    } = request
    else {
        unreachable!("built by `request`")
    };
    let reads = host.map(|config| {
        let all = || headers.iter().map(|h| (h.name.as_str(), h.value.as_slice()));
        let endpoint = Endpoint::classify(method, target);
        host_reads_of(config, all, country.as_deref().and_then(Country::parse), endpoint, Some(body), None)
    });
    let (headers, key_sha256, body_facts) = match reads {
        Some(HostReads { headers, key_sha256, body_facts, .. }) => (headers, key_sha256, body_facts),
        None => (headers.iter().map(Header::as_ref).collect(), None, None),
    };
    RequestRef {
        id: *id,
        method,
        target,
        headers,
        country: country.as_deref(),
        client: None,
        body: BodyRef::Buffered(body),
        now_ms: *now_ms,
        random: *random,
        key_sha256,
        body_facts,
        token: None,
        fleet: None,
    }
}

/// Runs the exchanges of `requests`; `handle` answers a request, `defer`
/// takes an event whose answer is not needed. Returns nanoseconds per exchange.
fn round(requests: &[Event], handle: &mut dyn FnMut(&Event) -> Action, defer: &mut dyn FnMut(&Event)) -> f64 {
    let t = Instant::now();
    for request in requests {
        let Event::Request { id, .. } = *request else { unreachable!("built by `request`") };
        match handle(request) {
            Action::Forward(f) => {
                assert!(!f.asks_about(200));
                let rewritten = matches!(f.body, edge_router::wire::ForwardBody::RewriteModel(_));
                assert!(rewritten || auto_prompt().is_none(), "an `auto` request is rewritten");
            }
            other => panic!("expected a forward, got {other:?}"),
        }
        defer(&Event::ResponseHead { id, status: 200, retry_after_s: None, now_ms: 1_700_000_000_100 + id });
        defer(&Event::Finished { id, usage: None, now_ms: 1_700_000_000_200 + id });
    }
    t.elapsed().as_nanos() as f64 / requests.len() as f64
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
    let host = Some(config.clone());
    let host = host.as_ref();
    // The native router behind the ABI's encoding: events and replies go
    // through postcard as they do to and from the module. It shows how much
    // of the module's cost is the boundary rather than the compiled code.
    let encoded = std::cell::RefCell::new(Router::new(config));
    let module = RouterModule::from_file(&module_path)?;
    let wasm = WasmRouter::new(&module, &config_path, &text)?;

    let mut native_ns = Vec::new();
    let mut encoded_ns = Vec::new();
    let mut wasm_ns = Vec::new();
    let native = std::cell::RefCell::new(native);
    let wasm = std::cell::RefCell::new(wasm);
    let mut native_handle = |e: &Event| native.borrow_mut().request(borrowed(e, None));
    let mut native_defer = |e: &Event| native.borrow_mut().absorb(e.clone());
    // As `Shared::request` in the edge box: the request is encoded from the
    // borrowed one, the reply decoded outside the call.
    let (mut event_bytes, mut reply_bytes) = (Vec::new(), Vec::new());
    let mut wasm_handle = |e: &Event| {
        module::encode_request(&borrowed(e, host), &mut event_bytes).expect("encode request");
        wasm.borrow_mut().handle_encoded(&event_bytes, &mut reply_bytes).expect("module call");
        let reply = module::decode(&reply_bytes).expect("decode reply");
        if !reply.spent.is_empty() {
            wasm.borrow_mut().keep(&reply);
        }
        reply.action
    };
    let mut wasm_defer = |e: &Event| wasm.borrow_mut().defer(e);
    // As in the module: deferred events are encoded into a batch that rides
    // with the next call, which is read as `er_handle` reads it.
    let batch = std::cell::RefCell::new(Vec::new());
    let onto =
        |e: &Event, batch: &mut Vec<u8>| *batch = postcard::to_extend(e, std::mem::take(batch)).expect("encode event");
    let mut encoded_handle = |e: &Event| {
        let mut router = encoded.borrow_mut();
        let mut batch = batch.borrow_mut();
        *batch = edge_router::wire::encode_request(&borrowed(e, host), std::mem::take(&mut *batch)).expect("encode");
        let action = router.handle_batch(&batch).expect("decode events").expect("an answer");
        batch.clear();
        let mut spent = Vec::new();
        router.take_spent_into(&mut spent);
        let (claim, settled) = (router.take_claim(), router.take_settled());
        let reply = Reply { action, notices: router.take_notices(), spent, claim, settled };
        let bytes = postcard::to_allocvec(&reply).expect("encode reply");
        postcard::from_bytes::<Reply>(&bytes).expect("decode reply").action
    };
    let mut encoded_defer = |e: &Event| onto(e, &mut batch.borrow_mut());
    let batch_of = |first: u64, n: u64| (first..first + n).map(request).collect::<Vec<_>>();
    // Warm-up, then interleaved measured rounds; each side gets requests of
    // its own ids, built before its clock starts.
    let mut id = 1;
    for (handle, defer) in [
        (&mut native_handle as &mut dyn FnMut(&Event) -> Action, &mut native_defer as &mut dyn FnMut(&Event)),
        (&mut wasm_handle, &mut wasm_defer),
        (&mut encoded_handle, &mut encoded_defer),
    ] {
        round(&batch_of(id, PER_ROUND / 4), handle, defer);
        id += PER_ROUND;
    }
    // For profiling the module's side alone (see bench/README.md).
    if std::env::var_os("DECISION_COST_WASM_ONLY").is_some() {
        let per = round(&batch_of(id, PER_ROUND * ROUNDS as u64), &mut wasm_handle, &mut wasm_defer);
        println!("wasmtime only: {:.2} µs", per / 1000.0);
        return Ok(());
    }
    let mut ratios = Vec::new();
    for _ in 0..ROUNDS {
        let n = round(&batch_of(id, PER_ROUND), &mut native_handle, &mut native_defer);
        let w = round(&batch_of(id + PER_ROUND, PER_ROUND), &mut wasm_handle, &mut wasm_defer);
        let e = round(&batch_of(id + 2 * PER_ROUND, PER_ROUND), &mut encoded_handle, &mut encoded_defer);
        id += 3 * PER_ROUND;
        native_ns.push(n);
        wasm_ns.push(w);
        encoded_ns.push(e);
        ratios.push(w / n);
    }
    let (n, w, e) = (median(native_ns), median(wasm_ns), median(encoded_ns));
    println!("decision (request, deferred response head and finish), medians of {ROUNDS} rounds × {PER_ROUND}:");
    println!("  native    {:>8.2} µs", n / 1000.0);
    println!("  wasmtime  {:>8.2} µs", w / 1000.0);
    println!("  ratio     {:>8.2}× (bar: ≤ 2×; the median of each round's ratio)", median(ratios));
    println!("  (native through the ABI's postcard encoding, no wasm: {:.2} µs)", e / 1000.0);
    Ok(())
}
