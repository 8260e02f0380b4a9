"""The official ``openai`` SDK against the gateway, unchanged, with failover
happening behind it: sync, async, streaming with usage, tool calls, the
legacy completions API and the models listing."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from server_testkit import Recorder, Upstreams, wait_for

from swarmgate.testing import ScriptedReply

MESSAGES: Any = [{"role": "user", "content": "Say hello to the gateway"}]
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CALL = {"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def client(gateway: Any, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0, **options)


def test_chat_completion_with_failover_and_headers(gateway: Any, upstreams: Upstreams, recorder: Recorder) -> None:
    upstreams.primary.enqueue(ScriptedReply.error(500, "primary is down"))
    upstreams.backup.enqueue(ScriptedReply(content="Hello from backup", usage=(4, 3)))
    raw = client(gateway).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from backup"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        4,
        3,
        7,
    )
    headers = raw.headers
    assert headers["x-swarmgate-provider"] == "backup"
    assert headers["x-swarmgate-model"] == "gpt-4o-mini"
    assert headers["x-swarmgate-attempts"] == "2"
    assert headers["x-swarmgate-cache"] == "miss"
    assert float(headers["x-swarmgate-cost"]) == pytest.approx(7 * 0.000001)
    assert float(headers["x-swarmgate-latency-ms"]) > 0
    assert completion.id == "chatcmpl-" + headers["x-request-id"]
    assert len(upstreams.primary.completions) == 1
    assert len(upstreams.backup.completions) == 1
    # What reached the pipeline: the messages and the model, unchanged.
    (request,) = recorder.requests
    assert request.model == "gpt-4o-mini"
    assert request.messages[0].content == MESSAGES[0]["content"]


def test_request_fields_reach_the_upstream(gateway: Any, upstreams: Upstreams) -> None:
    client(gateway).chat.completions.create(
        model="primary/gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
        ],
        temperature=0.2,
        top_p=0.9,
        max_completion_tokens=42,
        stop=["END"],
        user="user-7",
        response_format={"type": "json_object"},
        seed=3,
    )
    sent = upstreams.primary.completions[-1].json
    assert sent["temperature"] == 0.2
    assert sent["top_p"] == 0.9
    assert sent["max_tokens"] == 42
    assert sent["stop"] == ["END"]
    assert sent["user"] == "user-7"
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["messages"][1]["content"][1]["type"] == "image_url"
    assert "seed" not in sent  # no provider-neutral meaning: dropped unless server.forwardFields lists it


def test_stream_with_usage_and_failover(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.primary.enqueue(ScriptedReply.error(429, "slow down", headers={"retry-after": "1"}))
    upstreams.backup.enqueue(ScriptedReply(content="one two three four", usage=(5, 4)))
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-swarmgate-provider"] == "backup"
    assert raw.headers["x-swarmgate-attempts"] == "2"
    assert raw.headers["x-swarmgate-cache"] == "miss"
    assert "x-swarmgate-cost" not in raw.headers  # unknown before the first token: in the last chunk
    chunks = list(raw.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (5, 4)
    assert all(c.usage is None for c in chunks[:-1])
    trailer = last.model_extra["swarmgate"]
    assert trailer["provider"] == "backup"
    assert trailer["attempts"] == 2
    assert trailer["cost"] == pytest.approx(9 * 0.000001)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].id == "chatcmpl-" + raw.headers["x-request-id"]


def test_stream_without_usage_has_no_usage_chunk(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.primary.enqueue(ScriptedReply(content="a b c"))
    stream = client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks = list(stream)
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "swarmgate" in chunks[-1].model_extra


def test_tool_calls_non_streamed(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.primary.enqueue(ScriptedReply(content="", tool_calls=[CALL], finish_reason="tool_calls"))
    completion = client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS, tool_choice="auto"
    )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    (call,) = message.tool_calls or []
    assert call.id == "call_abc123"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    sent = upstreams.primary.completions[-1].json
    assert sent["tools"] == TOOLS
    assert sent["tool_choice"] == "auto"


def test_tool_calls_streamed_and_sent_back(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.primary.enqueue(ScriptedReply(content="", tool_calls=[CALL], finish_reason="tool_calls"))
    stream = client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS, stream=True)
    chunks = list(stream)
    fragments = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert fragments[0].id == "call_abc123"
    assert fragments[0].function.name == "get_weather"
    assert json.loads("".join(f.function.arguments or "" for f in fragments)) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # The conversation goes on with the tool's answer.
    upstreams.primary.enqueue(ScriptedReply(content="It is sunny in Paris."))
    follow_up = client(gateway).chat.completions.create(
        model="gpt-4o-mini",
        tools=TOOLS,
        messages=[
            *MESSAGES,
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_abc123", "content": '{"sky": "clear"}'},
        ],
    )
    assert follow_up.choices[0].message.content == "It is sunny in Paris."
    sent = upstreams.primary.completions[-1].json["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_abc123"
    assert sent[2] == {"role": "tool", "content": '{"sky": "clear"}', "tool_call_id": "call_abc123"}


def test_claude_answers_an_openai_client(gateway: Any, upstreams: Upstreams) -> None:
    """Whichever provider answers, the client sees OpenAI's format."""
    upstreams.claude.enqueue(ScriptedReply(content="", tool_calls=[CALL], finish_reason="tool_calls"))
    completion = client(gateway).chat.completions.create(model="claude-3-5-haiku", messages=MESSAGES, tools=TOOLS)
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert completion.choices[0].finish_reason == "tool_calls"
    stream = client(gateway).chat.completions.create(model="claude-3-5-haiku", messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello from the fake upstream"


def test_legacy_completions(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.primary.enqueue(ScriptedReply.error(503, "overloaded"))
    upstreams.backup.enqueue(ScriptedReply(content="Once upon a time"))
    raw = client(gateway).completions.with_raw_response.create(
        model="gpt-4o-mini", prompt="Tell a story", max_tokens=20
    )
    completion = raw.parse()
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "Once upon a time"
    assert raw.headers["x-swarmgate-provider"] == "backup"
    assert upstreams.backup.completions[-1].json["messages"] == [{"role": "user", "content": "Tell a story"}]
    stream = client(gateway).completions.create(
        model="gpt-4o-mini", prompt="Tell a story", stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from the fake upstream"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


def test_models_listing(gateway: Any) -> None:
    models = client(gateway).models.list()
    ids = [m.id for m in models]
    for expected in ("gpt-4o-mini", "claude-3-5-haiku", "primary/gpt-4o-mini", "backup/gpt-4o-mini", "fast", "auto"):
        assert expected in ids
    assert len(ids) == len(set(ids))
    assert client(gateway).models.retrieve("fast").id == "fast"
    with pytest.raises(openai.NotFoundError):
        client(gateway).models.retrieve("no-such-model")


def test_route_name_is_a_model(gateway: Any, upstreams: Upstreams) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(model="fast", messages=MESSAGES)
    assert raw.headers["x-swarmgate-provider"] in ("primary", "backup")


@pytest.mark.anyio
async def test_async_client_streaming_with_failover(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.primary.enqueue(ScriptedReply.error(500))
    upstreams.backup.enqueue(ScriptedReply(content="async hello there"))
    async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0) as aclient:
        stream = await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(pieces) == "async hello there"
        upstreams.primary.enqueue(ScriptedReply(content="plain async"))
        completion = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert completion.choices[0].message.content == "plain async"


def test_error_after_the_stream_started(gateway: Any, upstreams: Upstreams, recorder: Recorder) -> None:
    """A failure after output started cannot be hidden: the stream ends with
    an error chunk, which the SDK raises."""
    upstreams.primary.enqueue(ScriptedReply(content="partial answer that breaks", cut_after=2))
    received = []
    with pytest.raises(openai.APIError) as broken:  # noqa: PT012 - raised while iterating
        for chunk in client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "partial answer"
    assert broken.value.body["code"] == "upstream_unreachable"  # type: ignore[index]
    assert len(upstreams.backup.completions) == 0  # no hidden restart elsewhere
    ((_, error, attempts),) = wait_for(lambda: recorder.failed, what="request_failed")
    assert error.kind.value == "connection_error"
    assert attempts[-1].tokens.output > 0
