"""Behaviour of the ``http`` provider type beyond the conformance suite:
request rendering, answers, tool calls, streams, the error table, health."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarmgate import (
    AuthenticationError,
    CompletionRequest,
    CompletionResponse,
    ContentFilteredError,
    ContextLengthExceededError,
    ErrorEvent,
    FinishEvent,
    InvalidRequestError,
    Message,
    ModelConfig,
    OverloadedError,
    PermissionDeniedError,
    ProviderCall,
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
from swarmgate.testing import FakeUpstream, OpenAIWire, ScriptedReply, Wire, expect_failure
from swarmgate.testing.generic_wire import CONTENT_BLOCKED, CONTEXT_TOO_LONG, GenericWire
from swarmgate_http import HttpProvider

CONFIGS: dict[str, dict[str, Any]] = json.loads((Path(__file__).parent / "providers.json").read_text())
MODEL = "acme-large"
KEY = "sk-http-test-0123456789abcdef"
WEATHER_CALLS: tuple[dict[str, Any], ...] = (
    {
        "id": "call_weather_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
    },
    {"id": "call_time_2", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "Europe/Paris"}'}},
)
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
SSE = {"content-type": "text/event-stream"}
NDJSON = {"content-type": "application/x-ndjson"}
WIRES: dict[str, Callable[[], Wire]] = {
    "generic-sse": lambda: GenericWire("sse"),
    "generic-ndjson": lambda: GenericWire("ndjson"),
    "openai": OpenAIWire,
}


def provider_config(endpoint: str, preset: str = "generic-sse", /, **changes: Any) -> dict[str, Any]:
    """The ``http`` provider for ``preset`` (an entry of providers.json) at
    ``endpoint``, with ``changes`` applied (``None`` removes a key)."""
    config: dict[str, Any] = {
        "type": "http",
        "endpoint": endpoint,
        "apiKey": KEY,
        "timeout": 2000,
        "models": {MODEL: {"costPerToken": 0.001}},
        **copy.deepcopy(CONFIGS[preset]),
    }
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


def manager_for(endpoint: str, preset: str = "generic-sse", /, **changes: Any) -> ProviderManager:
    """A manager with one ``http`` provider ``acme`` (loaded through its entry point)."""
    return ProviderManager({"providers": {"acme": provider_config(endpoint, preset, **changes)}})


def serve(preset: str = "generic-sse") -> FakeUpstream:
    return FakeUpstream(WIRES[preset]())


async def failure(manager: ProviderManager, *, stream: bool = False, **fields: Any) -> SwarmgateError:
    return await expect_failure(manager, model=MODEL, stream=stream, **fields)


async def stream_events(manager: ProviderManager, **fields: Any) -> list[StreamEvent]:
    fields.setdefault("prompt", "Hello?")
    return [e async for e in manager.stream(model=MODEL, errors="event", **fields)]


def sent_body(server: FakeUpstream) -> dict[str, Any]:
    body = server.completions[-1].json
    assert isinstance(body, dict)
    return body


def sse(*frames: Any) -> bytes:
    return b"".join(b"data: " + (f if isinstance(f, bytes) else json.dumps(f).encode()) + b"\n\n" for f in frames)


def ndjson(*lines: Any) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def response_of(events: list[StreamEvent]) -> CompletionResponse:
    finish = events[-1]
    assert isinstance(finish, FinishEvent), f"the stream ended with {finish!r}"
    assert finish.response is not None
    return finish.response


# -- request bodies ------------------------------------------------------------------


@pytest.mark.anyio
async def test_typed_values_and_unset_keys_dropped() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(prompt="Hi", model=MODEL, max_tokens=64, stop=["END", "STOP"])
        body = sent_body(server)
    assert body == {
        "model": MODEL,
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
        "parameters": {"max_new_tokens": 64, "stop_sequences": ["END", "STOP"]},
        "stream": False,
    }, "unset system, temperature, top_p and tools are left out; numbers and lists stay typed"


@pytest.mark.anyio
async def test_model_config_defaults_are_sent() -> None:
    models = {MODEL: {"costPerToken": 0.001, "maxTokens": 321, "temperature": 0.1}}
    async with serve() as server, manager_for(server.url, models=models) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        params = sent_body(server)["parameters"]
    assert params == {"max_new_tokens": 321, "temperature": pytest.approx(0.1)}


@pytest.mark.anyio
async def test_interpolated_strings_and_literal_braces() -> None:
    body = {
        "model": "{model}",
        "prompt": "{{system}} {system}\n\nUser: {prompt}\nAssistant:",
        "options": {"max": "{maxTokens} tokens", "tags": ["fixed", "{stop}", "{topP}"]},
    }
    async with (
        FakeUpstream(GenericWire()) as server,
        manager_for(server.url, body=body, stream=None) as manager,
    ):
        await manager.complete(prompt="Question?", system="Be brief.", model=MODEL, stop=["END"])
        sent = sent_body(server)
        await manager.complete(prompt="Again?", model=MODEL)
        again = sent_body(server)
    assert sent["prompt"] == "{system} Be brief.\n\nUser: Question?\nAssistant:"
    assert sent["options"] == {"max": " tokens", "tags": ["fixed", ["END"]]}
    assert again["prompt"] == "{system} \n\nUser: Again?\nAssistant:", "an unset value interpolates as empty text"


@pytest.mark.anyio
async def test_extra_is_merged_into_the_body() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(prompt="Hi", model=MODEL, extra={"seed": 7, "stream": None, "input": {"lang": "fr"}})
        body = sent_body(server)
    assert body["seed"] == 7
    assert "stream" not in body, "an extra value of None removes the key"
    assert body["input"] == {"lang": "fr"}


@pytest.mark.anyio
async def test_multimodal_messages_and_tool_turns_pass_through() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages = [
        Message("user", [{"type": "text", "text": "What is this?"}, image]),
        Message("assistant", None, tool_calls=(WEATHER_CALLS[0],)),
        Message("tool", '{"temp": 21}', tool_call_id="call_weather_1"),
    ]
    async with serve("openai") as server, manager_for(server.url, "openai") as manager:
        await manager.complete(messages=messages, model=MODEL)
        body = sent_body(server)
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]},
        {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALLS[0]]},
        {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_weather_1"},
    ]


@pytest.mark.anyio
async def test_tools_pass_through_and_can_be_reshaped() -> None:
    body = {
        "model": "{model}",
        "input": {"messages": "{messages}"},
        "tools": "{tools}",
        "functions": {"$jmespath": "tools[].function.{name: name, schema: parameters}"},
        "choice": "{toolChoice}",
    }
    async with serve() as server, manager_for(server.url, body=body) as manager:
        await manager.complete(prompt="Weather?", model=MODEL, tools=[WEATHER_TOOL], tool_choice="auto")
        sent = sent_body(server)
        await manager.complete(prompt="No tools", model=MODEL)
        plain = sent_body(server)
    assert sent["tools"] == [WEATHER_TOOL]
    assert sent["functions"] == [{"name": "get_weather", "schema": WEATHER_TOOL["function"]["parameters"]}]
    assert sent["choice"] == "auto"
    assert "tools" not in plain
    assert "functions" not in plain, "an expression that selects nothing drops its key"


@pytest.mark.anyio
async def test_stream_body_overrides_and_url() -> None:
    async with serve("openai") as server, manager_for(server.url, "openai") as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        plain = sent_body(server)
        _ = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
        streamed = sent_body(server)
    assert plain["stream"] is False
    assert "stream_options" not in plain
    assert streamed["stream"] is True
    assert streamed["stream_options"] == {"include_usage": True}


@pytest.mark.anyio
async def test_stream_override_null_removes_a_key() -> None:
    config = copy.deepcopy(CONFIGS["openai"])
    config["stream"]["body"] = {"tools": None, "stream_options": {"include_usage": True}}
    async with serve("openai") as server, manager_for(server.url, "openai", **config) as manager:
        _ = [e async for e in manager.stream(prompt="Hi", model=MODEL, tools=[WEATHER_TOOL])]
        streamed = sent_body(server)
    assert "tools" not in streamed


@pytest.mark.anyio
async def test_model_placeholder_in_url_and_upstream_name() -> None:
    wire = GenericWire(base_path="/v2/models/org/acme-large-v2")
    models = {MODEL: {"upstreamName": "org/acme-large-v2"}}
    async with FakeUpstream(wire) as server:
        base = server.base_url + "/v2"
        async with manager_for(base, url="/models/{model}/generate", models=models) as manager:
            response = await manager.complete(prompt="Hi", model=MODEL)
            request = server.completions[-1]
    assert response.content == server.default.content
    assert request.path == "/v2/models/org/acme-large-v2/generate", "slashes in the model name are kept"
    assert sent_body(server)["model"] == "org/acme-large-v2"


@pytest.mark.anyio
async def test_absolute_url_without_endpoint() -> None:
    async with (
        serve() as server,
        manager_for("", endpoint=None, url=server.url + "/generate", healthCheck=None) as manager,
    ):
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.content == server.default.content


# -- headers ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_headers_with_the_key() -> None:
    headers = {"Authorization": "Bearer {apiKey}", "X-Api-Key": "{apiKey}", "X-Trace": "literal {{braces}}"}
    async with serve() as server, manager_for(server.url, headers=headers) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        await manager.check_health("acme")
        completion, probe = server.requests
    for request in (completion, probe):
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["x-api-key"] == KEY
        assert request.headers["x-trace"] == "literal {braces}"
        assert request.headers["user-agent"].startswith("swarmgate-http/")
    assert completion.headers["content-type"] == "application/json"
    assert completion.headers["accept"] == "application/json"


@pytest.mark.anyio
async def test_no_key_is_sent_unless_a_header_names_it() -> None:
    async with serve() as server, manager_for(server.url, headers={"X-Client": "tests"}) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        request = server.completions[-1]
    assert "authorization" not in request.headers
    assert KEY not in json.dumps(request.headers)


@pytest.mark.anyio
async def test_config_headers_override_the_defaults() -> None:
    headers = {"Content-Type": "application/vnd.acme+json", "Accept": "application/vnd.acme+json", "User-Agent": "me"}
    async with serve() as server, manager_for(server.url, headers=headers) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        _ = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
        plain, streamed = server.completions
    for request in (plain, streamed):
        assert request.headers["content-type"] == "application/vnd.acme+json"
        assert request.headers["accept"] == "application/vnd.acme+json"
        assert request.headers["user-agent"] == "me"


@pytest.mark.anyio
async def test_stream_accept_header_follows_the_format() -> None:
    async with serve("generic-ndjson") as server, manager_for(server.url, "generic-ndjson") as manager:
        _ = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
        request = server.completions[-1]
    assert request.headers["accept"] == "application/x-ndjson"


@pytest.mark.anyio
async def test_the_key_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """httpx and httpcore log requests at INFO/DEBUG: the key (only ever in a header) is not in them."""
    caplog.set_level(logging.DEBUG)
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        _ = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
        server.enqueue(ScriptedReply.error(401, f"bad key {KEY}"))
        await failure(manager)
    assert caplog.records, "httpx logs requests at this level"
    assert KEY not in caplog.text


# -- answers -----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("preset", ["generic-sse", "openai"])
async def test_tool_calls_complete(preset: str) -> None:
    reply = ScriptedReply(content="", tool_calls=WEATHER_CALLS, finish_reason="tool_calls", usage=(30, 12))
    async with serve(preset) as server, manager_for(server.url, preset) as manager:
        server.enqueue(reply)
        response = await manager.complete(prompt="Weather and time in Paris?", model=MODEL, tools=[WEATHER_TOOL])
    assert response.tool_calls == WEATHER_CALLS
    assert response.finish_reason == "tool_calls"
    assert response.content == ""
    assert response.tokens == TokenUsage(30, 12, 42)


@pytest.mark.anyio
@pytest.mark.parametrize("preset", ["generic-sse", "generic-ndjson", "openai"])
async def test_tool_calls_stream(preset: str) -> None:
    reply = ScriptedReply(content="Let me check.", tool_calls=WEATHER_CALLS, finish_reason="tool_calls")
    async with serve(preset) as server, manager_for(server.url, preset) as manager:
        server.enqueue(reply)
        events = await stream_events(manager, prompt="Weather?", tools=[WEATHER_TOOL])
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(fragments) > len(WEATHER_CALLS), "arguments arrive in several fragments"
    assert [f.id for f in fragments if f.id] == ["call_weather_1", "call_time_2"]
    response = response_of(events)
    assert response.finish_reason == "tool_calls"
    assert response.content == "Let me check."
    assert response.tool_calls == WEATHER_CALLS


@pytest.mark.anyio
async def test_flat_tool_calls_without_ids() -> None:
    body = {
        "result": {"text": None, "calls": [{"tool": "get_weather", "params": {"city": "Paris"}}]},
        "stop": "tool_use",
    }
    response_paths = {**CONFIGS["generic-sse"]["response"], "toolCalls": "result.calls[].{name: tool, input: params}"}
    async with serve() as server, manager_for(server.url, response=response_paths) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        response = await manager.complete(prompt="Weather?", model=MODEL)
    assert response.tool_calls == (
        {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
    )
    assert response.finish_reason == "tool_calls"


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_finish_reasons_are_mapped(stream: bool) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="cut short", finish_reason="length"))
        if stream:
            finish = response_of(await stream_events(manager)).finish_reason
        else:
            finish = (await manager.complete(prompt="Hi", model=MODEL)).finish_reason
        sent = server.completions[-1]
    assert finish == "length"
    assert b"max_tokens" not in sent.body


@pytest.mark.anyio
async def test_unmapped_finish_reason_passes_through() -> None:
    body = {"result": {"text": "ok"}, "stop": "eos_token"}
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.finish_reason == "eos_token"


@pytest.mark.anyio
async def test_answer_without_usage_is_estimated() -> None:
    body = {"result": {"text": "four chars"}, "stop": "end_of_text"}
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.content == "four chars"
    assert response.tokens.output > 0
    assert response.metadata["usage_estimated"] is True


@pytest.mark.anyio
async def test_stream_without_usage_is_estimated() -> None:
    body = sse(
        {"event": "delta", "result": {"text": "no "}}, {"event": "delta", "result": {"text": "usage"}}, b"[DONE]"
    )
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE))
        events = await stream_events(manager)
    assert not [e for e in events[:-2] if isinstance(e, UsageEvent)], "the driver reported no usage"
    response = response_of(events)
    assert response.content == "no usage"
    assert response.metadata["usage_estimated"] is True


@pytest.mark.anyio
async def test_usage_split_over_events() -> None:
    """Input tokens early, output tokens late (as some APIs do): the last values seen count."""
    body = ndjson(
        {"event": "start", "meta": {"tokens": {"in": 11}}},
        {"event": "delta", "result": {"text": "hi"}, "meta": {"tokens": {"out": 1}}},
        {"event": "end", "stop": "end_of_text", "meta": {"tokens": {"out": 4}}, "done": True},
    )
    async with serve("generic-ndjson") as server, manager_for(server.url, "generic-ndjson") as manager:
        server.enqueue(ScriptedReply(body=body, headers=NDJSON))
        events = await stream_events(manager)
    assert response_of(events).tokens == TokenUsage(11, 4, 15)


@pytest.mark.anyio
async def test_upstream_model_is_reported() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="ok", model="acme-large-2025-01"))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.model == MODEL
    assert response.metadata["upstream_model"] == "acme-large-2025-01"


@pytest.mark.anyio
async def test_text_list_is_joined() -> None:
    body = {"content": [{"type": "text", "text": "Hello, "}, {"type": "image"}, {"type": "text", "text": "world"}]}
    response_paths = {"text": "content[?type=='text'].text"}
    async with serve() as server, manager_for(server.url, response=response_paths, stream=None) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.content == "Hello, world"
    assert response.finish_reason == "stop"


@pytest.mark.anyio
async def test_answer_that_does_not_fit_the_paths() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=b'{"output": "somewhere else"}'))
        error = await failure(manager)
    assert type(error) is ServerError
    assert "response.text" in str(error)
    assert "somewhere else" in str(error)


@pytest.mark.anyio
async def test_text_that_is_an_object() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=b'{"result": {"text": {"nested": true}}}'))
        error = await failure(manager)
    assert type(error) is ServerError
    assert "not text" in str(error)


@pytest.mark.anyio
async def test_key_scrubbed_from_malformed_answer() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=f'{{"output": "{KEY}"}}'.encode()))
        error = await failure(manager)
    assert type(error) is ServerError
    assert KEY not in str(error)


# -- streams ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_without_a_stream_section_the_answer_is_one_delta() -> None:
    async with serve() as server, manager_for(server.url, stream=None) as manager:
        server.enqueue(ScriptedReply(content="whole answer", usage=(3, 2)))
        events = await stream_events(manager)
        sent = sent_body(server)
    assert sent["stream"] is False
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["whole answer"]
    assert response_of(events).tokens == TokenUsage(3, 2, 5)


@pytest.mark.anyio
async def test_sse_request_answered_with_json() -> None:
    body = {"result": {"text": "whole answer"}, "stop": "end_of_text", "meta": {"tokens": {"in": 3, "out": 2}}}
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        events = await stream_events(manager)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["whole answer"]
    assert response_of(events).tokens == TokenUsage(3, 2, 5)


@pytest.mark.anyio
async def test_ndjson_blank_lines_are_skipped() -> None:
    body = b'{"result": {"text": "a"}}\n\n  \n{"result": {"text": "b"}, "stop": "end_of_text", "done": true}\n'
    async with serve("generic-ndjson") as server, manager_for(server.url, "generic-ndjson") as manager:
        server.enqueue(ScriptedReply(body=body, headers=NDJSON))
        events = await stream_events(manager)
    assert response_of(events).content == "ab"


@pytest.mark.anyio
async def test_done_path_with_any_truthy_value() -> None:
    config = copy.deepcopy(CONFIGS["generic-ndjson"])
    config["stream"]["done"] = {"path": "finished"}
    body = ndjson({"result": {"text": "a"}, "finished": None}, {"result": {"text": "b"}, "finished": "yes"})
    async with serve("generic-ndjson") as server, manager_for(server.url, **config) as manager:
        server.enqueue(ScriptedReply(body=body, headers=NDJSON))
        events = await stream_events(manager)
    assert response_of(events).content == "ab"


@pytest.mark.anyio
async def test_stream_that_ends_without_its_done_marker() -> None:
    body = sse({"event": "delta", "result": {"text": "never "}}, {"event": "delta", "result": {"text": "finished"}})
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE))
        events = await stream_events(manager)
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert type(error.error) is ServerError
    assert "done marker" in str(error.error)
    assert error.partial == "never finished"


@pytest.mark.anyio
async def test_stream_with_a_finish_reason_but_no_done_marker_is_accepted() -> None:
    body = sse({"event": "delta", "result": {"text": "done "}}, {"event": "end", "stop": "max_tokens"})
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE))
        events = await stream_events(manager)
    response = response_of(events)
    assert response.content == "done "
    assert response.finish_reason == "length"


@pytest.mark.anyio
async def test_stream_without_a_done_marker_ends_with_the_body() -> None:
    config = copy.deepcopy(CONFIGS["generic-sse"])
    del config["stream"]["done"]
    body = sse({"event": "delta", "result": {"text": "just "}}, {"event": "delta", "result": {"text": "text"}})
    async with serve() as server, manager_for(server.url, **config) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE))
        events = await stream_events(manager)
    response = response_of(events)
    assert response.content == "just text"
    assert response.finish_reason == "stop"


@pytest.mark.anyio
async def test_error_event_mid_stream() -> None:
    body = sse(
        {"event": "delta", "result": {"text": "partial "}},
        {"event": "error", "error": {"code": "internal", "message": "The model crashed"}},
    )
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE))
        events = await stream_events(manager)
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert type(error.error) is ServerError
    assert error.partial == "partial "
    assert "The model crashed" in str(error.error)
    assert "[internal]" in str(error.error)


@pytest.mark.anyio
async def test_error_event_classified_by_the_table() -> None:
    errors = [*CONFIGS["generic-sse"]["errors"], {"code": "rate_limited", "kind": "rate_limited"}]
    body = sse({"event": "error", "error": {"code": "rate_limited", "message": "Slow down, please"}})
    async with serve() as server, manager_for(server.url, errors=errors) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE))
        error = await failure(manager, stream=True)
    assert type(error) is RateLimitedError
    assert "Slow down, please" in str(error)
    assert error.upstream_status is None


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_content_filter_finish_reason(stream: bool) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="The beginning of", finish_reason="content_filter"))
        error = await failure(manager, stream=stream)
    assert type(error) is ContentFilteredError


# -- errors ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("preset", ["generic-sse", "generic-ndjson", "openai"])
async def test_rate_limit(preset: str, stream: bool) -> None:
    message = "Too many requests for this key; retry in 12 seconds."
    async with serve(preset) as server, manager_for(server.url, preset) as manager:
        server.enqueue(ScriptedReply.error(429, message, headers={"Retry-After": "12"}))
        error = await failure(manager, stream=stream)
    assert type(error) is RateLimitedError
    assert error.retry_after == pytest.approx(12.0)
    assert error.upstream_status == 429
    assert message in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("preset", ["generic-sse", "generic-ndjson", "openai"])
async def test_overload(preset: str, stream: bool) -> None:
    message = "The service is overloaded; try again in a moment."
    async with serve(preset) as server, manager_for(server.url, preset) as manager:
        server.enqueue(ScriptedReply.error(503, message, headers={"retry-after-ms": "2500"}))
        error = await failure(manager, stream=stream)
    assert type(error) is OverloadedError
    assert error.retry_after == pytest.approx(2.5)
    assert message in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("preset", ["generic-sse", "generic-ndjson", "openai"])
async def test_auth_failure(preset: str, stream: bool) -> None:
    message = "Missing or invalid API key."
    async with serve(preset) as server, manager_for(server.url, preset) as manager:
        server.enqueue(ScriptedReply.error(401, message))
        error = await failure(manager, stream=stream)
    assert type(error) is AuthenticationError
    assert message in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("preset", "code"),
    [("generic-sse", CONTEXT_TOO_LONG), ("generic-ndjson", CONTEXT_TOO_LONG), ("openai", "context_length_exceeded")],
)
async def test_context_length(preset: str, code: str, stream: bool) -> None:
    message = "The prompt is 40000 tokens long; this model takes at most 32768."
    async with serve(preset) as server, manager_for(server.url, preset) as manager:
        server.enqueue(ScriptedReply.error(400, message, code=code))
        error = await failure(manager, stream=stream)
    assert type(error) is ContextLengthExceededError
    assert error.upstream_status == 400
    assert message in str(error)
    assert f"[{code}]" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("preset", "code"),
    [("generic-sse", CONTENT_BLOCKED), ("generic-ndjson", CONTENT_BLOCKED), ("openai", "content_filter")],
)
async def test_content_filter_rejection(preset: str, code: str, stream: bool) -> None:
    message = "The prompt was blocked by the safety filter."
    async with serve(preset) as server, manager_for(server.url, preset) as manager:
        server.enqueue(ScriptedReply.error(400, message, code=code))
        error = await failure(manager, stream=stream)
    assert type(error) is ContentFilteredError
    assert message in str(error)


@pytest.mark.anyio
async def test_rules_apply_in_order_and_match_every_matcher() -> None:
    errors = [
        {"status": 400, "code": "quota", "kind": "permission"},
        {"code": "quota", "kind": "rate_limited"},
        {"status": 422, "messageContains": "TOO LONG", "kind": "context_length_exceeded"},
        {"code": "1301", "kind": "content_filtered"},
    ]
    async with serve() as server, manager_for(server.url, errors=errors) as manager:
        server.enqueue(
            ScriptedReply.error(400, "Quota used up", code="quota"),
            ScriptedReply.error(403, "Quota used up", code="quota"),
            ScriptedReply.error(422, "The input is too long for this model"),
            ScriptedReply.error(400, "too long, but another status"),
            ScriptedReply(status=400, body=b'{"error": {"code": 1301, "message": "Sensitive content"}}'),
        )
        kinds = [type(await failure(manager)) for _ in range(5)]
    assert kinds == [
        PermissionDeniedError,
        RateLimitedError,
        ContextLengthExceededError,
        InvalidRequestError,
        ContentFilteredError,
    ]


@pytest.mark.anyio
async def test_retry_after_honoured_for_a_table_kind() -> None:
    errors = [{"status": 400, "code": "busy", "kind": "overloaded"}]
    async with serve() as server, manager_for(server.url, errors=errors) as manager:
        server.enqueue(ScriptedReply.error(400, "Busy, come back later", code="busy", headers={"Retry-After": "3"}))
        error = await failure(manager)
    assert type(error) is OverloadedError
    assert error.retry_after == pytest.approx(3.0)
    assert error.upstream_status == 400


@pytest.mark.anyio
async def test_error_in_a_2xx_answer() -> None:
    body = {"error": {"code": CONTENT_BLOCKED, "message": "Refused by policy"}}
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()), ScriptedReply(body=b'{"error": "plain text"}'))
        filtered = await failure(manager)
        plain = await failure(manager)
    assert type(filtered) is ContentFilteredError
    assert "Refused by policy" in str(filtered)
    assert type(plain) is ServerError


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
async def test_default_error_paths() -> None:
    """Without errorMessage/errorCode, ``error.message || error`` and ``error.code || error.type`` are read."""
    response_paths = {"text": "result.text"}
    async with serve() as server, manager_for(server.url, response=response_paths) as manager:
        server.enqueue(
            ScriptedReply(status=404, body=b'{"error": "model \'x\' not found"}'),
            ScriptedReply(status=400, body=b'{"error": {"message": "Bad", "type": "context_too_long"}}'),
        )
        missing = await failure(manager)
        typed = await failure(manager)
    assert "model 'x' not found" in str(missing)
    assert "[context_too_long]" in str(typed)
    assert type(typed) is ContextLengthExceededError


# -- health ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_health_probe_request() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        status = (await manager.check_health("acme"))["acme"]
        probe = server.requests[-1]
    assert status.healthy, status.detail
    assert (probe.method, probe.path) == ("GET", "/v2/models")
    assert "HTTP 200" in status.detail


@pytest.mark.anyio
async def test_health_unexpected_status() -> None:
    health = {"method": "GET", "path": "/models", "expectedStatus": 204, "interval": 30000}
    async with serve() as server, manager_for(server.url, healthCheck=health) as manager:
        status = (await manager.check_health("acme"))["acme"]
    assert not status.healthy
    assert "expected 204" in status.detail


@pytest.mark.anyio
async def test_health_error_status_carries_the_message() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.models_reply = ScriptedReply.error(401, f"Invalid key {KEY}")
        status = (await manager.check_health("acme"))["acme"]
    assert not status.healthy
    assert "HTTP 401" in status.detail
    assert "Invalid key" in status.detail
    assert KEY not in status.detail


@pytest.mark.anyio
async def test_default_probe_counts_any_answer_but_5xx() -> None:
    """Without healthCheck, GET on the endpoint: a 404 still proves the server is up."""
    async with serve() as server, manager_for(server.url, healthCheck=None) as manager:
        status = (await manager.check_health("acme"))["acme"]
        probe = server.requests[-1]
    assert status.healthy, status.detail
    assert (probe.method, probe.path) == ("GET", "/v2")


@pytest.mark.anyio
async def test_health_times_out() -> None:
    async with serve() as server, manager_for(server.url, timeout=200) as manager:
        server.models_reply = ScriptedReply(delay=2.0)
        status = (await manager.check_health("acme"))["acme"]
    assert not status.healthy
    assert status.latency is not None
    assert status.latency < 1000


class _Recorded(HttpProvider):
    """The driver over ``httpx.MockTransport`` answering ``status`` to everything."""

    status = 200
    seen: list[httpx.Request]

    def build_client(self) -> httpx.AsyncClient:
        self.seen = []

        def answer(request: httpx.Request) -> httpx.Response:
            self.seen.append(request)
            return httpx.Response(self.status, json={"result": {"text": "mock"}})

        return httpx.AsyncClient(base_url=self.endpoint, transport=httpx.MockTransport(answer))


def recorded(**settings: Any) -> _Recorded:
    config = ProviderConfig(
        type="http",
        endpoint=settings.pop("endpoint", "https://api.acme.example/v2"),
        health_check=settings.pop("health_check", None),
        settings={"response": {"text": "result.text"}, **settings},
    )
    return _Recorded("acme", config)


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "healthy"), [(405, True), (500, False), (503, False)])
async def test_default_probe_statuses(status: int, healthy: bool) -> None:
    provider = recorded()
    provider.status = status
    await provider.start()
    try:
        result = await provider.health_check()
    finally:
        await provider.aclose()
    assert result.healthy is healthy
    assert str(provider.seen[0].url) == "https://api.acme.example/v2"


@pytest.mark.anyio
async def test_probe_method_and_absolute_url_without_endpoint() -> None:
    provider = recorded(
        endpoint=None,
        url="https://generate.acme.example/v2/run",
        health_check={"method": "post", "path": "https://status.acme.example/ping"},
    )
    await provider.start()
    try:
        result = await provider.health_check()
    finally:
        await provider.aclose()
    assert result.healthy
    assert (provider.seen[0].method, str(provider.seen[0].url)) == ("POST", "https://status.acme.example/ping")


@pytest.mark.anyio
async def test_default_probe_without_endpoint_asks_the_url_origin() -> None:
    provider = recorded(endpoint=None, url="https://generate.acme.example/v2/run")
    await provider.start()
    try:
        await provider.health_check()
    finally:
        await provider.aclose()
    assert str(provider.seen[0].url) == "https://generate.acme.example/"


@pytest.mark.anyio
async def test_method_and_bodiless_requests() -> None:
    """``method`` is used as configured (any case); without ``body`` nothing is sent."""
    provider = recorded(method="put", url="/run/{model}")
    await provider.start()
    try:
        call = ProviderCall(CompletionRequest.create("Hi"), "m", "acme large", ModelConfig(), 1.0)
        reply = await provider.complete(call)
    finally:
        await provider.aclose()
    request = provider.seen[0]
    assert (request.method, request.url.raw_path) == ("PUT", b"/v2/run/acme%20large")
    assert request.content == b""
    assert "content-type" not in request.headers
    assert reply.content == "mock"
    assert reply.tokens == TokenUsage(), "no usage reported: zero, for the kernel to estimate"


@pytest.mark.anyio
async def test_client_lifecycle() -> None:
    provider = HttpProvider(
        "acme", ProviderConfig(type="http", endpoint="http://127.0.0.1:9", settings={"response": {"text": "t"}})
    )
    with pytest.raises(RuntimeError, match="not started"):
        _ = provider.client
    await provider.start()
    client = provider.client
    await provider.aclose()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="not started"):
        _ = provider.client
