"""The ``websocket`` type configured for another protocol: the text side of
the OpenAI Realtime API (typed events, a greeting on connect, the model in
the URL, a done event instead of a done message), against the fake's
:class:`RealtimeWire`. Nothing here is built in: it is all configuration."""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate import (
    AuthenticationError,
    ContentFilteredError,
    ContextLengthExceededError,
    FinishEvent,
    ProviderManager,
    RateLimitedError,
    SwarmgateError,
    TextDelta,
    TokenUsage,
    UsageEvent,
)
from swarmgate.testing import ScriptedReply, attempt_error
from swarmgate.testing.websocket_upstream import FakeWebSocketUpstream, RealtimeWire

MODEL = "gpt-realtime"
KEY = "sk-realtime-0123456789abcdef"


def realtime_config(url: str) -> dict[str, Any]:
    """The provider config for the Realtime API at ``url`` (the README's example)."""
    return {
        "type": "websocket",
        "url": url + "?model={{model}}",
        "apiKey": KEY,
        "timeout": 2000,
        "message": {
            "type": "response.create",
            "response": {
                "conversation": "none",
                "output_modalities": ["text"],
                "instructions": "{{system}}",
                "max_output_tokens": "{{maxTokens}}",
                "input": [
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "{{prompt}}"}]}
                ],
            },
        },
        "paths": {
            "text": "type == 'response.output_text.delta' && delta",
            "toolCalls": None,
            "finishReason": "type == 'response.done' && (response.status_details.reason || response.status)",
            "inputTokens": "response.usage.input_tokens",
            "outputTokens": "response.usage.output_tokens",
            "model": None,
            "error": "type == 'error'",
            "errorStatus": None,
            "retryAfter": None,
        },
        "done": {"path": "type", "value": "response.done"},
        "models": {MODEL: {"costPerToken": 0.001}},
    }


def manager_for(url: str, **provider: Any) -> ProviderManager:
    return ProviderManager({"providers": {"rt": {**realtime_config(url), **provider}}})


async def failure(manager: ProviderManager, *, stream: bool = False) -> SwarmgateError:
    try:
        if stream:
            _ = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
        else:
            await manager.complete(prompt="Hi", model=MODEL)
    except SwarmgateError as exc:
        return attempt_error(exc)
    raise AssertionError("the request succeeded; an error was expected")


@pytest.mark.anyio
async def test_complete() -> None:
    async with FakeWebSocketUpstream(RealtimeWire()) as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="Paris is the capital of France.", usage=(21, 7)))
        response = await manager.complete(
            prompt="What is the capital of France?", system="Be brief.", model=MODEL, max_tokens=64
        )
        sent = server.last_completion()
        handshake = server.handshakes[0]
    assert response.content == "Paris is the capital of France."
    assert response.tokens == TokenUsage(21, 7, 28)
    assert response.cost == pytest.approx(28 * 0.001)
    assert response.finish_reason == "stop"
    assert sent.model == MODEL
    assert sent.messages == (("system", "Be brief."), ("user", "What is the capital of France?"))
    assert sent.max_tokens == 64
    assert handshake.path == f"/v1/realtime?model={MODEL}"
    assert handshake.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.anyio
async def test_stream() -> None:
    content = "Streaming works one word at a time."
    async with FakeWebSocketUpstream(RealtimeWire()) as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content=content, usage=(9, 8)))
        events = [e async for e in manager.stream(prompt="Stream please", model=MODEL)]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 7
    assert "".join(deltas) == content
    usage = next(e for e in events if isinstance(e, UsageEvent))
    assert usage.tokens == TokenUsage(9, 8, 17)
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.finish_reason == "stop"


@pytest.mark.anyio
async def test_incomplete_answers() -> None:
    async with FakeWebSocketUpstream(RealtimeWire()) as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="The answer was cut", finish_reason="length"))
        server.enqueue(ScriptedReply(content="The beginning of", finish_reason="content_filter"))
        cut = await manager.complete(prompt="Hi", model=MODEL)
        filtered = await failure(manager, stream=True)
    assert cut.finish_reason == "length"
    assert cut.content == "The answer was cut"
    assert type(filtered) is ContentFilteredError


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reply", "expected", "words"),
    [
        (ScriptedReply.error(429, "Rate limit reached for requests."), RateLimitedError, "Rate limit reached"),
        (
            ScriptedReply.error(400, "The conversation is too long.", code="context_length_exceeded"),
            ContextLengthExceededError,
            "too long",
        ),
        (ScriptedReply.error(401), AuthenticationError, "Incorrect API key"),
        (
            ScriptedReply.error(400, "Rejected by the safety system.", code="content_policy_violation"),
            ContentFilteredError,
            "safety system",
        ),
    ],
)
async def test_error_events(reply: ScriptedReply, expected: type[SwarmgateError], words: str) -> None:
    async with FakeWebSocketUpstream(RealtimeWire()) as server, manager_for(server.url) as manager:
        server.enqueue(reply)
        error = await failure(manager)
    assert type(error) is expected
    assert words in str(error)


@pytest.mark.anyio
async def test_one_session_for_sequential_requests() -> None:
    async with (
        FakeWebSocketUpstream(RealtimeWire()) as server,
        manager_for(server.url, connection="keep-open") as manager,
    ):
        server.enqueue(ScriptedReply(content="first answer"), ScriptedReply(content="second answer"))
        first = await manager.complete(prompt="one", model=MODEL)
        second = await manager.complete(prompt="two", model=MODEL)
        assert server.connections == 1
    assert (first.content, second.content) == ("first answer", "second answer")
