// Workers benchmark (bash bench/worker.sh): the built Worker (dist/) and a
// plain pass-through Worker (bench/worker/passthrough.mjs), each in its own
// workerd through Miniflare, measured in the same run against the same
// origin on 127.0.0.1:
//   - start: a fresh workerd until it is ready to serve (process start,
//     loading the script: for the router, compiling and instantiating its
//     wasm module). The pass-through Worker's start is the same minus the
//     module, so the difference is the module's instantiation. (Node 20's V8
//     cannot compile the module on its own to time it alone: it lacks the
//     reference types wasm-bindgen emits.) Median of ROUNDS;
//   - first request: the first answer of a fresh instance (for the router,
//     loading its config), median of ROUNDS;
//   - CPU per request: utime+stime of the workerd process over REQUESTS
//     requests at CONCURRENCY, median of ROUNDS.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { Miniflare } from "miniflare";
import { scriptedOrigin } from "../tests/workers/harness.mjs";

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const REQUESTS = Number(process.env.REQUESTS ?? 2000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 8);
const ROOT = new URL("../", import.meta.url);
const DIST = new URL("dist/", ROOT).pathname;
const COMPATIBILITY_DATE = readFileSync(new URL("wrangler.toml", ROOT), "utf8").match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];
const CLK_TCK = 100;

// PII=N: requests carry a user turn of N bytes dense with personal values (an
// e-mail, a phone number, a card and an IBAN every 190 bytes), the origin repeats
// it, and the router with `pii: {mode: pseudonymize}` is measured beside `plain`,
// the same build and config without it: the difference is what finding, replacing
// and restoring the values costs.
const PII = Number(process.env.PII ?? 0);
// The project's fake OpenAI origin (fake-origin/), as a process: a chat completion for every request.
const origin = await scriptedOrigin("origin", PII ? { text: "{prompt}" } : {});
const originUrl = origin.url;
// AUTO=N: requests ask for `model: auto` with a user turn of N bytes of prose, and the
// router (model_routing.strategy: learned) is measured beside `tokens`, the same build
// with the default strategy: the difference is what scoring the prompt costs.
const AUTO = Number(process.env.AUTO ?? 0);
// QUIET=1: `quiet` is the router with `monitoring: {access_log: off}`, measured
// beside it: the difference is what writing each request's access log line costs.
const QUIET = process.env.QUIET === "1";
const routerConfigOf = (routing, pii, quiet) => JSON.stringify({
  nodes: [{ id: "origin", type: "cloud", host: originUrl, models: AUTO ? ["small", "large"] : ["m"] }],
  routing: { rules: [{ name: "all", match: { type: "*" }, target: "origin" }] },
  ...(routing ? { model_routing: routing } : {}),
  ...(pii ? { pii: { mode: "pseudonymize" } } : {}),
  ...(quiet ? { monitoring: { access_log: "off" } } : {}),
});
const routerConfig = routerConfigOf(AUTO ? { strategy: "learned" } : null, PII > 0);
const VALUED = "Contact jane.doe@example.com or +44 20 7946 0958 about card 4111 1111 1111 1111 and IBAN DE89 3704 0044 0532 0130 00. The committee asked for a revised budget. ";
const PROSE = "A farmer has 3 fields of 12.5 hectares each.\nThe first yields 4 tonnes of wheat per hectare, the second 20% less, and the third is left fallow this year. Which of the following is the total harvest, and how would the answer change if the fallow field were planted with barley yielding 3 tonnes per hectare? ";
const body = PII
  ? JSON.stringify({ model: "m", messages: [{ role: "user", content: VALUED.repeat(Math.ceil(PII / VALUED.length)).slice(0, PII) }], max_tokens: 16 })
  : AUTO
  ? JSON.stringify({ model: "auto", messages: [{ role: "system", content: "You are terse." }, { role: "user", content: PROSE.repeat(Math.ceil(AUTO / PROSE.length)).slice(0, AUTO) }], max_tokens: 16 })
  : JSON.stringify({ model: "m", messages: [{ role: "user", content: "Say hello to the benchmark." }], max_tokens: 16 });
// Clients' SDKs declare their JSON bodies' length; Miniflare would send a
// body without one chunked. CHUNKED=1 measures that case: the Worker then
// reads the body chunk by chunk to hold it to its size limit.
const CHUNKED = process.env.CHUNKED === "1";
const headers = { "content-type": "application/json", ...(CHUNKED ? {} : { "content-length": String(Buffer.byteLength(body)) }) };

// The Workers' console (the router's access log lines) is read and dropped:
// workerd still writes every line, so its cost stays in the figures.
const drained = { handleRuntimeStdio(stdout, stderr) { stdout.resume(); stderr.on("data", (d) => process.stderr.write(d)); } };
const options = {
  router: {
    ...drained, modules: true, scriptPath: DIST + "entry.js", modulesRoot: DIST,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: COMPATIBILITY_DATE, kvNamespaces: ["CONFIG"],
    durableObjects: { BUDGETS: "BudgetLedger" }, bindings: { CONFIG_REFRESH_SECONDS: "3600" },
  },
  passthrough: {
    ...drained, modules: true, scriptPath: new URL("bench/worker/passthrough.mjs", ROOT).pathname,
    compatibilityDate: COMPATIBILITY_DATE, bindings: { ORIGIN: originUrl },
  },
};
// The floor of a Rust Worker (bench/worker-floor, which bench/worker.sh builds
// and bundles into target/worker-floor-dist/): the same toolchain and glue as
// the router, reading the client's country and forwarding, nothing else.
const FLOOR = new URL("target/worker-floor-dist/", ROOT).pathname;
const floorScript = existsSync(FLOOR) ? readdirSync(FLOOR).find((f) => f.endsWith(".js")) : undefined;
if (floorScript) {
  options.floor = {
    ...drained, modules: true, scriptPath: FLOOR + floorScript, modulesRoot: FLOOR,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: COMPATIBILITY_DATE, bindings: { ORIGIN: originUrl },
  };
}
const prepare = {
  floor: async () => {},
  router: async (mf) => (await mf.getKVNamespace("CONFIG")).put("config", routerConfig),
  passthrough: async () => {},
};
if (AUTO) {
  options.tokens = options.router;
  prepare.tokens = async (mf) => (await mf.getKVNamespace("CONFIG")).put("config", routerConfigOf({ strategy: "tokens" }));
}
if (QUIET) {
  options.quiet = options.router;
  prepare.quiet = async (mf) => (await mf.getKVNamespace("CONFIG")).put("config", routerConfigOf(null, PII > 0, true));
}
if (PII) {
  options.plain = options.router;
  prepare.plain = async (mf) => (await mf.getKVNamespace("CONFIG")).put("config", routerConfigOf(null, false));
}
// BEFORE_DIST: another build's dist/ (say, of the commit before a change),
// measured in the same rounds as `before`, for a before/after figure.
const BEFORE = process.env.BEFORE_DIST;
if (BEFORE) {
  const dir = BEFORE.endsWith("/") ? BEFORE : BEFORE + "/";
  options.before = { ...options.router, scriptPath: dir + "entry.js", modulesRoot: dir };
  prepare.before = prepare.router;
}

async function request(mf) {
  const res = await mf.dispatchFetch("https://edge.example/v1/chat/completions", {
    method: "POST", body, headers, cf: { country: "US" },
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`status ${res.status}: ${text}`);
}

/** Pids of the workerd processes started by this process. */
function workerdPids() {
  const pids = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (stat.includes("(workerd)") && Number(fields[1]) === process.pid) pids.push(Number(entry));
    } catch {}
  }
  return pids;
}

function cpuMs(pids) {
  let ticks = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return (ticks * 1000) / CLK_TCK;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = Object.fromEntries(Object.keys(options).map((n) => [n, { start: [], first: [], cpu: [], rps: [] }]));

for (let round = 0; round < ROUNDS; round++) {
  for (const name of Object.keys(options)) {
    const before = new Set(workerdPids());
    const t0 = performance.now();
    const mf = new Miniflare(options[name]);
    await mf.ready;
    results[name].start.push(performance.now() - t0);
    await prepare[name](mf);
    const t1 = performance.now();
    await request(mf);
    results[name].first.push(performance.now() - t1);
    const pids = workerdPids().filter((p) => !before.has(p));
    for (let i = 0; i < 200; i++) await request(mf); // warm up
    const cpu0 = cpuMs(pids);
    const t2 = performance.now();
    let sent = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (sent < REQUESTS) {
        sent++;
        await request(mf);
      }
    }));
    const wall = performance.now() - t2;
    results[name].cpu.push(((cpuMs(pids) - cpu0) * 1000) / REQUESTS);
    results[name].rps.push((REQUESTS * 1000) / wall);
    await mf.dispose();
  }
}

const wasm = readFileSync(DIST + readdirSync(DIST).find((f) => f.endsWith(".wasm")));
origin.close();

const row = (name) => {
  const r = results[name];
  const cells = [r.start, r.first, r.cpu, r.rps].map((xs) => median(xs).toFixed(0));
  return `| ${name} | ${cells.join(" | ")} |`;
};
console.log(`rounds ${ROUNDS}, ${REQUESTS} requests at ${CONCURRENCY} concurrent per round, request bodies ${CHUNKED ? "chunked" : "with content-length"}; medians`);
console.log("| worker | start ms | first request ms | workerd CPU µs/req | req/s |");
console.log("| --- | ---: | ---: | ---: | ---: |");
for (const name of Object.keys(options)) console.log(row(name));
const cpu = (n) => median(results[n].cpu);
console.log(`router / passthrough CPU per request: ${(cpu("router") / cpu("passthrough")).toFixed(2)}x (router adds ${(cpu("router") - cpu("passthrough")).toFixed(0)} µs)`);
if (floorScript) {
  console.log(`floor / passthrough CPU per request: ${(cpu("floor") / cpu("passthrough")).toFixed(2)}x; router / floor: ${(cpu("router") / cpu("floor")).toFixed(2)}x (router adds ${(cpu("router") - cpu("floor")).toFixed(0)} µs to the floor)`);
}
const extra = median(results.router.start) - median(results.passthrough.start);
console.log(`module instantiation (router start beyond the pass-through's): ${extra.toFixed(0)} ms; wasm module ${(wasm.length / 1024).toFixed(0)} KiB`);
if (AUTO) {
  const paired = results.router.cpu.map((c, i) => c - results.tokens.cpu[i]).sort((a, b) => a - b);
  console.log(`learned (router) - tokens CPU per request, ${AUTO}-byte prompt: ${(cpu("router") - cpu("tokens")).toFixed(1)} µs (medians); paired by round: median ${median(paired).toFixed(1)} µs, range ${paired[0].toFixed(1)} to ${paired.at(-1).toFixed(1)}`);
}
if (PII) {
  const paired = results.router.cpu.map((c, i) => c - results.plain.cpu[i]).sort((a, b) => a - b);
  const kib = PII / 1024;
  console.log(`pii (router) - plain CPU per request, ${PII}-byte prompt repeated in the answer: ${(cpu("router") - cpu("plain")).toFixed(1)} µs (medians), ${((cpu("router") - cpu("plain")) / kib).toFixed(1)} µs per KiB of prompt; paired by round: median ${median(paired).toFixed(1)} µs, range ${paired[0].toFixed(1)} to ${paired.at(-1).toFixed(1)}`);
}
if (QUIET) {
  const paired = results.router.cpu.map((c, i) => c - results.quiet.cpu[i]).sort((a, b) => a - b);
  console.log(`router - quiet (access log off) CPU per request: ${(cpu("router") - cpu("quiet")).toFixed(1)} µs (medians); paired by round: median ${median(paired).toFixed(1)} µs, range ${paired[0].toFixed(1)} to ${paired.at(-1).toFixed(1)}; quiet / passthrough ${(cpu("quiet") / cpu("passthrough")).toFixed(2)}x`);
}
if (BEFORE) {
  const paired = results.router.cpu.map((c, i) => c / results.before.cpu[i]).sort((a, b) => a - b);
  console.log(`router / before CPU per request: ${(cpu("router") / cpu("before")).toFixed(2)}x (medians); paired by round: median ${median(paired).toFixed(2)}x, range ${paired[0].toFixed(2)}-${paired.at(-1).toFixed(2)}x`);
}
