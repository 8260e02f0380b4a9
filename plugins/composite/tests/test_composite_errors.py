"""Target failures come out of the composite as the right taxonomy errors,
with the upstream's own message, in every mode (real sockets, openai targets);
mixed failures follow the documented precedence (scripted targets)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from swarmgate import (
    AuthenticationError,
    ContentFilteredError,
    ContextLengthExceededError,
    InvalidRequestError,
    OverloadedError,
    ProviderConnectionError,
    ProviderManager,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    SwarmgateError,
    registry,
)
from swarmgate.testing import FakeUpstream, ScriptedProvider, ScriptedReply, attempt_error
from swarmgate_composite import CompositeProvider

FAILURES = [
    pytest.param(
        ScriptedReply.error(
            429,
            "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3.",
            code="rate_limit_exceeded",
            headers={"Retry-After": "2"},
        ),
        RateLimitedError,
        id="rate-limit",
    ),
    pytest.param(
        ScriptedReply.error(503, "The engine is currently overloaded, please try again later."),
        OverloadedError,
        id="overload",
    ),
    pytest.param(
        ScriptedReply.error(401, "Incorrect API key provided: sk-proj-****abcd.", code="invalid_api_key"),
        AuthenticationError,
        id="auth",
    ),
    pytest.param(
        ScriptedReply.error(
            400,
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130412 tokens.",
            code="context_length_exceeded",
        ),
        ContextLengthExceededError,
        id="context-length",
    ),
    pytest.param(
        ScriptedReply.error(
            400,
            "The response was filtered due to the prompt triggering the content management policy.",
            code="content_filter",
        ),
        ContentFilteredError,
        id="content-filter",
    ),
]


async def ask(manager: ProviderManager, *, stream: bool) -> None:
    """One request for ``combo``, streamed or not (for requests that must fail)."""
    if stream:
        _ = [e async for e in manager.stream(model="combo/gpt-4o-mini", prompt="Hello?")]
    else:
        await manager.complete(model="combo/gpt-4o-mini", prompt="Hello?")


def combo_config(url: str, mode: str) -> dict[str, Any]:
    """Two openai providers on one fake and the composite ``combo`` over both."""
    target = {"type": "openai", "endpoint": url, "timeout": 2000, "models": {"gpt-4o-mini": {"costPerToken": 0.001}}}
    return {
        "providers": {
            "one": target,
            "two": target,
            "combo": {"type": "composite", "mode": mode, "targets": ["one/gpt-4o-mini", "two/gpt-4o-mini"]},
        }
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("mode", "stream"),
    [("race", False), ("race", True), ("fanout", False), ("sequential", False)],
    ids=["race", "race-stream", "fanout", "sequential"],
)
@pytest.mark.parametrize(("reply", "expected"), FAILURES)
async def test_each_failure_kind_keeps_its_type_and_message(
    reply: ScriptedReply, expected: type[SwarmgateError], mode: str, stream: bool
) -> None:
    """(fanout and sequential stream by computing first: their streamed
    failures take the same path as ``complete``, checked in their own tests.)"""
    async with FakeUpstream() as server, ProviderManager(combo_config(server.url, mode)) as manager:
        server.enqueue(reply, reply)
        with pytest.raises(SwarmgateError) as info:
            await ask(manager, stream=stream)
        assert len(server.completions) == 2
    error = attempt_error(info.value)
    assert type(error) is expected
    assert error.provider == "combo"
    assert error.upstream_status == reply.status
    assert reply.error_message is not None
    assert reply.error_message in error.message
    assert "one/gpt-4o-mini" in error.message
    assert "two/gpt-4o-mini" in error.message
    if expected is RateLimitedError:
        assert error.retry_after == pytest.approx(2.0)


def scripted_config(mode: str) -> dict[str, Any]:
    providers: dict[str, Any] = {name: {"type": "scripted", "models": {"m": {}}} for name in ("a", "b", "c")}
    providers["combo"] = {"type": "composite", "mode": mode, "targets": ["a/m", "b/m", "c/m"], "models": {"x": {}}}
    return {"providers": providers}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        ((AuthenticationError("a"), OverloadedError("b"), ServerError("c")), OverloadedError),
        ((ContentFilteredError("a"), AuthenticationError("b"), InvalidRequestError("c")), AuthenticationError),
        ((InvalidRequestError("a"), ContentFilteredError("b"), InvalidRequestError("c")), ContentFilteredError),
        ((ProviderConnectionError("a"), ProviderTimeoutError("b"), ServerError("c")), ProviderTimeoutError),
        (
            (ContextLengthExceededError("a"), ContextLengthExceededError("b"), InvalidRequestError("c")),
            ContextLengthExceededError,
        ),
    ],
    ids=["retryable-first", "failover-before-refusal", "filter-before-invalid", "timeout", "context-length"],
)
async def test_mixed_failures_follow_the_precedence(errors: tuple[SwarmgateError, ...], expected: type) -> None:
    drivers = {registry.PROVIDERS: {"scripted": ScriptedProvider}}
    async with ProviderManager(scripted_config("fanout"), drivers=drivers) as manager:
        for name, error in zip(("a", "b", "c"), errors, strict=True):
            cast(ScriptedProvider, manager.provider(name)).push(error)
        with pytest.raises(SwarmgateError) as info:
            await manager.complete(model="combo/x", prompt="Hello?")
    error = attempt_error(info.value)
    assert type(error) is expected
    assert "composite 'combo': all 3 target(s) failed: a/m:" in error.message


@pytest.mark.anyio
async def test_a_failover_kind_lets_the_outer_request_fail_over() -> None:
    """The composite raises a typed, failover-able error (not a final
    NoProviderAvailableError), so a route can move on to its next target."""
    config = scripted_config("race")
    config["providers"]["backup"] = {"type": "scripted", "content": "from backup", "models": {"m": {}}}
    config["routes"] = {"safe": {"targets": ["combo/x", "backup/m"], "ordered": True}}
    drivers = {registry.PROVIDERS: {"scripted": ScriptedProvider, "composite": CompositeProvider}}
    async with ProviderManager(config, drivers=drivers) as manager:
        for name in ("a", "b", "c"):
            cast(ScriptedProvider, manager.provider(name)).push(OverloadedError(f"{name} is busy"))
        response = await manager.complete(model="safe", prompt="Hello?")
    assert response.content == "from backup"
    first, second = response.attempts
    assert (first.provider, first.ok, first.error_kind) == ("combo", False, "overloaded")
    assert (second.provider, second.ok) == ("backup", True)
