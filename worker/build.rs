//! Finds the config file that `wrangler.toml` (beside the workspace root)
//! names in `[vars] EDGE_ROUTER_CONFIG`, relative to that root
//! (`EDGE_ROUTER_CONFIG` in the build's environment overrides it), loads it
//! as the edge box would (`RouterConfig::load_to_json`, which also refuses
//! what the Workers build cannot honour), and writes it as compact JSON for
//! `src/state.rs` to bundle: the Worker reads that with
//! `RouterConfig::load_json`, so its module carries no YAML parser. A config
//! that does not load fails the build with its errors (file, line, what is
//! wrong); its warnings are printed. A native build (the crate is empty
//! there) does none of this.
// A build script: it reads the build's environment and files.
#![allow(clippy::disallowed_methods)]

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=EDGE_ROUTER_CONFIG");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("wasm32") {
        return;
    }
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).parent().expect("the worker crate sits in the workspace");
    let wrangler = root.join("wrangler.toml");
    println!("cargo:rerun-if-changed={}", wrangler.display());
    let name = match std::env::var("EDGE_ROUTER_CONFIG") {
        Ok(name) => name,
        Err(_) => {
            let text = std::fs::read_to_string(&wrangler).unwrap_or_else(|e| panic!("{}: {e}", wrangler.display()));
            config_var(&text).unwrap_or_else(|| {
                panic!(
                    "{}: [vars] has no EDGE_ROUTER_CONFIG = \"FILE\" naming the config to bundle",
                    wrangler.display()
                )
            })
        }
    };
    let path = root.join(&name);
    if !path.is_file() {
        panic!("EDGE_ROUTER_CONFIG names {name}, which is not a file under {}", root.display());
    }
    println!("cargo:rerun-if-changed={}", path.display());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (config, json) = edge_router::RouterConfig::load_to_json(&name, &text)
        .unwrap_or_else(|errors| panic!("the config to bundle does not load on Workers:\n{errors}"));
    for w in &config.warnings {
        println!("cargo:warning=config: {}", w.in_file(&name));
    }
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("bundled-config.json");
    std::fs::write(&out, json).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    println!("cargo:rustc-env=EDGE_ROUTER_BUNDLED_CONFIG={}", out.display());
    println!("cargo:rustc-env=EDGE_ROUTER_BUNDLED_NAME={name}");
}

/// The value of `EDGE_ROUTER_CONFIG` in the `[vars]` table of a wrangler.toml
/// (a plain `key = "value"` line; that is all this needs of TOML).
fn config_var(toml: &str) -> Option<String> {
    let mut in_vars = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_vars = line == "[vars]";
            continue;
        }
        if !in_vars {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        if key.trim() == "EDGE_ROUTER_CONFIG" {
            let value = value.split('#').next()?.trim();
            return Some(value.trim_matches('"').to_string());
        }
    }
    None
}
