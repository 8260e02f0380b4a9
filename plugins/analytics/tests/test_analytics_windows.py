"""Sliding windows on a fake clock, uptime, circuit state, the figures other
plugins publish, configuration and bad windows."""

from __future__ import annotations

from typing import Any

import pytest
from analytics_helpers import DRIVERS, Clock, config, row, scripted

from swarmgate import ConfigError, InvalidRequestError, PluginError, ProviderManager, ServerError
from swarmgate.testing import Outcome
from swarmgate_analytics import AnalyticsPlugin, parse_window
from swarmgate_breaker import BreakerPlugin

pytestmark = pytest.mark.anyio


async def served(manager: ProviderManager, count: int, model: str = "a/m1") -> None:
    for _ in range(count):
        await manager.complete(prompt="hi", model=model)


def requests_in(report: dict[str, Any], name: str = "a/m1") -> int:
    return int(row(report, "models", name)["totalRequests"])


async def test_windows_expire_as_time_passes() -> None:
    clock = Clock()
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(clock=clock),)) as manager:
        await served(manager, 3)
        clock.advance(30)
        await served(manager, 2)
        assert [requests_in(await manager.get_analytics(w)) for w in ("1m", "1h", "1d", None)] == [5, 5, 5, 5]
        clock.advance(40)  # the first three are 70 s old, the last two 40 s
        assert requests_in(await manager.get_analytics("1m")) == 2
        assert requests_in(await manager.get_analytics("45s")) == 2
        assert requests_in(await manager.get_analytics("35s")) == 0
        assert requests_in(await manager.get_analytics("1h")) == 5
        clock.advance(3600)
        assert requests_in(await manager.get_analytics("1m")) == 0
        assert requests_in(await manager.get_analytics("1h")) == 0
        assert requests_in(await manager.get_analytics("2h")) == 5
        assert requests_in(await manager.get_analytics("1d")) == 5
        await served(manager, 1)
        assert requests_in(await manager.get_analytics("1m")) == 1
        clock.advance(86_400)
        assert requests_in(await manager.get_analytics("1d")) == 0
        report = await manager.get_analytics()
        assert requests_in(report) == 6  # since start never expires
        assert report["totals"]["requests"] == 6


async def test_a_ring_slot_is_reset_when_its_time_comes_round_again() -> None:
    clock = Clock()
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(clock=clock),)) as manager:
        await served(manager, 4)
        clock.advance(60)  # the same one-second slot, a minute later
        await served(manager, 1)
        assert requests_in(await manager.get_analytics("1m")) == 1
        clock.advance(86_400)  # the same one-minute slot, a day later
        await served(manager, 2)
        assert requests_in(await manager.get_analytics("1d")) == 2


async def test_failures_and_costs_follow_the_window_too() -> None:
    clock = Clock()
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(clock=clock),)) as manager:
        a = scripted(manager, "a")
        a.push(ServerError("old failure"))
        await served(manager, 1)  # a fails, b answers
        clock.advance(120)
        a.push(Outcome("x", usage=(10, 10)))
        await served(manager, 1)
        recent = row(await manager.get_analytics("1m"), "providers", "a")
        assert (recent["successes"], recent["failures"], recent["errorsByKind"]) == (1, 0, {})
        assert recent["totalCost"] == pytest.approx(0.03)
        assert row(await manager.get_analytics("1m"), "providers", "b")["totalRequests"] == 0
        lifetime = row(await manager.get_analytics(), "providers", "a")
        assert (lifetime["successes"], lifetime["failures"]) == (1, 1)


async def test_uptime_follows_health_transitions_over_each_window() -> None:
    clock = Clock()
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(clock=clock),)) as manager:
        clock.advance(60)
        manager.set_health("a", False, "down for a test")
        assert manager.alerts is not None
        await manager.alerts.drain()
        clock.advance(30)
        manager.set_health("a", True)
        await manager.alerts.drain()
        clock.advance(10)
        lifetime = row(await manager.get_analytics(), "providers", "a")
        assert lifetime["uptime"] == pytest.approx(70 / 100)
        assert row(await manager.get_analytics("5s"), "providers", "a")["uptime"] == pytest.approx(1.0)
        assert row(await manager.get_analytics("20s"), "providers", "a")["uptime"] == pytest.approx(10 / 20)
        assert row(await manager.get_analytics("40s"), "providers", "a")["uptime"] == pytest.approx(10 / 40)
        assert row(await manager.get_analytics(), "providers", "b")["uptime"] == pytest.approx(1.0)
        # A transition whose alert was not delivered yet is caught at query time.
        manager.set_health("b", False, "down")
        report = await manager.get_analytics()
        assert row(report, "providers", "b")["healthy"] is False
        clock.advance(25)
        assert row(await manager.get_analytics(), "providers", "b")["uptime"] == pytest.approx(100 / 125)


class FakeHealth:
    """A health monitor's snapshot: 90% since start, 50% over its 1 h window."""

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {"a": {"uptime": 0.9, "uptime_window": 0.5, "window_seconds": 3600.0}}


async def test_uptime_comes_from_the_health_monitor_when_it_covers_the_span() -> None:
    clock = Clock()
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(clock=clock),)) as manager:
        manager.extensions["health"] = FakeHealth()
        clock.advance(100)
        assert row(await manager.get_analytics(), "providers", "a")["uptime"] == 0.9
        assert row(await manager.get_analytics("1h"), "providers", "a")["uptime"] == 0.5
        assert row(await manager.get_analytics("1m"), "providers", "a")["uptime"] == 1.0  # its own record
        assert row(await manager.get_analytics(), "providers", "b")["uptime"] == 1.0  # not monitored


async def test_circuit_state_per_model_and_provider() -> None:
    clock = Clock()
    cfg = config(routing={"circuitBreaker": {"failureThreshold": 2, "timeout": 10_000}})
    plugins = (AnalyticsPlugin(clock=clock), BreakerPlugin(clock=clock))
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=plugins) as manager:
        report = await manager.get_analytics()
        assert row(report, "models", "a/m1")["breaker"] == "closed"
        assert row(report, "providers", "a")["breaker"] == "closed"
        scripted(manager, "a").push(ServerError("1"), ServerError("2"))
        await served(manager, 2)
        report = await manager.get_analytics()
        assert row(report, "models", "a/m1")["breaker"] == "open"
        assert row(report, "providers", "a")["breaker"] == "open"
        assert (
            row(report, "providers", "a")["healthy"] is False
        )  # the breaker marks a provider whose models are all open
        assert row(report, "providers", "b")["breaker"] == "closed"
        metrics = await manager.get_metrics()
        assert {(t["provider"], t["breaker"]) for t in metrics["targets"]} == {("a", "open"), ("b", "closed")}
        clock.advance(10)
        assert row(await manager.get_analytics(), "models", "a/m1")["breaker"] == "half_open"


class Budgets:
    def status(self) -> list[dict[str, Any]]:
        return [{"name": "daily", "limit": 10.0, "spent": 1.5}]


class Limits:
    async def snapshot(self) -> dict[str, Any]:
        return {"a": {"requestsPerMinute": 60, "available": 59}}


class Cache:
    async def stats(self) -> dict[str, Any]:
        return {"hits": 3, "misses": 1, "hit_ratio": 0.75, "cost_saved": 0.25, "entries": 4}


class Advisor:
    async def recommendations(self) -> list[dict[str, Any]]:
        return [{"type": "cost", "description": "use b", "impact": {}, "action": {}}]


class Broken:
    def status(self) -> list[dict[str, Any]]:
        raise RuntimeError("budget store unreachable")


async def test_other_plugins_figures_are_included() -> None:
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(),)) as manager:
        manager.extensions.update(budget=Budgets(), ratelimit=Limits(), cache=Cache(), advisor=Advisor())
        await served(manager, 1)
        report = await manager.get_analytics()
        assert report["budgets"] == [{"name": "daily", "limit": 10.0, "spent": 1.5}]
        assert report["rateLimits"] == {"a": {"requestsPerMinute": 60, "available": 59}}
        assert report["cache"] == {"hits": 3, "misses": 1, "hitRatio": 0.75, "costSaved": 0.25, "source": "cache"}
        windowed = await manager.get_analytics("1h")
        assert windowed["cache"]["source"] == "requests"  # the cache's counters are not windowed
        assert (await manager.get_metrics())["cache"]["hits"] == 3
        recommendations = await manager.get_optimization_recommendations()
        assert recommendations == [{"type": "cost", "description": "use b", "impact": {}, "action": {}}]
        manager.extensions["budget"] = Broken()
        assert (await manager.get_analytics())["budgets"] is None  # logged, not raised


async def test_disabled_by_config_the_plugin_leaves_the_pipeline() -> None:
    plugin = AnalyticsPlugin()
    cfg = config(monitoring={"analytics": False, "usageLog": {"enabled": False}})
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(plugin,)) as manager:
        assert "analytics" not in manager.extensions
        assert not manager.plugins.has_impls("request_failed")
        await served(manager, 1)
        assert plugin.aggregate.requests.total.successes == 0
        with pytest.raises(PluginError, match="swarmgate-analytics"):
            await manager.get_analytics()
        with pytest.raises(PluginError, match="swarmgate-analytics"):
            await manager.export_metrics("json")


async def test_an_explicit_section_is_validated() -> None:
    cfg = config(monitoring={"analytics": {"enabled": True}, "usageLog": {"enabled": False}})
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(AnalyticsPlugin(),)) as manager:
        assert "analytics" in manager.extensions
    for bad, where in (
        ({"enabled": "yes"}, "monitoring.analytics.enabled"),
        ({"windows": 3}, "monitoring.analytics.windows"),
        (3, "monitoring.analytics"),
    ):
        with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
            async with ProviderManager(
                config(monitoring={"analytics": bad, "usageLog": {"enabled": False}}),
                drivers=DRIVERS,
                plugins=(AnalyticsPlugin(),),
            ):
                pass


async def test_bad_windows_are_invalid_requests() -> None:
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(),)) as manager:
        for bad in ("7", "1w", "-1h", "0m", "soon"):
            with pytest.raises(InvalidRequestError, match="window"):
                await manager.get_analytics(bad)
        with pytest.raises(InvalidRequestError, match="usage log"):
            await manager.get_analytics("7d")


def test_window_names() -> None:
    assert parse_window(None) is None
    assert parse_window("all") is None
    assert parse_window("90s") == 90.0
    assert parse_window("1m") == 60.0
    assert parse_window(" 1.5h ") == 5400.0
    assert parse_window("30d") == 30 * 86_400.0
