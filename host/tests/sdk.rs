//! The official client SDKs, unchanged, against the edge box: the `openai`
//! Python SDK from PyPI (pinned in `tests/sdk/requirements.txt`, installed
//! by `scripts/sdk-tools.sh` into `.tools/sdk-venv`) drives every endpoint
//! of the OpenAI surface the router routes, streaming included, and the
//! `anthropic` SDK sends Messages requests to nodes of three APIs. The
//! nodes are fake origins on loopback speaking each provider's wire format.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::Command;

use edge_router_host::{RouterModule, default_module_path, start};
use fake_origin::{FakeOrigin, Script};

/// The venv's Python, or a panic that says how to make it.
fn python() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/sdk-venv/bin/python");
    assert!(path.exists(), "{} is missing: run `bash scripts/sdk-tools.sh` (scripts/test.sh does)", path.display());
    path
}

/// Runs `script` (in `tests/sdk/`) against `base`; its output, or a panic with it.
async fn run_sdk(script: &str, base: String) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/sdk").join(script);
    let out = tokio::task::spawn_blocking(move || Command::new(python()).arg(file).arg(base).output())
        .await
        .expect("joined")
        .expect("python runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_works_unchanged_against_every_routed_endpoint() {
    let edge = FakeOrigin::start("edge", Script::default()).await.expect("start");
    let cloud = FakeOrigin::start("cloud", Script::default()).await.expect("start");
    let local = FakeOrigin::start("local", Script::default()).await.expect("start");
    let config = format!(
        "nodes:
  - {{id: edge, type: edge, host: \"{}\", models: [tiny], capabilities: [small_models]}}
  - {{id: cloud, type: cloud, host: \"{}\", models: [gpt-4o], cost_per_1k_tokens: 0.01}}
  - {{id: local, type: local, host: \"{}\", models: [gpt-4o-mini]}}
routing:
  rules:
    - {{name: small, match: {{model: auto}}, target: edge}}
",
        edge.url(),
        cloud.url(),
        local.url()
    );
    let module = RouterModule::from_file(&default_module_path()).expect("the module (scripts/build-module.sh)");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let router = start(&module, "sdk.yaml", &config, listener).expect("starts");
    let said = run_sdk("openai_surface.py", format!("http://{}", router.addr())).await;
    assert!(said.contains("checks passed"), "{said}");
    // The origins got the ids they made, never the router's tags.
    let seen = cloud.seen();
    assert!(seen.iter().all(|s| !s.target.contains('~') && !s.body.contains("~cloud")), "{seen:#?}");
    assert!(seen.iter().any(|s| s.body.contains("\"previous_response_id\"")), "the continuation reached the holder");
    router.shutdown(std::time::Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_python_sdk_reaches_anthropic_openai_and_gemini_nodes() {
    // SAFETY: set before the router starts; no other test reads these variables.
    unsafe {
        std::env::set_var("SDK_ANTHROPIC_KEY", "sk-ant-sdk");
        std::env::set_var("SDK_GEMINI_KEY", "AIza-sdk");
    }
    let claude = FakeOrigin::start("claude", Script::default()).await.expect("start");
    let cloud = FakeOrigin::start("cloud", Script::default()).await.expect("start");
    let gemini = FakeOrigin::start("gemini", Script::default()).await.expect("start");
    let config = format!(
        "nodes:
  - {{id: claude, type: cloud, provider: anthropic, host: \"{}\", api_key_env: SDK_ANTHROPIC_KEY, models: [claude-haiku]}}
  - {{id: cloud, type: cloud, host: \"{}\", models: [gpt-4o], cost_per_1k_tokens: 0.01}}
  - {{id: gemini, type: cloud, provider: gemini, host: \"{}\", api_key_env: SDK_GEMINI_KEY, models: [gemini-pro]}}
",
        claude.url(),
        cloud.url(),
        gemini.url()
    );
    let module = RouterModule::from_file(&default_module_path()).expect("the module (scripts/build-module.sh)");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let router = start(&module, "sdk.yaml", &config, listener).expect("starts");
    let said = run_sdk("anthropic_messages.py", format!("http://{}", router.addr())).await;
    assert!(said.contains("checks passed"), "{said}");
    // The Anthropic node got the client's request as it came; the others as their own API.
    assert!(claude.seen().iter().all(|s| s.target == "/v1/messages" && s.body.contains("\"max_tokens\":100")));
    assert!(cloud.seen().iter().all(|s| s.target == "/v1/chat/completions"), "{:#?}", cloud.seen());
    assert!(gemini.seen().iter().all(|s| s.target.starts_with("/v1beta/models/gemini-pro:")), "{:#?}", gemini.seen());
    router.shutdown(std::time::Duration::from_secs(1)).await;
}
