#!/usr/bin/env bash
# Load benchmark on loopback, all peers measured in one run:
#   origin   nginx serving a fixed JSON chat completion
#   nginx    nginx as a keep-alive reverse proxy to that origin
#   router   edge-router (release build, wasm module) routing to that origin
# wrk drives each with POST /v1/chat/completions at CONNS connections for DURATION,
# ROUNDS times, interleaved; the medians are reported, with proxy CPU µs per
# request read from /proc (utime+stime of the proxy's processes).
#
# Usage: bash bench/proxy.sh            (env: CONNS=32 DURATION=10s ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-32}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  echo "installing nginx and wrk from apt" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi
NGINX=$(command -v nginx)
bash scripts/build-module.sh >/dev/null
cargo build --locked --release -q -p edge-router-host -p edge-router-bench

WORK=$(mktemp -d /tmp/edge-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/origin/nginx.pid" ] && kill "$(cat "$WORK/origin/nginx.pid")" 2>/dev/null || true
  [ -f "$WORK/proxy/nginx.pid" ] && kill "$(cat "$WORK/proxy/nginx.pid")" 2>/dev/null || true
  sleep 0.3; rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_ORIGIN=$(free_port); P_NGINX=$(free_port); P_ROUTER=$(free_port); P_FLOOR=$(free_port)
COMPLETION='{"id":"bench-1","object":"chat.completion","model":"llama-3-8b","choices":[{"index":0,"message":{"role":"assistant","content":"Edge routing keeps cheap work local and sensitive data in its jurisdiction."},"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":14,"total_tokens":45}}'

nginx_conf() { # $1 dir, $2 server block
  mkdir -p "$1"
  cat > "$1/nginx.conf" <<CONF
worker_processes 2;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;
  keepalive_requests 1000000;
  $2
}
CONF
}
nginx_conf "$WORK/origin" "server { listen 127.0.0.1:$P_ORIGIN; location / { default_type application/json; return 200 '$COMPLETION'; } }"
nginx_conf "$WORK/proxy" "upstream origin { server 127.0.0.1:$P_ORIGIN; keepalive 128; }
  server { listen 127.0.0.1:$P_NGINX; location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
"$NGINX" -c "$WORK/origin/nginx.conf" -e "$WORK/origin/error.log"
"$NGINX" -c "$WORK/proxy/nginx.conf" -e "$WORK/proxy/error.log"

cat > "$WORK/router.yaml" <<CONF
name: bench
nodes:
  - {id: origin, type: local, host: "http://127.0.0.1:$P_ORIGIN", models: [llama-3-8b], data_residency: global}
routing:
  rules:
    - {name: bench, match: {type: "*"}, target: origin}
CONF
EDGE_ROUTER_LOG=warn target/release/edge-router serve --config "$WORK/router.yaml" --listen "127.0.0.1:$P_ROUTER" &
PIDS+=($!); ROUTER_PID=$!
target/release/hyper-floor "127.0.0.1:$P_FLOOR" "127.0.0.1:$P_ORIGIN" &
PIDS+=($!); FLOOR_PID=$!

cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"llama-3-8b","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the attached paragraph in one sentence, please."}]}'
LUA

for p in $P_ORIGIN $P_NGINX $P_ROUTER $P_FLOOR; do
  for _ in $(seq 50); do curl -sf -o /dev/null -X POST -d '{"model":"llama-3-8b","messages":[]}' "http://127.0.0.1:$p/v1/chat/completions" && break; sleep 0.2; done
done

TCK=$(getconf CLK_TCK)
cpu_ticks() { # sum utime+stime of the given pids (and their threads)
  local t=0; for p in "$@"; do
    read -r -a f < "/proc/$p/stat"; t=$((t + f[13] + f[14]))
  done; echo $t
}
# nginx workers do not carry the config path in their command line: take the
# master from its pid file and the workers as its children.
nginx_pids() { local m; m=$(cat "$1/nginx.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')"; }

measure() { # $1 name, $2 port, $3 pids to charge CPU to ("" for none)
  local before after out
  before=$( [ -n "$3" ] && cpu_ticks $3 || echo 0 )
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$WORK/post.lua" "http://127.0.0.1:$2/v1/chat/completions")
  after=$( [ -n "$3" ] && cpu_ticks $3 || echo 0 )
  local rps p50 p99 reqs non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out"); non2xx=${non2xx:-0}
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local cpu_us="-"
  [ -n "$3" ] && cpu_us=$(python3 -c "print(f'{($after-$before)*1e6/$TCK/$reqs:.1f}')")
  echo "$1 $rps $p50 $p99 $cpu_us $non2xx" >> "$WORK/results"
}

to_us() { python3 -c "
import sys,re
v=sys.argv[1]; m=re.match(r'([0-9.]+)(us|ms|s)',v); n=float(m.group(1)); u=m.group(2)
print(n*{'us':1,'ms':1000,'s':1e6}[u])" "$1"; }

echo "loopback, $CONNS connections, $THREADS wrk threads, $DURATION × $ROUNDS rounds, $(nproc) cores" >&2
for r in $(seq "$ROUNDS"); do
  measure origin "$P_ORIGIN" ""
  measure nginx "$P_NGINX" "$(nginx_pids "$WORK/proxy")"
  measure router "$P_ROUTER" "$ROUTER_PID"
  measure hyper-floor "$P_FLOOR" "$FLOOR_PID"
  echo "round $r done" >&2
done

python3 - "$WORK/results" <<'PY'
import sys, statistics, re
def us(v):
    m = re.match(r'([0-9.]+)(us|ms|s)$', v); n = float(m.group(1))
    return n * {'us': 1, 'ms': 1000, 's': 1e6}[m.group(2)]
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99, cpu, non2xx = line.split()
    r = rows.setdefault(name, {'rps': [], 'p50': [], 'p99': [], 'cpu': [], 'bad': 0})
    r['rps'].append(float(rps)); r['p50'].append(us(p50)); r['p99'].append(us(p99))
    if cpu != '-': r['cpu'].append(float(cpu))
    r['bad'] += int(non2xx)
med = {k: {m: (statistics.median(v[m]) if v[m] else None) for m in ('rps', 'p50', 'p99', 'cpu')} | {'bad': v['bad']} for k, v in rows.items()}
print("| target | req/s (median) | p50 µs | p99 µs | proxy CPU µs/req | non-2xx |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for k in ('origin', 'nginx', 'router', 'hyper-floor'):
    m = med[k]; cpu = f"{m['cpu']:.1f}" if m['cpu'] is not None else "-"
    print(f"| {k} | {m['rps']:.0f} | {m['p50']:.0f} | {m['p99']:.0f} | {cpu} | {m['bad']} |")
n, r = med['nginx'], med['router']
print()
cpu_ratio = f"{r['cpu']/n['cpu']:.2f}×" if n['cpu'] else "n/a (nginx CPU not measured)"
print(f"router / nginx: req/s {r['rps']/n['rps']:.2f}× (bar ≥ 0.9×), CPU per request {cpu_ratio} (bar ≤ 1.3×)")
PY
echo
target/release/decision-cost examples/hybrid.yaml
