# Helpers shared by the benchmark scripts (sourced, not run).
#
# Expects: WORK (a temporary folder), and fills PIDS with processes to stop.

# wrk's load, the same for every benchmark unless set in the environment.
CONNS=${CONNS:-32}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
# The router module every edge box and decision floor here runs.
MODULE=target/wasm32-unknown-unknown/release/edge_router.wasm

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  echo "installing nginx and wrk from apt" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi
NGINX=$(command -v nginx)

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for d in "$WORK"/*/; do [ -f "$d/nginx.pid" ] && kill "$(cat "$d/nginx.pid")" 2>/dev/null || true; done
  sleep 0.3; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

nginx_conf() { # $1 dir, $2 http-level config (server blocks and the like)
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

start_nginx() { "$NGINX" -c "$1/nginx.conf" -e "$1/error.log"; }

TCK=$(getconf CLK_TCK)
cpu_ticks() { # "utime stime" summed over the given pids (and their threads); one gone counts nothing
  local u=0 s=0 p f; for p in "$@"; do
    read -r -a f < "/proc/$p/stat" 2>/dev/null || continue
    u=$((u + f[13])); s=$((s + f[14]))
  done; echo "$u $s"
}
# nginx workers do not carry the config path in their command line: take the
# master from its pid file and the workers as its children.
nginx_pids() { local m; m=$(cat "$1/nginx.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')"; }

# wrk_measure NAME URL "PIDS" [LUA] : one wrk run; appends
# "NAME req/s p50 p99 cpu-µs/req non-2xx user-µs/req sys-µs/req" to $WORK/results.
wrk_measure() {
  local before after out script=()
  [ -n "${4:-}" ] && script=(-s "$4")
  before=$( [ -n "$3" ] && cpu_ticks $3 || echo "0 0" )
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${script[@]}" "$2")
  after=$( [ -n "$3" ] && cpu_ticks $3 || echo "0 0" )
  local rps p50 p99 reqs non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out"); non2xx=${non2xx:-0}
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local cpu_us="- - -"
  [ -n "$3" ] && cpu_us=$(python3 -c "
(bu, bs), (au, as_) = [map(int, x.split()) for x in ('$before', '$after')]
us = lambda ticks: f'{ticks * 1e6 / $TCK / $reqs:.1f}'
print(us(au - bu + as_ - bs), us(au - bu), us(as_ - bs))")
  read -r cpu_us user_us sys_us <<<"$cpu_us"
  echo "$1 $rps $p50 $p99 $cpu_us $non2xx $user_us $sys_us" >> "$WORK/results"
}

# median_table NAMES... : the medians of $WORK/results as a markdown table.
median_table() {
  python3 - "$WORK/results" "$@" <<'PY'
import sys, statistics, re
def us(v):
    m = re.match(r'([0-9.]+)(us|ms|s)$', v); n = float(m.group(1))
    return n * {'us': 1, 'ms': 1000, 's': 1e6}[m.group(2)]
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99, cpu, non2xx, user, sys_ = line.split()
    r = rows.setdefault(name, {'rps': [], 'p50': [], 'p99': [], 'cpu': [], 'user': [], 'sys': [], 'bad': 0})
    r['rps'].append(float(rps)); r['p50'].append(us(p50)); r['p99'].append(us(p99))
    if cpu != '-':
        r['cpu'].append(float(cpu)); r['user'].append(float(user)); r['sys'].append(float(sys_))
    r['bad'] += int(non2xx)
print("| target | req/s (median) | p50 µs | p99 µs | proxy CPU µs/req | of it user / sys | non-2xx |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for k in sys.argv[2:]:
    v = rows[k]; m = {x: (statistics.median(v[x]) if v[x] else None) for x in ('rps', 'p50', 'p99', 'cpu', 'user', 'sys')}
    cpu = f"{m['cpu']:.1f}" if m['cpu'] is not None else "-"
    split = f"{m['user']:.1f} / {m['sys']:.1f}" if m['cpu'] is not None else "-"
    print(f"| {k} | {m['rps']:.0f} | {m['p50']:.0f} | {m['p99']:.0f} | {cpu} | {split} | {v['bad']} |")
PY
}

# median_of NAME FIELD : one median from $WORK/results (FIELD: rps, cpu, user, sys).
median_of() {
  python3 - "$WORK/results" "$1" "$2" <<'PY'
import sys, statistics
col = {'rps': 1, 'cpu': 4, 'user': 6, 'sys': 7}[sys.argv[3]]
vals = [float(l.split()[col]) for l in open(sys.argv[1]) if l.split()[0] == sys.argv[2] and l.split()[col] != '-']
print(statistics.median(vals))
PY
}

# proxy_setup : for the proxy benchmarks (proxy.sh, ab.sh). Starts an nginx
# origin answering a fixed chat completion on $P_ORIGIN (and the same answer
# as an Anthropic message at /v1/messages), and nginx as a
# keep-alive reverse proxy to it on $P_NGINX (both ports chosen here), and
# writes $WORK/router.yaml (one rule to the origin; CONFIG_EXTRA appended) and
# $WORK/post.lua (wrk's chat request).
proxy_setup() {
  P_ORIGIN=$(free_port); P_NGINX=$(free_port)
  local completion='{"id":"bench-1","object":"chat.completion","model":"llama-3-8b","choices":[{"index":0,"message":{"role":"assistant","content":"Edge routing keeps cheap work local and sensitive data in its jurisdiction."},"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":14,"total_tokens":45}}'
  local message='{"id":"msg_bench1","type":"message","role":"assistant","model":"llama-3-8b","content":[{"type":"text","text":"Edge routing keeps cheap work local and sensitive data in its jurisdiction."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":31,"output_tokens":14}}'
  nginx_conf "$WORK/origin" "server { listen 127.0.0.1:$P_ORIGIN; location / { default_type application/json; return 200 '$completion'; }
    location = /v1/messages { default_type application/json; return 200 '$message'; } }"
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
  cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"llama-3-8b","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the attached paragraph in one sentence, please."}]}'
LUA
}

# wait_ready PORT... : until each answers a chat request (10 s at most each).
wait_ready() {
  for p in "$@"; do
    for _ in $(seq 50); do curl -sf -o /dev/null -X POST -d '{"model":"llama-3-8b","messages":[]}' "http://127.0.0.1:$p/v1/chat/completions" && break; sleep 0.2; done
  done
}

# start_stack : after proxy_setup, starts the edge box as proxy.sh's `router`
# (its access log to $WORK/access.log, metrics on) and `router-quiet` (both off,
# $WORK/quiet.yaml), hyper-floor and decision-floor, all to the origin; sets
# P_ROUTER P_QUIET P_FLOOR P_DECIDE and ROUTER_PID QUIET_PID FLOOR_PID
# DECIDE_PID, and waits until each answers.
start_stack() {
  P_ROUTER=$(free_port); P_QUIET=$(free_port); P_FLOOR=$(free_port); P_DECIDE=$(free_port)
  EDGE_ROUTER_LOG=warn target/release/edge-router serve --module "$MODULE" --config "$WORK/router.yaml" \
    --listen "127.0.0.1:$P_ROUTER" >"$WORK/access.log" &
  PIDS+=($!); ROUTER_PID=$!
  { cat "$WORK/router.yaml"; printf 'monitoring: {access_log: "off", request_metrics: false}\n'; } >"$WORK/quiet.yaml"
  EDGE_ROUTER_LOG=warn target/release/edge-router serve --module "$MODULE" --config "$WORK/quiet.yaml" \
    --listen "127.0.0.1:$P_QUIET" &
  PIDS+=($!); QUIET_PID=$!
  target/release/hyper-floor "127.0.0.1:$P_FLOOR" "127.0.0.1:$P_ORIGIN" >/dev/null &
  PIDS+=($!); FLOOR_PID=$!
  target/release/hyper-floor "127.0.0.1:$P_DECIDE" "127.0.0.1:$P_ORIGIN" "$WORK/router.yaml" "$MODULE" >/dev/null &
  PIDS+=($!); DECIDE_PID=$!
  wait_ready "$P_ROUTER" "$P_QUIET" "$P_FLOOR" "$P_DECIDE"
}

# start_shared_floor : after proxy_setup, starts decision-floor-shared (one
# module instance for both threads, as the edge box has) to the origin; sets
# P_SHARED and SHARED_PID, and waits until it answers.
start_shared_floor() {
  P_SHARED=$(free_port)
  DECISION_FLOOR_SHARED=1 target/release/hyper-floor "127.0.0.1:$P_SHARED" "127.0.0.1:$P_ORIGIN" "$WORK/router.yaml" \
    "$MODULE" >/dev/null &
  PIDS+=($!); SHARED_PID=$!
  wait_ready "$P_SHARED"
}

# take_turns FN ENTRY... : ROUNDS rounds of `FN NAME PORT PIDS` for each
# "NAME PORT PIDS" ENTRY, round r starting at the r-th, so that each goes
# first in turn; ROUND holds the round's number. With ORIGIN_FIRST=1, each
# round starts with `FN origin $P_ORIGIN ""`.
take_turns() {
  local fn=$1; shift
  local entries=("$@") n=$# i name port pids
  for ROUND in $(seq "$ROUNDS"); do
    [ "${ORIGIN_FIRST:-0}" = 1 ] && "$fn" origin "$P_ORIGIN" ""
    for i in $(seq 0 $((n - 1))); do
      read -r name port pids <<<"${entries[$(((i + ROUND - 1) % n))]}"
      "$fn" "$name" "$port" "$pids"
    done
    echo "round $ROUND done" >&2
  done
}
