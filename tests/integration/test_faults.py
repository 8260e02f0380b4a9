"""One test per upstream fault, through the library, on real loopback sockets.

Two OpenAI-format fake upstreams stand in for a primary and a fallback
provider (the `openai` driver, the `retry` and `breaker` plugins active).
Each test asserts what the caller gets, how many requests each upstream saw
(and their spacing where it matters), and that the gateway is healthy
afterwards: the next request is served normally and nothing is left in flight.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from swarmgate import (
    CompletionResponse,
    ContentFilteredError,
    ErrorEvent,
    FinishEvent,
    ProviderManager,
    ProviderTimeoutError,
    ServerError,
    StreamFailover,
    StreamStart,
    TextDelta,
)
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import FakeUpstream, ScriptedReply

pytestmark = pytest.mark.anyio

ANSWER = "the primary answers"
BACKUP = "the fallback answers"


@pytest.fixture(autouse=True)
def _plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai,swarmgate-retry,swarmgate-breaker")


def config(primary: str, fallback: str, **routing: Any) -> dict[str, Any]:
    return {
        "providers": {
            "primary": {
                "type": "openai",
                "apiKey": "sk-primary-key-000000",
                "endpoint": primary,
                "priority": 1,
                "timeout": 300,
                "models": {"small": {"costPerToken": 0.001, "contextWindow": 1000}},
            },
            "fallback": {
                "type": "openai",
                "apiKey": "sk-fallback-key-00000",
                "endpoint": fallback,
                "priority": 2,
                "timeout": 300,
                "models": {"large": {"costPerToken": 0.002, "contextWindow": 100000}},
            },
        },
        "routing": {"fallbackChains": [["primary", "fallback"]], **routing},
        "optimization": {"retry": {"maxAttempts": 3, "backoffMultiplier": 2, "initialDelay": 20, "maxDelay": 500}},
    }


@asynccontextmanager
async def gateway(**routing: Any) -> AsyncIterator[tuple[ProviderManager, FakeUpstream, FakeUpstream]]:
    async with FakeUpstream() as primary, FakeUpstream() as fallback:
        primary.default = ScriptedReply(content=ANSWER, usage=(5, 3))
        fallback.default = ScriptedReply(content=BACKUP, usage=(5, 3))
        async with ProviderManager(config(primary.url, fallback.url, **routing)) as manager:
            yield manager, primary, fallback
            await assert_healthy(manager, primary)


async def assert_healthy(manager: ProviderManager, primary: FakeUpstream) -> None:
    """After the fault: the next request is answered, and nothing is left in flight."""
    response = await manager.complete(prompt="are you fine?", model="small")
    assert response.content in (ANSWER, BACKUP)
    for name in ("primary", "fallback"):
        handle = manager.handle(name)
        assert handle is not None
        assert handle.inflight == 0


def completions(upstream: FakeUpstream) -> list[Any]:
    return [r for r in upstream.requests if r.endpoint == "completion"]


async def ask(manager: ProviderManager, **fields: Any) -> CompletionResponse:
    return await manager.complete(prompt="tell me", model="small", **fields)


async def stream(manager: ProviderManager, **fields: Any) -> list[Any]:
    return [e async for e in manager.stream(prompt="tell me", model="small", errors="event", **fields)]


def text(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_429_with_retry_after_once_is_waited_out() -> None:
    async with gateway() as (manager, primary, fallback):
        primary.enqueue(ScriptedReply.error(429, "slow down", headers={"retry-after": "0.2"}))
        response = await ask(manager)
        sent = completions(primary)
        assert response.content == ANSWER
        assert len(sent) == 2
        assert sent[1].received_at - sent[0].received_at >= 0.19
        assert completions(fallback) == []
        assert [a.ok for a in response.attempts] == [False, True]


async def test_persistent_429_without_retry_after_fails_over_after_the_retries() -> None:
    async with gateway() as (manager, primary, _fallback):
        primary.enqueue(*[ScriptedReply.error(429, "slow down")] * 3)
        response = await ask(manager)
        assert (response.provider, response.model, response.content) == ("fallback", "large", BACKUP)
        assert len(completions(primary)) == 3
        assert response.tokens.total == 8
        assert response.cost == pytest.approx(8 * 0.002)
        sent = completions(primary)
        assert sent[2].received_at > sent[0].received_at


async def test_500_once_is_retried() -> None:
    async with gateway() as (manager, primary, _):
        primary.enqueue(ScriptedReply.error(500, "internal"))
        response = await ask(manager)
        assert response.content == ANSWER
        assert len(completions(primary)) == 2


async def test_persistent_503_is_served_by_the_fallback_with_its_model_and_usage() -> None:
    async with gateway() as (manager, primary, fallback):
        primary.enqueue(*[ScriptedReply.error(503, "overloaded")] * 3)
        response = await ask(manager)
        assert (response.provider, response.model) == ("fallback", "large")
        assert completions(fallback)[0].json["model"] == "large"
        assert [a.error_kind for a in response.attempts if not a.ok] == ["overloaded"] * 3
        assert all(a.cost == 0 for a in response.attempts if not a.ok)


async def test_connection_reset_before_headers_is_retried() -> None:
    async with gateway() as (manager, primary, _):
        primary.enqueue(ScriptedReply(reset=True))
        response = await ask(manager)
        assert response.content == ANSWER
        assert response.attempts[0].error_kind == "connection_error"


async def test_no_response_at_all_times_out_then_fails_over() -> None:
    async with gateway() as (manager, primary, _):
        primary.enqueue(*[ScriptedReply(delay=1.0)] * 3)
        with anyio.fail_after(3):
            response = await ask(manager)
        assert response.provider == "fallback"
        assert {a.error_kind for a in response.attempts if not a.ok} == {"timeout"}


async def test_slow_first_token_fails_over_to_the_fallback() -> None:
    async with gateway(timeouts={"firstToken": 100}) as (manager, primary, _):
        primary.enqueue(*[ScriptedReply(delay=0.25)] * 3)
        with anyio.fail_after(3):
            events = await stream(manager)
        assert [e.provider for e in events if isinstance(e, StreamStart)] == ["fallback"]
        assert text(events) == BACKUP
        final = events[-1]
        assert isinstance(final, FinishEvent)
        assert final.response is not None
        assert all("first token" in (a.error or "") for a in final.response.attempts if not a.ok)


async def test_a_stream_cut_mid_answer_ends_with_an_error_not_a_finish() -> None:
    async with gateway() as (manager, primary, fallback):
        primary.enqueue(ScriptedReply(content="one two three four", cut_after=2))
        events = await stream(manager)
        assert text(events) == "one two"
        assert isinstance(events[-1], ErrorEvent)
        assert not any(isinstance(e, FinishEvent) for e in events)
        assert completions(fallback) == []


async def test_a_cut_stream_restarts_on_a_fallback_that_takes_no_prefill() -> None:
    async with gateway(streamFailover="continue") as (manager, primary, fallback):
        primary.enqueue(ScriptedReply(content="one two three four", cut_after=2))
        events = await stream(manager)
        failover = next(e for e in events if isinstance(e, StreamFailover))
        assert (failover.provider, failover.mode) == ("fallback", "restart")
        assert text(events[events.index(failover) :]) == BACKUP
        final = events[-1]
        assert isinstance(final, FinishEvent)
        assert final.response is not None
        assert final.response.content == BACKUP
        assert completions(fallback)[0].json["messages"][-1]["role"] == "user"


async def test_a_stream_stalled_mid_answer_is_detected_within_the_bound() -> None:
    async with gateway(timeouts={"streamIdle": 150}) as (manager, primary, _):
        primary.enqueue(ScriptedReply(content="one two three four", stall_after=2))
        started = anyio.current_time()
        with anyio.fail_after(2):
            events = await stream(manager)
        assert anyio.current_time() - started < 1.0
        error = events[-1]
        assert isinstance(error, ErrorEvent)
        assert isinstance(error.error, ProviderTimeoutError)
        assert error.partial == "one two"


async def test_a_malformed_chunk_fails_cleanly_and_never_leaks() -> None:
    async with gateway() as (manager, primary, _):
        primary.enqueue(ScriptedReply(content="one two three four", malformed_at=2))
        events = await stream(manager)
        assert text(events) == "one two"
        assert isinstance(events[-1], ErrorEvent)
        assert isinstance(events[-1].error, ServerError)
        assert "{" not in text(events)


async def test_a_stream_without_done_finishes_promptly_with_usage() -> None:
    async with gateway() as (manager, primary, _):
        primary.enqueue(ScriptedReply(content="one two three", usage=(4, 3), drop_terminator=True))
        with anyio.fail_after(1):
            events = await stream(manager)
        final = events[-1]
        assert isinstance(final, FinishEvent)
        assert final.response is not None
        assert final.response.content == "one two three"
        assert final.response.tokens.total == 7


async def test_context_length_exceeded_goes_to_a_larger_context_window() -> None:
    async with gateway() as (manager, primary, _fallback):
        primary.enqueue(ScriptedReply.error(400, "maximum context length exceeded", code="context_length_exceeded"))
        response = await ask(manager)
        assert (response.provider, response.model) == ("fallback", "large")
        assert len(completions(primary)) == 1
        assert response.attempts[0].error_kind == "context_length_exceeded"


async def test_a_content_filter_rejection_is_not_retried_and_reaches_the_caller() -> None:
    async with gateway() as (manager, primary, fallback):
        primary.enqueue(ScriptedReply.error(400, "flagged by the safety system", code="content_filter"))
        with pytest.raises(ContentFilteredError, match="flagged by the safety system"):
            await ask(manager)
        assert len(completions(primary)) == 1
        assert completions(fallback) == []


async def test_a_provider_down_for_a_while_is_bypassed_then_used_again() -> None:
    breaker = {"enabled": True, "failureThreshold": 2, "timeout": 300, "successThreshold": 1}
    async with gateway(circuitBreaker=breaker) as (manager, primary, _):
        primary.enqueue(*[ScriptedReply.error(503, "down")] * 8)
        served = [(await ask(manager)).provider for _ in range(4)]
        assert served == ["fallback"] * 4
        seen_during_outage = len(completions(primary))
        await anyio.sleep(0.35)  # the breaker's open time passes; the primary has recovered
        primary.clear()
        served = [(await ask(manager)).provider for _ in range(3)]
        assert served == ["primary"] * 3
        assert seen_during_outage <= 4
