#!/usr/bin/env bash
# Two builds of the edge box in one run, against the same nginx origin, with
# nginx as a reverse proxy and hyper-floor measured in the same rounds: the
# way to tell whether a change helped on a shared, noisy machine.
#
# Usage: A_BIN=/path/edge-router A_MODULE=/path/edge_router.wasm \
#        B_BIN=... B_MODULE=... bash bench/ab.sh
#   (env as proxy.sh: CONNS=32 DURATION=5s ROUNDS=6, even so that each build
#    goes first equally often; CONFIG_EXTRA is appended to both routers'
#    config, e.g. "server: {workers: 1}")
# Copy each build's binary and module aside first: a build overwrites target/.
set -euo pipefail
: "${A_BIN:?} ${A_MODULE:?} ${B_BIN:?} ${B_MODULE:?}"
A_BIN=$(realpath "$A_BIN"); A_MODULE=$(realpath "$A_MODULE")
B_BIN=$(realpath "$B_BIN"); B_MODULE=$(realpath "$B_MODULE")
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-6}
cargo build --locked --release -q -p edge-router-bench

WORK=$(mktemp -d /tmp/edge-ab.XXXXXX)
source bench/lib.sh
proxy_setup
P_A=$(free_port); P_B=$(free_port); P_FLOOR=$(free_port)
# Their standard output (an access log, in builds that write one) goes to a file.
EDGE_ROUTER_LOG=warn "$A_BIN" serve --module "$A_MODULE" --config "$WORK/router.yaml" --listen "127.0.0.1:$P_A" >"$WORK/A.out" &
PIDS+=($!); A_PID=$!
EDGE_ROUTER_LOG=warn "$B_BIN" serve --module "$B_MODULE" --config "$WORK/router.yaml" --listen "127.0.0.1:$P_B" >"$WORK/B.out" &
PIDS+=($!); B_PID=$!
target/release/hyper-floor "127.0.0.1:$P_FLOOR" "127.0.0.1:$P_ORIGIN" >/dev/null &
PIDS+=($!); FLOOR_PID=$!
wait_ready "$P_NGINX" "$P_A" "$P_B" "$P_FLOOR"

measure() { wrk_measure "$1" "http://127.0.0.1:$2/v1/chat/completions" "$3" "$WORK/post.lua"; }
echo "loopback, $CONNS connections, $DURATION × $ROUNDS rounds, $(nproc) cores; A=$A_BIN B=$B_BIN" >&2
for r in $(seq "$ROUNDS"); do
  measure nginx "$P_NGINX" "$(nginx_pids "$WORK/proxy")"
  # Each build goes first every other round: a slow spell, or whatever the
  # first of two measurements pays, then falls on both alike.
  if [ $((r % 2)) -eq 1 ]; then
    measure A "$P_A" "$A_PID"; measure B "$P_B" "$B_PID"
  else
    measure B "$P_B" "$B_PID"; measure A "$P_A" "$A_PID"
  fi
  measure hyper-floor "$P_FLOOR" "$FLOOR_PID"
  echo "round $r done" >&2
done
median_table nginx A B hyper-floor
python3 -c "
n, nc = $(median_of nginx rps), $(median_of nginx cpu)
for name, r, c in (('A', $(median_of A rps), $(median_of A cpu)), ('B', $(median_of B rps), $(median_of B cpu))):
    print(f'{name} / nginx: req/s {r/n:.2f}×, CPU per request {c/nc:.2f}×')"
# Paired by round: B's figure over A's from the same round, whose conditions
# they shared; the median of those ratios, and their range.
python3 - "$WORK/results" <<'PY'
import sys, statistics
rows = {'A': [], 'B': []}
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] in rows:
        rows[f[0]].append((float(f[1]), float(f[4])))
for label, i in (('req/s', 0), ('CPU per request', 1)):
    ratios = sorted(b[i] / a[i] for a, b in zip(rows['A'], rows['B']))
    print(f'B / A, paired by round: {label} {statistics.median(ratios):.3f}× (rounds {ratios[0]:.3f}–{ratios[-1]:.3f}×)')
PY
