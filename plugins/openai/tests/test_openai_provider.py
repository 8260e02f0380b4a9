"""OpenAI-specific behaviour of the ``openai`` provider type (beyond the conformance suite)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from swarmgate import (
    CompletionResponse,
    ConfigError,
    ContentFilteredError,
    ContextLengthExceededError,
    FinishEvent,
    Message,
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
    UsageEvent,
)
from swarmgate.testing import FakeUpstream, ScriptedReply, expect_failure
from swarmgate_openai import DEFAULT_ENDPOINT, OpenAIProvider, OpenAISettings

MODEL = "gpt-4o-mini"
KEY = "sk-test-0123456789abcdef"
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


def manager_for(url: str, **provider: Any) -> ProviderManager:
    """A manager with one ``openai`` provider ``oa`` at ``url`` (loaded through its entry point)."""
    config: dict[str, Any] = {
        "type": "openai",
        "endpoint": url,
        "apiKey": KEY,
        "timeout": 2000,
        "models": {MODEL: {"costPerToken": 0.001}},
    }
    config.update(provider)
    config = {k: v for k, v in config.items() if v is not None}
    return ProviderManager({"providers": {"oa": config}})


async def failure(manager: ProviderManager, *, stream: bool = False, **fields: Any) -> SwarmgateError:
    return await expect_failure(manager, model=MODEL, stream=stream, **fields)


def sent_body(server: FakeUpstream) -> dict[str, Any]:
    body = server.completions[-1].json
    assert isinstance(body, dict)
    return body


# -- request bodies -------------------------------------------------------------------


@pytest.mark.anyio
async def test_optional_fields_and_extra_pass_through() -> None:
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        await manager.complete(
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            model=MODEL,
            max_tokens=100,
            tools=[WEATHER_TOOL],
            tool_choice="auto",
            response_format={"type": "json_object"},
            user="user-42",
            extra={"seed": 7, "logprobs": True, "max_tokens": None, "max_completion_tokens": 256},
        )
        body = sent_body(server)
    assert body["model"] == MODEL
    assert body["messages"] == [{"role": "user", "content": "What is the weather in Paris?"}]
    assert body["tools"] == [WEATHER_TOOL]
    assert body["tool_choice"] == "auto"
    assert body["response_format"] == {"type": "json_object"}
    assert body["user"] == "user-42"
    assert body["seed"] == 7
    assert body["logprobs"] is True
    assert "max_tokens" not in body, "an extra value of None removes the field"
    assert body["max_completion_tokens"] == 256
    assert "stream" not in body
    assert "temperature" not in body, "unset fields are not sent"


@pytest.mark.anyio
async def test_model_config_defaults_are_sent() -> None:
    model = {"costPerToken": 0.001, "maxTokens": 321, "temperature": 0.1}
    async with FakeUpstream() as server, manager_for(server.url, models={MODEL: model}) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        body = sent_body(server)
    assert body["max_tokens"] == 321
    assert body["temperature"] == pytest.approx(0.1)


@pytest.mark.anyio
async def test_stream_asks_for_usage() -> None:
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        _ = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
        body = sent_body(server)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.anyio
async def test_stream_without_usage_is_estimated() -> None:
    async with FakeUpstream() as server, manager_for(server.url, streamUsage=False) as manager:
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
        body = sent_body(server)
    assert "stream_options" not in body
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.response is not None
    assert finish.response.content == server.default.content
    assert finish.response.metadata.get("usage_estimated") is True


@pytest.mark.anyio
async def test_assistant_tool_messages_round_trip() -> None:
    messages = [
        Message("user", "Weather in Paris?"),
        Message("assistant", None, tool_calls=(WEATHER_CALLS[0],)),
        Message("tool", '{"temp": 21}', tool_call_id="call_weather_1"),
    ]
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        await manager.complete(messages=messages, model=MODEL)
        body = sent_body(server)
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALLS[0]]},
        {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_weather_1"},
    ]


# -- headers -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_headers_with_key_and_settings() -> None:
    async with (
        FakeUpstream() as server,
        manager_for(
            server.url,
            organization="org-123",
            project="proj_456",
            headers={"X-Trace": "abc", "User-Agent": "my-app/1.0"},
        ) as manager,
    ):
        await manager.complete(prompt="Hi", model=MODEL)
        await manager.check_health("oa")
        completion, listing = server.requests
    for request in (completion, listing):
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["openai-organization"] == "org-123"
        assert request.headers["openai-project"] == "proj_456"
        assert request.headers["x-trace"] == "abc"
        assert request.headers["user-agent"] == "my-app/1.0", "config headers override the defaults"
    assert completion.headers["content-type"] == "application/json"


@pytest.mark.anyio
async def test_no_authorization_without_key() -> None:
    async with FakeUpstream() as server, manager_for(server.url, apiKey=None) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        request = server.completions[-1]
    assert "authorization" not in request.headers
    assert "openai-organization" not in request.headers
    assert request.headers["user-agent"].startswith("swarmgate-openai/")


@pytest.mark.anyio
async def test_config_headers_may_replace_authorization() -> None:
    headers = {"Authorization": "Token gateway-credential"}
    async with FakeUpstream() as server, manager_for(server.url, headers=headers) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        request = server.completions[-1]
    assert request.headers["authorization"] == "Token gateway-credential"


# -- answers ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tool_calls_complete() -> None:
    reply = ScriptedReply(content="", tool_calls=WEATHER_CALLS, finish_reason="tool_calls", usage=(30, 12))
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(reply)
        response = await manager.complete(prompt="Weather and time in Paris?", model=MODEL, tools=[WEATHER_TOOL])
    assert isinstance(response, CompletionResponse)
    assert response.tool_calls == WEATHER_CALLS
    assert response.finish_reason == "tool_calls"
    assert response.content == ""
    assert response.tokens == TokenUsage(30, 12, 42)


@pytest.mark.anyio
async def test_tool_calls_stream() -> None:
    reply = ScriptedReply(content="Let me check.", tool_calls=WEATHER_CALLS, finish_reason="tool_calls")
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(reply)
        events = [e async for e in manager.stream(prompt="Weather?", model=MODEL, tools=[WEATHER_TOOL])]
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(fragments) > len(WEATHER_CALLS), "arguments arrive in several fragments"
    assert {f.index for f in fragments} == {0, 1}
    assert [f.id for f in fragments if f.id] == ["call_weather_1", "call_time_2"]
    assert "".join(f.arguments for f in fragments if f.index == 0) == WEATHER_CALLS[0]["function"]["arguments"]
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.finish_reason == "tool_calls"
    assert finish.response is not None
    assert finish.response.content == "Let me check."
    assert finish.response.tool_calls == WEATHER_CALLS


@pytest.mark.anyio
async def test_upstream_model_and_refusal_are_reported() -> None:
    body = {
        "id": "chatcmpl-xyz",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
    }
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.content == ""
    assert response.metadata["upstream_model"] == "gpt-4o-mini-2024-07-18"
    assert response.metadata["upstream_id"] == "chatcmpl-xyz"
    assert response.metadata["refusal"] == "I can't help with that."
    assert response.tokens == TokenUsage(5, 6, 11)


@pytest.mark.anyio
async def test_answer_without_usage_is_estimated() -> None:
    body = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "four chars"}, "finish_reason": "stop"}]
    }
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.content == "four chars"
    assert response.tokens.output > 0
    assert response.metadata["usage_estimated"] is True


@pytest.mark.anyio
async def test_stream_request_answered_with_json() -> None:
    """A compatible server that ignores ``stream`` still gives a proper stream."""
    body = {
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole answer"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["whole answer"]
    usage = next(e for e in events if isinstance(e, UsageEvent))
    assert usage.tokens == TokenUsage(3, 2, 5)


def sse(*chunks: Any) -> bytes:
    return b"".join(b"data: " + (c if isinstance(c, bytes) else json.dumps(c).encode()) + b"\n\n" for c in chunks)


def delta(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    d = {} if content is None else {"content": content}
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


SSE_HEADERS = {"content-type": "text/event-stream"}


@pytest.mark.anyio
async def test_stream_error_object_mid_stream() -> None:
    body = sse(delta("partial "), {"error": {"message": "The server had an error", "type": "server_error"}})
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE_HEADERS))
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL, errors="event")]
    error = events[-1]
    assert not isinstance(error, FinishEvent)
    assert getattr(error, "partial", None) == "partial "
    assert type(getattr(error, "error", None)) is ServerError
    assert "The server had an error" in str(getattr(error, "error", ""))


@pytest.mark.anyio
async def test_stream_rate_limit_object_mid_stream() -> None:
    body = sse({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE_HEADERS))
        error = await failure(manager, stream=True)
    assert type(error) is RateLimitedError


@pytest.mark.anyio
async def test_stream_that_ends_without_finishing() -> None:
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=sse(delta("never "), delta("finished")), headers=SSE_HEADERS))
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL, errors="event")]
    error = getattr(events[-1], "error", None)
    assert type(error) is ServerError
    assert "[DONE]" in str(error)


@pytest.mark.anyio
async def test_stream_finish_without_done_is_accepted() -> None:
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=sse(delta("done "), delta("enough", "length")), headers=SSE_HEADERS))
        events: list[StreamEvent] = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.finish_reason == "length"
    assert finish.response is not None
    assert finish.response.content == "done enough"


# -- errors ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_context_length_exceeded(stream: bool) -> None:
    message = "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens."
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(400, message, code="context_length_exceeded"))
        error = await failure(manager, stream=stream)
    assert type(error) is ContextLengthExceededError
    assert error.upstream_status == 400
    assert "maximum context length" in str(error)


@pytest.mark.anyio
async def test_context_length_recognised_by_message() -> None:
    message = "This model's maximum context length is 4096 tokens."
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(400, message))
        error = await failure(manager)
    assert type(error) is ContextLengthExceededError


@pytest.mark.anyio
@pytest.mark.parametrize("code", ["content_filter", "content_policy_violation"])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_content_filter_error(code: str, stream: bool) -> None:
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(400, "Your request was rejected by the safety system.", code=code))
        error = await failure(manager, stream=stream)
    assert type(error) is ContentFilteredError
    assert "safety system" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_content_filter_finish_reason(stream: bool) -> None:
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="The beginning of", finish_reason="content_filter"))
        error = await failure(manager, stream=stream)
    assert type(error) is ContentFilteredError


@pytest.mark.anyio
async def test_retry_after_ms() -> None:
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(429, "slow down", headers={"retry-after-ms": "1500", "retry-after": "9"}))
        error = await failure(manager)
    assert type(error) is RateLimitedError
    assert error.retry_after == pytest.approx(1.5)


@pytest.mark.anyio
async def test_insufficient_quota_is_not_a_rate_limit() -> None:
    message = "You exceeded your current quota, please check your plan and billing details."
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(429, message, type="insufficient_quota", code="insufficient_quota"))
        error = await failure(manager)
    assert type(error) is PermissionDeniedError
    assert not error.retryable
    assert "current quota" in str(error)


@pytest.mark.anyio
async def test_non_json_error_body() -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>"
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(status=502, body=html, headers={"content-type": "text/html"}))
        error = await failure(manager)
    assert type(error) is ServerError
    assert "502 Bad Gateway" in str(error)
    assert error.upstream_status == 502


@pytest.mark.anyio
async def test_key_scrubbed_from_malformed_answer() -> None:
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=f"oops {KEY}".encode()))
        error = await failure(manager)
    assert type(error) is ServerError
    assert KEY not in str(error)


# -- health ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_health_reports_models() -> None:
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        status = (await manager.check_health("oa"))["oa"]
        probe = server.requests[-1]
    assert status.healthy
    assert "2 models" in status.detail
    assert (probe.method, probe.path) == ("GET", "/v1/models")


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "word"), [(401, "Incorrect API key"), (500, "server had an error")])
async def test_health_unhealthy_on_error_status(status: int, word: str) -> None:
    async with FakeUpstream() as server, manager_for(server.url) as manager:
        server.models_reply = ScriptedReply.error(status)
        result = (await manager.check_health("oa"))["oa"]
    assert not result.healthy
    assert f"HTTP {status}" in result.detail
    assert word in result.detail


@pytest.mark.anyio
async def test_health_times_out() -> None:
    async with FakeUpstream() as server, manager_for(server.url, timeout=200) as manager:
        server.models_reply = ScriptedReply(delay=2.0)
        result = (await manager.check_health("oa"))["oa"]
    assert not result.healthy
    assert result.latency is not None
    assert result.latency < 1000


# -- configuration and lifecycle -------------------------------------------------------


@pytest.mark.anyio
async def test_unknown_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        async with manager_for("http://127.0.0.1:9/v1", organisation="org-typo"):
            pass
    assert "providers.oa.organisation" in str(info.value)


@pytest.mark.anyio
async def test_bad_setting_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        async with manager_for("http://127.0.0.1:9/v1", streamUsage="yes"):
            pass
    assert "providers.oa.streamUsage" in str(info.value)


def test_default_endpoint_and_settings() -> None:
    provider = OpenAIProvider("oa", ProviderConfig(type="openai", endpoint=None))
    assert provider.endpoint == DEFAULT_ENDPOINT == "https://api.openai.com/v1"
    assert provider.options == OpenAISettings()
    assert "authorization" not in provider.default_headers()


class _Recorded(OpenAIProvider):
    """The driver over ``httpx.MockTransport``: the URL is all this test needs."""

    seen: list[httpx.Request]

    def build_client(self) -> httpx.AsyncClient:
        self.seen = []

        def answer(request: httpx.Request) -> httpx.Response:
            self.seen.append(request)
            return httpx.Response(200, json={"object": "list", "data": []})

        return httpx.AsyncClient(
            base_url=self.endpoint, headers=self.default_headers(), transport=httpx.MockTransport(answer)
        )


@pytest.mark.anyio
async def test_default_endpoint_is_openai() -> None:
    provider = _Recorded("oa", ProviderConfig(type="openai", api_key=KEY))
    await provider.start()
    try:
        status = await provider.health_check()
    finally:
        await provider.aclose()
    assert status.healthy
    assert str(provider.seen[0].url) == "https://api.openai.com/v1/models"
    assert provider.seen[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.anyio
async def test_client_lifecycle() -> None:
    provider = OpenAIProvider("oa", ProviderConfig(type="openai"))
    with pytest.raises(RuntimeError, match="not started"):
        _ = provider.client
    await provider.start()
    client = provider.client
    await provider.aclose()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="not started"):
        _ = provider.client
