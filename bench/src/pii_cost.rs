//! What finding personal data costs per KiB of prompt, natively (as the
//! edge box runs the detectors and the exchange): `Detector::find` over
//! texts of the labelled set (`tests/pii/labelled.jsonl`) joined into
//! prompts of about 1, 4 and 16 KiB, and over plain prose with no values in
//! it; then the whole of it as the edge box does it for a node whose policy
//! is `pseudonymize`: the request built for the node (`outbound`: the body
//! read, its texts searched, the values replaced, the body written again),
//! and the answer repeating the prompt restored (`RestorePii`), as JSON and
//! as a stream of 16-byte pieces. 31 rounds, medians.
//!
//! Usage: pii-cost
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use std::collections::VecDeque;

use bytes::Bytes;
use edge_router::RouterConfig;
use edge_router::pii::Detector;
use edge_router::wire::{CacheStatus, Forward, ForwardBody, RuleRef};
use exchange::restore::RestorePii;
use exchange::transform::Transform;
use exchange::upstream::outbound;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 31;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// µs per KiB of `find` over `prompts`.
fn cost(detector: &Detector, prompts: &[String]) -> f64 {
    per_kib(prompts, |i| detector.find(&prompts[i]).len())
}

/// µs per KiB of prompt of `work` over each of `prompts`, by index (it
/// returns something to keep).
fn per_kib(prompts: &[String], mut work: impl FnMut(usize) -> usize) -> f64 {
    let bytes: usize = prompts.iter().map(String::len).sum();
    let repeat = (4 << 20) / bytes.max(1) + 1;
    let mut rounds = Vec::with_capacity(ROUNDS);
    let mut kept = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..repeat {
            for i in 0..prompts.len() {
                kept += work(std::hint::black_box(i));
            }
        }
        rounds.push(t.elapsed().as_secs_f64() * 1e6 / (repeat * bytes) as f64 * 1024.0);
    }
    std::hint::black_box(kept);
    median(rounds)
}

/// A forward to node 0 with the client's body.
fn forward() -> Forward {
    Forward {
        node: 0,
        attempt: 1,
        remove_headers: Vec::new(),
        body: ForwardBody::Original,
        connect_timeout_ms: 1_000,
        first_byte_timeout_ms: 1_000,
        idle_timeout_ms: 1_000,
        total_timeout_ms: 1_000,
        fallback: false,
        meter: false,
        fill: None,
        rule: RuleRef::Default,
        cache: CacheStatus::Bypass,
        panic: false,
        ratelimit: Default::default(),
        difficulty: None,
    }
}

/// The answer a model gives repeating `text`: JSON, or a stream of 16-byte pieces.
fn answer(text: &str, sse: bool) -> Bytes {
    if !sse {
        let a = serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]});
        return a.to_string().into();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    for piece in chars.chunks(16) {
        let piece: String = piece.iter().collect();
        let c = serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
        out.push_str(&format!("data: {c}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out.into()
}

/// µs per KiB of prompt of the edge box's work for a `pseudonymize` node:
/// the request for the node, then (`answers`) the answer restored.
fn exchange_cost(config: &RouterConfig, prompts: &[String], answers: Option<bool>) -> f64 {
    let node = &config.nodes[0];
    let forward = forward();
    let bodies: Vec<Bytes> = prompts
        .iter()
        .map(|p| serde_json::json!({"model": "m", "messages": [{"role": "user", "content": p}]}).to_string().into())
        .collect();
    per_kib(prompts, |i| {
        let body = &bodies[i];
        let out = outbound(&forward, node, "/v1/chat/completions", body, false, &config.pii);
        let Ok(out) = out else { return 0 };
        let sent = out.body.unwrap_or_default();
        let (Some(sse), Some(vault)) = (answers, out.pii.and_then(|p| p.vault)) else { return sent.len() };
        // The answer repeats what the node got (read outside the timing would
        // be fairer; reading it is a small part of the whole).
        let got: serde_json::Value = serde_json::from_slice(&sent).unwrap_or_default();
        let text = got["messages"][0]["content"].as_str().unwrap_or_default().to_string();
        let mut restore = RestorePii::new(vault, sse);
        let mut queue = VecDeque::new();
        restore.chunk(answer(&text, sse), &mut queue);
        restore.end(&mut queue);
        sent.len() + queue.iter().map(Bytes::len).sum::<usize>()
    })
}

/// The texts of the labelled set, gone through `times` times, joined into
/// prompts of about `kib` KiB: about one value per 60 bytes.
fn joined(texts: &[String], kib: usize, times: usize) -> Vec<String> {
    let mut prompts = Vec::new();
    let mut current = String::new();
    for t in texts.iter().cycle().take(texts.len() * times) {
        current.push_str(t);
        current.push('\n');
        if current.len() >= kib * 1024 {
            prompts.push(std::mem::take(&mut current));
        }
    }
    prompts
}

fn main() -> anyhow::Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/pii/labelled.jsonl");
    let texts: Vec<String> = std::fs::read_to_string(path)?
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).map(|v| v["text"].as_str().unwrap_or_default().to_string())
        })
        .collect::<Result<_, _>>()?;
    let detector = Detector::default();
    // `pii-cost request`: only the request for the node (for a profiler).
    let only_request = std::env::args().nth(1).as_deref() == Some("request");
    if only_request {
        let yaml = "nodes: [{id: cloud, type: cloud, host: \"http://127.0.0.1:9\"}]\npii: {mode: pseudonymize}\n";
        let config = RouterConfig::load("bench.yaml", yaml).map_err(|e| anyhow::anyhow!("{e}"))?;
        let prompts = joined(&texts, 4, 1);
        println!("the request for the node: {:.2}", exchange_cost(&config, &prompts, None));
        return Ok(());
    }
    println!("Detector::find, natively, medians of {ROUNDS} rounds (µs per KiB of prompt):");
    for kib in [1usize, 4, 16] {
        // Texts of the labelled set joined into prompts of about `kib` KiB: about one value per 60 bytes.
        let prompts = joined(&texts, kib, 2);
        println!(
            "  labelled texts, {kib:>2} KiB prompts ({} of them): {:.2}",
            prompts.len(),
            cost(&detector, &prompts)
        );
    }
    let prose = "The committee reviewed the proposal in detail and asked for a revised budget before the next \
                 meeting, noting that the timeline was ambitious but achievable if the vendors deliver on time. "
        .repeat(6);
    println!("  prose with no values, {} bytes: {:.2}", prose.len(), cost(&detector, std::slice::from_ref(&prose)));

    let yaml = "nodes: [{id: cloud, type: cloud, host: \"http://127.0.0.1:9\"}]\npii: {mode: pseudonymize}\n";
    let config = RouterConfig::load("bench.yaml", yaml).map_err(|e| anyhow::anyhow!("{e}"))?;
    let prompts = joined(&texts, 4, 1);
    println!("the edge box's whole work for a pseudonymize node (µs per KiB of prompt):");
    println!(
        "  labelled texts (a value every ~60 bytes), 4 KiB prompts: the request for the node (JSON read, searched, \
         replaced, written): {:.2}",
        exchange_cost(&config, &prompts, None)
    );
    let json = exchange_cost(&config, &prompts, Some(false));
    println!("    and a JSON answer repeating the prompt, restored: {json:.2}");
    let sse = exchange_cost(&config, &prompts, Some(true));
    // 16-byte pieces: 64 events per KiB.
    println!(
        "    and a streamed answer repeating it in 16-byte pieces, restored: {sse:.2} (about {:.1} µs per event)",
        sse / 64.0
    );
    let sparse: String = prose
        .split(". ")
        .map(|s| format!("{s}. "))
        .zip(texts.iter().step_by(7))
        .take(4)
        .map(|(s, t)| format!("{s}{t} "))
        .collect::<String>()
        .repeat(3);
    println!(
        "  prose with 12 labelled texts mixed in (one every ~{} bytes), {} bytes, the request: {:.2}",
        sparse.len() / 12,
        sparse.len(),
        exchange_cost(&config, std::slice::from_ref(&sparse), None)
    );
    println!(
        "  prose with no values, {} bytes, the request: {:.2}",
        prose.len(),
        exchange_cost(&config, &[prose], None)
    );
    // bench/worker.mjs's PII prompt, for the same figure natively as the Worker's.
    let valued = "Contact jane.doe@example.com or +44 20 7946 0958 about card 4111 1111 1111 1111 and IBAN DE89 3704 \
                  0044 0532 0130 00. The committee asked for a revised budget. ";
    let worker_prompt: String = valued.repeat(65536 / valued.len() + 1).chars().take(65536).collect();
    println!(
        "  bench/worker.sh's PII=65536 prompt (the same four values every {} bytes), the request and a JSON answer \
         repeating it: {:.2}",
        valued.len(),
        exchange_cost(&config, &[worker_prompt], Some(false))
    );
    Ok(())
}
