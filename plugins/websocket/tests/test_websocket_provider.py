"""The ``websocket`` provider type beyond the conformance suite: what is sent,
the handshake, how answers and failures are read, health, configuration."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from swarmgate import (
    AuthenticationError,
    CompletionResponse,
    ConfigError,
    ContentFilteredError,
    ContextLengthExceededError,
    FinishEvent,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderManager,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    StreamEvent,
    SwarmgateError,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
)
from swarmgate.testing import ScriptedReply, attempt_error, unreachable_url
from swarmgate.testing.websocket_upstream import Disconnect, FakeWebSocketUpstream, ScriptedClose

MODEL = "gpt-4o-mini"
KEY = "sk-ws-test-0123456789abcdef"
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


def manager_for(url: str | None, **provider: Any) -> ProviderManager:
    """A manager with one ``websocket`` provider ``ws`` at ``url`` (loaded
    through its entry point); ``None`` values remove a key."""
    config: dict[str, Any] = {
        "type": "websocket",
        "url": url,
        "apiKey": KEY,
        "timeout": 2000,
        "pingInterval": 0,
        "models": {MODEL: {"costPerToken": 0.001}},
    }
    config.update(provider)
    return ProviderManager({"providers": {"ws": {k: v for k, v in config.items() if v is not None}}})


async def failure(manager: ProviderManager, *, stream: bool = False, **fields: Any) -> SwarmgateError:
    """The typed error of a request that must fail."""
    fields.setdefault("prompt", "Hello?")
    try:
        if stream:
            _ = [e async for e in manager.stream(model=MODEL, **fields)]
        else:
            await manager.complete(model=MODEL, **fields)
    except SwarmgateError as exc:
        return attempt_error(exc)
    raise AssertionError("the request succeeded; an error was expected")


def sent(server: FakeWebSocketUpstream) -> Any:
    """The last request message, parsed."""
    return json.loads(server.completions[-1].body)


def lines(*messages: Any) -> bytes:
    """Raw messages for ``ScriptedReply(body=...)``: one per line."""
    return b"\n".join(m if isinstance(m, bytes) else json.dumps(m).encode() for m in messages)


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


# -- the request message ---------------------------------------------------------------


@pytest.mark.anyio
async def test_default_message_carries_optional_fields_and_extra() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        await manager.complete(
            messages=[{"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]}],
            model=MODEL,
            max_tokens=100,
            tools=[WEATHER_TOOL],
            tool_choice="auto",
            response_format={"type": "json_object"},
            user="user-42",
            extra={"seed": 7, "max_tokens": None, "max_completion_tokens": 256},
        )
        body = sent(server)
    assert body["model"] == MODEL
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]}]
    assert body["tools"] == [WEATHER_TOOL]
    assert body["tool_choice"] == "auto"
    assert body["response_format"] == {"type": "json_object"}
    assert body["user"] == "user-42"
    assert body["seed"] == 7
    assert "max_tokens" not in body, "an extra value of None removes the field"
    assert body["max_completion_tokens"] == 256
    assert body["stream"] is False
    assert body["stream_options"] == {"include_usage": True}
    assert "temperature" not in body, "unset fields are not sent"


@pytest.mark.anyio
async def test_a_message_that_cannot_be_encoded_is_an_invalid_request() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        error = await failure(manager, extra={"seed": object()})
        assert not server.handshakes, "nothing is sent"
    assert type(error) is InvalidRequestError
    assert "cannot be encoded as JSON" in str(error)


@pytest.mark.anyio
async def test_model_config_defaults_are_sent() -> None:
    model = {"costPerToken": 0.001, "maxTokens": 321, "temperature": 0.1}
    async with FakeWebSocketUpstream() as server, manager_for(server.url, models={MODEL: model}) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        body = sent(server)
    assert body["max_tokens"] == 321
    assert body["temperature"] == pytest.approx(0.1)


@pytest.mark.anyio
async def test_custom_message_template() -> None:
    template = {
        "header": {"request_id": "{{requestId}}", "key": "{{apiKey}}"},
        "input": {"text": "{{prompt}}", "instructions": "{{system}}", "label": "model={{model}} n={{maxTokens}}"},
        "params": {"temperature": "{{temperature}}", "stream": "{{stream}}", "literal": None},
    }
    async with FakeWebSocketUpstream() as server, manager_for(server.url, message=template) as manager:
        server.enqueue(ScriptedReply(body=lines(chunk("ok", "stop"), b"[DONE]")))
        server.enqueue(ScriptedReply(body=lines(chunk("ok", "stop"), b"[DONE]")))
        await manager.complete(
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "One?"},
                {"role": "assistant", "content": "Yes."},
                {"role": "user", "content": "Two?"},
            ],
            model=MODEL,
            max_tokens=9,
        )
        first = sent(server)
        await manager.complete(prompt="Again", model=MODEL)
        second = sent(server)
    assert first["input"] == {"text": "One?\nYes.\nTwo?", "instructions": "Be brief.", "label": f"model={MODEL} n=9"}
    assert first["header"]["key"] == KEY
    assert len(first["header"]["request_id"]) == 32
    assert first["header"]["request_id"] != second["header"]["request_id"]
    assert first["params"] == {"stream": False, "literal": None}, "unset placeholders are left out, literals kept"
    assert "instructions" not in second["input"]


@pytest.mark.anyio
async def test_string_template_is_sent_as_text() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url, message="{{prompt}}") as manager:
        server.enqueue(ScriptedReply(body=lines(chunk("pong", "stop"), b"[DONE]")))
        response = await manager.complete(prompt="ping", model=MODEL)
        raw = server.completions[-1].body
    assert raw == b"ping"
    assert response.content == "pong"


# -- the handshake -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_handshake_headers_and_subprotocols() -> None:
    async with (
        FakeWebSocketUpstream() as server,
        manager_for(
            server.url,
            connectHeaders={"Authorization": "Bearer {{apiKey}}", "X-Model": "{{model}}"},
            headers={"X-Trace": "abc", "user-agent": "my-app/1.0"},
            subprotocols=["chat.v1", "key.{{apiKey}}"],
        ) as manager,
    ):
        await manager.complete(prompt="Hi", model=MODEL)
        (handshake,) = server.handshakes
    assert handshake.headers["authorization"] == f"Bearer {KEY}"
    assert handshake.headers["x-model"] == MODEL
    assert handshake.headers["x-trace"] == "abc"
    assert handshake.headers["user-agent"] == "my-app/1.0", "config headers override the defaults"
    assert handshake.headers["sec-websocket-protocol"] == f"chat.v1, key.{KEY}"
    assert handshake.headers["upgrade"].lower() == "websocket"


@pytest.mark.anyio
async def test_no_key_no_key_headers() -> None:
    async with (
        FakeWebSocketUpstream() as server,
        manager_for(server.url, apiKey=None, subprotocols=["chat.v1", "key.{{apiKey}}"]) as manager,
    ):
        await manager.complete(prompt="Hi", model=MODEL)
        (handshake,) = server.handshakes
    assert "authorization" not in handshake.headers
    assert handshake.headers["sec-websocket-protocol"] == "chat.v1"
    assert handshake.headers["user-agent"].startswith("swarmgate-websocket/")


@pytest.mark.anyio
async def test_url_placeholders_are_encoded_and_never_shown() -> None:
    key = "sk-with/odd&chars=0123456789"
    async with FakeWebSocketUpstream() as server:
        url = server.url + "?model={{model}}&key={{apiKey}}"
        async with manager_for(url, apiKey=key, connectHeaders={}) as manager:
            await manager.complete(prompt="Hi", model=MODEL)
            server.enqueue_handshake(ScriptedReply.error(503, f"no capacity for key {key}"))
            error = await failure(manager)
        (handshake, _) = server.handshakes
    assert handshake.path == "/v1/chat/completions?model=gpt-4o-mini&key=sk-with%2Fodd%26chars%3D0123456789"
    assert "authorization" not in handshake.headers
    assert key not in str(error)
    assert "sk-with%2F" not in str(error)
    assert "no capacity" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (429, RateLimitedError),
        (404, ProviderConnectionError),
        (503, ProviderConnectionError),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_handshake_rejected(status: int, expected: type[SwarmgateError], stream: bool) -> None:
    message = f"handshake refused with {status}"
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue_handshake(ScriptedReply.error(status, message, headers={"Retry-After": "3"}))
        error = await failure(manager, stream=stream)
        assert not server.completions, "nothing is sent on a refused handshake"
    assert type(error) is expected
    assert error.upstream_status == status
    assert f"HTTP {status}" in str(error)
    assert message in str(error)
    if status == 429:
        assert error.retry_after == pytest.approx(3.0)


@pytest.mark.anyio
async def test_handshake_that_never_answers_times_out() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url, timeout=300) as manager:
        server.enqueue_handshake(ScriptedReply(delay=3.0))
        started = time.perf_counter()
        error = await failure(manager, stream=True)
        elapsed = time.perf_counter() - started
    assert type(error) is ProviderTimeoutError
    assert elapsed < 0.9


@pytest.mark.anyio
async def test_not_a_websocket_server() -> None:
    """A plain HTTP answer to the upgrade (here the models listing) is a connection error."""
    async with FakeWebSocketUpstream() as server, manager_for(server.base_url + "/v1/models") as manager:
        error = await failure(manager)
    assert type(error) is ProviderConnectionError
    assert "HTTP 200" in str(error)


# -- answers -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tool_calls_complete() -> None:
    reply = ScriptedReply(content="", tool_calls=WEATHER_CALLS, finish_reason="tool_calls", usage=(30, 12))
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
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
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(reply)
        events = [e async for e in manager.stream(prompt="Weather?", model=MODEL, tools=[WEATHER_TOOL])]
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(fragments) > len(WEATHER_CALLS), "arguments arrive in several fragments"
    assert [f.id for f in fragments if f.id] == ["call_weather_1", "call_time_2"]
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.finish_reason == "tool_calls"
    assert finish.response is not None
    assert finish.response.content == "Let me check."
    assert finish.response.tool_calls == WEATHER_CALLS


@pytest.mark.anyio
async def test_upstream_model_is_reported() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="ok", model="gpt-4o-mini-2024-07-18"))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.metadata["upstream_model"] == "gpt-4o-mini-2024-07-18"


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_answer_without_usage_is_estimated(stream: bool) -> None:
    body = lines(chunk("four words of text"), chunk(None, "stop"), b"[DONE]")
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body))
        if stream:
            events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
            finish = events[-1]
            assert isinstance(finish, FinishEvent)
            assert finish.response is not None
            response = finish.response
        else:
            response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.content == "four words of text"
    assert response.tokens.output > 0
    assert response.metadata["usage_estimated"] is True


@pytest.mark.anyio
async def test_half_reported_usage_is_completed_by_an_estimate() -> None:
    body = lines(chunk("some text", "stop"), {"usage": {"completion_tokens": 2}}, b"[DONE]")
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body))
        response = await manager.complete(prompt="Hello there", model=MODEL)
    assert response.tokens.output == 2
    assert response.tokens.input > 0
    assert response.metadata["usage_estimated"] is True


@pytest.mark.anyio
async def test_finish_reasons_are_renamed() -> None:
    body = lines(chunk("cut", "max_output_tokens"), b"[DONE]")
    async with FakeWebSocketUpstream() as server, manager_for(server.url, finishReasons={"odd": "stop"}) as manager:
        server.enqueue(ScriptedReply(body=body), ScriptedReply(body=lines(chunk("x", "odd"), b"[DONE]")))
        first = await manager.complete(prompt="Hi", model=MODEL)
        second = await manager.complete(prompt="Hi", model=MODEL)
    assert first.finish_reason == "length"
    assert second.finish_reason == "stop"


@pytest.mark.anyio
async def test_messages_that_match_nothing_are_ignored() -> None:
    body = lines({"type": "session.created"}, [1, 2], "status", chunk("only text"), chunk(None, "stop"), b"[DONE]")
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.content == "only text"


@pytest.mark.anyio
async def test_fragmented_messages_are_assembled() -> None:
    content = "a fairly long answer, sent in many small WebSocket fragments"
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.fragment_size = 7
        server.enqueue(ScriptedReply(content=content, usage=(3, 11)), ScriptedReply(content=content))
        response = await manager.complete(prompt="Hi", model=MODEL)
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
    assert response.content == content
    assert response.tokens == TokenUsage(3, 11, 14)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == content


@pytest.mark.anyio
async def test_message_over_the_size_limit_is_a_server_error() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url, maxMessageSize=64) as manager:
        server.enqueue(ScriptedReply(content="x" * 500))
        error = await failure(manager)
    assert type(error) is ServerError
    assert "1009" in str(error)


@pytest.mark.anyio
async def test_done_marker_path_and_value() -> None:
    done = {"path": "header.status", "value": 2}
    paths = {"text": "payload.text", "finishReason": None, "error": "header.code", "errorMessage": "header.message"}
    body = lines(
        {"header": {"code": 0, "status": 0}, "payload": {"text": "one "}},
        {"header": {"code": 0, "status": 1}, "payload": {"text": "two"}},
        {"header": {"code": 0, "status": 2}, "payload": {"text": ""}},
        {"header": {"code": 0, "status": 1}, "payload": {"text": "never read"}},
    )
    async with (
        FakeWebSocketUpstream() as server,
        manager_for(server.url, done=done, paths=paths, connection="keep-open") as manager,
    ):
        server.enqueue(ScriptedReply(body=body))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.content == "one two"


# -- in-band errors -------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_context_length_exceeded(stream: bool) -> None:
    message = "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens."
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(400, message, code="context_length_exceeded"))
        error = await failure(manager, stream=stream)
    assert type(error) is ContextLengthExceededError
    assert error.upstream_status == 400
    assert "maximum context length" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("code", ["content_filter", "content_policy_violation"])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_content_filter_error(code: str, stream: bool) -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(400, "Your request was rejected by the safety system.", code=code))
        error = await failure(manager, stream=stream)
    assert type(error) is ContentFilteredError
    assert "safety system" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_content_filter_finish_reason(stream: bool) -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="The beginning of", finish_reason="content_filter"))
        error = await failure(manager, stream=stream)
    assert type(error) is ContentFilteredError


@pytest.mark.anyio
async def test_rate_limit_and_overload_messages() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(429, "Rate limit reached for requests", headers={"Retry-After": "2.5"}))
        server.enqueue(ScriptedReply.error(503, "The engine is currently overloaded"))
        limited = await failure(manager)
        overloaded = await failure(manager, stream=True)
    assert type(limited) is RateLimitedError
    assert limited.retry_after == pytest.approx(2.5)
    assert "Rate limit reached" in str(limited)
    assert type(overloaded) is OverloadedError
    assert "currently overloaded" in str(overloaded)


@pytest.mark.anyio
async def test_error_codes_table() -> None:
    """Provider-specific codes (here numeric ones) map to kinds through ``errorCodes``."""
    paths = {"error": "header.code", "errorMessage": "header.message", "errorCode": "header.code"}
    codes = {"11202": "rate_limited", "10013": "content_filtered", "10907": "context_length_exceeded"}
    cases = [(11202, RateLimitedError), (10013, ContentFilteredError), (10907, ContextLengthExceededError)]
    async with FakeWebSocketUpstream() as server, manager_for(server.url, paths=paths, errorCodes=codes) as manager:
        for code, _ in cases:
            server.enqueue(ScriptedReply(body=lines({"header": {"code": code, "message": f"upstream says {code}"}})))
        errors = [await failure(manager) for _ in cases]
    for (code, expected), error in zip(cases, errors, strict=True):
        assert type(error) is expected
        assert f"upstream says {code}" in str(error)
        assert f"[{code}]" in str(error)


@pytest.mark.anyio
async def test_error_without_code_or_status_is_a_server_error() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=lines(chunk("partial "), {"error": {"message": "engine crashed"}})))
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL, errors="event")]
    error = getattr(events[-1], "error", None)
    assert type(error) is ServerError
    assert "engine crashed" in str(error)
    assert getattr(events[-1], "partial", None) == "partial "


@pytest.mark.anyio
async def test_key_scrubbed_from_messages() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=f"oops {KEY}".encode()))
        server.enqueue(ScriptedReply.error(400, f"bad request from {KEY}"))
        malformed = await failure(manager)
        rejected = await failure(manager)
    assert type(malformed) is ServerError
    assert type(rejected) is InvalidRequestError
    assert KEY not in str(malformed)
    assert KEY not in str(rejected)


@pytest.mark.anyio
async def test_a_stream_that_ends_without_the_done_marker() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url, timeout=300) as manager:
        server.enqueue(ScriptedReply(body=lines(chunk("never "), chunk("finished"))))
        started = time.perf_counter()
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL, errors="event")]
        elapsed = time.perf_counter() - started
    assert type(getattr(events[-1], "error", None)) is ProviderTimeoutError
    assert elapsed < 0.9


# -- close frames --------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (1011, ServerError),
        (1013, OverloadedError),
        (1012, OverloadedError),
        (1008, PermissionDeniedError),
        (1001, ProviderConnectionError),
        (1000, ServerError),
        (4004, ServerError),
        (1006, ProviderConnectionError),
    ],
)
async def test_close_codes(code: int, expected: type[SwarmgateError]) -> None:
    reason = "" if code == 1006 else f"scripted close {code}"
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedClose(code, reason, after=2, reply=ScriptedReply(content="one two three four")))
        events: list[StreamEvent] = [e async for e in manager.stream(prompt="Hi", model=MODEL, errors="event")]
    error = getattr(events[-1], "error", None)
    assert type(error) is expected, f"close {code} gave {error!r}"
    assert str(code) in str(error)
    assert reason in str(error)
    assert getattr(events[-1], "partial", None) == "one two"


@pytest.mark.anyio
async def test_close_codes_through_the_table() -> None:
    codes = {"4029": "rate_limited", "4004": "not_found"}
    async with FakeWebSocketUpstream() as server, manager_for(server.url, errorCodes=codes) as manager:
        server.enqueue(ScriptedClose(4029, "too many requests"), ScriptedClose(4004, "no such model"))
        limited = await failure(manager)
        missing = await failure(manager)
    assert type(limited) is RateLimitedError
    assert "too many requests" in str(limited)
    assert type(missing) is NotFoundError


@pytest.mark.anyio
async def test_normal_close_after_the_finish_reason_ends_the_answer() -> None:
    """An upstream that closes (1000) instead of sending the done marker:
    here after the finish and usage messages ("all", " done", finish, usage)."""
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedClose(1000, after=4, reply=ScriptedReply(content="all done", usage=(2, 3))))
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.response is not None
    assert finish.response.content == "all done"
    assert finish.response.tokens == TokenUsage(2, 3, 5)


@pytest.mark.anyio
async def test_early_stream_close_closes_the_socket() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="a long answer that is never read to the end", chunk_delay=0.02))
        stream = manager.stream(prompt="go", model=MODEL)
        async for event in stream:
            if isinstance(event, TextDelta):
                break
        await stream.aclose()
        response = await manager.complete(prompt="again", model=MODEL)
    assert response.content == server.default.content
    assert [d.code for d in server.disconnects] == [1000, 1000]


# -- health ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_health_pings() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        status = (await manager.check_health("ws"))["ws"]
        assert server.pings == 1
        assert server.handshakes[0].headers["authorization"] == f"Bearer {KEY}"
    assert status.healthy, status.detail
    assert "pong" in status.detail
    assert server.disconnects == [Disconnect(1000, "", clean=True)]


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "word"), [(401, "Incorrect API key"), (503, "overloaded")])
async def test_health_unhealthy_on_rejected_handshake(status: int, word: str) -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.handshake_default = ScriptedReply.error(status)
        result = (await manager.check_health("ws"))["ws"]
    assert not result.healthy
    assert f"HTTP {status}" in result.detail
    assert word in result.detail


@pytest.mark.anyio
async def test_health_times_out() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url, timeout=200) as manager:
        server.handshake_default = ScriptedReply(delay=2.0)
        result = (await manager.check_health("ws"))["ws"]
    assert not result.healthy
    assert result.latency is not None
    assert result.latency < 1000


# -- configuration ----------------------------------------------------------------------------


async def config_error(**provider: Any) -> str:
    with pytest.raises(ConfigError) as info:
        async with manager_for(provider.pop("url", "ws://127.0.0.1:9/v1"), **provider):
            pass
    return str(info.value)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("provider", "where", "words"),
    [
        ({"paths": {"text": "choices[0.delta"}}, "providers.ws.paths.text", "invalid JMESPath"),
        ({"paths": {"errorCode": ""}}, "providers.ws.paths.errorCode", "empty expression"),
        ({"done": {"path": "type ==="}}, "providers.ws.done.path", "invalid JMESPath"),
        ({"done": {"message": "[DONE]", "path": "type"}}, "providers.ws.done", "exactly one"),
        ({"done": {"message": "[DONE]", "value": 2}}, "providers.ws.done.value", "only applies"),
        ({"message": {"q": "{{question}}"}}, "providers.ws.message", "{{question}}"),
        ({"connectHeaders": {"X-Id": "{{requestId}}"}}, "providers.ws.connectHeaders", "{{requestId}}"),
        ({"url": "http://127.0.0.1:9/v1"}, "providers.ws.url", "ws:// or wss://"),
        ({"url": None}, "providers.ws.url", "'endpoint'"),
        ({"url": None, "endpoint": "ftp://example.com"}, "providers.ws.endpoint", "http(s)://"),
        ({"url": "ws://:80/x"}, "providers.ws.url", "not a valid WebSocket URL"),
        ({"errorCodes": {"42": "bored"}}, "providers.ws.errorCodes.42", "unknown error kind"),
        ({"connection": "pooled"}, "providers.ws.connection", "keep-open"),
        ({"maxIdleConnections": 0}, "providers.ws.maxIdleConnections", "positive"),
        ({"pingInterval": -1}, "providers.ws.pingInterval", "negative"),
        ({"proxy": "http://proxy:8080"}, "providers.ws.proxy", "not supported"),
        ({"pingIntervall": 5}, "providers.ws.pingIntervall", "unknown key"),
        ({"paths": {"txt": "a"}}, "providers.ws.paths.txt", "unknown key"),
    ],
)
async def test_config_errors_name_the_path(provider: dict[str, Any], where: str, words: str) -> None:
    text = await config_error(**provider)
    assert f"{where}:" in text, text
    assert words in text, text


@pytest.mark.anyio
async def test_endpoint_becomes_the_url() -> None:
    async with FakeWebSocketUpstream() as server:
        url = server.url
        async with manager_for(None, endpoint=url.replace("ws://", "http://")) as manager:
            response = await manager.complete(prompt="Hi", model=MODEL)
            provider = manager.provider("ws")
    assert response.content == server.default.content
    assert provider.url_template == url  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_connection_refused_names_the_url() -> None:
    url = unreachable_url().replace("http://", "ws://")
    async with manager_for(url) as manager:
        error = await failure(manager, stream=True)
    assert type(error) is ProviderConnectionError
    assert url in str(error)
