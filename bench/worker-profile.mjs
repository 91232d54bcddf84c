// Where a Worker's CPU goes per request: the V8 sampling profiler of
// workerd (through Miniflare's inspector port), over REQUESTS (4000) chat
// requests sent as bench/worker.mjs sends them, against the project's fake
// OpenAI origin. Prints the functions with the most self time and the most
// inclusive time, in µs per request.
//
//   node bench/worker-profile.mjs [DIST]
//
// DIST (default dist/) is a `wrangler deploy --dry-run` output. Function
// names need a build that keeps the wasm name section, which the size build
// strips; bench/README.md ("Workers") says how to make one.
// Knobs: REQUESTS, CONCURRENCY (8), INTERVAL_US (sampling, 50), TOP (40),
// QUIET=1 (the access log off), FOCUS=text (also what the functions whose
// names contain it spend in each function they call).
import { readFileSync } from "node:fs";
import { Miniflare } from "miniflare";
import { WebSocket } from "undici";
import { scriptedOrigin } from "../tests/workers/harness.mjs";

const REQUESTS = Number(process.env.REQUESTS ?? 4000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 8);
const INTERVAL_US = Number(process.env.INTERVAL_US ?? 50);
const TOP = Number(process.env.TOP ?? 40);
const ROOT = new URL("../", import.meta.url);
const arg = process.argv[2] ?? new URL("dist/", ROOT).pathname;
const DIST = arg.endsWith("/") ? arg : arg + "/";
const COMPATIBILITY_DATE = readFileSync(new URL("wrangler.toml", ROOT), "utf8").match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];
const PORT = 19229 + Math.floor(Math.random() * 1000);

const origin = await scriptedOrigin("origin", {});
const config = JSON.stringify({
  nodes: [{ id: "origin", type: "cloud", host: origin.url, models: ["m"] }],
  routing: { rules: [{ name: "all", match: { type: "*" }, target: "origin" }] },
  ...(process.env.QUIET === "1" ? { monitoring: { access_log: "off" } } : {}),
});
const body = JSON.stringify({ model: "m", messages: [{ role: "user", content: "Say hello to the benchmark." }], max_tokens: 16 });
const headers = { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) };

const mf = new Miniflare({
  handleRuntimeStdio(stdout, stderr) { stdout.resume(); stderr.on("data", (d) => process.stderr.write(d)); },
  inspectorPort: PORT,
  modules: true, scriptPath: DIST + "entry.js", modulesRoot: DIST,
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
  compatibilityDate: COMPATIBILITY_DATE, kvNamespaces: ["CONFIG"],
  durableObjects: { BUDGETS: "BudgetLedger", RATE_LIMITS: "RateLimiter" },
  bindings: { CONFIG_REFRESH_SECONDS: "3600" },
});
await mf.ready;
await (await mf.getKVNamespace("CONFIG")).put("config", config);

async function request() {
  const res = await mf.dispatchFetch("https://edge.example/v1/chat/completions", { method: "POST", body, headers, cf: { country: "US" } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`status ${res.status}: ${text}`);
}
async function load(n) {
  let sent = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (sent < n) {
      sent++;
      await request();
    }
  }));
}
await load(300); // warm up: config loaded, code tiered up

// The inspector lists one target per Worker; the router is the one whose script is ours.
const targets = await (await fetch(`http://127.0.0.1:${PORT}/json`)).json();
const target = targets.find((t) => !t.title?.includes("miniflare")) ?? targets[0];
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
let next = 1;
const pending = new Map();
ws.onmessage = (event) => {
  const msg = JSON.parse(event.data);
  if (msg.id && pending.has(msg.id)) {
    pending.get(msg.id)(msg);
    pending.delete(msg.id);
  }
};
const call = (method, params = {}) => new Promise((resolve) => {
  const id = next++;
  pending.set(id, resolve);
  ws.send(JSON.stringify({ id, method, params }));
});
await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: INTERVAL_US });
await call("Profiler.start");
await load(REQUESTS);
const { result } = await call("Profiler.stop");
ws.close();
await mf.dispose();
origin.close();

// Self and inclusive time per function name, from the samples.
const { nodes, samples, timeDeltas } = result.profile;
const byId = new Map(nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const selfTime = new Map();
for (let i = 0; i < samples.length; i++) selfTime.set(samples[i], (selfTime.get(samples[i]) ?? 0) + (timeDeltas[i] ?? 0));
const name = (n) => {
  const f = n.callFrame;
  const fn = f.functionName || "(anonymous)";
  return f.url && !f.url.includes("wasm") ? `${fn} ${f.url.split("/").pop()}:${f.lineNumber + 1}` : fn;
};
const self = new Map();
const inclusive = new Map();
let total = 0;
for (const [id, t] of selfTime) {
  total += t;
  const n = byId.get(id);
  self.set(name(n), (self.get(name(n)) ?? 0) + t);
  // Inclusive: each name once per sample's stack, however deep it recurses.
  const seen = new Set();
  for (let at = id; at !== undefined; at = parent.get(at)) {
    const key = name(byId.get(at));
    if (!seen.has(key)) {
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + t);
    }
  }
}
const perRequest = (t) => (t / REQUESTS).toFixed(1).padStart(7);
const show = (title, map) => {
  console.log(`\n${title} (µs per request, of ${perRequest(total).trim()} sampled on the Worker's thread)`);
  for (const [k, t] of [...map].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`${perRequest(t)}  ${k.slice(0, 150)}`);
};
show("self time", self);
show("inclusive time", inclusive);
if (process.env.FOCUS) {
  // Per sample: the callee of the innermost frame named like FOCUS, or "(self)".
  const callees = new Map();
  for (const [id, t] of selfTime) {
    let child = null;
    for (let at = id; at !== undefined; at = parent.get(at)) {
      if (name(byId.get(at)).includes(process.env.FOCUS)) {
        const key = child === null ? "(self)" : name(byId.get(child));
        callees.set(key, (callees.get(key) ?? 0) + t);
        break;
      }
      child = at;
    }
  }
  show(`what ${process.env.FOCUS} calls`, callees);
}
