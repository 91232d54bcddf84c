#!/usr/bin/env bash
# The README's second command: the whole test suite, from a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-module.sh
echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== the pure crates build for every target they promise"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
for target in wasm32-unknown-unknown wasm32-wasip2; do
  cargo check --locked -q -p edge-cache -p origin-fallback --target "$target"
done
echo "== unit, property and end-to-end tests, and the load drill (bench/tests/drill.rs)"
EDGE_ROUTER_MODULE="$PWD/target/wasm32-unknown-unknown/release/edge_router.wasm" \
  cargo test --locked --workspace
