"""The official `openai` Python SDK, unchanged, against an edge-router.

Run by host/tests/sdk.rs with the router's base URL; every node behind it is
a fake origin speaking OpenAI's wire format (fake-origin/). Exits non-zero,
saying what differed, at the first check that fails.

    python openai_surface.py http://127.0.0.1:PORT
"""

import sys

import openai

import checks
from checks import check

base = sys.argv[1]
client = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-client-test", max_retries=0)


# The model list: answered by the router, the union of the nodes' models and `auto`.
models = [m.id for m in client.models.list()]
check(models == ["tiny", "gpt-4o", "gpt-4o-mini", "auto"], f"models.list() gave {models}")
check(client.models.retrieve("gpt-4o").id == "gpt-4o", "models.retrieve('gpt-4o')")
try:
    client.models.retrieve("no-such-model")
    check(False, "an unknown model should be a 404")
except openai.NotFoundError as e:
    check("no-such-model" in str(e), f"the 404 names the model: {e}")

# Chat, plain and streamed, with the router's explanation headers.
raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
)
chat = raw.parse()
check(raw.headers["x-edge-node"] == "cloud", f"chat went to {raw.headers['x-edge-node']}")
check(chat.choices[0].message.content == "hello from cloud", f"chat said {chat.choices[0].message.content!r}")
check(chat.usage.total_tokens == 10, f"chat usage {chat.usage}")
stream = client.chat.completions.create(
    model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
    stream_options={"include_usage": True},
)
pieces, usage = [], None
for chunk in stream:
    pieces += [c.delta.content for c in chunk.choices if c.delta.content]
    usage = chunk.usage or usage
check("".join(pieces) == "hello from cloud", f"streamed chat said {''.join(pieces)!r}")
check(usage is not None and usage.prompt_tokens == 5, f"streamed chat usage {usage}")

# `auto` goes to the edge's small model (the rule), and says so.
raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": "hi"}])
check((raw.headers["x-edge-node"], raw.headers["x-edge-model"]) == ("edge", "tiny"), f"auto: {dict(raw.headers)}")

# Legacy completions and embeddings, routed by model.
completion = client.completions.create(model="gpt-4o-mini", prompt="Say hi")
check(completion.choices[0].text == "hello from local", f"completion said {completion.choices[0].text!r}")
streamed = "".join(c.choices[0].text for c in client.completions.create(model="gpt-4o-mini", prompt="hi", stream=True))
check(streamed == "hello from local", f"streamed completion said {streamed!r}")
embedded = client.embeddings.create(model="gpt-4o-mini", input=["one", "two"])
check([len(d.embedding) for d in embedded.data] == [3, 3], f"embeddings {embedded.data}")

# The Responses API: a string input, then an item list continuing it.
raw = client.responses.with_raw_response.create(model="gpt-4o", input="Tell me", instructions="be brief")
first = raw.parse()
check(raw.headers["x-edge-node"] == "cloud", f"responses went to {raw.headers['x-edge-node']}")
check(first.output_text == "hello from cloud", f"responses said {first.output_text!r}")
check(first.id.endswith("~cloud"), f"the response id names its node: {first.id}")
check(first.usage.input_tokens == 5 and first.usage.output_tokens == 5, f"responses usage {first.usage}")
follow = client.responses.with_raw_response.create(
    model="gpt-4o",
    previous_response_id=first.id,
    input=[{"role": "user", "content": [{"type": "input_text", "text": "And more?"}]}],
)
check(follow.headers["x-edge-rule"] == "affinity", f"a continuation's rule: {follow.headers['x-edge-rule']}")
check(follow.parse().previous_response_id == first.id, "the continuation names the response it continues")

# Streamed, with its typed events; then retrieve, list input items, delete.
events = list(client.responses.create(model="auto", input="Stream it", stream=True))
kinds = [e.type for e in events]
check(kinds[0] == "response.created" and kinds[-1] == "response.completed", f"event types {kinds}")
text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
check(text == "hello from edge", f"streamed response said {text!r}")
done = events[-1].response
check(done.id.endswith("~edge") and done.id == events[0].response.id, f"stream ids {events[0].response.id} {done.id}")
check(done.usage.output_tokens == 5, f"streamed usage {done.usage}")
check(client.responses.retrieve(done.id).output_text == "hello from edge", "retrieve on the node that holds it")
items = client.responses.input_items.list(first.id)
check([i.content[0].text for i in items.data] == ["Tell me"], f"input items {items.data}")
client.responses.delete(first.id)
try:
    client.responses.retrieve(first.id)
    check(False, "a deleted response should be gone")
except openai.NotFoundError as e:
    check("not found" in str(e).lower(), f"the deleted response's 404: {e}")

print(f"openai {openai.__version__}: {checks.passed} checks passed")
