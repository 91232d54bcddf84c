#!/usr/bin/env bash
# Builds the router wasm module the native host loads:
#   target/wasm32-unknown-unknown/release/edge_router.wasm
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked -p edge-router --target wasm32-unknown-unknown --release
