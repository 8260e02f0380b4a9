"""Timeouts (first token, stream idle, total) and what a stream broken mid-answer does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from swarmgate import (
    ConfigError,
    ErrorEvent,
    FinishEvent,
    InvalidRequestError,
    ProviderManager,
    ProviderTimeoutError,
    ServerError,
    StreamFailover,
    StreamStart,
    TextDelta,
)
from swarmgate.testing import Outcome, ScriptedProvider

pytestmark = pytest.mark.anyio


class PrefillProvider(ScriptedProvider):
    """A scripted provider whose upstream continues an assistant prefill."""

    supports_prefill = True


DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider, "prefill": PrefillProvider}}


def config(fallback_type: str = "scripted", **routing: Any) -> dict[str, Any]:
    return {
        "providers": {
            "primary": {"type": "scripted", "priority": 1, "timeout": 2000, "models": {"m": {"costPerToken": 0.001}}},
            "backup": {"type": fallback_type, "priority": 2, "timeout": 2000, "models": {"m": {"costPerToken": 0.002}}},
        },
        "routing": routing,
    }


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


async def collect(events: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in events]


def text(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_a_slow_first_token_fails_over() -> None:
    async with ProviderManager(config(timeouts={"firstToken": 100}), drivers=DRIVERS) as manager:
        scripted(manager, "primary").push(Outcome("late", delay=1))
        with anyio.fail_after(1):
            events = await collect(manager.stream(prompt="hi", model="m"))
    assert [e.provider for e in events if isinstance(e, StreamStart)] == ["backup"]
    final = events[-1].response
    assert final.attempts[0].error == "no first token within 0.1s"


async def test_a_stream_silent_mid_answer_is_detected_within_the_idle_bound() -> None:
    cfg = config()
    cfg["providers"]["primary"]["timeouts"] = {"streamIdle": 100}

    class Stalling(ScriptedProvider):
        async def stream(self, call: Any) -> Any:
            yield TextDelta("partial ")
            await anyio.sleep(5)
            yield TextDelta("never")

    drivers = {"swarmgate.providers": {"scripted": Stalling}}
    async with ProviderManager(cfg, drivers=drivers) as manager:
        with anyio.fail_after(1):
            events = await collect(manager.stream(prompt="hi", model="m", errors="event"))
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert error.partial == "partial "
    assert isinstance(error.error, ProviderTimeoutError)
    assert "stalled: no event within 0.1s" in str(error.error)


async def test_the_total_deadline_stops_further_attempts() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        scripted(manager, "primary").push(Outcome("slow", delay=1))
        with anyio.fail_after(1), pytest.raises(ProviderTimeoutError) as info:
            await manager.complete(prompt="hi", model="m", timeouts={"total": 150})
    assert "total deadline" in str(info.value)
    assert len(info.value.attempts) == 1


async def test_default_policy_ends_a_broken_stream_with_the_error() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        scripted(manager, "primary").push(Outcome("one two three", error=ServerError("cut"), fail_after=2))
        events = await collect(manager.stream(prompt="hi", model="m", errors="event"))
    assert isinstance(events[-1], ErrorEvent)
    assert events[-1].partial == "one two "
    assert not any(isinstance(e, FinishEvent) for e in events)


async def test_continue_policy_continues_on_a_target_that_takes_prefill() -> None:
    cfg = config(fallback_type="prefill", streamFailover="continue")
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        scripted(manager, "primary").push(Outcome("one two three", error=ServerError("cut"), fail_after=2))
        scripted(manager, "backup").push(Outcome("three four"))
        events = await collect(manager.stream(prompt="hi", model="m"))
        continued = scripted(manager, "backup").calls[-1].request.messages
    failover = next(e for e in events if isinstance(e, StreamFailover))
    assert (failover.provider, failover.mode) == ("backup", "continue")
    assert [type(e).__name__ for e in events].count("StreamStart") == 1
    assert continued[-1].role == "assistant"
    assert continued[-1].content == "one two "
    assert text(events) == "one two three four"
    final = events[-1].response
    assert final.content == "one two three four"
    assert final.provider == "backup"
    assert [a.ok for a in final.attempts] == [False, True]
    assert final.attempts[0].cost > 0


async def test_continue_policy_restarts_cleanly_where_prefill_is_not_supported() -> None:
    cfg = config(streamFailover="continue")
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        scripted(manager, "primary").push(Outcome("one two three", error=ServerError("cut"), fail_after=2))
        scripted(manager, "backup").push(Outcome("a fresh answer"))
        events = await collect(manager.stream(prompt="hi", model="m"))
        sent = scripted(manager, "backup").calls[-1].request.messages
    failover = next(e for e in events if isinstance(e, StreamFailover))
    assert failover.mode == "restart"
    assert sent[-1].role == "user"
    after = events[events.index(failover) + 1 :]
    assert text(after) == "a fresh answer"
    assert events[-1].response.content == "a fresh answer"


async def test_bad_timeouts_are_named() -> None:
    cfg = config(timeouts={"total": 0}, streamFailover="sometimes")
    with pytest.raises(ConfigError) as info:
        await ProviderManager(cfg, drivers=DRIVERS).initialize()
    problems = dict(info.value.problems)
    assert problems["routing.timeouts.total"] == "must be a positive number of milliseconds"
    assert "expected one of ['continue', 'error']" in problems["routing.streamFailover"]
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        with pytest.raises(InvalidRequestError, match="unknown key"):
            await manager.complete(prompt="hi", timeouts={"firstTok": 1})


async def test_hedging_sends_a_slow_request_to_the_next_target_too() -> None:
    cfg = config(hedging={"enabled": True, "delay": 50})
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        scripted(manager, "primary").push(Outcome("slow primary", delay=0.5))
        scripted(manager, "backup").push(Outcome("fast backup", delay=0.01))
        started = anyio.current_time()
        response = await manager.complete(prompt="hi", model="m")
        elapsed = anyio.current_time() - started
        handle = manager.handle("primary")
        assert handle is not None
        assert handle.inflight == 0
    assert response.content == "fast backup"
    assert response.provider == "backup"
    assert elapsed < 0.4
    kinds = {(a.provider, a.error_kind) for a in response.attempts}
    assert ("primary", "cancelled") in kinds


async def test_no_hedge_when_the_primary_answers_in_time_or_fails_first() -> None:
    cfg = config(hedging={"enabled": True, "delay": 100})
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        response = await manager.complete(prompt="hi", model="m")
        assert [a.provider for a in response.attempts] == ["primary"]
        scripted(manager, "primary").push(ServerError("down"))
        response = await manager.complete(prompt="hi", model="m")
        assert [(a.provider, a.ok) for a in response.attempts] == [("primary", False), ("backup", True)]
        assert not scripted(manager, "backup").calls[0].request.stream


async def test_the_hedge_budget_caps_extra_requests() -> None:
    cfg = config(hedging={"enabled": True, "delay": 1, "maxRatio": 0.1})
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        for _ in range(20):
            scripted(manager, "primary").push(Outcome("slow", delay=0.03))
        for _ in range(20):
            await manager.complete(prompt="hi", model="m")
        backup_calls = len(scripted(manager, "backup").calls)
    assert 5 <= backup_calls <= 7


async def test_a_stream_whose_first_token_is_late_is_hedged() -> None:
    cfg = config(hedging={"enabled": True, "delay": 50})
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        scripted(manager, "primary").push(Outcome("slow primary", delay=0.5))
        scripted(manager, "backup").push(Outcome("fast backup"))
        started = anyio.current_time()
        events = await collect(manager.stream(prompt="hi", model="m"))
        elapsed = anyio.current_time() - started
        for name in ("primary", "backup"):
            handle = manager.handle(name)
            assert handle is not None
            assert handle.inflight == 0
        scripted(manager, "primary").push(Outcome("quick primary"))
        quick = await collect(manager.stream(prompt="hi", model="m"))
        assert len(scripted(manager, "backup").calls) == 1
    assert elapsed < 0.4
    assert [e.provider for e in events if isinstance(e, StreamStart)] == ["backup"]
    assert text(events) == "fast backup"
    final = events[-1].response
    assert ("primary", "cancelled") in {(a.provider, a.error_kind) for a in final.attempts}
    assert text(quick) == "quick primary"
