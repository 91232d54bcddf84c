#!/usr/bin/env bash
# The edge box's start-up: from spawning `edge-router serve` to the first answer
# (`GET /v1/models`, which the router answers itself), RUNS (10) times each,
# medians, for a cold start (an empty compiled-module cache: the module is
# compiled with Cranelift) and a warm one (the cache a previous start wrote).
# Also its idle RSS after start. Uses the release binary and module.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
cargo build --locked -q --release -p edge-router-host
bash scripts/build-module.sh >/dev/null
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/config.yaml" <<CONF
nodes:
  - {id: local, type: local, host: "http://127.0.0.1:9", models: [m]}
CONF
python3 - "$RUNS" "$WORK" <<'PY'
import os, socket, statistics, subprocess, sys, time, urllib.request
runs, work = int(sys.argv[1]), sys.argv[2]
binary, module = "target/release/edge-router", "target/wasm32-unknown-unknown/release/edge_router.wasm"

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def start(cache):
    port = free_port()
    env = dict(os.environ, EDGE_ROUTER_MODULE_CACHE=cache, EDGE_ROUTER_LOG="warn")
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "serve", "--config", f"{work}/config.yaml", "--listen", f"127.0.0.1:{port}",
                          "--module", module], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            if p.poll() is not None:
                sys.exit("edge-router exited before serving")
            time.sleep(0.0005)
    elapsed = (time.perf_counter() - t0) * 1000
    time.sleep(0.3)
    rss = int(next(l for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS")).split()[1]) / 1024
    p.terminate(); p.wait()
    return elapsed, rss

cold, warm = [], []
for i in range(runs):
    cache = f"{work}/cache-{i}"
    cold.append(start(cache))          # empty cache: compiles, and writes the cache
    warm.append(start(cache))          # the cache the cold start wrote
med = lambda xs, k: statistics.median(x[k] for x in xs)
print(f"edge box start-up, process spawn to the first answer, medians of {runs}:")
print(f"| start | to first answer (ms) | RSS idle (MiB) |\n| --- | ---: | ---: |")
print(f"| cold (empty module cache) | {med(cold, 0):.0f} | {med(cold, 1):.1f} |")
print(f"| warm (cached compiled module) | {med(warm, 0):.0f} | {med(warm, 1):.1f} |")
PY
