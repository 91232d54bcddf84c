//! `edge-router eval FILE.jsonl`: how well `model_routing.strategy: learned`
//! would route a user's own labelled prompts, beside the random and length
//! baselines (see `edge_router::difficulty::eval` for the figures).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use edge_router::difficulty::Scorer;
use edge_router::difficulty::eval::{Labels, Summary, random_summary, summary};
use serde::Deserialize;

/// One line of the file: the format of `../shared/router-eval/dev.jsonl`
/// (other fields, such as `source` and `subject`, are ignored).
#[derive(Deserialize)]
struct Line {
    prompt: String,
    weak_correct: bool,
    strong_correct: bool,
}

/// The figures for one file.
#[derive(Debug)]
pub struct Evaluation {
    pub prompts: usize,
    /// The share of prompts each model answered correctly.
    pub weak: f64,
    pub strong: f64,
    /// The router's scorer, then the baselines.
    pub learned: Summary,
    pub length: Summary,
    pub random: Summary,
}

/// Reads `path` and scores every prompt as the router would score a chat
/// request whose last user turn it is.
pub fn evaluate(path: &Path) -> anyhow::Result<Evaluation> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut labels = Vec::new();
    let mut prompts = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(raw).with_context(|| {
            format!(
                "{}:{}: each line must be a JSON object with `prompt` (text), `weak_correct` and `strong_correct` (true or false)",
                path.display(),
                i + 1
            )
        })?;
        labels.push(Labels { weak: line.weak_correct, strong: line.strong_correct });
        prompts.push(line.prompt);
    }
    if labels.is_empty() {
        bail!("{}: no labelled prompts", path.display());
    }
    let scorer = Scorer::trained();
    let learned: Vec<f64> = prompts.iter().map(|p| scorer.score(p)).collect();
    let length: Vec<f64> = prompts.iter().map(|p| p.chars().count() as f64).collect();
    let context = || format!("{}", path.display());
    let n = labels.len() as f64;
    Ok(Evaluation {
        prompts: labels.len(),
        weak: labels.iter().filter(|l| l.weak).count() as f64 / n,
        strong: labels.iter().filter(|l| l.strong).count() as f64 / n,
        learned: summary(&learned, &labels).map_err(anyhow::Error::msg).with_context(context)?,
        length: summary(&length, &labels).map_err(anyhow::Error::msg).with_context(context)?,
        random: random_summary(&labels).map_err(anyhow::Error::msg).with_context(context)?,
    })
}

impl Evaluation {
    /// The figures as a table.
    pub fn table(&self) -> String {
        let pct = |k: Option<u32>| k.map_or_else(|| "never".to_string(), |k| format!("{k}%"));
        let mut out = format!(
            "{} labelled prompts: the small model is right on {:.1}%, the large one on {:.1}%\n\n",
            self.prompts,
            self.weak * 100.0,
            self.strong * 100.0
        );
        let _ = writeln!(out, "{:<24} {:>6} {:>9} {:>9}", "router", "APGR", "CPT(50%)", "CPT(80%)");
        for (name, s) in [
            ("learned (model: auto)", self.learned),
            ("length baseline", self.length),
            ("random baseline", self.random),
        ] {
            let _ = writeln!(out, "{:<24} {:>6.3} {:>9} {:>9}", name, s.apgr, pct(s.cpt50), pct(s.cpt80));
        }
        out.push_str(
            "\nAPGR: the share of the quality gap recovered, averaged over sending 0..100% of prompts to the large model.\n\
             CPT(x%): the share of prompts sent to the large model to recover x% of the gap (lower is cheaper).\n\
             The scorer was trained on router-eval/dev.jsonl (MMLU and GSM8K): on its prompts these figures are\n\
             in-sample, so optimistic; docs/model-routing.md gives the held-out ones.\n",
        );
        out
    }

    /// The figures as JSON.
    pub fn json(&self) -> serde_json::Value {
        let figures = |s: Summary| serde_json::json!({ "apgr": s.apgr, "cpt50": s.cpt50, "cpt80": s.cpt80 });
        serde_json::json!({
            "prompts": self.prompts,
            "weak_correct": self.weak,
            "strong_correct": self.strong,
            "learned": figures(self.learned),
            "length_baseline": figures(self.length),
            "random_baseline": figures(self.random),
        })
    }
}
