"""The official ``anthropic`` SDK against the gateway's ``/v1/messages``,
streaming and not, whichever provider answers, with failover behind it."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest
from server_testkit import Recorder, Upstreams

from swarmgate.testing import ScriptedReply

CALL = {"id": "call_w1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
TOOL: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def client(gateway: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0)


def test_message_answered_by_claude(gateway: Any, upstreams: Upstreams) -> None:
    raw = client(gateway).messages.with_raw_response.create(
        model="claude-3-5-haiku",
        max_tokens=64,
        system="You are terse.",
        messages=[{"role": "user", "content": "Hello"}],
        stop_sequences=["###"],
        extra_body={"temperature": 0.5},  # this SDK version has no sampling arguments of its own
    )
    message = raw.parse()
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello from the fake upstream"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 5
    assert raw.headers["x-swarmgate-provider"] == "claude"
    sent = upstreams.claude.completions[-1].json
    assert sent["system"] == "You are terse."
    assert sent["max_tokens"] == 64
    assert sent["stop_sequences"] == ["###"]
    assert sent["temperature"] == 0.5


def test_message_answered_by_openai_after_failover(gateway: Any, upstreams: Upstreams, recorder: Recorder) -> None:
    upstreams.primary.enqueue(ScriptedReply.error(500))
    upstreams.backup.enqueue(ScriptedReply(content="Hi from an OpenAI upstream", usage=(3, 6)))
    raw = client(gateway).messages.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=32, messages=[{"role": "user", "content": "Hello"}]
    )
    message = raw.parse()
    assert message.content[0].text == "Hi from an OpenAI upstream"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 6)
    assert raw.headers["x-swarmgate-provider"] == "backup"
    assert raw.headers["x-swarmgate-attempts"] == "2"
    assert upstreams.backup.completions[-1].json["max_tokens"] == 32


def test_stream_text(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.primary.enqueue(ScriptedReply.error(502))
    upstreams.backup.enqueue(ScriptedReply(content="streamed words arrive one by one", usage=(2, 6)))
    with client(gateway).messages.stream(
        model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "streamed words arrive one by one"
    assert len(pieces) == 6
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 6)
    assert final.content[0].text == "streamed words arrive one by one"


def test_stream_event_sequence(gateway: Any, upstreams: Upstreams) -> None:
    stream = client(gateway).messages.create(
        model="claude-3-5-haiku", max_tokens=50, messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    kinds = [event.type for event in stream]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    # The SDK hides pings; on the wire one follows message_start.
    body = {
        "model": "claude-3-5-haiku",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    wire = httpx.post(gateway.url + "/v1/messages", json=body).text
    names = [line[7:] for line in wire.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-1] == "message_stop"


def test_tool_use_round_trip(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.primary.enqueue(ScriptedReply(content="Let me check.", tool_calls=[CALL], finish_reason="tool_calls"))
    message = client(gateway).messages.create(
        model="gpt-4o-mini",
        max_tokens=50,
        tools=[TOOL],
        tool_choice={"type": "auto"},
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    )
    assert message.stop_reason == "tool_use"
    text, use = message.content
    assert text.type == "text"
    assert text.text == "Let me check."
    assert use.type == "tool_use"
    assert use.name == "get_weather"
    assert use.input == {"city": "Oslo"}
    sent = upstreams.primary.completions[-1].json
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][0]["function"]["parameters"] == TOOL["input_schema"]
    assert sent["tool_choice"] == "auto"
    # The tool result goes back as an OpenAI tool message.
    upstreams.primary.enqueue(ScriptedReply(content="Sunny."))
    answer = client(gateway).messages.create(
        model="gpt-4o-mini",
        max_tokens=50,
        tools=[TOOL],
        messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": use.id, "name": use.name, "input": use.input},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21C"}]},
        ],
    )
    assert answer.content[0].text == "Sunny."
    sent_messages = upstreams.primary.completions[-1].json["messages"]
    assert sent_messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent_messages[2] == {"role": "tool", "content": "sunny, 21C", "tool_call_id": use.id}


def test_tool_use_streamed(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.claude.enqueue(ScriptedReply(content="Checking.", tool_calls=[CALL], finish_reason="tool_calls"))
    with client(gateway).messages.stream(
        model="claude-3-5-haiku", max_tokens=50, tools=[TOOL], messages=[{"role": "user", "content": "Oslo?"}]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert "input_json" in events
    assert final.stop_reason == "tool_use"
    assert final.content[0].text == "Checking."
    assert final.content[1].type == "tool_use"
    assert final.content[1].input == {"city": "Oslo"}


def test_errors_in_anthropic_format(gateway: Any, upstreams: Upstreams) -> None:
    with pytest.raises(anthropic.NotFoundError) as not_found:
        client(gateway).messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert not_found.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    upstreams.primary.enqueue(ScriptedReply.error(500))
    upstreams.backup.enqueue(ScriptedReply.error(500))
    with pytest.raises(anthropic.InternalServerError) as failed:
        client(gateway).messages.create(model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        client(gateway).messages.create(model="gpt-4o-mini", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.UnprocessableEntityError):
        client(gateway).messages.create(
            model="gpt-4o-mini",
            max_tokens=5,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "source": {"type": "text", "data": "d", "media_type": "text/plain"}}
                    ],
                }
            ],
        )


def test_error_after_the_stream_started(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.primary.enqueue(ScriptedReply(content="partial answer that breaks", cut_after=2))
    stream = client(gateway).messages.stream(
        model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    )
    with pytest.raises(anthropic.APIStatusError) as broken, stream as events:
        for _ in events.text_stream:
            pass
    assert broken.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "connection to upstream failed" in broken.value.body["error"]["message"]  # type: ignore[index]
