#!/usr/bin/env bash
# The gateways users would pick instead of the edge box, measured beside it in
# one run on loopback, all forwarding the same chat request to one origin (an
# nginx serving a fixed chat completion, as in proxy.sh):
#   nginx     nginx as a keep-alive reverse proxy (the reference)
#   router    edge-router, release build and module, one rule to the origin,
#             with its access log and metrics on (as proxy.sh's `router`)
#   portkey   Portkey's AI gateway (npm @portkey-ai/gateway, pinned in
#             bench/peers/package-lock.json) on Node, one process; each
#             request names the origin with `x-portkey-provider: openai` and
#             `x-portkey-custom-host`, the gateway's way to reach a self-hosted
#             OpenAI-compatible server
#   litellm   LiteLLM's proxy (PyPI litellm[proxy], pinned in
#             bench/peers/litellm-requirements.txt) with LITELLM_WORKERS
#             uvicorn workers (4), the origin as one `openai/` model with
#             `api_base`; a master key that each request carries (so its auth
#             check runs, as in any deployment; this release refused to start
#             without one here), no database, no callbacks, the model
#             cost map read from the package (LITELLM_LOCAL_MODEL_COST_MAP),
#             nothing fetched
# A peer that does not install or start is reported and left out; the others
# are still measured. wrk drives each with POST /v1/chat/completions at CONNS
# connections for DURATION, ROUNDS rounds interleaved (the peers take turns
# going first); the table gives medians, with the proxy's CPU per request
# (utime+stime of all its processes, from /proc) and its resident memory,
# summed over its processes, idle (after one request) and after the load.
#
# Usage: bash bench/peers.sh     (env: CONNS=32 DURATION=10s ROUNDS=3
#                                 LITELLM_WORKERS=4 PEERS="portkey litellm")
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build-module.sh >/dev/null
cargo build --locked --release -q -p edge-router-host
PEERS=${PEERS:-portkey litellm}
LITELLM_WORKERS=${LITELLM_WORKERS:-4}

# Installs, each done once.
install_portkey() {
  [ -f bench/peers/node_modules/@portkey-ai/gateway/build/start-server.js ] && return 0
  (cd bench/peers && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}
install_litellm() {
  source scripts/python-venv.sh
  python_venv .tools/litellm-venv bench/peers/litellm-requirements.txt
}

WORK=$(mktemp -d /tmp/edge-peers.XXXXXX)
source bench/lib.sh
proxy_setup
P_ROUTER=$(free_port)
EDGE_ROUTER_LOG=warn target/release/edge-router serve --module "$MODULE" --config "$WORK/router.yaml" \
  --listen "127.0.0.1:$P_ROUTER" >"$WORK/access.log" &
PIDS+=($!); ROUTER_PID=$!

# A process and all its descendants.
tree() { local p=$1 c; echo "$p"; for c in $(pgrep -P "$p"); do tree "$c"; done; }
# Resident memory of the given processes, in MiB.
rss_mib() { local kb=0 p v; for p in "$@"; do v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0); kb=$((kb + ${v:-0})); done
  python3 -c "print(f'{$kb / 1024:.1f}')"; }

TARGETS=("nginx $P_NGINX" "router $P_ROUTER")
declare -A LUA=([nginx]="$WORK/post.lua" [router]="$WORK/post.lua")
declare -A ROOT=([router]=$ROUTER_PID)

for peer in $PEERS; do
  case "$peer" in
    portkey)
      if ! install_portkey; then echo "peers.sh: Portkey did not install; left out" >&2; continue; fi
      P_PORTKEY=$(free_port)
      # NODE_ENV=production and --headless: no browser console, nothing fetched.
      (cd bench/peers && NODE_ENV=production exec node node_modules/@portkey-ai/gateway/build/start-server.js \
        --port="$P_PORTKEY" --headless) >"$WORK/portkey.log" 2>&1 &
      PIDS+=($!); ROOT[portkey]=$!
      { cat "$WORK/post.lua"
        printf 'wrk.headers["x-portkey-provider"] = "openai"\n'
        printf 'wrk.headers["x-portkey-custom-host"] = "http://127.0.0.1:%s/v1"\n' "$P_ORIGIN"
        printf 'wrk.headers["Authorization"] = "Bearer sk-bench"\n'; } >"$WORK/portkey.lua"
      LUA[portkey]="$WORK/portkey.lua"; TARGETS+=("portkey $P_PORTKEY")
      ;;
    litellm)
      if ! install_litellm; then echo "peers.sh: LiteLLM did not install; left out" >&2; continue; fi
      P_LITELLM=$(free_port)
      cat >"$WORK/litellm.yaml" <<CONF
model_list:
  - model_name: llama-3-8b
    litellm_params: {model: openai/llama-3-8b, api_base: "http://127.0.0.1:$P_ORIGIN/v1", api_key: sk-bench}
litellm_settings: {telemetry: false}
CONF
      LITELLM_KEY=sk-bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
      LITELLM_MASTER_KEY=$LITELLM_KEY LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR LITELLM_TELEMETRY=False DISABLE_SCHEMA_UPDATE=True \
        .tools/litellm-venv/bin/litellm --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "$P_LITELLM" \
        --num_workers "$LITELLM_WORKERS" >"$WORK/litellm.log" 2>&1 &
      PIDS+=($!); ROOT[litellm]=$!
      { cat "$WORK/post.lua"; printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$LITELLM_KEY"; } >"$WORK/litellm.lua"
      LUA[litellm]="$WORK/litellm.lua"; TARGETS+=("litellm $P_LITELLM")
      ;;
    *) echo "peers.sh: unknown peer $peer (portkey, litellm)" >&2; exit 2 ;;
  esac
done

# Ready: a chat request answered 200 (LiteLLM's workers take a while to start).
ready() { # $1 name, $2 port
  local headers=()
  case "$1" in
    portkey) headers=(-H "x-portkey-provider: openai" -H "x-portkey-custom-host: http://127.0.0.1:$P_ORIGIN/v1" -H "authorization: Bearer sk-bench") ;;
    litellm) headers=(-H "authorization: Bearer $LITELLM_KEY") ;;
  esac
  for _ in $(seq 300); do
    curl -sf -o /dev/null -X POST -H 'content-type: application/json' "${headers[@]}" \
      -d '{"model":"llama-3-8b","messages":[{"role":"user","content":"hi"}]}' "http://127.0.0.1:$2/v1/chat/completions" && return 0
    sleep 0.2
  done
  echo "peers.sh: $1 never answered on port $2; left out (its log: $(tail -3 "$WORK/$1.log" 2>/dev/null))" >&2
  # Stopped, so that it takes no CPU from the others' rounds.
  [ -n "${ROOT[$1]:-}" ] && kill $(tree "${ROOT[$1]}") 2>/dev/null
  return 1
}
MEASURED=()
for t in "${TARGETS[@]}"; do
  read -r name port <<<"$t"
  ready "$name" "$port" && MEASURED+=("$t")
done
pids_of() { # the processes charged for $1
  if [ "$1" = nginx ]; then nginx_pids "$WORK/proxy"; else tree "${ROOT[$1]}" | tr '\n' ' '; fi
}
case " ${MEASURED[*]} " in
  *" router "*) ;;
  *) echo "peers.sh: the edge box did not answer; nothing to compare with" >&2; exit 1 ;;
esac
declare -A IDLE
for t in "${MEASURED[@]}"; do
  read -r name port <<<"$t"
  # shellcheck disable=SC2046
  IDLE[$name]=$(rss_mib $(pids_of "$name"))
done

echo "loopback, $CONNS connections, $THREADS wrk threads, $DURATION × $ROUNDS rounds, $(nproc) cores" >&2
# A peer's processes are looked up at each turn (LiteLLM's workers may be replaced).
wrk_peer() { wrk_measure "$1" "http://127.0.0.1:$2/v1/chat/completions" "$(pids_of "$1")" "${LUA[$1]}"; }
take_turns wrk_peer "${MEASURED[@]}"

names=(); for t in "${MEASURED[@]}"; do names+=("${t%% *}"); done
median_table "${names[@]}"
echo
echo "| target | RSS idle (MiB) | RSS after the load (MiB) | CPU per request / router's |"
echo "| --- | ---: | ---: | ---: |"
router_cpu=$(median_of router cpu)
for name in "${names[@]}"; do
  # shellcheck disable=SC2046
  after=$(rss_mib $(pids_of "$name"))
  python3 -c "print(f'| $name | ${IDLE[$name]} | $after | {$(median_of "$name" cpu) / $router_cpu:.2f}× |')"
done
