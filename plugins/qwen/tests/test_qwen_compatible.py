"""The ``qwen`` type in ``"mode": "openai-compatible"``: delegated to the
``openai`` driver, with DashScope's error codes still mapped to the taxonomy."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from swarmgate import (
    ContentFilteredError,
    ContextLengthExceededError,
    ErrorEvent,
    InvalidRequestError,
    OverloadedError,
    PermissionDeniedError,
    ProviderConfig,
    ProviderManager,
    RateLimitedError,
    SwarmgateError,
    TextDelta,
)
from swarmgate.testing import FakeUpstream, OpenAIWire, ScriptedReply
from swarmgate_openai import OpenAIProvider
from swarmgate_qwen import DEFAULT_COMPATIBLE_ENDPOINT, OPENAI_COMPATIBLE, QwenProvider, QwenSettings, refine

MODEL = "qwen-plus"  # the model and key conftest.py's manager_for configures
KEY = "sk-qwen-test-0123456789abcdef"
ManagerFactory = Callable[..., ProviderManager]
FailureRunner = Callable[..., Awaitable[SwarmgateError]]
STREAM = pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])


def serve() -> FakeUpstream:
    return FakeUpstream(OpenAIWire((MODEL, "qwen-max"), base_path="/compatible-mode/v1"))


def compatible(manager_for: ManagerFactory, url: str, **provider: Any) -> ProviderManager:
    return manager_for(url, mode=OPENAI_COMPATIBLE, **provider)


@pytest.mark.anyio
async def test_calls_are_delegated_to_the_openai_driver(manager_for: ManagerFactory) -> None:
    image = [
        {"type": "image_url", "image_url": {"url": "https://example.com/dog.jpeg"}},
        {"type": "text", "text": "What is this?"},
    ]
    async with serve() as server, compatible(manager_for, server.url, workspace="ws-7") as manager:
        response = await manager.complete(messages=[{"role": "user", "content": image}], model=MODEL, max_tokens=50)
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
        plain, streamed = server.completions
    assert response.content == server.default.content
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == server.default.content
    assert plain.path == streamed.path == "/compatible-mode/v1/chat/completions"
    assert plain.json == {
        "model": MODEL,
        "messages": [{"role": "user", "content": image}],
        "max_tokens": 50,
    }, "OpenAI content parts pass through unchanged"
    assert streamed.json["stream"] is True
    assert streamed.json["stream_options"] == {"include_usage": True}
    for request in (plain, streamed):
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["x-dashscope-workspace"] == "ws-7"


@pytest.mark.anyio
async def test_stream_usage_setting(manager_for: ManagerFactory) -> None:
    async with serve() as server, compatible(manager_for, server.url, streamUsage=False) as manager:
        _ = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
        body = server.completions[-1].json
    assert "stream_options" not in body


def test_defaults() -> None:
    provider = QwenProvider("qw", ProviderConfig(type="qwen", api_key=KEY), QwenSettings(mode=OPENAI_COMPATIBLE))
    assert provider.endpoint == DEFAULT_COMPATIBLE_ENDPOINT == "https://dashscope.aliyuncs.com/compatible-mode/v1"
    assert isinstance(provider.delegate, OpenAIProvider)
    assert provider.delegate.endpoint == DEFAULT_COMPATIBLE_ENDPOINT
    assert provider.delegate.config.api_key == KEY
    assert provider.delegate.options.stream_usage is True
    assert provider.health_url == DEFAULT_COMPATIBLE_ENDPOINT + "/models"


# -- DashScope's codes through the openai driver -------------------------------------------------


@pytest.mark.anyio
@STREAM
@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (400, "data_inspection_failed", "Input data may contain inappropriate content.", ContentFilteredError),
        (400, "invalid_parameter_error", "Range of input length should be [1, 129024]", ContextLengthExceededError),
        (
            429,
            "insufficient_quota",
            "You exceeded your current quota, please check your plan and billing details.",
            RateLimitedError,
        ),
        (429, "limit_requests", "You have exceeded your request limit.", RateLimitedError),
        (400, "Arrearage", "Access denied, please make sure your account is in good standing.", PermissionDeniedError),
        (503, "ModelServingError", "Too many requests.", OverloadedError),
        (400, "invalid_request_error", "you must provide a model parameter.", InvalidRequestError),
    ],
)
async def test_dashscope_codes_are_mapped(
    manager_for: ManagerFactory,
    failure: FailureRunner,
    status: int,
    code: str,
    message: str,
    expected: type[SwarmgateError],
    stream: bool,
) -> None:
    async with serve() as server, compatible(manager_for, server.url) as manager:
        server.enqueue(ScriptedReply.error(status, message, type=code, code=code, headers={"Retry-After": "2"}))
        error = await failure(manager, stream=stream)
    assert type(error) is expected, f"{status} {code} gave {type(error).__name__}: {error}"
    assert error.provider == "qw"
    assert error.upstream_status == status
    assert error.retry_after == pytest.approx(2.0)
    assert message in str(error)


@pytest.mark.anyio
async def test_moderation_error_object_mid_stream(manager_for: ManagerFactory) -> None:
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Partial"}}]}
    error = {
        "error": {
            "message": "Output data may contain inappropriate content.",
            "type": "data_inspection_failed",
            "code": "data_inspection_failed",
        }
    }
    body = b"".join(b"data: " + json.dumps(d).encode() + b"\n\n" for d in (chunk, error))
    async with serve() as server, compatible(manager_for, server.url) as manager:
        server.enqueue(ScriptedReply(body=body, headers={"content-type": "text/event-stream"}))
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL, errors="event")]
    last = events[-1]
    assert isinstance(last, ErrorEvent)
    assert last.partial == "Partial"
    assert type(last.error) is ContentFilteredError
    assert "Output data may contain inappropriate content." in str(last.error)


def test_refine_keeps_what_it_cannot_improve() -> None:
    generic = InvalidRequestError("upstream HTTP 400: bad temperature [invalid_request_error]", provider="qw")
    assert refine(generic) is generic
    limited = RateLimitedError("upstream HTTP 429: slow down [Throttling]", provider="qw", retry_after=1.0)
    assert refine(limited) is limited
    plain = InvalidRequestError("no label at all", provider="qw")
    assert refine(plain) is plain


# -- health ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_health_is_the_delegates_models_listing(manager_for: ManagerFactory) -> None:
    async with serve() as server, compatible(manager_for, server.url) as manager:
        status = (await manager.check_health("qw"))["qw"]
        probe = server.requests[-1]
    assert status.healthy, status.detail
    assert (probe.method, probe.path) == ("GET", "/compatible-mode/v1/models")


@pytest.mark.anyio
async def test_health_url_in_compatible_mode(manager_for: ManagerFactory) -> None:
    async with serve() as server, compatible(manager_for, server.url, healthUrl=server.base_url + "/health") as manager:
        status = (await manager.check_health("qw"))["qw"]
        probe = server.requests[-1]
    assert probe.path == "/health"
    assert probe.headers["authorization"] == f"Bearer {KEY}"
    assert not status.healthy
    assert "HTTP 404" in status.detail
