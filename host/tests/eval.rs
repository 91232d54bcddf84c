//! `edge-router eval`: the figures of `../shared/router-eval/README.md`,
//! for the compiled-in scorer and the baselines, from the real binary.
#![allow(clippy::disallowed_methods)]

use std::process::Command;

fn eval(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edge-router")).arg("eval").args(args).output().expect("the binary runs")
}

#[test]
fn the_figures_match_the_readme_and_the_training_script() {
    let dev = format!("{}/../../shared/router-eval/dev.jsonl", env!("CARGO_MANIFEST_DIR"));
    assert!(std::path::Path::new(&dev).exists(), "{dev}: the suite needs ../shared beside the repository");
    let out = eval(&[&dev, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(got["prompts"], 8318);
    // The README's own baseline: "scoring by prompt length gives APGR 0.54, CPT(50%) 44%, CPT(80%) 77%".
    let length = &got["length_baseline"];
    assert_eq!((length["cpt50"].as_u64(), length["cpt80"].as_u64()), (Some(44), Some(77)), "{length}");
    assert!((length["apgr"].as_f64().unwrap() - 0.54).abs() < 0.005, "{length}");
    let random = &got["random_baseline"];
    assert!((random["apgr"].as_f64().unwrap() - 0.50).abs() < 0.005, "{random}");
    // The training script computed the scorer's figures on the same file, in Python.
    let weights: serde_json::Value =
        serde_json::from_str(include_str!("../../src/difficulty/weights.json")).expect("weights JSON");
    let script = &weights["figures"]["in_sample"];
    let learned = &got["learned"];
    assert_eq!(
        (learned["cpt50"].clone(), learned["cpt80"].clone()),
        (script["cpt50"].clone(), script["cpt80"].clone())
    );
    assert!((learned["apgr"].as_f64().unwrap() - script["apgr"].as_f64().unwrap()).abs() < 1e-4, "{learned} {script}");
    assert!(learned["apgr"].as_f64() > length["apgr"].as_f64(), "the scorer beats length on its own training file");

    let table = eval(&[&dev]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("learned (model: auto)") && text.contains("length baseline") && text.contains("in-sample"),
        "{text}"
    );
}

#[test]
fn a_bad_line_is_named_by_its_number() {
    let dir = std::env::temp_dir().join(format!("edge-router-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("labels.jsonl");
    let good = r#"{"prompt":"2+2?","weak_correct":false,"strong_correct":true}"#;
    std::fs::write(&file, format!("{good}\n\n{{\"prompt\":\"x\",\"weak_correct\":\"yes\"}}\n")).unwrap();
    let out = eval(&[file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("labels.jsonl:3:") && err.contains("weak_correct"), "{err}");
    std::fs::write(&file, format!("{good}\n{}\n", good.replace("false", "true"))).unwrap();
    let out = eval(&[file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 labelled prompts"), "a file with a gap is evaluated");
    std::fs::write(&file, good.replace("false", "true")).unwrap();
    let out = eval(&[file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no gap to recover"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_says_how_auto_chooses() {
    let dir = std::env::temp_dir().join(format!("edge-router-eval-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("learned.yaml");
    let node = "nodes:\n  - {id: a, type: local, host: \"http://127.0.0.1:9\", models: [small, large]}\n";
    std::fs::write(&file, format!("{node}model_routing: {{strategy: learned, large_share: 0.2}}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-router")).arg("check").arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("largest model for the hardest 20% by difficulty score"), "{text}");
    std::fs::write(&file, format!("{node}model_routing: {{large_share: 0.2}}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-router")).arg("check").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("learned.yaml:3:") && err.contains("strategy: learned"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
