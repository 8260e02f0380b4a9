"""The latency and error-rate watchers in the request pipeline, against
scripted in-process providers, a fake monotonic clock and a memory
StateStore on the same clock."""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate import (
    Alert,
    InvalidRequestError,
    MemoryStateStore,
    ProviderManager,
    RateLimitedError,
    ServerError,
    Target,
    hookimpl,
)
from swarmgate.alerts import ERROR_RATE_SPIKE, LATENCY_SLA
from swarmgate.testing import Outcome, ScriptedProvider, expect_failure
from swarmgate_alerts import ERROR_RATE_RESOLVED, LATENCY_SLA_RESOLVED, AlertsPlugin

pytestmark = pytest.mark.anyio


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def drivers(clock: Clock, store: MemoryStateStore | None = None) -> dict[str, Any]:
    def memory(options: Any) -> MemoryStateStore:
        return store if store is not None else MemoryStateStore(options, clock=clock)

    return {"swarmgate.providers": {"scripted": ScriptedProvider}, "swarmgate.state": {"memory": memory}}


def config(**alerts: Any) -> dict[str, Any]:
    """``a`` first, ``b`` its fallback; small windows so that a few requests decide."""
    section = {"errorRate": {"threshold": 0.5, "minRequests": 4, "window": 60_000}, "cooldown": 60_000, **alerts}
    return {
        "providers": {
            "a": {"type": "scripted", "priority": 1, "models": {"m": {}}},
            "b": {"type": "scripted", "priority": 2, "models": {"m": {}}},
        },
        "routing": {"fallbackChains": [["a", "b"]]},
        "monitoring": {"alerts": section},
    }


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


async def ask(manager: ProviderManager) -> str:
    return (await manager.complete(prompt="hi", model="a/m")).provider


async def delivered(manager: ProviderManager, seen: list[Alert]) -> list[tuple[str, str | None]]:
    """Every alert delivered so far, as (type, provider)."""
    hub = manager.alerts
    assert hub is not None
    await hub.deliver_pending()
    return [(a.type, a.provider) for a in seen]


async def test_an_error_rate_spike_is_raised_once_per_cooldown_and_resolved() -> None:
    clock = Clock()
    seen: list[Alert] = []
    cfg = config(errorRate={"threshold": 0.5, "minRequests": 4, "window": 120_000})
    async with ProviderManager(cfg, drivers=drivers(clock), plugins=(AlertsPlugin(clock=clock),)) as manager:
        manager.on_alert(seen.append)
        a = scripted(manager, "a")
        a.push("ok", ServerError("boom 1"), "ok")
        for _ in range(3):
            await ask(manager)
        assert await delivered(manager, seen) == []  # 3 attempts: below minRequests
        a.push(ServerError("boom 2"))
        assert await ask(manager) == "b"  # 2 of 4 failed: the rate reaches 0.5
        assert await delivered(manager, seen) == [(ERROR_RATE_SPIKE, "a")]
        spike = seen[0]
        assert spike.severity == "critical"
        assert spike.data == {
            "error_rate": 0.5,
            "failures": 2,
            "requests": 4,
            "threshold": 0.5,
            "window_ms": 120_000.0,
            "last_error": "server_error: boom 2",
        }
        assert "is 50% (2 of 4 attempts failed over the last 120 s)" in spike.message
        # Still failing within the cooldown: no repeat.
        a.push(ServerError("boom 3"), ServerError("boom 4"))
        clock.advance(30)
        await ask(manager)
        await ask(manager)
        assert len(await delivered(manager, seen)) == 1
        # Still failing after the cooldown: a reminder.
        clock.advance(31)
        a.push(ServerError("boom 5"))
        await ask(manager)
        assert await delivered(manager, seen) == [(ERROR_RATE_SPIKE, "a")] * 2
        # Recovered: successes bring the rate under the threshold (5 of 7 failed, then 5 of 11).
        for _ in range(4):
            await ask(manager)
        assert await delivered(manager, seen) == [(ERROR_RATE_SPIKE, "a")] * 2 + [(ERROR_RATE_RESOLVED, "a")]
        resolved = seen[-1]
        assert resolved.severity == "info"
        assert resolved.message.startswith("error rate of provider 'a' is back below 50%")
        service = manager.extensions["alerts"]
        assert service.counters() | {"delivered": 0} == {
            "seen": 3,
            "delivered": 0,
            "dropped": 0,
            "raised": 2,
            "suppressed": 0,
            "resolved": 1,
        }
        status = service.status()
        assert status["a"]["error_rate_breached"] is False
        assert status["a"]["last_error"] == "server_error: boom 5"
        assert status["b"]["failures"] == 0


async def test_a_latency_sla_breach_and_its_end() -> None:
    clock = Clock()
    seen: list[Alert] = []
    cfg = config(latencySla=15, latencyMinSamples=3, latencyWindow=10_000, errorRate={"enabled": False})
    async with ProviderManager(cfg, drivers=drivers(clock), plugins=(AlertsPlugin(clock=clock),)) as manager:
        manager.on_alert(seen.append)
        a = scripted(manager, "a")
        a.push("ok", Outcome(delay=0.03), Outcome(delay=0.03))
        for _ in range(3):
            await ask(manager)
        assert await delivered(manager, seen) == [(LATENCY_SLA, "a")]
        breach = seen[0]
        assert breach.severity == "warning"
        assert breach.data["p95_ms"] >= 30
        assert breach.data["sla_ms"] == 15
        assert breach.data["samples"] == 3
        assert "above its SLA of 15 ms" in breach.message
        # The slow answers slide out of the window; fast ones end the breach.
        clock.advance(11)
        for _ in range(3):
            await ask(manager)
        assert await delivered(manager, seen) == [(LATENCY_SLA, "a"), (LATENCY_SLA_RESOLVED, "a")]
        status = manager.extensions["alerts"].status()["a"]
        assert status["latency_samples"] == 3
        assert status["latency_breached"] is False
        assert "requests" not in status  # the error-rate watcher is off


async def test_the_latency_sla_defaults_to_routing_sla_max_latency() -> None:
    clock = Clock()
    cfg = config(latencyMinSamples=1)
    cfg["routing"]["sla"] = {"maxLatency": 1000, "minAvailability": 0.99}
    async with ProviderManager(cfg, drivers=drivers(clock), plugins=(AlertsPlugin(clock=clock),)) as manager:
        await ask(manager)
        status = manager.extensions["alerts"].status()["a"]
        assert status["latency_samples"] == 1
        assert status["p95_ms"] < 1000
        assert status["latency_breached"] is False


class RefuseA:
    """Refuses every attempt at provider ``a`` locally (as a rate limiter would)."""

    @hookimpl
    def before_attempt(self, target: Target) -> None:
        if target.provider == "a":
            raise RateLimitedError("local limit", provider="a")


async def test_refused_and_invalid_attempts_do_not_count() -> None:
    clock = Clock()
    seen: list[Alert] = []
    cfg = config(errorRate={"threshold": 0.5, "minRequests": 1})
    plugins = (AlertsPlugin(clock=clock), RefuseA())
    async with ProviderManager(cfg, drivers=drivers(clock), plugins=plugins) as manager:
        manager.on_alert(seen.append)
        for _ in range(5):
            response = await manager.complete(prompt="hi", model="a/m")
            assert [a.refused for a in response.attempts] == [True, False]
        assert "a" not in manager.extensions["alerts"].status()
        scripted(manager, "b").push(InvalidRequestError("bad request"))
        assert isinstance(await expect_failure(manager, model="a/m"), InvalidRequestError)
        assert manager.extensions["alerts"].status()["b"]["requests"] == 5
        assert await delivered(manager, seen) == []


async def test_instances_sharing_a_store_share_the_cooldown() -> None:
    clock = Clock()
    store = MemoryStateStore({}, clock=clock)
    seen: list[Alert] = []
    cfg = config(errorRate={"threshold": 0.5, "minRequests": 2, "window": 120_000})
    one = ProviderManager(cfg, drivers=drivers(clock, store), plugins=(AlertsPlugin(clock=clock),))
    two = ProviderManager(cfg, drivers=drivers(clock, store), plugins=(AlertsPlugin(clock=clock),))
    async with one, two:
        for manager in (one, two):
            manager.on_alert(seen.append)
            scripted(manager, "a").push(ServerError("down"), ServerError("down"))
            await ask(manager)
            await ask(manager)
            await delivered(manager, seen)
        assert [(a.type, a.provider) for a in seen] == [(ERROR_RATE_SPIKE, "a")]
        assert one.extensions["alerts"].counters()["raised"] == 1
        assert two.extensions["alerts"].counters()["suppressed"] == 1
        # After the cooldown the second instance may raise it.
        clock.advance(61)
        scripted(two, "a").push(ServerError("down"))
        await ask(two)
        assert await delivered(two, seen) == [(ERROR_RATE_SPIKE, "a")] * 2


async def test_no_cooldown_raises_each_start_and_no_reminders() -> None:
    clock = Clock()
    seen: list[Alert] = []
    cfg = config(cooldown=0, resolved=False, errorRate={"threshold": 0.5, "minRequests": 2, "window": 1000})
    async with ProviderManager(cfg, drivers=drivers(clock), plugins=(AlertsPlugin(clock=clock),)) as manager:
        manager.on_alert(seen.append)
        a = scripted(manager, "a")
        for _ in range(2):
            a.push(ServerError("x"), ServerError("y"), ServerError("z"))
            for _ in range(3):
                await ask(manager)
            clock.advance(2)  # the window empties
            a.push("ok", "ok")
            await ask(manager)
            await ask(manager)  # below the threshold: the spike ended (no resolved alert)
            clock.advance(2)
        assert await delivered(manager, seen) == [(ERROR_RATE_SPIKE, "a")] * 2
        assert manager.extensions["alerts"].counters()["resolved"] == 0


async def test_a_replaced_provider_starts_with_empty_windows() -> None:
    clock = Clock()
    async with ProviderManager(config(), drivers=drivers(clock), plugins=(AlertsPlugin(clock=clock),)) as manager:
        await ask(manager)
        assert "a" in manager.extensions["alerts"].status()
        await manager.remove_provider("a")
        assert "a" not in manager.extensions["alerts"].status()


async def test_cache_hits_are_not_observed() -> None:
    from swarmgate import CompletionResponse, TokenUsage
    from swarmgate.manager import RequestContext
    from swarmgate.models import Attempt

    clock = Clock()
    plugin = AlertsPlugin(clock=clock)
    async with ProviderManager(config(), drivers=drivers(clock), plugins=(plugin,)) as manager:
        context = RequestContext("r1", manager, 0.0)
        context.attempts.append(Attempt("a", "m", True, 5.0))
        hit = CompletionResponse("x", "a", "m", 0.0, 0.1, TokenUsage.of(1, 1), "stop", cached=True)
        await plugin.after_response(hit, context)
        assert manager.extensions["alerts"].status() == {}
