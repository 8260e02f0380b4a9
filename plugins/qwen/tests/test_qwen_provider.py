"""DashScope-specific behaviour of the ``qwen`` provider type in native mode
(beyond the conformance suite): request bodies, headers, endpoints,
multimodal content, tool calls, stream frames, health and configuration."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from swarmgate import (
    CompletionResponse,
    ConfigError,
    ErrorEvent,
    FinishEvent,
    InvalidRequestError,
    Message,
    ProviderConfig,
    ProviderManager,
    ServerError,
    SwarmgateError,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
)
from swarmgate.testing import FakeUpstream, ScriptedReply
from swarmgate.testing.dashscope_wire import MULTIMODAL_GENERATION, TEXT_GENERATION, DashScopeWire
from swarmgate_qwen import (
    DEFAULT_ENDPOINT,
    DEFAULT_MULTIMODAL_MODELS,
    QwenProvider,
    QwenSettings,
    default_health_url,
)

MODEL = "qwen-plus"  # the model and key conftest.py's manager_for configures
KEY = "sk-qwen-test-0123456789abcdef"
ManagerFactory = Callable[..., ProviderManager]
FailureRunner = Callable[..., Awaitable[SwarmgateError]]
WEATHER_CALLS: tuple[dict[str, Any], ...] = (
    {
        "id": "call_6596dafa2a6a46f7a217da",
        "type": "function",
        "function": {"name": "get_current_weather", "arguments": '{"location": "Hangzhou", "unit": "celsius"}'},
    },
    {"id": "call_2", "type": "function", "function": {"name": "get_current_time", "arguments": "{}"}},
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}
SSE_HEADERS = {"content-type": "text/event-stream;charset=UTF-8"}


def serve() -> FakeUpstream:
    return FakeUpstream(DashScopeWire())


def sent_body(server: FakeUpstream) -> dict[str, Any]:
    body = server.completions[-1].json
    assert isinstance(body, dict)
    return body


def frames(*datas: dict[str, Any], event: str = "result") -> bytes:
    """Raw DashScope SSE frames (no space after the colons)."""
    out = b""
    for number, data in enumerate(datas, start=1):
        out += f"id:{number}\nevent:{event}\n:HTTP_STATUS/200\ndata:{json.dumps(data)}\n\n".encode()
    return out


def result(content: str, finish: str = "null", usage: tuple[int, int] | None = None, **message: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "output": {
            "choices": [{"message": {"role": "assistant", "content": content, **message}, "finish_reason": finish}]
        },
        "request_id": "req-1",
    }
    if usage is not None:
        data["usage"] = {"input_tokens": usage[0], "output_tokens": usage[1], "total_tokens": sum(usage)}
    return data


# -- request bodies and headers ---------------------------------------------------------


@pytest.mark.anyio
async def test_request_body_and_headers(manager_for: ManagerFactory) -> None:
    async with serve() as server, manager_for(server.url, workspace="ws-123") as manager:
        await manager.complete(
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Hangzhou?"}],
            model=MODEL,
            temperature=0.3,
            top_p=0.8,
            max_tokens=100,
            stop=["END"],
            tools=[WEATHER_TOOL],
            tool_choice="auto",
            response_format={"type": "json_object"},
            extra={"enable_search": True, "seed": 7, "max_tokens": None},
        )
        request = server.completions[-1]
    assert request.path == "/api/v1" + TEXT_GENERATION
    assert request.json == {
        "model": MODEL,
        "input": {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Hangzhou?"},
            ]
        },
        "parameters": {
            "result_format": "message",
            "temperature": 0.3,
            "top_p": 0.8,
            "stop": ["END"],
            "tools": [WEATHER_TOOL],
            "tool_choice": "auto",
            "response_format": {"type": "json_object"},
            "enable_search": True,
            "seed": 7,
        },
    }, "extra goes into parameters; a None value removes a field"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["x-dashscope-workspace"] == "ws-123"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("swarmgate-qwen/")
    assert "x-dashscope-sse" not in request.headers


@pytest.mark.anyio
async def test_stream_asks_for_sse_and_incremental_output(manager_for: ManagerFactory) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
        request = server.completions[-1]
    assert request.headers["x-dashscope-sse"] == "enable"
    assert request.headers["accept"] == "text/event-stream"
    assert sent_body(server)["parameters"]["incremental_output"] is True
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == server.default.content


@pytest.mark.anyio
async def test_model_config_defaults_are_sent(manager_for: ManagerFactory) -> None:
    model = {"costPerToken": 0.001, "maxTokens": 321, "temperature": 0.1, "upstreamName": "qwen-plus-2025-07-28"}
    async with serve() as server, manager_for(server.url, models={MODEL: model}) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        body = sent_body(server)
    assert body["model"] == "qwen-plus-2025-07-28"
    assert body["parameters"]["max_tokens"] == 321
    assert body["parameters"]["temperature"] == pytest.approx(0.1)


@pytest.mark.anyio
async def test_config_headers_override_defaults(manager_for: ManagerFactory) -> None:
    headers = {"User-Agent": "my-app/1.0", "X-DashScope-DataInspection": '{"input":"cip","output":"cip"}'}
    async with serve() as server, manager_for(server.url, headers=headers) as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        request = server.completions[-1]
    assert request.headers["user-agent"] == "my-app/1.0"
    assert request.headers["x-dashscope-datainspection"] == '{"input":"cip","output":"cip"}'


@pytest.mark.anyio
async def test_tool_round_trip_messages(manager_for: ManagerFactory) -> None:
    messages = [
        Message("developer", "Use the tools."),
        Message("user", [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Hangzhou?"}]),
        Message("assistant", None, tool_calls=(WEATHER_CALLS[0],)),
        Message("tool", '{"temp": 21}', name="get_current_weather", tool_call_id=WEATHER_CALLS[0]["id"]),
    ]
    async with serve() as server, manager_for(server.url) as manager:
        await manager.complete(messages=messages, model=MODEL, tools=[WEATHER_TOOL])
        request = server.completions[-1]
    assert request.path == "/api/v1" + TEXT_GENERATION, "text parts alone stay on the text endpoint"
    assert request.json["input"]["messages"] == [
        {"role": "system", "content": "Use the tools."},
        {"role": "user", "content": "Weather in Hangzhou?"},
        {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALLS[0]]},
        {
            "role": "tool",
            "content": '{"temp": 21}',
            "name": "get_current_weather",
            "tool_call_id": WEATHER_CALLS[0]["id"],
        },
    ]


# -- multimodal ---------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_media_parts_go_to_the_multimodal_endpoint(manager_for: ManagerFactory, stream: bool) -> None:
    content = [
        {"type": "image_url", "image_url": {"url": "https://example.com/dog.jpeg"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "video_url", "video_url": {"url": "https://example.com/clip.mp4"}},
        {"type": "text", "text": "What is in these?"},
    ]
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="A dog barking on a beach.", usage=(1200, 6)))
        messages = [{"role": "system", "content": "Describe."}, {"role": "user", "content": content}]
        if stream:
            events = [e async for e in manager.stream(messages=messages, model=MODEL)]
            finish = events[-1]
            assert isinstance(finish, FinishEvent)
            assert finish.response is not None
            response = finish.response
        else:
            response = await manager.complete(messages=messages, model=MODEL)
        request = server.completions[-1]
    assert request.path == "/api/v1" + MULTIMODAL_GENERATION
    assert request.json["input"]["messages"] == [
        {"role": "system", "content": [{"text": "Describe."}]},
        {
            "role": "user",
            "content": [
                {"image": "https://example.com/dog.jpeg"},
                {"audio": "data:audio/wav;base64,UklGRg=="},
                {"video": "https://example.com/clip.mp4"},
                {"text": "What is in these?"},
            ],
        },
    ]
    assert response.content == "A dog barking on a beach.", "content parts in the answer are joined"
    assert response.tokens == TokenUsage(1200, 6, 1206)


@pytest.mark.anyio
async def test_multimodal_models_use_the_multimodal_endpoint(manager_for: ManagerFactory) -> None:
    models = {"qwen-vl-max": {}, "my-vision": {"upstreamName": "custom-vision-1"}, MODEL: {}}
    async with serve() as server, manager_for(server.url, models=models) as manager:
        await manager.complete(prompt="Hi", model="qwen-vl-max")
        await manager.complete(prompt="Hi", model="my-vision")
        await manager.complete(prompt="Hi", model=MODEL)
        default_paths = [r.path for r in server.completions]
    async with serve() as server, manager_for(server.url, models=models, multimodalModels=["custom-*"]) as manager:
        await manager.complete(prompt="Hi", model="qwen-vl-max")
        await manager.complete(prompt="Hi", model="my-vision")
        custom_paths = [r.path for r in server.completions]
    multimodal, text = "/api/v1" + MULTIMODAL_GENERATION, "/api/v1" + TEXT_GENERATION
    assert default_paths == [multimodal, text, text]
    assert custom_paths == [text, multimodal]
    assert "qwen-vl-*" in DEFAULT_MULTIMODAL_MODELS


@pytest.mark.anyio
async def test_unsupported_content_part_is_refused(manager_for: ManagerFactory, failure: FailureRunner) -> None:
    messages = [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]
    async with serve() as server, manager_for(server.url) as manager:
        error = await failure(manager, messages=messages, prompt=None)
        assert server.completions == []
    assert type(error) is InvalidRequestError
    assert error.provider == "qw"
    assert "'file' is not supported" in str(error)


# -- answers --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tool_calls_complete(manager_for: ManagerFactory) -> None:
    reply = ScriptedReply(content="", tool_calls=WEATHER_CALLS, finish_reason="tool_calls", usage=(30, 12))
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(reply)
        response = await manager.complete(prompt="Weather and time in Hangzhou?", model=MODEL, tools=[WEATHER_TOOL])
        answer = json.loads(server.wire.render_completion(reply, server.completions[-1]))
    assert "index" in answer["output"]["choices"][0]["message"]["tool_calls"][0], "DashScope numbers its tool calls"
    assert isinstance(response, CompletionResponse)
    assert response.tool_calls == WEATHER_CALLS, "tool calls come back in OpenAI's format"
    assert response.finish_reason == "tool_calls"
    assert response.content == ""
    assert response.tokens == TokenUsage(30, 12, 42)


@pytest.mark.anyio
async def test_tool_calls_stream(manager_for: ManagerFactory) -> None:
    reply = ScriptedReply(content="Let me check.", tool_calls=WEATHER_CALLS, finish_reason="tool_calls")
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(reply)
        events = [e async for e in manager.stream(prompt="Weather?", model=MODEL, tools=[WEATHER_TOOL])]
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(fragments) > len(WEATHER_CALLS), "arguments arrive in several fragments"
    assert {f.index for f in fragments} == {0, 1}
    assert [f.id for f in fragments if f.id] == [call["id"] for call in WEATHER_CALLS], "empty ids are not ids"
    assert [f.name for f in fragments if f.name] == ["get_current_weather", "get_current_time"]
    assert "".join(f.arguments for f in fragments if f.index == 0) == WEATHER_CALLS[0]["function"]["arguments"]
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.finish_reason == "tool_calls"
    assert finish.response is not None
    assert finish.response.content == "Let me check."
    assert finish.response.tool_calls == WEATHER_CALLS


@pytest.mark.anyio
async def test_request_id_and_reasoning_are_reported(manager_for: ManagerFactory) -> None:
    body = result("The answer is 4.", "stop", (20, 30), reasoning_content="2 + 2 = 4")
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        response = await manager.complete(prompt="2 + 2?", model=MODEL)
    assert response.content == "The answer is 4."
    assert response.metadata["request_id"] == "req-1"
    assert response.metadata["reasoning"] == "2 + 2 = 4"
    assert response.tokens == TokenUsage(20, 30, 50)


@pytest.mark.anyio
async def test_answer_without_usage_is_estimated_by_the_kernel(manager_for: ManagerFactory) -> None:
    body = {"output": {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": "four"}}]}}
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.content == "four"
    assert response.tokens.output > 0
    assert response.metadata["usage_estimated"] is True


@pytest.mark.anyio
async def test_legacy_text_answer(manager_for: ManagerFactory) -> None:
    body = {
        "output": {"text": "legacy shape", "finish_reason": "length"},
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        response = await manager.complete(prompt="Hi", model=MODEL)
    assert response.content == "legacy shape"
    assert response.finish_reason == "length"
    assert response.tokens == TokenUsage(3, 2, 5)


@pytest.mark.anyio
async def test_answer_without_output_is_a_server_error(manager_for: ManagerFactory, failure: FailureRunner) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=b'{"output": {}, "request_id": "r"}'))
        empty = await failure(manager)
        server.enqueue(ScriptedReply(body=b'{"request_id": "r", "status_code": 200}'))
        missing = await failure(manager)
    assert type(empty) is ServerError
    assert "neither output.choices nor output.text" in str(empty)
    assert type(missing) is ServerError
    assert "no 'output' object" in str(missing)


@pytest.mark.anyio
async def test_key_scrubbed_from_malformed_answer(manager_for: ManagerFactory, failure: FailureRunner) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=f"oops {KEY}".encode()))
        error = await failure(manager)
    assert type(error) is ServerError
    assert KEY not in str(error)


# -- streams ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stream_reasoning_frames_and_null_finish(manager_for: ManagerFactory) -> None:
    """Frames with only reasoning (a thinking model) yield no text; the string
    ``"null"`` is no finish reason; the last frame's usage counts."""
    body = frames(
        result("", reasoning_content="Let me think", usage=(10, 2)),
        result("", reasoning_content=" about it.", usage=(10, 5)),
        result("Paris.", usage=(10, 7)),
        result("", "stop", (10, 8)),
    )
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE_HEADERS))
        events = [e async for e in manager.stream(prompt="Capital of France?", model=MODEL)]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Paris."]
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.finish_reason == "stop"
    assert finish.response is not None
    assert finish.response.tokens == TokenUsage(10, 8, 18)


@pytest.mark.anyio
async def test_cut_stream_keeps_the_upstream_partial_usage(manager_for: ManagerFactory) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="one two three four", usage=(10, 4), cut_after=2))
        events = [e async for e in manager.stream(prompt="Count", model=MODEL, errors="event")]
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert error.partial == "one two"
    assert isinstance(error.error, SwarmgateError)
    attempt = error.error.attempts[-1]
    assert attempt.tokens == TokenUsage(10, 2, 12), "every DashScope frame carries the usage so far"


@pytest.mark.anyio
async def test_stream_that_ends_without_finishing(manager_for: ManagerFactory) -> None:
    body = frames(result("never "), result("finished", usage=(3, 2)))
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE_HEADERS))
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL, errors="event")]
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert type(error.error) is ServerError
    assert "without a finish_reason" in str(error.error)
    assert error.partial == "never finished"


@pytest.mark.anyio
async def test_stream_frame_of_another_shape(manager_for: ManagerFactory, failure: FailureRunner) -> None:
    body = frames({"request_id": "r", "output": {"choices": ["not an object"]}})
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers=SSE_HEADERS))
        error = await failure(manager, stream=True)
    assert type(error) is ServerError
    assert "not a DashScope generation result" in str(error)


@pytest.mark.anyio
async def test_stream_request_answered_with_json(manager_for: ManagerFactory) -> None:
    """A server that ignores SSE and answers JSON still gives a proper stream."""
    body = result("whole answer", "stop", (3, 2), tool_calls=[{**WEATHER_CALLS[1], "index": 0}])
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=json.dumps(body).encode()))
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["whole answer"]
    assert [(e.index, e.id, e.name) for e in events if isinstance(e, ToolCallDelta)] == [
        (0, "call_2", "get_current_time")
    ]
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.response is not None
    assert finish.response.tokens == TokenUsage(3, 2, 5)


# -- health --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_health_probes_the_compatible_models_listing(manager_for: ManagerFactory) -> None:
    async with serve() as server, manager_for(server.url, workspace="ws-9") as manager:
        status = (await manager.check_health("qw"))["qw"]
        probe = server.requests[-1]
    assert status.healthy, status.detail
    assert "3 models" in status.detail
    assert (probe.method, probe.path) == ("GET", "/compatible-mode/v1/models")
    assert probe.headers["authorization"] == f"Bearer {KEY}"
    assert probe.headers["x-dashscope-workspace"] == "ws-9"


@pytest.mark.anyio
async def test_health_unhealthy_on_a_bad_key(manager_for: ManagerFactory) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.models_reply = ScriptedReply.error(401)
        status = (await manager.check_health("qw"))["qw"]
    assert not status.healthy
    assert "HTTP 401" in status.detail
    assert "Invalid API-key provided." in status.detail
    assert "[InvalidApiKey]" in status.detail


@pytest.mark.anyio
async def test_health_url_setting(manager_for: ManagerFactory) -> None:
    async with serve() as server, manager_for(server.url, healthUrl=server.base_url + "/elsewhere") as manager:
        status = (await manager.check_health("qw"))["qw"]
        probe = server.requests[-1]
    assert probe.path == "/elsewhere"
    assert not status.healthy, "the fake serves nothing there"
    assert "HTTP 404" in status.detail


@pytest.mark.anyio
async def test_health_times_out(manager_for: ManagerFactory) -> None:
    async with serve() as server, manager_for(server.url, timeout=200) as manager:
        server.models_reply = ScriptedReply(delay=2.0)
        status = (await manager.check_health("qw"))["qw"]
    assert not status.healthy
    assert status.latency is not None
    assert status.latency < 1000


@pytest.mark.parametrize(
    ("endpoint", "compatible", "expected"),
    [
        ("https://dashscope.aliyuncs.com/api/v1", False, "https://dashscope.aliyuncs.com/compatible-mode/v1/models"),
        (
            "https://dashscope-intl.aliyuncs.com/api/v1",
            False,
            "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/models",
        ),
        ("http://127.0.0.1:8080/proxy/api/v1", False, "http://127.0.0.1:8080/proxy/compatible-mode/v1/models"),
        ("https://gateway.example.com/dashscope", False, "https://gateway.example.com/compatible-mode/v1/models"),
        (
            "https://dashscope.aliyuncs.com/compatible-mode/v1",
            True,
            "https://dashscope.aliyuncs.com/compatible-mode/v1/models",
        ),
    ],
)
def test_default_health_url(endpoint: str, compatible: bool, expected: str) -> None:
    assert default_health_url(endpoint, compatible=compatible) == expected


# -- configuration and lifecycle -------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ({"mode": "dashscope"}, "providers.qw.mode"),
        ({"mode": 1}, "providers.qw.mode"),
        ({"multimodalModels": ["qwen-vl-*", " "]}, "providers.qw.multimodalModels[1]"),
        ({"healthUrl": "dashscope.aliyuncs.com"}, "providers.qw.healthUrl"),
        ({"workSpace": "ws-1"}, "providers.qw.workSpace"),
    ],
)
async def test_bad_settings_are_config_errors(manager_for: ManagerFactory, setting: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        async with manager_for("http://127.0.0.1:9/api/v1", **setting):
            pass
    assert path in str(info.value)


@pytest.mark.anyio
async def test_api_key_is_required(manager_for: ManagerFactory) -> None:
    with pytest.raises(ConfigError) as info:
        async with manager_for("http://127.0.0.1:9/api/v1", apiKey=None):
            pass
    assert "providers.qw" in str(info.value)
    assert "apiKey" in str(info.value)


def test_defaults() -> None:
    provider = QwenProvider("qw", ProviderConfig(type="qwen", api_key=KEY))
    assert provider.endpoint == DEFAULT_ENDPOINT == "https://dashscope.aliyuncs.com/api/v1"
    assert provider.options == QwenSettings()
    assert provider.delegate is None
    assert provider.health_url == "https://dashscope.aliyuncs.com/compatible-mode/v1/models"
    assert provider.default_headers()["Authorization"] == f"Bearer {KEY}"


class _Recorded(QwenProvider):
    """The driver over ``httpx.MockTransport``: the URLs are all this test needs."""

    seen: list[httpx.Request]

    def build_client(self) -> httpx.AsyncClient:
        self.seen = []

        def answer(request: httpx.Request) -> httpx.Response:
            self.seen.append(request)
            if request.method == "GET":
                return httpx.Response(200, json={"object": "list", "data": []})
            return httpx.Response(200, json=result("hi", "stop", (1, 1)))

        return httpx.AsyncClient(
            base_url=self.endpoint, headers=self.default_headers(), transport=httpx.MockTransport(answer)
        )


@pytest.mark.anyio
async def test_default_endpoint_is_dashscope() -> None:
    provider = _Recorded("qw", ProviderConfig(type="qwen", api_key=KEY))
    await provider.start()
    try:
        status = await provider.health_check()
    finally:
        await provider.aclose()
    assert status.healthy
    assert str(provider.seen[0].url) == "https://dashscope.aliyuncs.com/compatible-mode/v1/models"


@pytest.mark.anyio
async def test_client_lifecycle() -> None:
    provider = QwenProvider("qw", ProviderConfig(type="qwen", api_key=KEY))
    with pytest.raises(RuntimeError, match="not started"):
        _ = provider.client
    await provider.start()
    client = provider.client
    await provider.aclose()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="not started"):
        _ = provider.client
