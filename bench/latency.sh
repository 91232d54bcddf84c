#!/usr/bin/env bash
# Latency the proxies add at a fixed rate, on loopback, all in one run:
# oha sends POST /v1/chat/completions at RATE requests a second (2,000) for
# DURATION (10s) on CONNS connections (32), with --latency-correction (a
# request's latency counts from when it was due, not from when it went, so a
# stall is not hidden: no coordinated omission), to
#   origin          nginx serving a fixed chat completion (as proxy.sh's)
#   nginx           nginx as a keep-alive reverse proxy to it (the reference)
#   router          edge-router, release build and module, one rule, access
#                   log and metrics on (as proxy.sh's `router`)
#   router-quiet    the same with both off (as proxy.sh's `router-quiet`)
#   hyper-floor     a bare hyper reverse proxy (bench/src/hyper_floor.rs)
#   decision-floor  hyper-floor plus the module's decision per request
# ROUNDS (5) rounds, the targets taking turns going first. Each proxy's added
# latency at p50, p99 and p99.9 is its percentile minus the origin's in the
# same round; the table gives the medians over the rounds, with the proxy's
# CPU per request at that rate (utime+stime from /proc); non-2xx counts
# answers of another status and requests that got none.
#
# Usage: bash bench/latency.sh   (env: RATE=2000 DURATION=10s CONNS=32 ROUNDS=5)
set -euo pipefail
cd "$(dirname "$0")/.."

OHA_VERSION=1.16.0
if ! .tools/bin/oha --version 2>/dev/null | grep -q " $OHA_VERSION"; then
  echo "installing oha $OHA_VERSION into .tools/ (cargo install, a few minutes)" >&2
  cargo install --quiet --locked --root .tools oha --version "=$OHA_VERSION"
fi
bash scripts/build-module.sh >/dev/null
cargo build --locked --release -q -p edge-router-host -p edge-router-bench

RATE=${RATE:-2000}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-5}
WORK=$(mktemp -d /tmp/edge-latency.XXXXXX)
source bench/lib.sh
proxy_setup
start_stack
BODY=$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$WORK/post.lua")

measure() { # $1 name, $2 port, $3 pids charged for CPU ("" for none); appends a JSON line to $WORK/latency
  local before after
  before=$( [ -n "$3" ] && cpu_ticks $3 || echo "0 0" )
  .tools/bin/oha -z "$DURATION" -q "$RATE" --latency-correction -c "$CONNS" --no-tui --output-format json \
    -m POST -H 'content-type: application/json' -d "$BODY" "http://127.0.0.1:$2/v1/chat/completions" >"$WORK/oha.json"
  after=$( [ -n "$3" ] && cpu_ticks $3 || echo "0 0" )
  python3 - "$1" "$ROUND" "$before" "$after" "$TCK" "$WORK/oha.json" >>"$WORK/latency" <<'PY'
import json, sys
name, rnd, before, after, tck, path = sys.argv[1:]
d = json.load(open(path))
codes = d.get("statusCodeDistribution", {})
ok = sum(n for c, n in codes.items() if c.startswith("2"))
# Requests that got no answer at all (refused, reset, timed out) count as bad too;
# oha's "aborted due to deadline" are the ones still in flight when the time ran out.
failed = sum(n for e, n in d.get("errorDistribution", {}).items() if "deadline" not in e)
ticks = sum(map(int, after.split())) - sum(map(int, before.split()))
p = d["latencyPercentiles"]
print(json.dumps({"name": name, "round": int(rnd), "rps": d["summary"]["requestsPerSec"], "ok": ok,
                  "bad": sum(codes.values()) - ok + failed, "p50": p["p50"] * 1e6, "p99": p["p99"] * 1e6, "p999": p["p99.9"] * 1e6,
                  "cpu": ticks * 1e6 / int(tck) / max(ok, 1)}))
PY
}

echo "loopback, $RATE req/s for $DURATION on $CONNS connections, $ROUNDS rounds, $(nproc) cores" >&2
ORIGIN_FIRST=1 take_turns measure "nginx $P_NGINX $(nginx_pids "$WORK/proxy")" "router $P_ROUTER $ROUTER_PID" \
  "router-quiet $P_QUIET $QUIET_PID" "hyper-floor $P_FLOOR $FLOOR_PID" "decision-floor $P_DECIDE $DECIDE_PID"

python3 - "$WORK/latency" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
origin = {r["round"]: r for r in rows if r["name"] == "origin"}
names = []
for r in rows:
    if r["name"] not in names:
        names.append(r["name"])
med = lambda xs: statistics.median(xs)
print("| target | req/s | p50 µs | p99 µs | p99.9 µs | added p50 µs | added p99 µs | added p99.9 µs | CPU µs/req | non-2xx |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for n in names:
    mine = [r for r in rows if r["name"] == n]
    added = lambda k: med([r[k] - origin[r["round"]][k] for r in mine])
    cpu = f"{med([r['cpu'] for r in mine]):.1f}" if n != "origin" else "-"
    add = lambda k: f"{added(k):.0f}" if n != "origin" else "-"
    print(f"| {n} | {med([r['rps'] for r in mine]):.0f} | {med([r['p50'] for r in mine]):.0f} | {med([r['p99'] for r in mine]):.0f} "
          f"| {med([r['p999'] for r in mine]):.0f} | {add('p50')} | {add('p99')} | {add('p999')} | {cpu} | {sum(r['bad'] for r in mine)} |")
PY
