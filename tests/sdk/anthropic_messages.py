"""The official `anthropic` Python SDK, unchanged, against an edge-router.

Run by host/tests/sdk.rs with the router's base URL. Behind the router:
`claude` speaks Anthropic's Messages API (it gets the request as it came),
`cloud` speaks OpenAI's and `gemini` Gemini's (they get it translated, and
their answers come back in Anthropic's shape). Exits non-zero, saying what
differed, at the first check that fails.

    python anthropic_messages.py http://127.0.0.1:PORT
"""

import sys

import anthropic

import checks
from checks import check

base = sys.argv[1]
client = anthropic.Anthropic(base_url=base, api_key="sk-client-test", max_retries=0)


weather = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}

for model, node in [("claude-haiku", "claude"), ("gpt-4o", "cloud"), ("gemini-pro", "gemini")]:
    raw = client.messages.with_raw_response.create(
        model=model, max_tokens=100, system="be brief", messages=[{"role": "user", "content": "hi"}]
    )
    message = raw.parse()
    check(raw.headers["x-edge-node"] == node, f"{model} went to {raw.headers['x-edge-node']}")
    check(message.type == "message" and message.role == "assistant", f"{model}: {message}")
    check(message.content[0].text == f"hello from {node}", f"{model} said {message.content}")
    check(message.stop_reason == "end_turn", f"{model} stopped for {message.stop_reason}")
    check((message.usage.input_tokens, message.usage.output_tokens) == (5, 5), f"{model} usage {message.usage}")

    # Streamed, through the SDK's own stream helper (it checks the event order).
    with client.messages.stream(model=model, max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(text == f"hello from {node}", f"{model} streamed {text!r}")
    check(final.usage.output_tokens == 5 and final.stop_reason == "end_turn", f"{model} final {final}")

    # A tool call, and its result sent back.
    called = client.messages.create(
        model=model, max_tokens=100, tools=[weather], messages=[{"role": "user", "content": "weather in Paris?"}]
    )
    use = next(b for b in called.content if b.type == "tool_use")
    check(called.stop_reason == "tool_use" and use.name == "get_weather", f"{model} tool call {called}")
    check(use.input == {"city": "Paris"}, f"{model} tool input {use.input}")
    answered = client.messages.create(
        model=model,
        max_tokens=100,
        tools=[weather],
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C"}]},
        ],
    )
    check(answered.content[0].text == f"{node} heard: tool said 18C", f"{model} after the tool: {answered.content}")

    # A streamed tool call.
    with client.messages.stream(
        model=model, max_tokens=100, tools=[weather], messages=[{"role": "user", "content": "weather in Paris?"}]
    ) as stream:
        final = stream.get_final_message()
    use = next(b for b in final.content if b.type == "tool_use")
    check(use.input == {"city": "Paris"} and final.stop_reason == "tool_use", f"{model} streamed tool call {final}")

print(f"anthropic {anthropic.__version__}: {checks.passed} checks passed")
