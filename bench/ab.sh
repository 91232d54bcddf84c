#!/usr/bin/env bash
# Two builds of the edge box in one run, against the same nginx origin, with
# nginx as a reverse proxy and hyper-floor measured in the same rounds: the
# way to tell whether a change helped on a shared, noisy machine.
#
# Usage: A_BIN=/path/edge-router A_MODULE=/path/edge_router.wasm \
#        B_BIN=... B_MODULE=... bash bench/ab.sh
#   (env as proxy.sh: CONNS=32 DURATION=5s ROUNDS=5; CONFIG_EXTRA is appended
#    to both routers' config, e.g. "server: {workers: 1}")
# Copy each build's binary and module aside first: a build overwrites target/.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${A_BIN:?} ${A_MODULE:?} ${B_BIN:?} ${B_MODULE:?}"
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-5}
cargo build --locked --release -q -p edge-router-bench

WORK=$(mktemp -d /tmp/edge-ab.XXXXXX)
source bench/lib.sh
P_ORIGIN=$(free_port); P_NGINX=$(free_port); P_A=$(free_port); P_B=$(free_port); P_FLOOR=$(free_port)
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
${CONFIG_EXTRA:-}
CONF
EDGE_ROUTER_LOG=warn "$A_BIN" serve --module "$A_MODULE" --config "$WORK/router.yaml" --listen "127.0.0.1:$P_A" &
PIDS+=($!); A_PID=$!
EDGE_ROUTER_LOG=warn "$B_BIN" serve --module "$B_MODULE" --config "$WORK/router.yaml" --listen "127.0.0.1:$P_B" &
PIDS+=($!); B_PID=$!
target/release/hyper-floor "127.0.0.1:$P_FLOOR" "127.0.0.1:$P_ORIGIN" &
PIDS+=($!); FLOOR_PID=$!

cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"llama-3-8b","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the attached paragraph in one sentence, please."}]}'
LUA

for p in $P_NGINX $P_A $P_B $P_FLOOR; do
  for _ in $(seq 50); do curl -sf -o /dev/null -X POST -d '{"model":"llama-3-8b","messages":[]}' "http://127.0.0.1:$p/v1/chat/completions" && break; sleep 0.2; done
done

measure() { wrk_measure "$1" "http://127.0.0.1:$2/v1/chat/completions" "$3" "$WORK/post.lua"; }
echo "loopback, $CONNS connections, $DURATION × $ROUNDS rounds, $(nproc) cores; A=$A_BIN B=$B_BIN" >&2
for r in $(seq "$ROUNDS"); do
  measure nginx "$P_NGINX" "$(nginx_pids "$WORK/proxy")"
  measure A "$P_A" "$A_PID"
  measure B "$P_B" "$B_PID"
  measure hyper-floor "$P_FLOOR" "$FLOOR_PID"
  echo "round $r done" >&2
done
median_table nginx A B hyper-floor
python3 -c "
n, nc = $(median_of nginx rps), $(median_of nginx cpu)
for name, r, c in (('A', $(median_of A rps), $(median_of A cpu)), ('B', $(median_of B rps), $(median_of B cpu))):
    print(f'{name} / nginx: req/s {r/n:.2f}×, CPU per request {c/nc:.2f}×')"
