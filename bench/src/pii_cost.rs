//! What finding personal data costs per KiB of prompt, natively (as the
//! edge box runs the detectors): `Detector::find` over texts of the
//! labelled set (`tests/pii/labelled.jsonl`) joined into prompts of about
//! 1, 4 and 16 KiB, and over plain prose with no values in it, 31 rounds,
//! medians.
//!
//! Usage: pii-cost
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use edge_router::pii::Detector;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 31;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// µs per KiB of `find` over `prompts`.
fn cost(detector: &Detector, prompts: &[String]) -> f64 {
    let bytes: usize = prompts.iter().map(String::len).sum();
    let repeat = (4 << 20) / bytes.max(1) + 1;
    let mut rounds = Vec::with_capacity(ROUNDS);
    let mut found = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..repeat {
            for p in prompts {
                found += detector.find(std::hint::black_box(p)).len();
            }
        }
        rounds.push(t.elapsed().as_secs_f64() * 1e6 / (repeat * bytes) as f64 * 1024.0);
    }
    std::hint::black_box(found);
    median(rounds)
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
    println!("Detector::find, natively, medians of {ROUNDS} rounds (µs per KiB of prompt):");
    for kib in [1usize, 4, 16] {
        // Texts of the labelled set joined into prompts of about `kib` KiB: about one value per 60 bytes.
        let mut prompts = Vec::new();
        let mut current = String::new();
        for t in texts.iter().cycle().take(texts.len() * 2) {
            current.push_str(t);
            current.push('\n');
            if current.len() >= kib * 1024 {
                prompts.push(std::mem::take(&mut current));
            }
        }
        println!(
            "  labelled texts, {kib:>2} KiB prompts ({} of them): {:.2}",
            prompts.len(),
            cost(&detector, &prompts)
        );
    }
    let prose = "The committee reviewed the proposal in detail and asked for a revised budget before the next \
                 meeting, noting that the timeline was ambitious but achievable if the vendors deliver on time. "
        .repeat(6);
    println!("  prose with no values, {} bytes: {:.2}", prose.len(), cost(&detector, &[prose]));
    Ok(())
}
