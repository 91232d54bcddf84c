#!/usr/bin/env bash
# The edge box's CPU per request against decision-floor's (hyper-floor plus
# the module's decision: what any router on this stack must spend), paired by
# round: issue 24's bar is 1.3×. Measures nginx (the reference), router
# (access log and metrics on, as proxy.sh's), router-quiet (both off),
# hyper-floor, decision-floor and decision-floor-shared (one module instance
# for both threads, as the edge box has) with wrk, ROUNDS (6) rounds of
# DURATION (5s), the targets taking turns going first, and prints the medians
# and, per round, router and router-quiet over each decision floor.
#
# Usage: bash bench/floor-ratio.sh   (env: CONNS=32 DURATION=5s ROUNDS=6)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-module.sh >/dev/null
cargo build --locked --release -q -p edge-router-host -p edge-router-bench
DURATION=${DURATION:-5s}; ROUNDS=${ROUNDS:-6}
WORK=$(mktemp -d /tmp/edge-ratio.XXXXXX)
source bench/lib.sh
proxy_setup
start_stack
start_shared_floor
wrk_chat() { wrk_measure "$1" "http://127.0.0.1:$2/v1/chat/completions" "$3" "$WORK/post.lua"; }
take_turns wrk_chat "nginx $P_NGINX $(nginx_pids "$WORK/proxy")" "router $P_ROUTER $ROUTER_PID" \
  "router-quiet $P_QUIET $QUIET_PID" "hyper-floor $P_FLOOR $FLOOR_PID" "decision-floor $P_DECIDE $DECIDE_PID" \
  "decision-floor-shared $P_SHARED $SHARED_PID"
median_table nginx router router-quiet hyper-floor decision-floor decision-floor-shared
python3 - "$WORK/results" <<'PY'
import sys, statistics
by = {}
for line in open(sys.argv[1]):
    f = line.split()
    by.setdefault(f[0], []).append(float(f[4]))
for floor in ("decision-floor", "decision-floor-shared"):
    for name in ("router", "router-quiet"):
        ratios = [a / b for a, b in zip(by[name], by[floor])]
        print(f"{name} / {floor} CPU, paired by round: median {statistics.median(ratios):.2f}× (range {min(ratios):.2f}-{max(ratios):.2f})")
PY
