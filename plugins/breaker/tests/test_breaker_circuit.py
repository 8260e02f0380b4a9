"""The circuit breaker in the request pipeline, against scripted in-process
providers and a fake wall clock: opening on the count and on the rate,
failing fast, half-open probes, closing, reopening, recovery."""

from __future__ import annotations

import re
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from swarmgate import (
    Alert,
    AuthenticationError,
    ContentFilteredError,
    ContextLengthExceededError,
    FailureDecision,
    InvalidRequestError,
    MemoryStateStore,
    NoProviderAvailableError,
    ProviderManager,
    ServerError,
    StreamStart,
    Target,
    hookimpl,
)
from swarmgate.alerts import BREAKER_CLOSED, BREAKER_OPENED
from swarmgate.models import ProviderEvent, ProviderReply
from swarmgate.provider import ProviderCall
from swarmgate.testing import Outcome, ScriptedProvider
from swarmgate_breaker import BreakerPlugin

pytestmark = pytest.mark.anyio

PRIMARY = Target("primary", "p")


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Flaky(ScriptedProvider):
    """A scripted provider that fails every unscripted call while ``down``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.down = False

    async def complete(self, call: ProviderCall) -> ProviderReply:
        if self.down and not self.queue:
            self.calls.append(call)
            raise ServerError("upstream down", provider=self.name)
        return await super().complete(call)

    async def stream(self, call: ProviderCall) -> Any:
        if self.down and not self.queue:
            self.calls.append(call)
            raise ServerError("upstream down", provider=self.name)
        events: list[ProviderEvent] = [e async for e in super().stream(call)]
        for event in events:
            yield event


def drivers(clock: Clock, store: MemoryStateStore | None = None) -> dict[str, Any]:
    """The scripted provider types, and a memory StateStore on the fake clock."""

    def memory(options: Any) -> MemoryStateStore:
        return store if store is not None else MemoryStateStore(options, clock=clock)

    return {
        "swarmgate.providers": {"scripted": ScriptedProvider, "flaky": Flaky},
        "swarmgate.state": {"memory": memory},
    }


def config(**breaker: Any) -> dict[str, Any]:
    """``primary`` (flaky) with ``spare`` as its fallback; opens after 3 failures for 10 s."""
    return {
        "providers": {
            "primary": {"type": "flaky", "priority": 1, "models": {"p": {}}},
            "spare": {"type": "scripted", "priority": 2, "models": {"s": {}}},
        },
        "routing": {
            "fallbackChains": [["primary", "spare"]],
            "circuitBreaker": {"failureThreshold": 3, "timeout": 10_000, **breaker},
        },
    }


def flaky(manager: ProviderManager, name: str = "primary") -> Flaky:
    provider = manager.provider(name)
    assert isinstance(provider, Flaky)
    return provider


async def settled(manager: ProviderManager, served: list[str], started: int) -> None:
    """Wait until each of the ``started`` requests has been answered or is in flight upstream."""
    in_flight = lambda: sum(manager.handle(n).inflight for n in manager.providers())  # type: ignore[union-attr]  # noqa: E731
    while len(served) + in_flight() < started:
        await anyio.lowlevel.checkpoint()


async def ask(manager: ProviderManager) -> str:
    """One request for primary/p (spare as fallback); returns who answered."""
    return (await manager.complete(prompt="hi", model="primary/p")).provider


def open_message(text: str) -> bool:
    return re.search(r"primary/p: circuit open until \d\d:\d\d:\d\d", text) is not None


async def test_opens_after_consecutive_failures_and_then_fails_fast() -> None:
    clock = Clock()
    async with ProviderManager(config(), drivers=drivers(clock), plugins=(BreakerPlugin(clock=clock),)) as manager:
        breaker = manager.extensions["breaker"]
        primary = flaky(manager)
        primary.down = True
        assert [await ask(manager) for _ in range(3)] == ["spare"] * 3
        assert len(primary.calls) == 3
        assert breaker.state(PRIMARY) == "open"
        assert breaker.open_until(PRIMARY) == clock.now + 10.0
        # While open: no attempt reaches the provider.
        response = await manager.complete(prompt="hi", model="primary/p")
        assert [(a.provider, a.ok) for a in response.attempts] == [("spare", True)]
        events = [e async for e in manager.stream(prompt="hi", model="primary/p")]
        assert isinstance(events[0], StreamStart)
        assert events[0].provider == "spare"
        with pytest.raises(NoProviderAvailableError) as info:
            await manager.complete(prompt="hi", provider="primary")
        assert open_message(str(info.value))
        assert len(primary.calls) == 3
        assert breaker.counters()["rejected"] == 3
        assert breaker.counters()["opened"] == 1


async def test_a_success_resets_the_consecutive_count() -> None:
    clock = Clock()
    async with ProviderManager(config(), drivers=drivers(clock), plugins=(BreakerPlugin(clock=clock),)) as manager:
        primary = flaky(manager)
        primary.push(ServerError("1"), ServerError("2"), "ok", ServerError("3"), ServerError("4"))
        served = [await ask(manager) for _ in range(5)]
        assert served == ["spare", "spare", "primary", "spare", "spare"]
        assert manager.extensions["breaker"].state(PRIMARY) == "closed"
        primary.push(ServerError("5"))
        await ask(manager)
        assert manager.extensions["breaker"].state(PRIMARY) == "open"


async def test_opens_on_the_failure_rate_over_the_window() -> None:
    clock = Clock()
    cfg = config(failureThreshold=100, failureRateThreshold=0.5, minimumRequests=6, window=60_000)
    async with ProviderManager(cfg, drivers=drivers(clock), plugins=(BreakerPlugin(clock=clock),)) as manager:
        breaker = manager.extensions["breaker"]
        primary = flaky(manager)
        # Half of the attempts fail, but old ones slide out of the window first.
        primary.push("ok", ServerError("a"), "ok", ServerError("b"))
        for _ in range(4):
            await ask(manager)
            clock.advance(1.0)
        clock.advance(60.0)
        primary.push("ok", ServerError("c"), "ok", ServerError("d"))
        for _ in range(4):
            await ask(manager)
        assert breaker.state(PRIMARY) == "closed"  # 4 requests in the window: below minimumRequests
        primary.push("ok", ServerError("e"))
        await ask(manager)
        assert breaker.state(PRIMARY) == "closed"
        await ask(manager)  # 6 in the window, 3 failed: the rate reaches 0.5
        assert breaker.state(PRIMARY) == "open"
        assert breaker.snapshot()["primary/p"]["consecutive_failures"] == 1


async def test_half_open_lets_a_limited_number_of_probes_through() -> None:
    clock = Clock()
    cfg = config(halfOpenMaxRequests=1, successThreshold=2)
    async with ProviderManager(cfg, drivers=drivers(clock), plugins=(BreakerPlugin(clock=clock),)) as manager:
        breaker = manager.extensions["breaker"]
        primary = flaky(manager)
        primary.down = True
        for _ in range(3):
            await ask(manager)
        clock.advance(10.0)
        assert breaker.state(PRIMARY) == "half_open"
        primary.down = False
        primary.push(Outcome("slow probe", delay=0.05))
        served: list[str] = []

        async def one() -> None:
            served.append(await ask(manager))

        async with anyio.create_task_group() as group:
            group.start_soon(one)
            await settled(manager, served, 1)  # the probe is in flight
            group.start_soon(one)
        assert served == ["spare", "primary"]  # the second request could not probe
        assert breaker.state(PRIMARY) == "half_open"  # one success of two
        assert await ask(manager) == "primary"
        assert breaker.state(PRIMARY) == "closed"
        assert breaker.counters()["probes"] == 2
        assert breaker.counters()["closed"] == 1


async def test_two_probe_slots_admit_two_concurrent_probes() -> None:
    clock = Clock()
    cfg = config(halfOpenMaxRequests=2, successThreshold=3)
    async with ProviderManager(cfg, drivers=drivers(clock), plugins=(BreakerPlugin(clock=clock),)) as manager:
        primary = flaky(manager)
        primary.down = True
        for _ in range(3):
            await ask(manager)
        clock.advance(10.0)
        primary.down = False
        primary.push(Outcome("a", delay=0.05), Outcome("b", delay=0.05))
        served: list[str] = []

        async def one() -> None:
            served.append(await ask(manager))

        async with anyio.create_task_group() as group:
            for started in range(1, 4):
                group.start_soon(one)
                await settled(manager, served, started)
        assert sorted(served) == ["primary", "primary", "spare"]


async def test_a_failure_while_half_open_reopens_the_circuit() -> None:
    clock = Clock()
    async with ProviderManager(config(), drivers=drivers(clock), plugins=(BreakerPlugin(clock=clock),)) as manager:
        breaker = manager.extensions["breaker"]
        primary = flaky(manager)
        primary.down = True
        for _ in range(3):
            await ask(manager)
        clock.advance(10.5)
        assert await ask(manager) == "spare"  # the probe failed
        assert len(primary.calls) == 4
        assert breaker.state(PRIMARY) == "open"
        assert breaker.open_until(PRIMARY) == clock.now + 10.0
        assert breaker.counters()["reopened"] == 1
        clock.advance(5.0)
        assert await ask(manager) == "spare"
        assert len(primary.calls) == 4


async def test_traffic_returns_to_the_primary_after_it_recovers() -> None:
    """Primary down from t=5 to t=15 (one request per second): the spare
    serves during the outage with few attempts wasted on the primary, and
    the primary is back soon after it recovers."""
    clock = Clock()
    cfg = config(failureThreshold=3, timeout=5_000, successThreshold=2)
    async with ProviderManager(cfg, drivers=drivers(clock), plugins=(BreakerPlugin(clock=clock),)) as manager:
        primary = flaky(manager)
        served: list[str] = []
        for second in range(30):
            primary.down = 5 <= second < 15
            served.append(await ask(manager))
            clock.advance(1.0)
        failed_on_primary = len(primary.calls) - served.count("primary")
    # t=5..7: three failures open the circuit until t=12; the probe at t=12
    # fails (reopened until 17); the probe at t=17 succeeds, t=18 closes it.
    assert served == ["primary"] * 5 + ["spare"] * 12 + ["primary"] * 13
    assert failed_on_primary == 4


async def test_failures_are_observed_even_when_another_plugin_decides() -> None:
    class Decider:
        @hookimpl
        def on_failure(self) -> FailureDecision:
            return FailureDecision.failover()

    clock = Clock()
    # Decider is registered last, so pluggy would call it first; the breaker's
    # on_failure is tryfirst, so it still sees every failure.
    plugins = (BreakerPlugin(clock=clock), Decider())
    async with ProviderManager(config(), drivers=drivers(clock), plugins=plugins) as manager:
        flaky(manager).down = True
        for _ in range(3):
            await ask(manager)
        assert manager.extensions["breaker"].state(PRIMARY) == "open"


async def test_only_the_providers_faults_count() -> None:
    clock = Clock()
    async with ProviderManager(config(), drivers=drivers(clock), plugins=(BreakerPlugin(clock=clock),)) as manager:
        primary = flaky(manager)
        for error in (
            InvalidRequestError("bad body"),
            ContentFilteredError("refused"),
            InvalidRequestError("bad body"),
        ):
            primary.push(error)
            with pytest.raises(type(error)):
                await ask(manager)
        for error in (
            ContextLengthExceededError("too long"),
            AuthenticationError("bad key"),
            ContextLengthExceededError("too long"),
        ):
            primary.push(error)
            assert await ask(manager) == "spare"
        assert manager.extensions["breaker"].state(PRIMARY) == "closed"
    async with ProviderManager(
        config(countedErrors=["authentication"]), drivers=drivers(clock), plugins=(BreakerPlugin(clock=clock),)
    ) as manager:
        for _ in range(3):
            flaky(manager).push(AuthenticationError("bad key"))
            await ask(manager)
        assert manager.extensions["breaker"].state(PRIMARY) == "open"


async def test_a_provider_is_marked_unhealthy_only_while_all_its_models_are_open() -> None:
    clock = Clock()
    cfg = config(failureThreshold=1)
    cfg["providers"]["primary"]["models"] = {"p": {}, "q": {}}
    async with ProviderManager(cfg, drivers=drivers(clock), plugins=(BreakerPlugin(clock=clock),)) as manager:
        primary = flaky(manager)
        handle = manager.handle("primary")
        assert handle is not None
        primary.push(ServerError("p down"))
        await ask(manager)
        assert handle.healthy  # q is still closed
        primary.push(ServerError("q down"))
        assert (await manager.complete(prompt="hi", model="primary/q")).provider == "spare"
        assert not handle.healthy
        assert handle.health_detail.startswith("circuit open for every model (until ")
        clock.advance(10.0)
        assert await ask(manager) == "primary"  # half-open: the probe goes through
        assert handle.healthy
        # Another plugin's mark is left alone.
        primary.push(ServerError("p down again"))
        await ask(manager)
        manager.set_health("primary", False, "health probe failed")
        clock.advance(10.0)
        await ask(manager)
        assert not handle.healthy
        assert handle.health_detail == "health probe failed"


async def test_streams_count_too() -> None:
    clock = Clock()
    cfg = config(successThreshold=1)
    async with ProviderManager(cfg, drivers=drivers(clock), plugins=(BreakerPlugin(clock=clock),)) as manager:
        breaker = manager.extensions["breaker"]
        primary = flaky(manager)
        primary.down = True
        for _ in range(3):
            events = [e async for e in manager.stream(prompt="hi", model="primary/p")]
            assert events[-1].response.provider == "spare"
        assert breaker.state(PRIMARY) == "open"
        clock.advance(10.0)
        primary.down = False
        events = [e async for e in manager.stream(prompt="hi", model="primary/p")]
        assert events[-1].response.provider == "primary"
        assert breaker.state(PRIMARY) == "closed"


async def test_snapshot() -> None:
    clock = Clock()
    async with ProviderManager(config(), drivers=drivers(clock), plugins=(BreakerPlugin(clock=clock),)) as manager:
        breaker = manager.extensions["breaker"]
        flaky(manager).down = True
        for _ in range(3):
            await ask(manager)
        snapshot = breaker.snapshot()
    assert snapshot["primary/p"] == {
        "state": "open",
        "opened_at": clock.now,
        "open_until": clock.now + 10.0,
        "consecutive_failures": 3,
        "half_open_successes": 0,
        "pending_successes": 0,
    }
    assert snapshot["spare/s"]["state"] == "closed"
    assert snapshot["spare/s"]["pending_successes"] == 3


async def test_open_and_close_raise_alerts_and_a_reopening_does_not() -> None:
    """``breaker_opened`` when a closed circuit opens, ``breaker_closed``
    when it closes; a half-open circuit reopening raises nothing (its
    opening was announced, its closing will be)."""
    clock = Clock()
    seen: list[Alert] = []
    cfg = config(failureThreshold=3, timeout=5_000, successThreshold=2)
    async with ProviderManager(cfg, drivers=drivers(clock), plugins=(BreakerPlugin(clock=clock),)) as manager:
        manager.on_alert(seen.append)
        primary = flaky(manager)
        primary.down = True
        for _ in range(3):
            await ask(manager)
        clock.advance(5.5)
        await ask(manager)  # the probe fails: reopened, no second alert
        assert manager.extensions["breaker"].counters()["reopened"] == 1
        clock.advance(5.5)
        primary.down = False
        await ask(manager)
        await ask(manager)  # two successful probes close it
    breaker_alerts = [a for a in seen if a.type in (BREAKER_OPENED, BREAKER_CLOSED)]
    assert [(a.type, a.provider, a.model, a.severity) for a in breaker_alerts] == [
        (BREAKER_OPENED, "primary", "p", "warning"),
        (BREAKER_CLOSED, "primary", "p", "info"),
    ]
    opened = breaker_alerts[0]
    assert opened.message.startswith("circuit of primary/p opened (3 consecutive failures); open until ")
    assert opened.data == {
        "reason": "3 consecutive failures",
        "opened_at": opened.data["opened_at"],
        "open_until": opened.data["opened_at"] + 5.0,
    }
