"""The ``local`` type with ``"api": "openai"``: OpenAI-compatible local servers
(vLLM, llama.cpp's server, LM Studio) through the ``openai`` driver, with
their own error texts mapped."""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate import (
    AuthenticationError,
    ContentFilteredError,
    ContextLengthExceededError,
    FinishEvent,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    ProviderManager,
    RateLimitedError,
    ServerError,
    SwarmgateError,
)
from swarmgate.testing import FakeUpstream, OpenAIWire, ScriptedReply, attempt_error

MODEL = "Qwen/Qwen2.5-7B-Instruct"


def serve() -> FakeUpstream:
    return FakeUpstream(OpenAIWire(models=(MODEL,)))


def manager_for(url: str, **provider: Any) -> ProviderManager:
    """A manager with one ``local`` provider ``vl`` in ``openai`` mode at ``url``."""
    config: dict[str, Any] = {"type": "local", "api": "openai", "endpoint": url, "timeout": 2000, "models": {MODEL: {}}}
    config.update(provider)
    return ProviderManager({"providers": {"vl": config}})


async def failure(manager: ProviderManager, *, stream: bool = False) -> SwarmgateError:
    try:
        if stream:
            _ = [e async for e in manager.stream(prompt="Hello?", model=MODEL)]
        else:
            await manager.complete(prompt="Hello?", model=MODEL)
    except SwarmgateError as exc:
        return attempt_error(exc)
    raise AssertionError("the request succeeded; an error was expected")


@pytest.mark.anyio
async def test_requests_go_to_the_openai_api_without_a_key() -> None:
    async with serve() as server, manager_for(server.url) as manager:
        response = await manager.complete(prompt="Hi", model=MODEL, max_tokens=20)
        status = (await manager.check_health("vl"))["vl"]
        completion, listing = server.requests
    assert response.content == server.default.content
    assert (completion.method, completion.path) == ("POST", "/v1/chat/completions")
    assert completion.json["max_tokens"] == 20
    assert "authorization" not in completion.headers
    assert status.healthy
    assert "1 models" in status.detail
    assert (listing.method, listing.path) == ("GET", "/v1/models")


@pytest.mark.anyio
async def test_stream_usage_can_be_turned_off() -> None:
    async with serve() as server, manager_for(server.url, streamUsage=False) as manager:
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
        body = server.completions[-1].json
    assert "stream_options" not in body
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.response is not None
    assert finish.response.metadata.get("usage_estimated") is True


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("message", "kind"),
    [
        # llama.cpp's server
        ("the request exceeds the available context size, try increasing it", "exceed_context_size_error"),
        # vLLM
        (
            "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
            "(4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.",
            "BadRequestError",
        ),
        # LM Studio
        (
            "Trying to keep the first 5120 tokens when context the overflows. "
            "However, the model is loaded with context length of only 4096 tokens, which is not enough.",
            "invalid_request_error",
        ),
    ],
    ids=["llama.cpp", "vllm", "lm-studio"],
)
async def test_context_length_exceeded(message: str, kind: str, stream: bool) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(400, message, type=kind))
        error = await failure(manager, stream=stream)
    assert type(error) is ContextLengthExceededError
    assert error.upstream_status == 400
    assert message in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("Your request was rejected by the safety system.", "content_policy_violation"),
        ("Input blocked by guardrail: content flagged as unsafe", None),
    ],
    ids=["openai-code", "guardrail-text"],
)
async def test_content_filter_rejection(message: str, code: str | None, stream: bool) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(400, message, code=code))
        error = await failure(manager, stream=stream)
    assert type(error) is ContentFilteredError
    assert message in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_content_filter_finish_reason(stream: bool) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="The beginning of", finish_reason="content_filter"))
        error = await failure(manager, stream=stream)
    assert type(error) is ContentFilteredError


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (429, "Too many concurrent requests", RateLimitedError),
        (503, "Loading model", OverloadedError),  # llama.cpp while the model loads
        (401, "Invalid API key", AuthenticationError),  # vLLM --api-key
        (404, "The model `llama-3-70b` does not exist.", NotFoundError),
        (400, "temperature must be non-negative", InvalidRequestError),
        (500, "CUDA out of memory", ServerError),
    ],
)
async def test_status_errors_keep_the_message(
    status: int, message: str, expected: type[SwarmgateError], stream: bool
) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(status, message, headers={"Retry-After": "2"}))
        error = await failure(manager, stream=stream)
    assert type(error) is expected
    assert message in str(error)
    if expected is RateLimitedError:
        assert error.retry_after == pytest.approx(2.0)
