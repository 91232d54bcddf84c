//! `model: auto` with `model_routing.strategy: learned`, through the real
//! edge box and its wasm module: labelled prompts of `../shared/router-eval`
//! sent as chat requests, the hardest share rewritten to the largest model
//! at a real origin, and the score shown in `x-edge-model` and the access log.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use fake_origin::{FakeOrigin, Script};
use http_body_util::BodyExt;

mod common;

use common::{EdgeBox, chat, client};

/// Every 40th prompt of the labelled file (208 of them): the mix it has.
fn prompts() -> Vec<String> {
    let dev = format!("{}/../../shared/router-eval/dev.jsonl", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&dev).unwrap_or_else(|e| panic!("{dev}: {e} (the suite needs ../shared)"));
    text.lines()
        .step_by(40)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON line")["prompt"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_auto_gives_the_hardest_share_the_largest_model() {
    let origin = FakeOrigin::start("gpu", Script::default()).await.expect("start");
    let dir = std::env::temp_dir().join(format!("edge-router-auto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let _ = std::fs::remove_file(&log);
    let config = format!(
        "admin: {{listen: \"127.0.0.1:0\"}}
monitoring: {{access_log: \"{}\"}}
model_routing: {{strategy: learned, large_share: 0.25}}
nodes:
  - {{id: gpu, type: local, host: \"{}\", models: [qwen-1.5b, llama-70b]}}
",
        log.display(),
        origin.url()
    );
    let edge = EdgeBox::start_as("auto.yaml", &config);
    let client = client();

    let prompts = prompts();
    let mut large = Vec::new();
    for (i, prompt) in prompts.iter().enumerate() {
        let resp = chat(&client, &edge.addr, "auto", prompt).await;
        assert_eq!(resp.status(), 200);
        let header = resp.headers()["x-edge-model"].to_str().unwrap().to_string();
        resp.into_body().collect().await.expect("the answer arrives");
        let (model, rest) = header.split_once("; ").unwrap_or_else(|| panic!("the score is shown: {header}"));
        let band: u8 = rest.split("band=").nth(1).and_then(|b| b.parse().ok()).expect("a band");
        let score: f64 = rest.split("score=").nth(1).and_then(|s| s.split(';').next()?.parse().ok()).expect("a score");
        assert!((0.0..=1.0).contains(&score) && (1..=10).contains(&band), "{header}");
        // The module's score (wasm, its own libm) is the native scorer's, to the header's three decimals.
        let native = edge_router::difficulty::Scorer::trained().score(prompt);
        assert!((native - score).abs() <= 0.0005 + 1e-12, "{header}: natively {native}");
        let sent: serde_json::Value = serde_json::from_str(&origin.seen()[i].body).expect("JSON body");
        assert_eq!(sent["model"], model, "the origin was asked for the model the header names");
        if model == "llama-70b" {
            assert!(band >= 8, "only the top quarter of recent scores gets the large model: {header}");
            large.push(prompt);
        } else {
            assert_eq!(model, "qwen-1.5b");
        }
    }
    let share = large.len() as f64 / prompts.len() as f64;
    assert!((0.15..=0.35).contains(&share), "{} of {} large, for a share of 25%", large.len(), prompts.len());
    // Word problems (GSM8K: no options to choose from) are the kind the small model misses most.
    let word_problems = |set: &mut dyn Iterator<Item = &String>| set.filter(|p| !p.contains("\nA.")).count();
    let in_large = word_problems(&mut large.iter().copied()) as f64 / large.len() as f64;
    let overall = word_problems(&mut prompts.iter()) as f64 / prompts.len() as f64;
    assert!(in_large > 2.0 * overall, "word problems: {in_large:.2} of the large share, {overall:.2} of all");

    // The access log has the score and its band, beside the model served.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= prompts.len() || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let records: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(records.len(), prompts.len());
    for r in &records {
        let band = r["difficulty_band"].as_u64().unwrap_or_else(|| panic!("a band: {r}"));
        assert!(r["difficulty"].as_f64().is_some_and(|d| (0.0..=1.0).contains(&d)), "{r}");
        assert!(r["served_model"] == "qwen-1.5b" || (r["served_model"] == "llama-70b" && band >= 8), "{r}");
        assert_eq!(r["requested_model"], "auto");
    }
    assert_eq!(records.iter().filter(|r| r["served_model"] == "llama-70b").count(), large.len());
    std::fs::remove_dir_all(&dir).ok();
}
