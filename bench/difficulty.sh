#!/usr/bin/env bash
# What `model_routing.strategy: learned` costs per request: decision-cost (the router's
# work for one proxied request, natively and in the wasm module under wasmtime) on
# examples/hybrid.yaml as it is (strategy: tokens) and with strategy: learned, for
# `model: auto` requests whose user turn is PROMPT_BYTES (1024) of prose; the two
# configs take turns, ROUNDS (3) times, and the difference of their medians is the
# scoring (the last user turn found in the body, 15 features, the calibration).
set -euo pipefail
cd "$(dirname "$0")/.."
PROMPT_BYTES=${PROMPT_BYTES:-1024}
ROUNDS=${ROUNDS:-3}
cargo build --locked -q --release -p edge-router-bench --bin decision-cost
bash scripts/build-module.sh >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp examples/hybrid.yaml "$tmp/tokens.yaml"
sed 's/^  small_max_tokens: 1000$/  strategy: learned/' examples/hybrid.yaml > "$tmp/learned.yaml"
grep -q 'strategy: learned' "$tmp/learned.yaml" || { echo "examples/hybrid.yaml changed: no small_max_tokens line to replace" >&2; exit 1; }
declare -A native wasm
for round in $(seq "$ROUNDS"); do
  for variant in tokens learned; do
    out=$(DECISION_COST_AUTO_PROMPT=$PROMPT_BYTES target/release/decision-cost "$tmp/$variant.yaml")
    native[$variant]+="$(awk '/^  native/ {print $2}' <<<"$out") "
    wasm[$variant]+="$(awk '/^  wasmtime/ {print $2}' <<<"$out") "
  done
done
med() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "model: auto, a ${PROMPT_BYTES}-byte prompt; medians of $ROUNDS runs of decision-cost, µs per request"
printf '| strategy | native | wasmtime |\n| --- | ---: | ---: |\n'
for variant in tokens learned; do
  printf '| %s | %s | %s |\n' "$variant" "$(med <<<"${native[$variant]}")" "$(med <<<"${wasm[$variant]}")"
done
awk -v nt="$(med <<<"${native[tokens]}")" -v nl="$(med <<<"${native[learned]}")" \
    -v wt="$(med <<<"${wasm[tokens]}")" -v wl="$(med <<<"${wasm[learned]}")" \
    'BEGIN { printf "scoring costs %.2f µs natively and %.2f µs in the module\n", nl - nt, wl - wt }'
