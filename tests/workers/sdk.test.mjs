// The official `openai` Node SDK (npm, pinned in package-lock.json),
// unchanged but for its `fetch`, which goes to the Worker in workerd: the
// same OpenAI surface the edge box's Python SDK test drives
// (host/tests/sdk.rs), against fake origins speaking OpenAI's wire format.
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { scriptedOrigin, startWorker } from "./harness.mjs";

/** An official SDK client (`OpenAI` or `Anthropic`), unchanged but for its `fetch`, which goes to the Worker. */
const sdk = (Client, mf, base) =>
  new Client({
    baseURL: `http://edge-router.test${base}`,
    apiKey: "sk-client-test",
    maxRetries: 0,
    fetch: (url, init) => mf.dispatchFetch(url, init),
  });

test("the openai Node SDK works unchanged against every routed endpoint of the Worker", async () => {
  const edge = await scriptedOrigin("edge");
  const cloud = await scriptedOrigin("cloud");
  const local = await scriptedOrigin("local");
  const config = JSON.stringify({
    nodes: [
      { id: "edge", type: "edge", host: edge.url, models: ["tiny"], capabilities: ["small_models"] },
      { id: "cloud", type: "cloud", host: cloud.url, models: ["gpt-4o"], cost_per_1k_tokens: 0.01 },
      { id: "local", type: "local", host: local.url, models: ["gpt-4o-mini"] },
    ],
    routing: { rules: [{ name: "small", match: { model: "auto" }, target: "edge" }] },
  });
  const mf = await startWorker({ config });
  const client = sdk(OpenAI, mf, "/v1");
  try {
    const models = [];
    for await (const m of client.models.list()) models.push(m.id);
    assert.deepEqual(models, ["tiny", "gpt-4o", "gpt-4o-mini", "auto"]);
    assert.equal((await client.models.retrieve("gpt-4o")).id, "gpt-4o");
    await assert.rejects(client.models.retrieve("no-such-model"), (e) => e.status === 404 && /no-such-model/.test(e.message));

    const { data: chat, response } = await client.chat.completions
      .create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] })
      .withResponse();
    assert.equal(response.headers.get("x-edge-node"), "cloud");
    assert.equal(chat.choices[0].message.content, "hello from cloud");
    let streamed = "";
    let usage = null;
    const stream = await client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const chunk of stream) {
      streamed += chunk.choices.map((c) => c.delta.content ?? "").join("");
      usage = chunk.usage ?? usage;
    }
    assert.equal(streamed, "hello from cloud");
    assert.equal(usage?.prompt_tokens, 5);

    const completion = await client.completions.create({ model: "gpt-4o-mini", prompt: "Say hi" });
    assert.equal(completion.choices[0].text, "hello from local");
    const embedded = await client.embeddings.create({ model: "gpt-4o-mini", input: ["one", "two"] });
    assert.deepEqual(embedded.data.map((d) => d.embedding.length), [3, 3]);

    const first = await client.responses.create({ model: "gpt-4o", input: "Tell me", instructions: "be brief" });
    assert.equal(first.output_text, "hello from cloud");
    assert.match(first.id, /~cloud$/);
    const { data: follow, response: followed } = await client.responses
      .create({ model: "gpt-4o", previous_response_id: first.id, input: [{ role: "user", content: "And more?" }] })
      .withResponse();
    assert.equal(followed.headers.get("x-edge-rule"), "affinity");
    assert.equal(follow.previous_response_id, first.id);

    const events = [];
    for await (const e of await client.responses.create({ model: "auto", input: "Stream it", stream: true })) events.push(e);
    assert.equal(events[0].type, "response.created");
    assert.equal(events.at(-1).type, "response.completed");
    const text = events.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join("");
    assert.equal(text, "hello from edge");
    const done = events.at(-1).response;
    assert.match(done.id, /~edge$/);
    assert.equal((await client.responses.retrieve(done.id)).output_text, "hello from edge");
    const items = await client.responses.inputItems.list(first.id);
    assert.deepEqual(items.data.map((i) => i.content[0].text), ["Tell me"]);
    await client.responses.delete(first.id);
    await assert.rejects(client.responses.retrieve(first.id), (e) => e.status === 404);

    // The origins got the ids they made, never the router's tags.
    const seen = await cloud.seen();
    assert.ok(seen.every((s) => !s.target.includes("~") && !s.body.includes("~cloud")), JSON.stringify(seen));
  } finally {
    await mf.dispose();
    for (const o of [edge, cloud, local]) o.close();
  }
});

test("the openai Node SDK reaches Anthropic and Gemini nodes through the Worker, streamed and with tools", async () => {
  const claude = await scriptedOrigin("claude");
  const gemini = await scriptedOrigin("gemini");
  const overloaded = await scriptedOrigin("busy", { status: 529 });
  const config = JSON.stringify({
    nodes: [
      { id: "claude", type: "cloud", provider: "anthropic", host: claude.url, api_key_env: "ANTHROPIC_KEY", models: ["claude-haiku"] },
      { id: "gemini", type: "cloud", provider: "gemini", host: gemini.url, api_key_env: "GEMINI_KEY", models: ["gemini-pro"] },
      { id: "busy", type: "cloud", provider: "anthropic", host: overloaded.url, api_key_env: "ANTHROPIC_KEY", models: ["claude-busy"] },
    ],
    routing: { rules: [{ match: { model: "claude-busy" }, target: "busy", fallback: ["claude"] }] },
  });
  const mf = await startWorker({ config, bindings: { ANTHROPIC_KEY: "sk-ant-worker", GEMINI_KEY: "AIza-worker" } });
  const client = sdk(OpenAI, mf, "/v1");
  const weather = {
    type: "function",
    function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
  };
  try {
    for (const [model, origin, node] of [["claude-haiku", claude, "claude"], ["gemini-pro", gemini, "gemini"]]) {
      const { data, response } = await client.chat.completions
        .create({ model, messages: [{ role: "system", content: "be brief" }, { role: "user", content: "hi" }] })
        .withResponse();
      assert.equal(response.headers.get("x-edge-node"), node);
      assert.equal(data.choices[0].message.content, `hello from ${node}`);
      assert.equal(data.usage.total_tokens, 10);
      let streamed = "";
      let usage = null;
      for await (const chunk of await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], stream: true })) {
        streamed += chunk.choices.map((c) => c.delta.content ?? "").join("");
        usage = chunk.usage ?? usage;
      }
      assert.equal(streamed, `hello from ${node}`);
      assert.equal(usage?.total_tokens, 10);
      const called = await client.chat.completions.create({ model, messages: [{ role: "user", content: "weather in Paris?" }], tools: [weather] });
      const call = called.choices[0].message.tool_calls[0];
      assert.equal(call.function.name, "get_weather");
      assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });
      const seen = (await origin.seen()).at(-1);
      assert.ok(!("authorization" in seen.headers), "the key goes in the provider's own header");
      assert.ok(seen.headers["x-api-key"] === "sk-ant-worker" || seen.headers["x-goog-api-key"] === "AIza-worker", JSON.stringify(seen.headers));
    }
    // Anthropic's 529 falls back as an OpenAI 503 would.
    const { response } = await client.chat.completions.create({ model: "claude-busy", messages: [{ role: "user", content: "hi" }] }).withResponse();
    assert.equal(response.headers.get("x-edge-node"), "claude");
    assert.equal(response.headers.get("x-edge-attempts"), "2");
  } finally {
    await mf.dispose();
    for (const o of [claude, gemini, overloaded]) o.close();
  }
});

test("the anthropic Node SDK reaches Anthropic and OpenAI nodes through the Worker's /v1/messages", async () => {
  const claude = await scriptedOrigin("claude");
  const cloud = await scriptedOrigin("cloud");
  const config = JSON.stringify({
    nodes: [
      { id: "claude", type: "cloud", provider: "anthropic", host: claude.url, api_key_env: "ANTHROPIC_KEY", models: ["claude-haiku"] },
      { id: "cloud", type: "cloud", host: cloud.url, models: ["gpt-4o"] },
    ],
  });
  const mf = await startWorker({ config, bindings: { ANTHROPIC_KEY: "sk-ant-worker" } });
  const client = sdk(Anthropic, mf, "");
  try {
    for (const [model, node] of [["claude-haiku", "claude"], ["gpt-4o", "cloud"]]) {
      const { data, response } = await client.messages
        .create({ model, max_tokens: 100, system: "be brief", messages: [{ role: "user", content: "hi" }] })
        .withResponse();
      assert.equal(response.headers.get("x-edge-node"), node);
      assert.equal(data.content[0].text, `hello from ${node}`);
      assert.deepEqual([data.usage.input_tokens, data.usage.output_tokens], [5, 5]);
      const stream = client.messages.stream({ model, max_tokens: 100, messages: [{ role: "user", content: "hi" }] });
      let text = "";
      stream.on("text", (t) => (text += t));
      const final = await stream.finalMessage();
      assert.equal(text, `hello from ${node}`);
      assert.equal(final.stop_reason, "end_turn");
    }
    assert.ok((await cloud.seen()).every((s) => s.target === "/v1/chat/completions"));
    assert.ok((await claude.seen()).every((s) => s.target === "/v1/messages" && s.headers["x-api-key"] === "sk-ant-worker"));
  } finally {
    await mf.dispose();
    for (const o of [claude, cloud]) o.close();
  }
});

test("the openai Node SDK reaches a Bedrock node through the Worker: signed, streamed, with tools", async () => {
  const bedrock = await scriptedOrigin("bedrock");
  const config = JSON.stringify({
    nodes: [{ id: "bedrock", type: "cloud", provider: "bedrock", region: "us-east-1", host: bedrock.url, models: ["amazon.nova-lite-v1:0"] }],
  });
  // The fake origin checks the signature with its own secret (fake-origin/src/dialects.rs).
  const bindings = { AWS_ACCESS_KEY_ID: "AKIDWORKERTEST", AWS_SECRET_ACCESS_KEY: "edge-router-fake-secret-key" };
  const mf = await startWorker({ config, bindings });
  const client = sdk(OpenAI, mf, "/v1");
  try {
    const model = "amazon.nova-lite-v1:0";
    const chat = await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] });
    assert.equal(chat.choices[0].message.content, "hello from bedrock");
    assert.equal(chat.usage.total_tokens, 10);
    let streamed = "";
    for await (const chunk of await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], stream: true })) {
      streamed += chunk.choices.map((c) => c.delta.content ?? "").join("");
    }
    assert.equal(streamed, "hello from bedrock");
    const weather = { type: "function", function: { name: "get_weather", parameters: { type: "object" } } };
    const called = await client.chat.completions.create({ model, messages: [{ role: "user", content: "weather in Paris?" }], tools: [weather] });
    assert.deepEqual(JSON.parse(called.choices[0].message.tool_calls[0].function.arguments), { city: "Paris" });
    const seen = (await bedrock.seen()).at(-1);
    assert.match(seen.headers.authorization, /^AWS4-HMAC-SHA256 Credential=AKIDWORKERTEST\//);
    assert.equal(seen.target, "/model/amazon.nova-lite-v1%3A0/converse");
  } finally {
    await mf.dispose();
    bedrock.close();
  }
});
