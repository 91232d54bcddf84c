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

bash scripts/build-module.sh >/dev/null
cargo build --locked --release -q -p edge-router-host -p edge-router-bench

WORK=$(mktemp -d /tmp/edge-bench.XXXXXX)
source bench/lib.sh
P_ORIGIN=$(free_port); P_NGINX=$(free_port); P_ROUTER=$(free_port); P_FLOOR=$(free_port)
COMPLETION='{"id":"bench-1","object":"chat.completion","model":"llama-3-8b","choices":[{"index":0,"message":{"role":"assistant","content":"Edge routing keeps cheap work local and sensitive data in its jurisdiction."},"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":14,"total_tokens":45}}'

nginx_conf "$WORK/origin" "server { listen 127.0.0.1:$P_ORIGIN; location / { default_type application/json; return 200 '$COMPLETION'; } }"
nginx_conf "$WORK/proxy" "upstream origin { server 127.0.0.1:$P_ORIGIN; keepalive 128; }
  server { listen 127.0.0.1:$P_NGINX; location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
start_nginx "$WORK/origin"
start_nginx "$WORK/proxy"

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

measure() { # $1 name, $2 port, $3 pids to charge CPU to ("" for none)
  wrk_measure "$1" "http://127.0.0.1:$2/v1/chat/completions" "$3" "$WORK/post.lua"
}

echo "loopback, $CONNS connections, $THREADS wrk threads, $DURATION × $ROUNDS rounds, $(nproc) cores" >&2
for r in $(seq "$ROUNDS"); do
  measure origin "$P_ORIGIN" ""
  measure nginx "$P_NGINX" "$(nginx_pids "$WORK/proxy")"
  measure router "$P_ROUTER" "$ROUTER_PID"
  measure hyper-floor "$P_FLOOR" "$FLOOR_PID"
  echo "round $r done" >&2
done

median_table origin nginx router hyper-floor
echo
python3 -c "
r, n = $(median_of router rps), $(median_of nginx rps)
rc, nc = $(median_of router cpu), $(median_of nginx cpu)
print(f'router / nginx: req/s {r/n:.2f}× (bar ≥ 0.9×), CPU per request {rc/nc:.2f}× (bar ≤ 1.3×)')
ru, fu = $(median_of router user), $(median_of hyper-floor user)
rs, fs = $(median_of router sys), $(median_of hyper-floor sys)
print(f'router / hyper-floor: user CPU per request {ru/fu:.2f}×, system CPU {rs/fs:.2f}×')"
echo
target/release/decision-cost examples/hybrid.yaml
