#!/usr/bin/env bash
# Builds the Worker exactly as `npx wrangler deploy` would upload it, into
# dist/ (`wrangler deploy --dry-run`), and fails if the compressed upload is
# over the budget: 400 KiB, issue 24's goal, kept as a guard against growth
# (Cloudflare's free plan allows 3 MiB; 398 KiB on 2026-12-06). Where the
# upload goes, and what was tried: bench/README.md.
# Prints `worker-upload-gzip-kib N` for bench/ to read.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET_KIB=400
bash scripts/worker-tools.sh
rm -rf dist
out=$(WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false \
  npx wrangler deploy --dry-run --outdir dist 2>&1) || { echo "$out"; exit 1; }
line=$(grep -E 'Total Upload: .* gzip: ' <<<"$out") || { echo "$out"; echo "worker-bundle: wrangler printed no upload size" >&2; exit 1; }
echo "$line"
gzip_kib=$(sed -E 's/.*gzip: ([0-9.]+) KiB.*/\1/' <<<"$line")
echo "worker-upload-gzip-kib $gzip_kib"
if ! awk -v size="$gzip_kib" -v budget="$BUDGET_KIB" 'BEGIN { exit !(size <= budget) }'; then
  echo "worker-bundle: the compressed upload is ${gzip_kib} KiB, over the ${BUDGET_KIB} KiB budget" \
    "(bench/README.md says where it goes and what shrank it)" >&2
  exit 1
fi
