"""Anthropic-specific behaviour of the ``claude`` provider type (beyond the conformance suite)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarmgate import (
    AuthenticationError,
    CompletionResponse,
    ConfigError,
    ContentFilteredError,
    ContextLengthExceededError,
    ErrorEvent,
    FinishEvent,
    InvalidRequestError,
    Message,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderConfig,
    ProviderManager,
    RateLimitedError,
    ServerError,
    StreamEvent,
    SwarmgateError,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
    load_config,
)
from swarmgate.testing import FakeUpstream, ScriptedReply, expect_failure
from swarmgate.testing.anthropic_wire import AnthropicWire, sse_event
from swarmgate_claude import DEFAULT_ENDPOINT, DEFAULT_MAX_TOKENS, ClaudeProvider, ClaudeSettings

MODEL = "claude-haiku-4-5"
KEY = "sk-ant-api03-test-0123456789abcdef"
WEATHER_CALLS: tuple[dict[str, Any], ...] = (
    {
        "id": "toolu_01weather",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
    },
    {"id": "toolu_02time", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "Europe/Paris"}'}},
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
SSE_HEADERS = {"content-type": "text/event-stream"}
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def serve() -> FakeUpstream:
    return FakeUpstream(AnthropicWire())


def manager_for(url: str, **provider: Any) -> ProviderManager:
    """A manager with one ``claude`` provider ``cl`` at ``url`` (loaded through its entry point)."""
    config: dict[str, Any] = {
        "type": "claude",
        "endpoint": url,
        "apiKey": KEY,
        "timeout": 2000,
        "models": {MODEL: {"costPerToken": 0.001}},
    }
    config.update(provider)
    config = {k: v for k, v in config.items() if v is not None}
    return ProviderManager({"providers": {"cl": config}})


async def failure(manager: ProviderManager, *, stream: bool = False, **fields: Any) -> SwarmgateError:
    return await expect_failure(manager, model=MODEL, stream=stream, **fields)


async def stream_events(manager: ProviderManager, **fields: Any) -> list[StreamEvent]:
    fields.setdefault("prompt", "Hello?")
    return [e async for e in manager.stream(model=MODEL, errors="event", **fields)]


def sent_body(server: FakeUpstream) -> dict[str, Any]:
    body = server.completions[-1].json
    assert isinstance(body, dict)
    return body


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(sse_event(e) for e in events)


def message_start(input_tokens: int = 10, **usage: int) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_stream",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage},
        },
    }


def text_block(index: int = 0) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}


def text_delta(text: str, index: int = 0) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}


def message_delta(stop_reason: str | None, output_tokens: int = 5, **extra: Any) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None, **extra},
        "usage": {"output_tokens": output_tokens},
    }


STOP = {"type": "message_stop"}


def message(**fields: Any) -> bytes:
    body: dict[str, Any] = {
        "id": "msg_01abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5-20251001",
        "content": [{"type": "text", "text": "Hi there"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 7, "output_tokens": 3},
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


# -- request bodies and headers -----------------------------------------------------------


@pytest.mark.anyio
async def test_request_body_and_headers() -> None:
    async with serve() as server, manager_for(server.url, anthropicBeta="prompt-caching-2024-07-31") as manager:
        await manager.complete(
            prompt="Say hello",
            system="Be brief.",
            model=MODEL,
            max_tokens=64,
            top_p=0.5,
            stop=["END", "STOP"],
            user="user-42",
            response_format={"type": "json_object"},
            extra={"top_k": 5},
        )
        request = server.completions[-1]
    body = request.json
    assert request.path == "/v1/messages"
    assert body == {
        "model": MODEL,
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello"}],
        "top_p": 0.5,
        "stop_sequences": ["END", "STOP"],
        "metadata": {"user_id": "user-42"},
        "top_k": 5,
    }, "temperature is not sent unset; response_format has no Messages equivalent"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("swarmgate-claude/")
    assert "authorization" not in request.headers


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("request_max", "model_max", "setting", "expected"),
    [
        (64, 321, 1000, 64),
        (None, 321, 1000, 321),
        (None, None, 1000, 1000),
        (None, None, None, DEFAULT_MAX_TOKENS),
    ],
    ids=["request", "model-config", "setting", "default"],
)
async def test_max_tokens_is_always_sent(
    request_max: int | None, model_max: int | None, setting: int | None, expected: int
) -> None:
    model: dict[str, Any] = {"costPerToken": 0.001}
    if model_max is not None:
        model["maxTokens"] = model_max
    async with serve() as server, manager_for(server.url, models={MODEL: model}, defaultMaxTokens=setting) as manager:
        await manager.complete(prompt="Hi", model=MODEL, max_tokens=request_max)
        body = sent_body(server)
    assert body["max_tokens"] == expected
    assert DEFAULT_MAX_TOKENS == 4096


@pytest.mark.anyio
async def test_model_temperature_and_extra_removal() -> None:
    model = {"costPerToken": 0.001, "temperature": 0.2}
    async with serve() as server, manager_for(server.url, models={MODEL: model}) as manager:
        await manager.complete(prompt="Hi", model=MODEL, user="u1", extra={"metadata": None, "top_k": 3})
        body = sent_body(server)
    assert body["temperature"] == pytest.approx(0.2)
    assert "metadata" not in body, "an extra value of None removes the field"
    assert body["top_k"] == 3
    assert "stream" not in body


@pytest.mark.anyio
async def test_system_prompts_are_hoisted() -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {
            "role": "developer",
            "content": [{"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}}],
        },
        {"role": "user", "content": "How are you?"},
    ]
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(messages=messages, model=MODEL)
        body = sent_body(server)
        sent = server.last_completion()
    assert body["system"] == [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}},
    ]
    assert body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "How are you?"},
    ]
    assert sent.messages[:2] == (("system", "You are terse."), ("system", "Answer in French."))


@pytest.mark.anyio
async def test_tools_and_tool_history_are_mapped() -> None:
    server_tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    messages = [
        Message("user", "Weather and time in Paris?"),
        Message("assistant", "Let me check.", tool_calls=WEATHER_CALLS),
        Message("tool", '{"temp": 21}', tool_call_id="toolu_01weather"),
        Message("tool", [{"type": "text", "text": "14:05"}], tool_call_id="toolu_02time"),
        Message("user", "And tomorrow?"),
        Message("assistant", None, tool_calls=(WEATHER_CALLS[0],)),
        Message("tool", None, tool_call_id="toolu_01weather"),
    ]
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(messages=messages, model=MODEL, tools=[WEATHER_TOOL, server_tool], tool_choice="auto")
        body = sent_body(server)
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
        },
        server_tool,
    ]
    assert body["tool_choice"] == {"type": "auto"}
    assert body["messages"] == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_01weather",
                    "name": "get_weather",
                    "input": {"city": "Paris", "unit": "celsius"},
                },
                {"type": "tool_use", "id": "toolu_02time", "name": "get_time", "input": {"tz": "Europe/Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01weather", "content": '{"temp": 21}'},
                {"type": "tool_result", "tool_use_id": "toolu_02time", "content": [{"type": "text", "text": "14:05"}]},
            ],
        },
        {"role": "user", "content": "And tomorrow?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_01weather",
                    "name": "get_weather",
                    "input": {"city": "Paris", "unit": "celsius"},
                }
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01weather"}]},
    ]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
        (
            {"type": "any", "disable_parallel_tool_use": True},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
    ],
    ids=["auto", "none", "required", "function", "native"],
)
async def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(prompt="Weather?", model=MODEL, tools=[WEATHER_TOOL], tool_choice=choice)
        body = sent_body(server)
    assert body["tool_choice"] == expected


@pytest.mark.anyio
async def test_tool_choice_without_tools_is_not_sent() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(prompt="Hi", model=MODEL, tool_choice="auto")
        body = sent_body(server)
    assert "tool_choice" not in body
    assert "tools" not in body


@pytest.mark.anyio
async def test_images_are_mapped() -> None:
    content = [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_BASE64}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/paper.pdf"}},
    ]
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(messages=[{"role": "user", "content": content}], model=MODEL)
        body = sent_body(server)
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these."},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {"type": "document", "source": {"type": "url", "url": "https://example.com/paper.pdf"}},
            ],
        }
    ]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("message", "where"),
    [
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]},
            "messages[0].content[0]",
        ),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}]},
            "messages[0].content[0]",
        ),
        (
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "..."}}]},
            "messages[0].content[0]",
        ),
        (
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}],
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"role": "tool", "content": "21"}, "messages[0]"),
    ],
    ids=["image-scheme", "data-url-not-base64", "audio-part", "bad-arguments", "tool-without-id"],
)
async def test_unmappable_requests_are_invalid(message: dict[str, Any], where: str) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        error = await failure(manager, messages=[message], prompt=None)
        assert not server.completions, "nothing is sent upstream"
    assert type(error) is InvalidRequestError
    assert error.provider == "cl"
    assert where in str(error)


# -- answers ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tool_use_complete() -> None:
    reply = ScriptedReply(content="", tool_calls=WEATHER_CALLS, finish_reason="tool_calls", usage=(30, 12))
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(reply)
        response = await manager.complete(prompt="Weather and time in Paris?", model=MODEL, tools=[WEATHER_TOOL])
    assert isinstance(response, CompletionResponse)
    assert response.finish_reason == "tool_calls"
    assert response.content == ""
    assert response.tokens == TokenUsage(30, 12, 42)
    assert response.tool_calls is not None
    assert [(c["id"], c["type"], c["function"]["name"]) for c in response.tool_calls] == [
        ("toolu_01weather", "function", "get_weather"),
        ("toolu_02time", "function", "get_time"),
    ]
    for got, want in zip(response.tool_calls, WEATHER_CALLS, strict=True):
        assert json.loads(got["function"]["arguments"]) == json.loads(want["function"]["arguments"])


@pytest.mark.anyio
async def test_tool_use_stream() -> None:
    reply = ScriptedReply(content="Let me check.", tool_calls=WEATHER_CALLS, finish_reason="tool_calls")
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(reply)
        events = await stream_events(manager, prompt="Weather?", tools=[WEATHER_TOOL])
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(fragments) > len(WEATHER_CALLS), "arguments arrive in several fragments"
    assert {f.index for f in fragments} == {0, 1}, "tool-call indexes count tool calls, not content blocks"
    assert [(f.id, f.name) for f in fragments if f.id] == [
        ("toolu_01weather", "get_weather"),
        ("toolu_02time", "get_time"),
    ]
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.finish_reason == "tool_calls"
    assert finish.response is not None
    assert finish.response.content == "Let me check."
    assert finish.response.tool_calls is not None
    for got, want in zip(finish.response.tool_calls, WEATHER_CALLS, strict=True):
        assert got["id"] == want["id"]
        assert json.loads(got["function"]["arguments"]) == json.loads(want["function"]["arguments"])


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("max_tokens", "length"), ("stop_sequence", "stop"), ("pause_turn", "pause_turn")],
)
async def test_stop_reasons(stop_reason: str, finish: str, stream: bool) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="cut short", finish_reason=stop_reason))
        if stream:
            last = (await stream_events(manager, stop=["END"]))[-1]
            assert isinstance(last, FinishEvent)
            assert last.response is not None
            response = last.response
        else:
            response = await manager.complete(prompt="Hi", model=MODEL, stop=["END"])
    assert response.content == "cut short"
    assert response.finish_reason == finish


@pytest.mark.anyio
async def test_stop_sequence_and_ids_are_reported() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=message(stop_reason="stop_sequence", stop_sequence="END")))
        response = await manager.complete(prompt="Hi", model=MODEL, stop=["END"])
    assert response.finish_reason == "stop"
    assert response.metadata["stop_reason"] == "stop_sequence"
    assert response.metadata["stop_sequence"] == "END"
    assert response.metadata["upstream_id"] == "msg_01abc"
    assert response.metadata["upstream_model"] == "claude-haiku-4-5-20251001"


@pytest.mark.anyio
async def test_cache_tokens_count_as_input() -> None:
    usage = {"input_tokens": 7, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 50, "output_tokens": 3}
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=message(usage=usage)))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.tokens == TokenUsage(157, 3, 160)
    assert response.cost == pytest.approx(160 * 0.001)
    assert response.metadata["cache_creation_input_tokens"] == 100
    assert response.metadata["cache_read_input_tokens"] == 50


@pytest.mark.anyio
async def test_stream_usage_from_start_and_delta() -> None:
    body = sse(
        message_start(12, cache_read_input_tokens=30),
        text_block(),
        {"type": "ping"},
        text_delta("cached "),
        text_delta("answer"),
        {"type": "content_block_stop", "index": 0},
        message_delta("end_turn", output_tokens=9),
        STOP,
    )
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE_HEADERS))
        events = await stream_events(manager)
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.response is not None
    assert finish.response.content == "cached answer"
    assert finish.response.tokens == TokenUsage(42, 9, 51)
    assert "usage_estimated" not in finish.response.metadata


@pytest.mark.anyio
async def test_answer_without_usage_is_estimated() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=message(usage=...)))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.content == "Hi there"
    assert response.tokens.output > 0
    assert response.metadata["usage_estimated"] is True


@pytest.mark.anyio
async def test_stream_without_usage_is_estimated() -> None:
    start = message_start()
    del start["message"]["usage"]
    delta = message_delta("end_turn")
    del delta["usage"]
    body = sse(start, text_block(), text_delta("no usage here"), delta, STOP)
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE_HEADERS))
        events = await stream_events(manager)
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.response is not None
    assert finish.response.metadata.get("usage_estimated") is True


@pytest.mark.anyio
async def test_stream_skips_thinking_and_unknown_events() -> None:
    body = sse(
        message_start(),
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "abc"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "some_future_event", "detail": 1},
        text_block(1),
        text_delta("visible", 1),
        message_delta("end_turn"),
        STOP,
    )
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE_HEADERS))
        events = await stream_events(manager)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["visible"]
    assert isinstance(events[-1], FinishEvent)


@pytest.mark.anyio
async def test_stream_request_answered_with_json() -> None:
    """A compatible server that ignores ``stream`` still gives a proper stream."""
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=message()))
        events = await stream_events(manager)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hi there"]
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.response is not None
    assert finish.response.tokens == TokenUsage(7, 3, 10)


@pytest.mark.anyio
async def test_stream_finished_without_message_stop_is_accepted() -> None:
    body = sse(message_start(), text_block(), text_delta("done"), message_delta("max_tokens"))
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE_HEADERS))
        events = await stream_events(manager)
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.finish_reason == "length"


@pytest.mark.anyio
async def test_stream_that_ends_without_finishing() -> None:
    body = sse(message_start(), text_block(), text_delta("never "), text_delta("finished"))
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE_HEADERS))
        events = await stream_events(manager)
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert type(error.error) is ServerError
    assert error.partial == "never finished"
    assert "message_stop" in str(error.error)


@pytest.mark.anyio
async def test_stream_with_an_impossible_tool_delta() -> None:
    bad = {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{"}}
    body = sse(message_start(), text_block(), bad, message_delta("end_turn"), STOP)
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE_HEADERS))
        error = await failure(manager, stream=True)
    assert type(error) is ServerError
    assert "not a tool_use block" in str(error)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("status", "error_type", "message", "expected"),
    [
        (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit", RateLimitedError),
        (529, "overloaded_error", "Overloaded", OverloadedError),
        (401, "authentication_error", "invalid x-api-key", AuthenticationError),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 208310 tokens > 200000 maximum",
            ContextLengthExceededError,
        ),
        (
            400,
            "invalid_request_error",
            "input length and `max_tokens` exceed context limit: 199759 + 8192 > 200000, decrease input length",
            ContextLengthExceededError,
        ),
        (400, "invalid_request_error", "Output blocked by content filtering policy", ContentFilteredError),
        (400, "invalid_request_error", "messages: text content blocks must be non-empty", InvalidRequestError),
        (
            403,
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
            PermissionDeniedError,
        ),
        (402, "billing_error", "Your credit balance is too low to access the Anthropic API.", PermissionDeniedError),
        (404, "not_found_error", "model: claude-nonexistent", NotFoundError),
        (413, "request_too_large", "Request exceeds the maximum allowed number of bytes.", ContextLengthExceededError),
        (500, "api_error", "Internal server error", ServerError),
    ],
    ids=[
        "rate-limit",
        "overloaded",
        "auth",
        "prompt-too-long",
        "context-limit",
        "content-filter",
        "invalid",
        "permission",
        "billing",
        "not-found",
        "too-large",
        "api-error",
    ],
)
async def test_anthropic_errors(
    status: int, error_type: str, message: str, expected: type[SwarmgateError], stream: bool
) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(status, message, type=error_type, headers={"retry-after": "3"}))
        error = await failure(manager, stream=stream)
    assert type(error) is expected, f"{status} {error_type} gave {type(error).__name__}: {error}"
    assert error.upstream_status == status
    assert error.provider == "cl"
    assert message in str(error)
    assert f"[{error_type}]" in str(error)
    assert "request_id: req_fake" in str(error)
    if expected is RateLimitedError:
        assert error.retry_after == pytest.approx(3.0)


@pytest.mark.anyio
async def test_overloaded_529_default_body() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(529))
        error = await failure(manager)
    assert type(error) is OverloadedError
    assert error.retryable
    assert "Overloaded [overloaded_error]" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_refusal_is_content_filtered(stream: bool) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="I can't help with that request.", finish_reason="refusal"))
        error = await failure(manager, stream=stream)
    assert type(error) is ContentFilteredError
    assert not error.failover, "a refusal is not retried elsewhere by default"
    assert "stop_reason: refusal" in str(error)
    assert "I can't help with that request." in str(error)


@pytest.mark.anyio
async def test_refusal_with_stop_details() -> None:
    details = {"type": "refusal", "category": "cyber", "explanation": "This request may facilitate an attack."}
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=message(stop_reason="refusal", stop_details=details, content=[])))
        error = await failure(manager)
    assert type(error) is ContentFilteredError
    assert "category cyber" in str(error)
    assert "may facilitate an attack" in str(error)


@pytest.mark.anyio
async def test_refusal_mid_stream_keeps_the_partial_text() -> None:
    body = sse(message_start(), text_block(), text_delta("Sure, here is "), message_delta("refusal"), STOP)
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE_HEADERS))
        events = await stream_events(manager)
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert type(error.error) is ContentFilteredError
    assert error.partial == "Sure, here is "


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("error_type", "message", "expected"),
    [
        ("overloaded_error", "Overloaded", OverloadedError),
        ("rate_limit_error", "Rate limited", RateLimitedError),
        ("api_error", "Internal server error", ServerError),
        ("invalid_request_error", "Output blocked by content filtering policy", ContentFilteredError),
        ("invalid_request_error", "Invalid request", InvalidRequestError),
    ],
)
async def test_error_event_mid_stream(error_type: str, message: str, expected: type[SwarmgateError]) -> None:
    error_event = {"type": "error", "error": {"type": error_type, "message": message}}
    body = sse(message_start(), text_block(), text_delta("partial "), error_event)
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE_HEADERS))
        events = await stream_events(manager)
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert type(error.error) is expected
    assert error.partial == "partial "
    assert message in str(error.error)
    assert "error event in stream" in str(error.error)


@pytest.mark.anyio
async def test_error_event_before_output_fails_over() -> None:
    body = sse(message_start(), {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE_HEADERS))
        error = await failure(manager, stream=True)
    assert type(error) is OverloadedError
    assert error.upstream_status is None


@pytest.mark.anyio
async def test_non_json_error_body() -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1>\n<p>cloudflare</p></body></html>"
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(
            ScriptedReply(status=502, body=html, headers={"content-type": "text/html", "request-id": "req_9"})
        )
        error = await failure(manager)
    assert type(error) is ServerError
    assert "502 Bad Gateway" in str(error)
    assert "request_id: req_9" in str(error)
    assert error.upstream_status == 502


@pytest.mark.anyio
async def test_answer_that_is_not_a_message() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=b'{"id": "msg_1", "content": "just a string"}'))
        error = await failure(manager)
    assert type(error) is ServerError
    assert "not a message" in str(error)


@pytest.mark.anyio
async def test_key_scrubbed_from_errors() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=f"oops {KEY}".encode()))
        server.enqueue(ScriptedReply.error(403, f"key {KEY} may not use this model", type="permission_error"))
        malformed = await failure(manager)
        denied = await failure(manager)
    assert type(malformed) is ServerError
    assert type(denied) is PermissionDeniedError
    for error in (malformed, denied):
        assert KEY not in str(error)
        assert "***" in str(error)


# -- health -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_health_lists_models_with_the_key_headers() -> None:
    async with serve() as server, manager_for(server.url, anthropicVersion="2024-01-01") as manager:
        status = (await manager.check_health("cl"))["cl"]
        probe = server.requests[-1]
    assert status.healthy
    assert "2 models" in status.detail
    assert (probe.method, probe.path) == ("GET", "/v1/models")
    assert probe.headers["x-api-key"] == KEY
    assert probe.headers["anthropic-version"] == "2024-01-01"


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "word"), [(401, "invalid x-api-key"), (529, "Overloaded")])
async def test_health_unhealthy_on_error_status(status: int, word: str) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.models_reply = ScriptedReply.error(status)
        result = (await manager.check_health("cl"))["cl"]
    assert not result.healthy
    assert f"HTTP {status}" in result.detail
    assert word in result.detail


@pytest.mark.anyio
async def test_health_times_out() -> None:
    async with serve() as server, manager_for(server.url, timeout=200) as manager:
        server.models_reply = ScriptedReply(delay=2.0)
        result = (await manager.check_health("cl"))["cl"]
    assert not result.healthy
    assert result.latency is not None
    assert result.latency < 1000


# -- configuration and lifecycle ----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("anthropicVersoin", "2023-06-01", "unknown key"),
        ("defaultMaxTokens", "4096", "expected an integer"),
        ("defaultMaxTokens", 0, "must be a positive integer"),
        ("anthropicVersion", " ", "must not be empty"),
        ("anthropicBeta", ["a", "b"], "expected a string"),
    ],
)
async def test_bad_settings_are_config_errors(setting: str, value: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        async with manager_for("http://127.0.0.1:9/v1", **{setting: value}):
            pass
    assert f"providers.cl.{setting}" in str(info.value)
    assert problem in str(info.value)


@pytest.mark.anyio
async def test_without_key_and_with_header_overrides() -> None:
    headers = {"Authorization": "Bearer gateway-token", "Anthropic-Version": "2099-01-01"}
    async with serve() as server, manager_for(server.url, apiKey=None, headers=headers) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        request = server.completions[-1]
    assert "x-api-key" not in request.headers
    assert "anthropic-beta" not in request.headers
    assert request.headers["authorization"] == "Bearer gateway-token"
    assert request.headers["anthropic-version"] == "2099-01-01", "config headers override the defaults"


@pytest.mark.anyio
async def test_readme_config_example_is_valid() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    example = json.loads(readme.split("```json\n", 1)[1].split("```", 1)[0])
    config = load_config(example, env={"CLAUDE_API_KEY": KEY})
    async with ProviderManager(config) as manager:
        provider = manager.provider("claude")
        assert isinstance(provider, ClaudeProvider)
        assert provider.endpoint == DEFAULT_ENDPOINT
        assert provider.options == ClaudeSettings(anthropic_version="2023-06-01", default_max_tokens=4096)
        assert provider.default_headers()["x-api-key"] == KEY


def test_default_endpoint_and_settings() -> None:
    provider = ClaudeProvider("cl", ProviderConfig(type="claude"))
    assert provider.endpoint == DEFAULT_ENDPOINT == "https://api.anthropic.com/v1"
    assert provider.options == ClaudeSettings()
    assert provider.options.anthropic_version == "2023-06-01"
    assert "x-api-key" not in provider.default_headers()


class _Recorded(ClaudeProvider):
    """The driver over ``httpx.MockTransport``: the URLs are all these tests need."""

    seen: list[httpx.Request]

    def build_client(self) -> httpx.AsyncClient:
        self.seen = []

        def answer(request: httpx.Request) -> httpx.Response:
            self.seen.append(request)
            return httpx.Response(200, json={"data": [], "has_more": False, "first_id": None, "last_id": None})

        return httpx.AsyncClient(
            base_url=self.endpoint, headers=self.default_headers(), transport=httpx.MockTransport(answer)
        )


@pytest.mark.anyio
async def test_default_endpoint_is_anthropic() -> None:
    provider = _Recorded("cl", ProviderConfig(type="claude", api_key=KEY))
    await provider.start()
    try:
        status = await provider.health_check()
    finally:
        await provider.aclose()
    assert status.healthy
    assert str(provider.seen[0].url) == "https://api.anthropic.com/v1/models"
    assert provider.seen[0].headers["x-api-key"] == KEY
    assert provider.seen[0].headers["anthropic-version"] == "2023-06-01"


@pytest.mark.anyio
async def test_client_lifecycle() -> None:
    provider = ClaudeProvider("cl", ProviderConfig(type="claude"))
    with pytest.raises(RuntimeError, match="not started"):
        _ = provider.client
    await provider.start()
    client = provider.client
    await provider.aclose()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="not started"):
        _ = provider.client


@pytest.mark.anyio
async def test_a_trailing_assistant_message_is_sent_as_prefill() -> None:
    """supports_prefill: the partial answer goes last, as an assistant turn."""
    assert ClaudeProvider.supports_prefill
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(
            messages=[{"role": "user", "content": "count"}, {"role": "assistant", "content": "one two "}],
            model=MODEL,
        )
        body = sent_body(server)
    assert body["messages"][-1]["role"] == "assistant"
    assert "one two" in str(body["messages"][-1]["content"])
