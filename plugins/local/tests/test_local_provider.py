"""Ollama-specific behaviour of the ``local`` provider type (beyond the conformance suite)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from swarmgate import (
    AuthenticationError,
    ConfigError,
    ContentFilteredError,
    ContextLengthExceededError,
    FinishEvent,
    InvalidRequestError,
    Message,
    NotFoundError,
    OverloadedError,
    ProviderConfig,
    ProviderManager,
    RateLimitedError,
    ServerError,
    StreamEvent,
    SwarmgateError,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
    UsageEvent,
)
from swarmgate.testing import FakeUpstream, ScriptedReply, expect_failure
from swarmgate.testing.ollama_wire import OllamaWire
from swarmgate_local import DEFAULT_OLLAMA_ENDPOINT, DEFAULT_OPENAI_ENDPOINT, LocalProvider, LocalSettings
from swarmgate_openai import OpenAIProvider

MODEL = "llama3.2"
KEY = "ollama-proxy-0123456789abcdef"
NDJSON = {"content-type": "application/x-ndjson"}
WEATHER_CALLS: tuple[dict[str, Any], ...] = (
    {
        "id": "call_weather_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
    },
    {"id": "call_time_2", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "Europe/Paris"}'}},
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def serve() -> FakeUpstream:
    return FakeUpstream(OllamaWire(models=("llama3.2:latest", "qwen2.5:7b")))


def manager_for(url: str, **provider: Any) -> ProviderManager:
    """A manager with one ``local`` provider ``ol`` at ``url`` (loaded through its entry point)."""
    config: dict[str, Any] = {"type": "local", "endpoint": url, "timeout": 2000, "models": {MODEL: {}}}
    config.update(provider)
    config = {k: v for k, v in config.items() if v is not None}
    return ProviderManager({"providers": {"ol": config}})


async def failure(manager: ProviderManager, *, stream: bool = False, **fields: Any) -> SwarmgateError:
    return await expect_failure(manager, model=MODEL, stream=stream, **fields)


def sent_body(server: FakeUpstream) -> dict[str, Any]:
    body = server.completions[-1].json
    assert isinstance(body, dict)
    return body


def ndjson(*objects: Any) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objects)


def chunk(content: str) -> dict[str, Any]:
    return {"model": MODEL, "message": {"role": "assistant", "content": content}, "done": False}


def final(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "message": {"role": "assistant", "content": ""}, "done": True, **fields}


# -- request bodies -------------------------------------------------------------------


@pytest.mark.anyio
async def test_sampling_settings_go_into_options() -> None:
    settings = {"keepAlive": "10m", "options": {"num_ctx": 8192, "temperature": 0.9, "seed": 7}}
    async with serve() as server, manager_for(server.url, **settings) as manager:
        await manager.complete(prompt="Hi", model=MODEL, temperature=0.25, max_tokens=64, top_p=0.5, stop=["END"])
        body = sent_body(server)
    assert body["model"] == MODEL
    assert body["stream"] is False
    assert body["keep_alive"] == "10m"
    assert body["options"] == {
        "num_ctx": 8192,
        "seed": 7,
        "temperature": 0.25,
        "num_predict": 64,
        "top_p": 0.5,
        "stop": ["END"],
    }


@pytest.mark.anyio
async def test_model_config_defaults_are_sent() -> None:
    model = {"maxTokens": 321, "temperature": 0.1, "upstreamName": "llama3.2:3b"}
    async with serve() as server, manager_for(server.url, models={MODEL: model}) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        body = sent_body(server)
    assert body["model"] == "llama3.2:3b"
    assert body["options"] == {"temperature": pytest.approx(0.1), "num_predict": 321}


@pytest.mark.anyio
async def test_minimal_body() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(prompt="Hi", model=MODEL, user="user-42")
        body = sent_body(server)
    assert body == {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": False}


@pytest.mark.anyio
async def test_extra_merges_into_body_and_options() -> None:
    extra = {"think": False, "options": {"seed": 11, "num_ctx": None}, "keep_alive": None}
    settings = {"keepAlive": -1, "options": {"num_ctx": 4096}}
    async with serve() as server, manager_for(server.url, **settings) as manager:
        await manager.complete(prompt="Hi", model=MODEL, extra=extra)
        body = sent_body(server)
    assert body["think"] is False
    assert body["options"] == {"seed": 11}, "an extra option of None removes a default"
    assert "keep_alive" not in body, "an extra value of None removes the field"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "json_object"}, "json"),
        (
            {"type": "json_schema", "json_schema": {"name": "age", "schema": {"type": "object", "required": ["age"]}}},
            {"type": "object", "required": ["age"]},
        ),
        ({"type": "text"}, None),
    ],
)
async def test_response_format_becomes_format(response_format: dict[str, Any], expected: Any) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(prompt="Age?", model=MODEL, response_format=response_format)
        body = sent_body(server)
    assert body.get("format") == expected


@pytest.mark.anyio
async def test_unknown_response_format_is_invalid() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        error = await failure(manager, response_format={"type": "xml"})
        assert not server.completions, "nothing is sent"
    assert type(error) is InvalidRequestError
    assert "'xml'" in str(error)


@pytest.mark.anyio
async def test_tools_pass_through_unless_tool_choice_none() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(prompt="Weather?", model=MODEL, tools=[WEATHER_TOOL], tool_choice="auto")
        with_tools = sent_body(server)
        await manager.complete(prompt="Weather?", model=MODEL, tools=[WEATHER_TOOL], tool_choice="none")
        without = sent_body(server)
    assert with_tools["tools"] == [WEATHER_TOOL]
    assert "tool_choice" not in with_tools
    assert "tools" not in without


@pytest.mark.anyio
async def test_messages_in_ollama_form() -> None:
    messages = [
        Message("developer", "Answer in French."),
        Message(
            "user",
            [
                {"type": "text", "text": "What is in this picture? "},
                {"type": "text", "text": "And the weather?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
            ],
            name="alice",
        ),
        Message("assistant", None, tool_calls=(WEATHER_CALLS[0],)),
        Message("tool", '{"temp": 21}', tool_call_id="call_weather_1"),
        Message("tool", "12:00", name="get_time"),
    ]
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(messages=messages, model=MODEL)
        body = sent_body(server)
    assert body["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "What is in this picture? And the weather?", "images": [PIXEL]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_weather_1",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
                }
            ],
        },
        {"role": "tool", "content": '{"temp": 21}', "tool_name": "get_weather", "tool_call_id": "call_weather_1"},
        {"role": "tool", "content": "12:00", "tool_name": "get_time"},
    ]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "word"),
    [
        ([{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}], "data:"),
        ([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}], "'input_audio'"),
    ],
    ids=["image-link", "audio"],
)
async def test_content_ollama_cannot_take_is_invalid(content: list[dict[str, Any]], word: str) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        error = await failure(manager, prompt=None, messages=[{"role": "user", "content": content}])
        assert not server.completions
    assert type(error) is InvalidRequestError
    assert word in str(error)


@pytest.mark.anyio
async def test_tool_arguments_must_be_an_object() -> None:
    bad_call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}
    messages = [Message("user", "go"), Message("assistant", None, tool_calls=(bad_call,))]
    async with serve() as server, manager_for(server.url) as manager:
        error = await failure(manager, prompt=None, messages=messages)
    assert type(error) is InvalidRequestError
    assert "'call_1'" in str(error)


# -- headers -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_no_authorization_without_key() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        _ = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
        complete, streamed = server.completions
    assert "authorization" not in complete.headers
    assert complete.headers["user-agent"].startswith("swarmgate-local/")
    assert complete.headers["content-type"] == "application/json"
    assert streamed.headers["accept"] == "application/x-ndjson"


@pytest.mark.anyio
async def test_key_and_headers() -> None:
    headers = {"X-Trace": "abc", "User-Agent": "my-app/1.0"}
    async with serve() as server, manager_for(server.url, apiKey=KEY, headers=headers) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        await manager.check_health("ol")
        completion, listing = server.requests
    for request in (completion, listing):
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["x-trace"] == "abc"
        assert request.headers["user-agent"] == "my-app/1.0", "config headers override the defaults"


# -- answers ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tool_calls_complete() -> None:
    reply = ScriptedReply(content="", tool_calls=WEATHER_CALLS, finish_reason="tool_calls", usage=(30, 12))
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(reply)
        response = await manager.complete(prompt="Weather and time in Paris?", model=MODEL, tools=[WEATHER_TOOL])
    assert response.finish_reason == "tool_calls", "Ollama says 'stop'; OpenAI clients expect 'tool_calls'"
    assert response.content == ""
    assert response.tokens == TokenUsage(30, 12, 42)
    calls = response.tool_calls
    assert calls is not None
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Paris", "unit": "celsius"},
        {"tz": "Europe/Paris"},
    ]
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in calls)
    assert len({c["id"] for c in calls}) == 2, "each call gets its own id"


@pytest.mark.anyio
async def test_tool_calls_stream() -> None:
    reply = ScriptedReply(content="Let me check.", tool_calls=WEATHER_CALLS, finish_reason="tool_calls")
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(reply)
        events = [e async for e in manager.stream(prompt="Weather?", model=MODEL, tools=[WEATHER_TOOL])]
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [f.index for f in fragments] == [0, 1]
    assert [f.name for f in fragments] == ["get_weather", "get_time"]
    assert all(f.id and f.id.startswith("call_") for f in fragments)
    assert json.loads(fragments[0].arguments) == {"city": "Paris", "unit": "celsius"}
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.finish_reason == "tool_calls"
    assert finish.response is not None
    assert finish.response.content == "Let me check."
    assert finish.response.tool_calls is not None
    assert [c["function"]["name"] for c in finish.response.tool_calls] == ["get_weather", "get_time"]


@pytest.mark.anyio
async def test_tool_call_ids_from_the_upstream_are_kept() -> None:
    tool_call = {"id": "call_upstream_7", "function": {"index": 0, "name": "get_time", "arguments": {}}}
    body = final(message={"role": "assistant", "content": "", "tool_calls": [tool_call]}, done_reason="stop")
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        response = await manager.complete(prompt="Time?", model=MODEL)
    assert response.tool_calls == (
        {"id": "call_upstream_7", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    )


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_length_finish(stream: bool) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="cut short", finish_reason="length"))
        if stream:
            events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
            assert isinstance(events[-1], FinishEvent)
            reason = events[-1].finish_reason
        else:
            reason = (await manager.complete(prompt="Hi", model=MODEL)).finish_reason
    assert reason == "length"


@pytest.mark.anyio
async def test_answer_without_counts_is_estimated() -> None:
    body = final(message={"role": "assistant", "content": "four words right here"}, done_reason="stop")
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.content == "four words right here"
    assert response.tokens.output > 0
    assert response.metadata["usage_estimated"] is True


@pytest.mark.anyio
async def test_stream_without_counts_is_estimated() -> None:
    body = ndjson(chunk("no "), chunk("counts"), final(done_reason="stop"))
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=NDJSON))
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.response is not None
    assert finish.response.content == "no counts"
    assert finish.response.metadata.get("usage_estimated") is True


@pytest.mark.anyio
async def test_cached_prompt_counts_zero_input() -> None:
    """Ollama leaves out prompt_eval_count when the prompt came from its cache."""
    body = final(message={"role": "assistant", "content": "cached"}, done_reason="stop", eval_count=3)
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.tokens == TokenUsage(0, 3, 3)
    assert "usage_estimated" not in response.metadata


@pytest.mark.anyio
async def test_upstream_model_and_thinking_are_reported() -> None:
    message = {"role": "assistant", "content": "42", "thinking": "six times seven"}
    body = final(model="qwen3:8b", message=message, done_reason="stop", prompt_eval_count=5, eval_count=1)
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        response = await manager.complete(prompt="6*7?", model=MODEL)
    assert response.content == "42"
    assert response.metadata["upstream_model"] == "qwen3:8b"
    assert response.metadata["thinking"] == "six times seven"


@pytest.mark.anyio
async def test_stream_request_answered_with_json() -> None:
    body = final(message={"role": "assistant", "content": "whole answer"}, prompt_eval_count=3, eval_count=2)
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["whole answer"]
    usage = next(e for e in events if isinstance(e, UsageEvent))
    assert usage.tokens == TokenUsage(3, 2, 5)


@pytest.mark.anyio
async def test_stream_that_ends_without_done() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=ndjson(chunk("never "), chunk("finished")), headers=NDJSON))
        events: list[StreamEvent] = [e async for e in manager.stream(prompt="Hi", model=MODEL, errors="event")]
    error = getattr(events[-1], "error", None)
    assert type(error) is ServerError
    assert '"done"' in str(error)
    assert getattr(events[-1], "partial", None) == "never finished"


@pytest.mark.anyio
async def test_complete_answer_not_done_is_a_server_error() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(chunk("half")).encode()))
        error = await failure(manager)
    assert type(error) is ServerError
    assert "not finished" in str(error)


@pytest.mark.anyio
async def test_answer_of_another_shape_is_a_server_error() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=b'{"response": "this is /api/generate", "done": true}'))
        error = await failure(manager)
    assert type(error) is ServerError
    assert "not an Ollama chat response" in str(error)


# -- errors ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_rate_limited(stream: bool) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(429, headers={"Retry-After": "3"}))
        error = await failure(manager, stream=stream)
    assert type(error) is RateLimitedError
    assert error.retry_after == pytest.approx(3.0)
    assert "too many requests, please try again later" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_server_busy_is_overloaded(stream: bool) -> None:
    """Ollama's 503 when OLLAMA_MAX_QUEUE requests are already waiting."""
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(503))
        error = await failure(manager, stream=stream)
    assert type(error) is OverloadedError
    assert error.retryable
    assert "server busy, please try again.  maximum pending requests exceeded" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_unauthorized(stream: bool) -> None:
    async with serve() as server, manager_for(server.url, apiKey=KEY) as manager:
        server.enqueue(ScriptedReply.error(401))
        error = await failure(manager, stream=stream)
    assert type(error) is AuthenticationError
    assert "HTTP 401: unauthorized" in str(error)


@pytest.mark.anyio
async def test_proxy_error_body_in_openai_form() -> None:
    body = b'{"error": {"message": "Invalid bearer token", "type": "auth_error"}}'
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(status=401, body=body))
        error = await failure(manager)
    assert type(error) is AuthenticationError
    assert "Invalid bearer token" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("status", "text"),
    [
        (400, "the input length exceeds the context length (4096 tokens)"),
        (500, "input exceeds context length: prompt=5000 limit=4096"),
        (413, "request too large"),
    ],
)
async def test_context_length_exceeded(status: int, text: str, stream: bool) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(status, text))
        error = await failure(manager, stream=stream)
    assert type(error) is ContextLengthExceededError
    assert error.failover, "a model with a larger window may still take it"
    assert error.upstream_status == status
    assert text in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    "text",
    [
        "Request blocked by content filter: violence",
        "prompt flagged by the moderation endpoint",
        "This request violates our content policy",
    ],
)
async def test_content_filter_rejection(text: str, stream: bool) -> None:
    """Ollama has no filter of its own; a guardrail proxy in front of it does."""
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(400, text))
        error = await failure(manager, stream=stream)
    assert type(error) is ContentFilteredError
    assert not error.failover
    assert text in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_content_filter_done_reason(stream: bool) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="The beginning of", finish_reason="content_filter"))
        error = await failure(manager, stream=stream)
    assert type(error) is ContentFilteredError
    assert "content_filter" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_model_not_pulled(stream: bool) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(404))
        error = await failure(manager, stream=stream)
    assert type(error) is NotFoundError
    assert error.failover
    assert 'model "llama3.2" not found, try pulling it first' in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("llama runner process has terminated: signal: killed", ServerError),
        ("server busy, please try again.  maximum pending requests exceeded", OverloadedError),
        ("rate limit exceeded for this model", RateLimitedError),
        ("the input length exceeds the context length", ContextLengthExceededError),
        ("response blocked by the safety system", ContentFilteredError),
    ],
)
async def test_error_line_mid_stream(text: str, expected: type[SwarmgateError]) -> None:
    body = ndjson(chunk("partial "), {"error": text})
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=NDJSON))
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL, errors="event")]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["partial "]
    error = getattr(events[-1], "error", None)
    assert type(error) is expected
    assert getattr(events[-1], "partial", None) == "partial "
    assert f"error in stream: {text}" in str(error)


@pytest.mark.anyio
async def test_non_json_error_body() -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>"
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(status=502, body=html, headers={"content-type": "text/html"}))
        error = await failure(manager)
    assert type(error) is ServerError
    assert "502 Bad Gateway" in str(error)
    assert error.upstream_status == 502


@pytest.mark.anyio
async def test_key_scrubbed_from_errors() -> None:
    async with serve() as server, manager_for(server.url, apiKey=KEY) as manager:
        server.enqueue(ScriptedReply(body=f"oops {KEY}".encode()))
        malformed = await failure(manager)
        server.enqueue(ScriptedReply(body=ndjson(chunk("a "), {"error": f"bad token {KEY}"}), headers=NDJSON))
        in_stream = await failure(manager, stream=True)
    assert type(malformed) is ServerError
    assert type(in_stream) is ServerError
    for error in (malformed, in_stream):
        assert KEY not in str(error)
        assert KEY not in repr(error.to_dict())


# -- health ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_health_lists_models_and_names_missing_ones() -> None:
    models = {MODEL: {}, "mistral": {}, "qwen": {"upstreamName": "qwen2.5:7b"}}
    async with serve() as server, manager_for(server.url, models=models) as manager:
        status = (await manager.check_health("ol"))["ol"]
        probe = server.requests[-1]
    assert status.healthy
    assert status.detail == "GET /api/tags: 2 models; not pulled: mistral"
    assert (probe.method, probe.path) == ("GET", "/api/tags")


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "word"), [(401, "unauthorized"), (500, "llama runner process")])
async def test_health_unhealthy_on_error_status(status: int, word: str) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.models_reply = ScriptedReply.error(status)
        result = (await manager.check_health("ol"))["ol"]
    assert not result.healthy
    assert f"HTTP {status}" in result.detail
    assert word in result.detail


@pytest.mark.anyio
async def test_health_odd_listing_is_still_alive() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.models_reply = ScriptedReply(body=b"Ollama is running")
        result = (await manager.check_health("ol"))["ol"]
    assert result.healthy
    assert "not a model listing" in result.detail


@pytest.mark.anyio
async def test_health_times_out() -> None:
    async with serve() as server, manager_for(server.url, timeout=200) as manager:
        server.models_reply = ScriptedReply(delay=2.0)
        result = (await manager.check_health("ol"))["ol"]
    assert not result.healthy
    assert result.latency is not None
    assert result.latency < 1000


# -- configuration and lifecycle -------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("settings", "path"),
    [
        ({"api": "lmstudio"}, "providers.ol.api"),
        ({"keepAlive": True}, "providers.ol.keepAlive"),
        ({"api": "openai", "keepAlive": "5m"}, "providers.ol.keepAlive"),
        ({"api": "openai", "options": {"num_ctx": 4096}}, "providers.ol.options"),
        ({"streamUsage": False}, "providers.ol.streamUsage"),
        ({"options": ["num_ctx"]}, "providers.ol.options"),
        ({"keepalive": "5m"}, "providers.ol.keepalive"),
    ],
)
async def test_bad_settings_are_config_errors(settings: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        async with manager_for("http://127.0.0.1:9", **settings):
            pass
    assert path in str(info.value)


def test_defaults() -> None:
    native = LocalProvider("ol", ProviderConfig(type="local"))
    assert native.endpoint == DEFAULT_OLLAMA_ENDPOINT == "http://127.0.0.1:11434"
    assert native.options == LocalSettings()
    assert native.compat is None
    assert "authorization" not in native.default_headers()
    compat = LocalProvider("vl", ProviderConfig(type="local"), LocalSettings(api="openai"))
    assert compat.endpoint == DEFAULT_OPENAI_ENDPOINT == "http://127.0.0.1:8000/v1"
    assert isinstance(compat.compat, OpenAIProvider)
    assert compat.compat.endpoint == DEFAULT_OPENAI_ENDPOINT
    assert compat.compat.options.stream_usage is True


@pytest.mark.parametrize(
    "endpoint",
    ["http://gpu-box:11434", "http://gpu-box:11434/", "http://gpu-box:11434/api", "http://gpu-box:11434/api/"],
)
def test_endpoint_may_name_the_api_path(endpoint: str) -> None:
    provider = LocalProvider("ol", ProviderConfig(type="local", endpoint=endpoint))
    assert provider.endpoint == "http://gpu-box:11434"


@pytest.mark.anyio
async def test_client_lifecycle() -> None:
    provider = LocalProvider("ol", ProviderConfig(type="local"))
    with pytest.raises(RuntimeError, match="not started"):
        _ = provider.client
    await provider.start()
    client = provider.client
    await provider.aclose()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="not started"):
        _ = provider.client
    compat = LocalProvider("vl", ProviderConfig(type="local"), LocalSettings(api="openai"))
    await compat.start()
    try:
        with pytest.raises(RuntimeError, match=r"compat\.client"):
            _ = compat.client
        assert compat.compat is not None
        assert not compat.compat.client.is_closed
    finally:
        await compat.aclose()


@pytest.mark.anyio
async def test_readme_config_example_builds() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```json\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    async with ProviderManager(json.loads(block.group(1))) as manager:
        providers = {name: manager.provider(name) for name in manager.providers()}
    assert {name: type(p) for name, p in providers.items()} == dict.fromkeys(providers, LocalProvider)
    ollama = providers["ollama"]
    assert isinstance(ollama, LocalProvider)
    assert ollama.options == LocalSettings(keep_alive="30m", options={"num_ctx": 8192})
    assert [p.compat is not None for p in providers.values() if isinstance(p, LocalProvider)] == [False, True, True]
