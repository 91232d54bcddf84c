#!/usr/bin/env bash
# The README's second command: the whole test suite, from a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-module.sh
echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== unit, property and end-to-end tests"
EDGE_ROUTER_MODULE="$PWD/target/wasm32-unknown-unknown/release/edge_router.wasm" \
  cargo test --locked --workspace
echo "== load drill: the primary origin is killed and restarted under load; nothing may be lost"
EDGE_ROUTER_MODULE="$PWD/target/wasm32-unknown-unknown/release/edge_router.wasm" \
  cargo run --locked -q -p edge-router-bench --bin load-drill -- 10000 32
