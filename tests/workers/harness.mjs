// Shared pieces of the Workers tests: the built Worker (dist/, from
// `wrangler deploy --dry-run --outdir dist`) in real workerd through
// Miniflare, and real HTTP origins on 127.0.0.1.
import net from "node:net";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { Miniflare } from "miniflare";

const ROOT = new URL("../../", import.meta.url);
const DIST = new URL("dist/", ROOT).pathname;
const WRANGLER = readFileSync(new URL("wrangler.toml", ROOT), "utf8");
const COMPATIBILITY_DATE = WRANGLER.match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];

/**
 * Starts the Worker as `wrangler deploy` would upload it. `config` (text) goes in KV.
 * With `logs` (an array), the lines workerd prints on stdout and stderr (the
 * Worker's console: `console.error` goes to stderr) are pushed to it rather
 * than printed. With `persist` (a folder), Durable Objects' storage is kept
 * there, so that a second Worker started on it finds what the first stored.
 */
export async function startWorker({ config, bindings = {}, logs, persist } = {}) {
  if (!existsSync(DIST + "entry.js")) {
    throw new Error("dist/entry.js is missing: run scripts/test.sh, or npx wrangler deploy --dry-run --outdir dist");
  }
  const stdio = logs === undefined ? {} : {
    handleRuntimeStdio(stdout, stderr) {
      createInterface({ input: stdout }).on("line", (line) => logs.push(line));
      createInterface({ input: stderr }).on("line", (line) => logs.push(line));
    },
  };
  const mf = new Miniflare({
    ...stdio,
    modules: true,
    scriptPath: DIST + "entry.js",
    modulesRoot: DIST,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: COMPATIBILITY_DATE,
    kvNamespaces: ["CONFIG"],
    durableObjects: { BUDGETS: "BudgetLedger", RATE_LIMITS: "RateLimiter" },
    ...(persist === undefined ? {} : { durableObjectsPersist: persist }),
    bindings: { CONFIG_REFRESH_SECONDS: "0", ...bindings },
  });
  await mf.ready;
  if (config !== undefined) {
    await (await mf.getKVNamespace("CONFIG")).put("config", config);
  }
  return mf;
}

/**
 * Sends a request to the Worker with `country` as request.cf.country. With
 * `chunked` the body is a stream (no Content-Length); with `stallMs` the
 * stream stops that long after its first half.
 */
export async function send(mf, { method = "POST", path = "/v1/chat/completions", country, headers = {}, body, chunked, stallMs }) {
  const init = { method, headers: { ...headers }, cf: country ? { country } : {} };
  if (body !== undefined && body !== "") {
    init.body = body;
    init.headers["content-type"] ??= "application/json";
    if (chunked || stallMs !== undefined) {
      const bytes = new TextEncoder().encode(body);
      const half = Math.floor(bytes.length / 2);
      init.body = new ReadableStream({
        async start(controller) {
          controller.enqueue(bytes.slice(0, half));
          if (stallMs !== undefined) await new Promise((r) => setTimeout(r, stallMs));
          controller.enqueue(bytes.slice(half));
          controller.close();
        },
      });
      init.duplex = "half";
    }
  }
  const res = await mf.dispatchFetch("https://edge.example" + path, init);
  const text = await res.text();
  return { status: res.status, headers: res.headers, text };
}

/** An address where connections are refused. */
export async function refusedUrl() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

/** The fake origin binary (`cargo build -p fake-origin`), the one the edge box's tests use too. */
const FAKE_ORIGIN = process.env.FAKE_ORIGIN ?? new URL("target/debug/fake-origin", ROOT).pathname;

/**
 * An origin scripted like a conformance scenario's (tests/conformance/README.md):
 * the project's fake OpenAI origin, run as a process. `seen()` gives the
 * requests it got (headers as an object of lower-case names).
 */
export async function scriptedOrigin(name, script = {}) {
  if (!existsSync(FAKE_ORIGIN)) {
    throw new Error(`${FAKE_ORIGIN} is missing: run scripts/test.sh, or cargo build -p fake-origin`);
  }
  const child = spawn(FAKE_ORIGIN, [name, JSON.stringify(script)], { stdio: ["pipe", "pipe", "inherit"] });
  const url = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const line = out.split("\n")[0];
      if (out.includes("\n")) resolve(line.trim());
    });
    child.on("exit", (code) => reject(new Error(`fake-origin ${name} exited with ${code}`)));
  });
  const seen = async () => {
    const res = await fetch(`${url}/__fake/seen`);
    const list = await res.json();
    return list.map((r) => ({ ...r, headers: Object.fromEntries(r.headers) }));
  };
  // Closing its standard input stops it.
  return { url, seen, close: () => child.stdin.end() };
}

/** The request body a scenario step describes (see tests/conformance/README.md). */
export function requestBody(req) {
  if (req.chat) {
    const { words = 10, ...rest } = req.chat;
    return JSON.stringify({ messages: [{ role: "user", content: Array(words).fill("hello").join(" ") }], ...rest });
  }
  if (req.json !== undefined) return JSON.stringify(req.json);
  if (req.raw !== undefined) return req.raw;
  return "x".repeat(req.bytes ?? 0);
}

/** Checks a response against a step's `expect`; throws what differs. `seen`: each origin's requests. */
export function check(expect, { status, headers, text }, seen) {
  if (expect.status !== undefined && status !== expect.status) {
    throw new Error(`status ${status}, expected ${expect.status}; body: ${text}`);
  }
  for (const [name, want] of Object.entries(expect.headers ?? {})) {
    const got = headers.get(name);
    const ok = want === null ? got === null : name === "content-type" ? got?.startsWith(want) : got === want;
    if (!ok) throw new Error(`header ${name} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}; body: ${text}`);
  }
  if (expect.json) {
    let doc;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new Error(`body is not JSON (${e.message}): ${text}`);
    }
    for (const [path, want] of Object.entries(expect.json)) {
      const got = path.split(".").reduce((v, key) => (v == null ? undefined : v[key]), doc);
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        throw new Error(`body field ${path} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}; body: ${text}`);
      }
    }
  }
  if (expect.sse_events !== undefined) {
    const got = text.split("\n").filter((l) => l.startsWith("data:")).length;
    if (got !== expect.sse_events || !text.includes("data: [DONE]")) {
      throw new Error(`${got} SSE data events, expected ${expect.sse_events} ending in [DONE]; body: ${text}`);
    }
  }
  for (const [name, [min, max]] of Object.entries(expect.header_range ?? {})) {
    const got = Number(headers.get(name));
    if (headers.get(name) === null || !(got >= min && got <= max)) {
      throw new Error(`header ${name} is ${JSON.stringify(headers.get(name))}, expected a number from ${min} to ${max}`);
    }
  }
  if (expect.body !== undefined && text !== expect.body) {
    throw new Error(`body is ${JSON.stringify(text)}, expected ${JSON.stringify(expect.body)}`);
  }
  if (expect.sse_json) {
    const events = text.split("\n").filter((l) => l.startsWith("data: ") && l !== "data: [DONE]");
    if (events.length === 0) throw new Error(`no SSE data events to check sse_json against; body: ${text}`);
    for (const line of events) {
      const event = JSON.parse(line.slice(6));
      for (const [path, want] of Object.entries(expect.sse_json)) {
        const got = path.split(".").reduce((v, key) => (v == null ? undefined : v[key]), event);
        if (JSON.stringify(got) !== JSON.stringify(want)) {
          throw new Error(`SSE event field ${path} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}: ${line}`);
        }
      }
    }
  }
  if (expect.interim !== undefined) throw new Error("a Worker cannot see interim responses (mark the scenario edge-box only)");
  if (expect.request_id && !/^[0-9a-f]{16}$/.test(headers.get("x-request-id") ?? "")) {
    throw new Error(`x-request-id is ${JSON.stringify(headers.get("x-request-id"))}, expected 16 hex digits`);
  }
  for (const [name, want] of Object.entries(expect.origin_hits ?? {})) {
    const got = (seen[name] ?? []).length;
    if (got !== want) throw new Error(`origin ${name} got ${got} requests in all, expected ${want}`);
  }
  for (const [name, fields] of Object.entries(expect.origin_headers ?? {})) {
    const last = (seen[name] ?? []).at(-1);
    if (!last) throw new Error(`origin ${name} got no request`);
    for (const [field, want] of Object.entries(fields)) {
      const got = last.headers[field] ?? null;
      if (got !== want) throw new Error(`origin ${name} got ${field}: ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
    }
  }
}
