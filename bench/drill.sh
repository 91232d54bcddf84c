#!/usr/bin/env bash
# Load drill (issue 4): REQUESTS chat requests at CONCURRENCY through the edge
# box and wasm module while the primary origin process is killed and
# restarted midway; fails unless lost = 0. Usage: bash bench/drill.sh [REQUESTS [CONCURRENCY]]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-module.sh >/dev/null
cargo build --locked --release -q -p edge-router-bench --bin load-drill
EDGE_ROUTER_MODULE="$PWD/target/wasm32-unknown-unknown/release/edge_router.wasm" \
  target/release/load-drill "${1:-10000}" "${2:-32}"
