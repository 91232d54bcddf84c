#!/usr/bin/env bash
# Edge-cache benchmark on loopback, peers measured in the same run:
#   1. cache hits of a GET: nginx with proxy_cache against edge-router's RFC 9111 cache, both
#      in front of the same nginx origin (Cache-Control: max-age=3600);
#   2. AI-cache hits: a deterministic chat request whose 2 KiB completion is cached;
#   3. memory: the edge box with cache.memory 64MiB filled with 10x that in distinct answers;
#      its resident memory is compared with the budget.
# wrk drives 1 and 2 at CONNS connections for DURATION, ROUNDS times, interleaved; medians.
#
# Usage: bash bench/cache.sh    (env: CONNS=32 DURATION=10s ROUNDS=3 MEM=64 (MiB) FILL=20s)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build-module.sh >/dev/null
cargo build --locked --release -q -p edge-router-host

WORK=$(mktemp -d /tmp/edge-cache-bench.XXXXXX)
source bench/lib.sh
P_ORIGIN=$(free_port); P_NGINX=$(free_port); P_ROUTER=$(free_port); P_FILL=$(free_port); P_ADMIN=$(free_port)
export EDGE_ROUTER_ADMIN_TOKEN="bench-$RANDOM-$RANDOM"
FILES='{"object":"list","data":[{"id":"file-abc123","object":"file","bytes":120000,"filename":"train.jsonl","purpose":"fine-tune"}]}'
# A chat completion of about 2 KiB, and a 3.5 KiB one for the memory fill (nginx's config
# takes at most 4 KiB in one `return`).
COMPLETION=$(python3 -c "
import json; text='Edge caching answers repeated questions without a model. '*34
print(json.dumps({'id':'c1','object':'chat.completion','model':'llama-3-8b','choices':[{'index':0,'message':{'role':'assistant','content':text},'finish_reason':'stop'}],'usage':{'prompt_tokens':20,'completion_tokens':400,'total_tokens':420}}))")
BIG=$(python3 -c "
import json; print(json.dumps({'choices':[{'message':{'content':'x'*3400}}],'usage':{'total_tokens':900}}))")

nginx_conf "$WORK/origin" "server { listen 127.0.0.1:$P_ORIGIN;
    location /v1/files { default_type application/json; add_header Cache-Control 'max-age=3600'; return 200 '$FILES'; }
    location /fill/ { default_type application/json; return 200 '$BIG'; }
    location / { default_type application/json; return 200 '$COMPLETION'; } }"
nginx_conf "$WORK/proxy" "proxy_cache_path $WORK/proxy/cache keys_zone=edge:10m max_size=64m;
  upstream origin { server 127.0.0.1:$P_ORIGIN; keepalive 128; }
  server { listen 127.0.0.1:$P_NGINX; location / { proxy_pass http://origin; proxy_http_version 1.1;
    proxy_set_header Connection \"\"; proxy_cache edge; add_header X-Cache \$upstream_cache_status; } }"
# nginx's workers run as an unprivileged user and write the cache and temporary files here.
chmod 0755 "$WORK"; chmod 0777 "$WORK/proxy"
start_nginx "$WORK/origin"
start_nginx "$WORK/proxy"

cat > "$WORK/router.yaml" <<CONF
name: cache-bench
cache: {memory: ${MEM:-64}MiB, default_ttl: 1h}
admin: {listen: "127.0.0.1:$P_ADMIN"}
nodes:
  - {id: origin, type: local, host: "http://127.0.0.1:$P_ORIGIN", data_residency: global}
  - {id: filler, type: local, host: "http://127.0.0.1:$P_ORIGIN/fill", data_residency: global}
routing:
  passthrough: origin
  rules:
    - {name: fill, match: {model: fill}, target: filler}
    - {name: chat, match: {}, target: origin}
CONF
EDGE_ROUTER_LOG=warn target/release/edge-router serve --config "$WORK/router.yaml" --listen "127.0.0.1:$P_ROUTER" &
PIDS+=($!); ROUTER_PID=$!
# The same router with the cache off: the memory peer for the fill.
sed -e "s/cache: {memory: ${MEM:-64}MiB, default_ttl: 1h}/cache: {enabled: false}/" -e '/^admin:/d' "$WORK/router.yaml" > "$WORK/nocache.yaml"
EDGE_ROUTER_LOG=warn target/release/edge-router serve --config "$WORK/nocache.yaml" --listen "127.0.0.1:$P_FILL" &
PIDS+=($!); NOCACHE_PID=$!
for p in $P_ORIGIN $P_NGINX $P_ROUTER $P_FILL; do
  for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$p/v1/files" && break; sleep 0.2; done
done
# Warm both caches and check they hit.
curl -s -o /dev/null "http://127.0.0.1:$P_NGINX/v1/files"
nginx_state=$(curl -s -D - -o /dev/null "http://127.0.0.1:$P_NGINX/v1/files" | awk -F': ' 'tolower($1)=="x-cache" {print $2}' | tr -d '\r')
router_state=$(curl -s -D - -o /dev/null "http://127.0.0.1:$P_ROUTER/v1/files" | awk -F': ' 'tolower($1)=="x-edge-cache" {print $2}' | tr -d '\r')
echo "warm-up: nginx X-Cache=$nginx_state, edge-router x-edge-cache=$router_state" >&2

cat > "$WORK/chat.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"llama-3-8b","temperature":0,"messages":[{"role":"user","content":"What does an edge cache do?"}]}'
LUA
curl -s -o /dev/null -X POST -H 'content-type: application/json' \
  -d '{"model":"llama-3-8b","temperature":0,"messages":[{"role":"user","content":"What does an edge cache do?"}]}' \
  "http://127.0.0.1:$P_ROUTER/v1/chat/completions"

echo "loopback, $CONNS connections, $THREADS wrk threads, $DURATION × $ROUNDS rounds, $(nproc) cores" >&2
for r in $(seq "$ROUNDS"); do
  wrk_measure nginx-proxy_cache "http://127.0.0.1:$P_NGINX/v1/files" "$(nginx_pids "$WORK/proxy")"
  wrk_measure edge-router-cache "http://127.0.0.1:$P_ROUTER/v1/files" "$ROUTER_PID"
  wrk_measure edge-router-ai-hit "http://127.0.0.1:$P_ROUTER/v1/chat/completions" "$ROUTER_PID" "$WORK/chat.lua"
  echo "round $r done" >&2
done

echo "GET cache hits (about 100 B) and AI-cache hits (a 2 KiB completion):"
median_table nginx-proxy_cache edge-router-cache edge-router-ai-hit
echo
python3 -c "
r, n = $(median_of edge-router-cache rps), $(median_of nginx-proxy_cache rps)
print(f'edge-router / nginx proxy_cache, GET hits: req/s {r/n:.2f}× (bar ≥ 1.0×)')"

# Memory: fill with 10x the budget in distinct 3.5 KiB answers, and send the same traffic to
# the router without a cache: the difference in resident growth is what the cache holds.
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
cat > "$WORK/fill.lua" <<'LUA'
local n = 0
local id = tostring(math.random(1, 1e9))
request = function()
  n = n + 1
  local body = '{"model":"fill","temperature":0,"messages":[{"role":"user","content":"q' .. id .. '-' .. n .. '"}]}'
  return wrk.format("POST", "/v1/chat/completions", {["Content-Type"] = "application/json"}, body)
end
LUA
fill() { # $1 port, $2 pid -> "requests growth_kib"
  local before after out
  before=$(rss_kib "$2")
  out=$(wrk -t2 -c16 -d"${FILL:-20s}" -s "$WORK/fill.lua" "http://127.0.0.1:$1/v1/chat/completions")
  after=$(rss_kib "$2")
  echo "$(awk '/requests in/ {print $1}' <<<"$out") $((after - before)) $after"
}
read -r filled growth rss < <(fill "$P_ROUTER" "$ROUTER_PID")
read -r peer_filled peer_growth peer_rss < <(fill "$P_FILL" "$NOCACHE_PID")
store=$(curl -s -H "authorization: Bearer $EDGE_ROUTER_ADMIN_TOKEN" "http://127.0.0.1:$P_ADMIN/admin/status" |
  python3 -c 'import json,sys; s=json.load(sys.stdin)["cache_store"]; print(s["bytes"], s["entries"])')
read -r store_bytes store_entries <<<"$store"
python3 -c "
budget = ${MEM:-64} * 1024
print(f'store: {$store_entries} entries, {$store_bytes/2**20:.1f} MiB counted ({$store_bytes/max($store_entries,1):.0f} B each)')
filled = $filled * 3.5 / 1024
growth, peer = $growth, $peer_growth
held = $rss - $peer_rss
print(f'memory: budget {budget//1024} MiB, filled {filled:.0f} MiB ({filled*1024/budget:.1f}x) in $filled distinct answers')
print(f'  resident after the fill: {$rss/1024:.0f} MiB with the cache, {$peer_rss/1024:.0f} MiB without (growth during the fill: {growth/1024:.0f} and {peer/1024:.0f} MiB)')
print(f'  held by the cache: about {held/1024:.0f} MiB = {held/budget:.2f}x the budget (bar: at most 1.10x)')"
