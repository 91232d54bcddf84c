// Shared pieces of the Workers tests: the built Worker (dist/, from
// `wrangler deploy --dry-run --outdir dist`) in real workerd through
// Miniflare, and real HTTP origins on 127.0.0.1.
import http from "node:http";
import net from "node:net";
import { existsSync, readFileSync } from "node:fs";
import { Miniflare } from "miniflare";

const ROOT = new URL("../../", import.meta.url);
const DIST = new URL("dist/", ROOT).pathname;
const WRANGLER = readFileSync(new URL("wrangler.toml", ROOT), "utf8");
const COMPATIBILITY_DATE = WRANGLER.match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];

/** Starts the Worker as `wrangler deploy` would upload it. `config` (text) goes in KV. */
export async function startWorker({ config, bindings = {} } = {}) {
  if (!existsSync(DIST + "entry.js")) {
    throw new Error("dist/entry.js is missing: run scripts/test.sh, or npx wrangler deploy --dry-run --outdir dist");
  }
  const mf = new Miniflare({
    modules: true,
    scriptPath: DIST + "entry.js",
    modulesRoot: DIST,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: COMPATIBILITY_DATE,
    kvNamespaces: ["CONFIG"],
    durableObjects: { BUDGETS: "BudgetLedger" },
    bindings: { CONFIG_REFRESH_SECONDS: "0", ...bindings },
  });
  await mf.ready;
  if (config !== undefined) {
    await (await mf.getKVNamespace("CONFIG")).put("config", config);
  }
  return mf;
}

/** Sends a request to the Worker with `country` as request.cf.country. */
export async function send(mf, { method = "POST", path = "/v1/chat/completions", country, headers = {}, body }) {
  const init = { method, headers: { ...headers }, cf: country ? { country } : {} };
  if (body !== undefined && body !== "") {
    init.body = body;
    init.headers["content-type"] ??= "application/json";
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

/**
 * An origin scripted like a conformance scenario's (tests/conformance/README.md):
 * it answers with `status` (200 by default) and `headers`, and a chat
 * completion naming itself and the model it was asked for, as JSON or (with
 * `sse`) as four SSE events; with `etag`, a matching If-None-Match gets a 304;
 * with `responses`, the n-th request is answered by the n-th of them (the
 * last one repeats). `seen` keeps every request it got.
 */
export async function scriptedOrigin(name, scripted = {}) {
  const seen = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString();
      const list = scripted.responses;
      const spec = list?.length ? list[Math.min(seen.length, list.length - 1)] : scripted;
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      let model = null;
      try {
        model = JSON.parse(body).model ?? null;
      } catch {}
      const usage = { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 };
      const headers = { ...(spec.headers ?? {}) };
      const status = spec.status ?? 200;
      if (spec.etag) {
        headers.etag = spec.etag;
        if (req.headers["if-none-match"] === spec.etag) {
          res.writeHead(304, headers);
          res.end();
          return;
        }
      }
      if (spec.sse) {
        res.writeHead(status, { ...headers, "content-type": "text/event-stream" });
        const chunk = (content, usage) =>
          `data: ${JSON.stringify({ object: "chat.completion.chunk", origin: name, model, choices: [{ index: 0, delta: { content } }], usage })}\n\n`;
        res.end(chunk("hello", null) + chunk(" from", null) + chunk(" here", usage) + "data: [DONE]\n\n");
        return;
      }
      if (status === 204) {
        res.writeHead(status, headers);
        res.end();
        return;
      }
      res.writeHead(status, { ...headers, "content-type": "application/json" });
      res.end(JSON.stringify({
        object: "chat.completion",
        origin: name,
        method: req.method,
        model,
        choices: [{ index: 0, message: { role: "assistant", content: `hello from ${name}` }, finish_reason: "stop" }],
        usage,
      }));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, seen, close: () => server.close() };
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

/** Checks a response against a step's `expect`; throws what differs. */
export function check(expect, { status, headers, text }, hits) {
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
  for (const [name, want] of Object.entries(expect.origin_hits ?? {})) {
    const got = hits[name] ?? 0;
    if (got !== want) throw new Error(`origin ${name} got ${got} requests in all, expected ${want}`);
  }
}
