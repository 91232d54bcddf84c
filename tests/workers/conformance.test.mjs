// The conformance scenarios of tests/conformance/ (see its README), run
// through the Workers build in real workerd (Miniflare). The edge box runs
// the same files in tests/e2e/conformance.rs.
import { test, after } from "node:test";
import { readdirSync, readFileSync } from "node:fs";
import { check, refusedUrl, requestBody, scriptedOrigin, send, startWorker } from "./harness.mjs";

/** This host's name in a scenario's `only.host`. */
const HOST = "worker";
const DIR = new URL("../conformance/", import.meta.url);

const passed = [];
const otherHost = [];

async function run(scenario) {
  const origins = {};
  let config = JSON.stringify(scenario.config);
  for (const [name, spec] of Object.entries(scenario.origins)) {
    const origin = spec.refuse ? { url: await refusedUrl(), seen: async () => [], close() {} } : await scriptedOrigin(name, spec);
    origins[name] = origin;
    config = config.replaceAll(`{{origin:${name}}}`, origin.url);
  }
  const mf = await startWorker({ config });
  try {
    for (const [i, step] of scenario.steps.entries()) {
      const req = step.request;
      const reply = await send(mf, {
        method: req.method ?? "POST",
        path: req.path ?? "/v1/chat/completions",
        country: req.country ?? undefined,
        headers: req.headers ?? {},
        body: requestBody(req),
        chunked: req.chunked,
        stallMs: req.stall_ms,
      });
      const seen = Object.fromEntries(await Promise.all(Object.entries(origins).map(async ([n, o]) => [n, await o.seen()])));
      try {
        check(step.expect, reply, seen);
      } catch (e) {
        throw new Error(`step ${i + 1}: ${e.message}`);
      }
    }
  } finally {
    await mf.dispose();
    for (const o of Object.values(origins)) o.close();
  }
}

for (const file of readdirSync(DIR).filter((f) => f.endsWith(".json")).sort()) {
  const scenario = JSON.parse(readFileSync(new URL(file, DIR), "utf8"));
  const only = scenario.only;
  if (only && only.host !== HOST) {
    otherHost.push(`${scenario.name} (only ${only.host}: ${only.reason})`);
    test(scenario.name, { skip: `only the ${only.host} runs it: ${only.reason}` }, () => {});
    continue;
  }
  test(scenario.name, async () => {
    await run(scenario);
    passed.push(scenario.name);
  });
}

// Last, as tests in a file run in order: a suite that found few scenarios
// (a wrong directory, a filter) must not pass for having run nothing.
test("the whole suite ran on this host", () => {
  if (passed.length < 30) throw new Error(`expected the whole suite to run, ran ${passed.length}: ${passed.join(", ")}`);
});

after(() => {
  console.log(
    `conformance on the ${HOST}: ${passed.length} passed, ${otherHost.length} skipped as the other host's only:\n  ${otherHost.join("\n  ")}`,
  );
});
