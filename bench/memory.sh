#!/usr/bin/env bash
# Where the edge box's memory goes: starts `edge-router serve` idle on
# examples/hybrid.yaml (release binary and module), waits a second, and sums
# the resident memory of /proc/PID/smaps by kind of mapping:
#   - the binary's own pages (code and data of target/release/edge-router);
#   - shared libraries;
#   - compiled wasm code (anonymous or cache-file mappings that are executable);
#   - the module's linear memory (wasmtime reserves gigabytes of address space
#     per memory, a guard after the accessible part; only touched pages count);
#   - the allocator's arenas (mimalloc reserves a GiB at a time);
#   - thread stacks (the main [stack], and 2 MiB or 8 MiB anonymous mappings
#     right after a guard page);
#   - the rest of the anonymous memory.
# MODULE_CACHE=off starts without the compiled-module cache. STREAMS=N serves
# a one-node config instead, whose origin (fake-origin) streams a long answer
# a word a second, and measures with N such SSE streams open through the box
# (a Node client holds them until the figures are taken). PROXY=floor, with
# STREAMS=N, measures hyper-floor (bench/src/hyper_floor.rs: a bare hyper
# proxy on the same allocator, no router) holding the same streams instead:
# the floor for what a stream costs on this stack.
set -euo pipefail
cd "$(dirname "$0")/.."
PROXY=${PROXY:-box}
case "$PROXY" in
  box) ;;
  floor) [ "${STREAMS:-0}" -gt 0 ] || { echo "memory.sh: PROXY=floor needs STREAMS=N" >&2; exit 2; } ;;
  *) echo "memory.sh: PROXY is box or floor, not $PROXY" >&2; exit 2 ;;
esac
cargo build --locked -q --release -p edge-router-host -p edge-router-bench
bash scripts/build-module.sh >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORK=$(mktemp -d)
STREAMS=${STREAMS:-0}
if [ "$STREAMS" -gt 0 ]; then
  cargo build --locked -q -p fake-origin
  words=$(python3 -c 'print(" ".join(["word"] * 600))')
  mkfifo "$WORK/origin.in"
  target/debug/fake-origin gpu "{\"text\": \"$words\", \"sse\": true, \"gap_ms\": 1000}" <"$WORK/origin.in" >"$WORK/origin.out" 2>/dev/null &
  origin_pid=$!
  exec 9>"$WORK/origin.in"
  for _ in $(seq 100); do [ -s "$WORK/origin.out" ] && break; sleep 0.05; done
  origin=$(head -1 "$WORK/origin.out")
  printf 'admin: {listen: "127.0.0.1:%s"}\nnodes:\n  - {id: gpu, type: local, host: "%s", timeouts: {idle: 10m, total: 30m}}\n' \
    "$admin" "$origin" > "$WORK/config.yaml"
else
  sed "s/127.0.0.1:9901/127.0.0.1:$admin/" examples/hybrid.yaml > "$WORK/config.yaml"
fi
if [ "$PROXY" = floor ]; then
  binary=target/release/hyper-floor
  "$binary" "127.0.0.1:$port" "${origin#http://}" >/dev/null 2>&1 &
else
  binary=target/release/edge-router
  EDGE_ROUTER_MODULE_CACHE=${MODULE_CACHE:-$WORK/cache} EDGE_ROUTER_LOG=warn EDGE_ROUTER_ADMIN_TOKEN=x \
    "$binary" serve --config "$WORK/config.yaml" --listen "127.0.0.1:$port" \
    --module target/wasm32-unknown-unknown/release/edge_router.wasm >/dev/null 2>&1 &
fi
pid=$!
trap 'kill $pid ${origin_pid:-} ${client_pid:-} 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 200); do curl -sS -o /dev/null "http://127.0.0.1:$port/v1/models" 2>/dev/null && break; sleep 0.05; done
if [ "$STREAMS" -gt 0 ]; then
  # N streams, each held open once its first event came; "open N" when all are.
  node -e '
    const http = require("http");
    const [port, n] = [Number(process.argv[1]), Number(process.argv[2])];
    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    const body = JSON.stringify({ model: "m", stream: true, messages: [{ role: "user", content: "hold this stream" }] });
    let open = 0;
    for (let i = 0; i < n; i++) {
      const req = http.request({ port, host: "127.0.0.1", method: "POST", path: "/v1/chat/completions", agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
        res.once("data", () => { if (++open === n) console.log(`open ${n}`); });
        res.on("data", () => {});
      });
      req.on("error", (e) => { console.error(e.message); process.exit(1); });
      req.end(body);
    }
    setTimeout(() => { console.error(`only ${open} of ${n} streams opened`); process.exit(1); }, 120000);
  ' "$port" "$STREAMS" > "$WORK/client.out" &
  client_pid=$!
  for _ in $(seq 1200); do grep -q "^open" "$WORK/client.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "^open" "$WORK/client.out" || { echo "memory.sh: the streams did not all open" >&2; exit 1; }
  echo "$STREAMS SSE streams open through $PROXY"
fi
sleep 1
python3 - "$pid" "$(readlink -f "$binary")" <<'PY'
import re, sys
pid, binary = sys.argv[1], sys.argv[2]
kinds = {}
maps = []
cur = None
for line in open(f"/proc/{pid}/smaps"):
    m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
    if m:
        cur = {"start": int(m[1], 16), "end": int(m[2], 16), "perms": m[3], "path": m[4].strip(), "rss": 0}
        maps.append(cur)
    elif line.startswith("Rss:") and cur is not None:
        cur["rss"] = int(line.split()[1])
def guard_after(i):
    """An inaccessible mapping of a GiB or more right after: wasmtime's linear memory reservation."""
    nxt = maps[i + 1] if i + 1 < len(maps) else None
    return nxt is not None and nxt["perms"].startswith("---p") and nxt["start"] == maps[i]["end"] \
        and nxt["end"] - nxt["start"] >= (1 << 30)
for i, m in enumerate(maps):
    size = m["end"] - m["start"]
    prev = maps[i - 1] if i else None
    guard_before = prev is not None and prev["perms"].startswith("---p") and prev["end"] == m["start"]
    if m["path"] == binary:
        k = "binary (code and data)"
    elif m["path"] == "[stack]" or (m["path"] == "" and guard_before and size in (2 << 20, 8 << 20, (8 << 20) - 4096, (2 << 20) - 4096)):
        k = "thread stacks"
    elif "x" in m["perms"] and (m["path"] == "" or m["path"].endswith(".cwasm") or "memfd" in m["path"]):
        k = "compiled wasm code"
    elif m["path"].startswith("/") and ".so" in m["path"]:
        k = "shared libraries"
    elif m["path"] == "" and guard_after(i):
        k = "wasm linear memory (its guard region reserved, touched pages only)"
    elif m["path"] == "" and size >= (256 << 20):
        k = "allocator arenas (mimalloc reserves 1 GiB at a time; freed pages may stay resident)"
    elif m["path"] in ("", "[heap]") or "memfd" in m["path"]:
        k = "other anonymous memory (heap, runtime)"
    else:
        k = "other (" + (m["path"] or "anon") + ")"
    kinds[k] = kinds.get(k, 0) + m["rss"]
total = sum(kinds.values())
print(f"| where | RSS (MiB) | share |\n| --- | ---: | ---: |")
for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]):
    print(f"| {k} | {v / 1024:.1f} | {v / max(total, 1):.0%} |")
print(f"| **total** | **{total / 1024:.1f}** | |")
PY
