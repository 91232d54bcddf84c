#!/usr/bin/env bash
# The README's first command: set up, build, and run `edge-router demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-module.sh
cargo build --locked --release -p edge-router-host
exec target/release/edge-router demo "$@"
