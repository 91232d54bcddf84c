#!/usr/bin/env bash
# Load benchmark on loopback, all peers measured in one run:
#   origin   nginx serving a fixed JSON chat completion
#   nginx    nginx as a keep-alive reverse proxy to that origin
#   router   edge-router (release build, wasm module) routing to that origin
#   hyper-floor     a bare hyper reverse proxy (bench/src/hyper_floor.rs)
#   decision-floor  hyper-floor plus the module's decision per request and
#                   nothing else: a lower bound for a router on this stack
#   decision-floor-shared  the same with one module instance for all threads,
#                   as the edge box has
#   router   writes its access log (a JSON line per request) to a file, and
#            counts every request in its Prometheus metrics
#   router-nolog  the same with the access log off (the metrics stay on)
#   router-quiet  the same with both off: requests make no record at all;
#            against it, router shows what the metrics and the log cost
#   router-anthropic  edge-router with the origin as an Anthropic node: the
#                   same request translated to the Messages API and its
#                   answer back (the origin's /v1/messages), to show what
#                   a translated request adds
#   nginx-tls, router-tls  nginx and edge-router serving HTTPS (TLS 1.3, the
#                   same ECDSA P-256 certificate), on kept-alive connections;
#   nginx-handshake, router-handshake  the same with `Connection: close`,
#                   so each request is a new connection and a handshake:
#                   their req/s are handshakes per second. wrk offers the
#                   previous connection's session again, and both servers
#                   may resume it (nginx with a session cache and tickets,
#                   rustls with its defaults), so these are mostly resumed
#                   handshakes, on both alike
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
proxy_setup
# router, router-quiet, hyper-floor and decision-floor, then decision-floor-shared
start_stack
start_shared_floor
P_NOLOG=$(free_port)
{ cat "$WORK/router.yaml"; printf 'monitoring: {access_log: "off"}\n'; } >"$WORK/nolog.yaml"
EDGE_ROUTER_LOG=warn target/release/edge-router serve --module "$MODULE" --config "$WORK/nolog.yaml" --listen "127.0.0.1:$P_NOLOG" &
PIDS+=($!); NOLOG_PID=$!
P_ANTHROPIC=$(free_port)
sed 's/type: local, host/type: local, provider: anthropic, api_key_env: BENCH_ANTHROPIC_KEY, host/' "$WORK/router.yaml" >"$WORK/anthropic.yaml"
BENCH_ANTHROPIC_KEY=sk-ant-bench EDGE_ROUTER_LOG=warn target/release/edge-router serve --module "$MODULE" --config "$WORK/anthropic.yaml" --listen "127.0.0.1:$P_ANTHROPIC" >/dev/null &
PIDS+=($!); ANTHROPIC_PID=$!
# HTTPS: one certificate for both.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$WORK/tls.key" -out "$WORK/tls.pem" 2>/dev/null
P_NGINX_TLS=$(free_port); P_ROUTER_TLS=$(free_port)
nginx_conf "$WORK/proxy-tls" "upstream origin { server 127.0.0.1:$P_ORIGIN; keepalive 128; }
  server { listen 127.0.0.1:$P_NGINX_TLS ssl; ssl_certificate $WORK/tls.pem; ssl_certificate_key $WORK/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:bench:10m; ssl_session_tickets on;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
start_nginx "$WORK/proxy-tls"
{ cat "$WORK/quiet.yaml"; printf 'server: {tls: {certificates: [{cert: "%s", key: "%s"}]}}\n' "$WORK/tls.pem" "$WORK/tls.key"; } >"$WORK/tls.yaml"
EDGE_ROUTER_LOG=warn target/release/edge-router serve --module "$MODULE" --config "$WORK/tls.yaml" --listen "127.0.0.1:$P_ROUTER_TLS" &
PIDS+=($!); TLS_PID=$!
wait_ready "$P_ORIGIN" "$P_NGINX" "$P_ROUTER" "$P_FLOOR" "$P_DECIDE" "$P_SHARED" "$P_ANTHROPIC" "$P_NOLOG" "$P_QUIET"
for p in "$P_NGINX_TLS" "$P_ROUTER_TLS"; do
  for _ in $(seq 50); do curl -sfk -o /dev/null -X POST -d '{"model":"llama-3-8b","messages":[]}' "https://127.0.0.1:$p/v1/chat/completions" && break; sleep 0.2; done
done
{ cat "$WORK/post.lua"; printf 'wrk.headers["Connection"] = "close"\n'; } >"$WORK/close.lua"

measure() { # $1 name, $2 port, $3 pids to charge CPU to ("" for none)
  case "$1" in
    *-tls) wrk_measure "$1" "https://127.0.0.1:$2/v1/chat/completions" "$3" "$WORK/post.lua" ;;
    *-handshake) wrk_measure "$1" "https://127.0.0.1:$2/v1/chat/completions" "$3" "$WORK/close.lua" ;;
    *) wrk_measure "$1" "http://127.0.0.1:$2/v1/chat/completions" "$3" "$WORK/post.lua" ;;
  esac
}

echo "loopback, $CONNS connections, $THREADS wrk threads, $DURATION × $ROUNDS rounds, $(nproc) cores" >&2
# The proxies take turns going first: each round starts one later in the list.
PROXIES=("nginx $P_NGINX $(nginx_pids "$WORK/proxy")" "router $P_ROUTER $ROUTER_PID" "hyper-floor $P_FLOOR $FLOOR_PID"
  "decision-floor $P_DECIDE $DECIDE_PID" "decision-floor-shared $P_SHARED $SHARED_PID"
  "router-anthropic $P_ANTHROPIC $ANTHROPIC_PID" "router-nolog $P_NOLOG $NOLOG_PID" "router-quiet $P_QUIET $QUIET_PID"
  "nginx-tls $P_NGINX_TLS $(nginx_pids "$WORK/proxy-tls")" "router-tls $P_ROUTER_TLS $TLS_PID"
  "nginx-handshake $P_NGINX_TLS $(nginx_pids "$WORK/proxy-tls")" "router-handshake $P_ROUTER_TLS $TLS_PID")
ORIGIN_FIRST=1 take_turns measure "${PROXIES[@]}"

median_table origin nginx router router-nolog router-quiet hyper-floor decision-floor decision-floor-shared router-anthropic \
  nginx-tls router-tls nginx-handshake router-handshake
echo
python3 -c "
r, n = $(median_of router rps), $(median_of nginx rps)
rc, nc = $(median_of router cpu), $(median_of nginx cpu)
print(f'router / nginx: req/s {r/n:.2f}× (bar ≥ 0.9×), CPU per request {rc/nc:.2f}× (bar ≤ 1.3×)')
ru, fu = $(median_of router user), $(median_of hyper-floor user)
rs, fs = $(median_of router sys), $(median_of hyper-floor sys)
print(f'router / hyper-floor: user CPU per request {ru/fu:.2f}×, system CPU {rs/fs:.2f}×')"
python3 -c "
r, n, q = $(median_of router cpu), $(median_of router-nolog cpu), $(median_of router-quiet cpu)
print(f'router / router-quiet: CPU per request {r/q:.2f}×, {r - q:+.1f} µs for the metrics and the access log (bar < 2 µs)')
print(f'  of it {n - q:+.1f} µs for the metrics, {r - n:+.1f} µs for the access log ($(wc -l <"$WORK/access.log") lines written)')"
python3 -c "
t, o = $(median_of router-anthropic cpu), $(median_of router cpu)
print(f'router-anthropic / router: CPU per request {t/o:.2f}×, {t - o:+.1f} µs for translating the request and its answer')"
python3 -c "
print('HTTPS (router-tls has the metrics and the log off, as router-quiet; nginx is the reference, not a bar):')
for name, plain in (('tls', 'router-quiet'), ('handshake', None)):
    r, n = {'tls': ($(median_of router-tls rps), $(median_of nginx-tls rps)), 'handshake': ($(median_of router-handshake rps), $(median_of nginx-handshake rps))}[name]
    rc, nc = {'tls': ($(median_of router-tls cpu), $(median_of nginx-tls cpu)), 'handshake': ($(median_of router-handshake cpu), $(median_of nginx-handshake cpu))}[name]
    what = 'req/s on kept-alive connections' if name == 'tls' else 'handshakes/s (a connection per request)'
    print(f'  {what}: router {r:.0f}, nginx {n:.0f} ({r/n:.2f}×); CPU per request {rc:.1f} vs {nc:.1f} µs ({rc/nc:.2f}×)')
print(f'  router-tls / router-quiet: CPU per request {$(median_of router-tls cpu) / $(median_of router-quiet cpu):.2f}× ({$(median_of router-tls cpu) - $(median_of router-quiet cpu):+.1f} µs for TLS)')"
for peer in hyper-floor decision-floor decision-floor-shared; do
  python3 -c "print(f'$peer / nginx: req/s {$(median_of $peer rps) / $(median_of nginx rps):.2f}×, CPU per request {$(median_of $peer cpu) / $(median_of nginx cpu):.2f}×')"
done
echo
target/release/decision-cost examples/hybrid.yaml
