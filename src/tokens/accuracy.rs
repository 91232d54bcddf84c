//! Measures the estimator against the cl100k_base BPE tokenizer.
//!
//! The sample is this repository's own prose (docs, README) and code (the
//! router's sources), cut into paragraph-sized pieces, plus `chat_prompts.txt`:
//! everyday prompts in English, German, French, Chinese and Japanese.
//! `cargo test -p edge-router --lib tokens::accuracy -- --nocapture` prints the table that
//! `docs/token-estimate.md` quotes.

use std::path::Path;

use super::estimate_text_tokens;

struct Sample {
    kind: &'static str,
    text: String,
}

fn pieces(kind: &'static str, text: &str, out: &mut Vec<Sample>) {
    let mut current = String::new();
    for para in text.split("\n\n") {
        current.push_str(para);
        current.push_str("\n\n");
        if current.len() >= 400 {
            out.push(Sample { kind, text: std::mem::take(&mut current) });
        }
    }
    if current.trim().len() >= 40 {
        out.push(Sample { kind, text: current });
    }
}

fn files(dir: &Path, ext: &str, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, ext, found);
        } else if p.extension().is_some_and(|x| x == ext) {
            found.push(p);
        }
    }
}

fn sample() -> Vec<Sample> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut docs = vec![root.join("README.md")];
    files(&root.join("docs"), "md", &mut docs);
    let mut code = Vec::new();
    files(&root.join("src"), "rs", &mut code);
    for (kind, paths) in [("prose", docs), ("code", code)] {
        let mut paths = paths;
        paths.sort();
        for p in paths {
            pieces(kind, &std::fs::read_to_string(&p).unwrap_or_default(), &mut out);
        }
    }
    for prompt in include_str!("chat_prompts.txt").lines().filter(|l| !l.trim().is_empty()) {
        out.push(Sample { kind: "chat", text: prompt.to_string() });
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[test]
fn estimate_is_within_15_percent_of_cl100k() {
    let bpe = tiktoken_rs::cl100k_base().expect("cl100k_base ships inside tiktoken-rs");
    let samples = sample();
    assert!(samples.len() >= 100, "sample too small: {}", samples.len());
    println!(
        "{:<6} {:>7} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "kind", "pieces", "real", "estimate", "total", "p50 |err|", "p90 |err|"
    );
    let mut overall = (0u64, 0u64, Vec::new());
    for kind in ["prose", "code", "chat", "all"] {
        let chosen: Vec<&Sample> = samples.iter().filter(|s| kind == "all" || s.kind == kind).collect();
        let (mut real, mut est, mut errs) = (0u64, 0u64, Vec::new());
        for s in &chosen {
            let r = bpe.encode_ordinary(&s.text).len() as u64;
            let e = estimate_text_tokens(&s.text);
            real += r;
            est += e;
            errs.push((e as f64 - r as f64).abs() / r.max(1) as f64);
        }
        errs.sort_by(f64::total_cmp);
        let total = (est as f64 - real as f64) / real as f64;
        println!(
            "{kind:<6} {:>7} {real:>9} {est:>9} {:>+8.1}% {:>9.1}% {:>9.1}%",
            chosen.len(),
            total * 100.0,
            percentile(&errs, 0.5) * 100.0,
            percentile(&errs, 0.9) * 100.0
        );
        if kind == "all" {
            overall = (real, est, errs);
        }
    }
    let (real, est, errs) = overall;
    let total = (est as f64 - real as f64) / real as f64;
    assert!(total.abs() <= 0.15, "total estimate off by {:.1}%", total * 100.0);
    assert!(percentile(&errs, 0.9) <= 0.15, "p90 per-piece error {:.1}%", percentile(&errs, 0.9) * 100.0);
}
