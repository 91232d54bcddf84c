#!/usr/bin/env bash
# Workers benchmark: the compressed upload size (as wrangler reports it),
# then bench/worker.mjs (cold start, wasm compile, workerd CPU per request of
# the router against a plain pass-through Worker and against the floor of a Rust
# Worker, bench/worker-floor, in the same run).
# Knobs: ROUNDS (5), REQUESTS (2000), CONCURRENCY (8); BEFORE_DIST=path/to/dist
# measures another build's upload in the same rounds, for before/after figures; AUTO=1024
# sends `model: auto` requests with a 1 KiB prompt and measures strategy: learned against tokens;
# PII=16384 sends a 16 KiB prompt dense with personal values, repeated by the origin, and
# measures `pii: {mode: pseudonymize}` against the same config without it; QUIET=1 measures
# the router with its access log off beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/worker-bundle.sh | grep -E '^(Total Upload|worker-upload-gzip-kib)'
# The floor of a Rust Worker (bench/worker-floor: read the country, forward),
# built and bundled as the router is.
bash scripts/build-worker.sh bench/worker-floor "$PWD/target/worker-floor" >/dev/null
rm -rf target/worker-floor-dist
floor=$(WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false npx wrangler deploy --dry-run \
  --config bench/worker-floor/wrangler.toml --outdir "$PWD/target/worker-floor-dist" 2>&1) || { echo "$floor"; exit 1; }
echo "floor Worker: $(grep -E 'Total Upload' <<<"$floor")"
cargo build --locked -q -p fake-origin
node bench/worker.mjs
