"""The monitor driven by hand (no background task): thresholds, request
checks, passive marking, uptime, transitions, callbacks, shared verdicts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest

from swarmgate import (
    CompletionRequest,
    CompletionResponse,
    MemoryStateStore,
    NoProviderAvailableError,
    OverloadedError,
    ProviderManager,
    RateLimitedError,
    ServerError,
    TokenUsage,
    hookimpl,
)
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import ScriptedProvider
from swarmgate_health import HealthMonitor, HealthPlugin, Transition
from swarmgate_health.monitor import VERDICT_PREFIX

SCRIPTED = {"swarmgate.providers": {"scripted": ScriptedProvider}}


def scripted_config(names: tuple[str, ...] = ("a", "b"), health: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Scripted providers ``names`` (priority in that order), with
    ``routing.healthCheck`` = ``health`` when given."""
    config: dict[str, Any] = {
        "providers": {
            name: {"type": "scripted", "models": {"m": {}}, "priority": i + 1} for i, name in enumerate(names)
        },
        "routing": {},
    }
    if health is not None:
        config["routing"]["healthCheck"] = dict(health)
    return config


def set_healthy(manager: ProviderManager, name: str, healthy: bool) -> None:
    provider = manager.provider(name)
    provider.settings = attrs.evolve(provider.settings, healthy=healthy)


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


async def open_manager(
    config: dict[str, Any], clock: Any = None, **kwargs: Any
) -> tuple[ProviderManager, HealthMonitor]:
    plugin = HealthPlugin(clock=clock, wall=clock, background=False)
    manager = ProviderManager(
        config, drivers=kwargs.pop("drivers", SCRIPTED), plugins=[plugin, *kwargs.pop("plugins", ())]
    )
    await manager.initialize()
    monitor = manager.extensions["health"]
    assert isinstance(monitor, HealthMonitor)
    return manager, monitor


@pytest.fixture
async def pair(clock: Any) -> AsyncIterator[tuple[ProviderManager, HealthMonitor]]:
    config = scripted_config(health={"failureThreshold": 3, "successThreshold": 2})
    manager, monitor = await open_manager(config, clock)
    try:
        yield manager, monitor
    finally:
        await manager.aclose()


@pytest.mark.anyio
async def test_inert_when_the_config_does_not_activate_it() -> None:
    plugin = HealthPlugin(background=False)
    async with ProviderManager(scripted_config(), drivers=SCRIPTED, plugins=[plugin]) as manager:
        assert "health" not in manager.extensions
        assert plugin.monitor is None
        scripted(manager, "a").push(ServerError("down"), ServerError("down"))
        for _ in range(2):
            with pytest.raises(NoProviderAvailableError):
                await manager.complete(prompt="hi", provider="a")
        assert manager.handle("a").healthy  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_failure_threshold_then_success_threshold(pair: tuple[ProviderManager, HealthMonitor]) -> None:
    manager, monitor = pair
    set_healthy(manager, "a", False)
    for _ in range(2):
        result = await monitor.run_check("a")
        assert result.ok is False
        assert monitor.healthy("a")
    assert monitor.snapshot()["a"]["consecutive_failures"] == 2
    await monitor.run_check("a")
    assert not monitor.healthy("a")
    handle = manager.handle("a")
    assert handle is not None
    assert not handle.healthy
    assert "ping check failed 3 time(s) in a row" in handle.health_detail
    # Unhealthy providers are tried last.
    response = await manager.complete(prompt="hi")
    assert response.provider == "b"

    set_healthy(manager, "a", True)
    await monitor.run_check("a")
    assert not monitor.healthy("a")
    set_healthy(manager, "a", False)
    await monitor.run_check("a")  # a failure breaks the run of successes
    set_healthy(manager, "a", True)
    await monitor.run_check("a")
    assert not monitor.healthy("a")
    await monitor.run_check("a")
    assert monitor.healthy("a")
    assert manager.handle("a").healthy  # type: ignore[union-attr]
    assert (await manager.complete(prompt="hi")).provider == "a"


@pytest.mark.anyio
async def test_a_check_is_bounded_by_its_timeout(clock: Any) -> None:
    class SlowProbe:
        @hookimpl(tryfirst=True)
        async def health_probe(self, name: str) -> None:
            if name == "a":
                await anyio.sleep(10)

    config = scripted_config(health={"timeout": 50, "failureThreshold": 1})
    manager, monitor = await open_manager(config, clock, plugins=[SlowProbe()])
    try:
        with anyio.fail_after(5):
            result = await monitor.run_check("a")
        assert result.ok is False
        assert result.detail == "no answer within 0.05s"
        assert not monitor.healthy("a")
        assert (await monitor.run_check("b")).ok
    finally:
        await manager.aclose()


@pytest.mark.anyio
async def test_request_checks_with_expected_response_length(clock: Any) -> None:
    checks = [{"type": "request", "testPrompt": "Say hello", "expectedResponseLength": 5, "maxTokens": 8}]
    config = scripted_config(health={"checks": checks, "failureThreshold": 2, "successThreshold": 1})
    manager, monitor = await open_manager(config, clock)
    try:
        provider = scripted(manager, "a")
        provider.push("hello there", "hi", "   ok   ", ServerError("upstream broke"), "hello again")
        first = await monitor.run_check("a")
        assert first.ok
        assert first.detail == "11 characters from a/m"
        call = provider.calls[-1]
        assert call.request.prompt_text() == "Say hello"
        assert call.request.max_tokens == 8
        assert call.request.metadata == {"health_check": True}
        too_short = await monitor.run_check("a")
        assert too_short.ok is False
        assert "answer too short: 2 characters" in too_short.detail
        assert "expected at least 5" in too_short.detail
        assert monitor.healthy("a")
        second = await monitor.run_check("a")  # stripped: 2 characters
        assert second.ok is False
        assert not monitor.healthy("a")
        broken = await monitor.run_check("a")
        assert broken.ok is False
        assert broken.detail == "server_error: upstream broke"
        assert (await monitor.run_check("a")).ok
        assert monitor.healthy("a")
        # The probe requests never count as live traffic.
        assert monitor.snapshot()["a"]["live_failures"] == 0
        assert len(provider.calls) == 5
        assert all(c.request.provider == "a" for c in provider.calls)
    finally:
        await manager.aclose()


@pytest.mark.anyio
async def test_a_short_circuited_probe_is_not_counted(clock: Any) -> None:
    class Cache:
        @hookimpl
        def before_request(self, request: CompletionRequest) -> CompletionResponse:
            return CompletionResponse("cached", "a", "m", 0.0, 0.0, TokenUsage(), "stop")

    config = scripted_config(health={"checks": [{"type": "request"}], "failureThreshold": 1})
    manager, monitor = await open_manager(config, clock, plugins=[Cache()])
    try:
        result = await monitor.run_check("a")
        assert result.ok is None
        assert "not counted" in result.detail
        snapshot = monitor.snapshot()["a"]
        assert snapshot["consecutive_failures"] == 0
        assert snapshot["uptime"] is None
        assert scripted(manager, "a").calls == []
    finally:
        await manager.aclose()


@pytest.mark.anyio
async def test_every_check_must_pass_to_recover(clock: Any) -> None:
    checks = [{"type": "ping"}, {"type": "request"}]
    config = scripted_config(health={"checks": checks, "failureThreshold": 1, "successThreshold": 1})
    manager, monitor = await open_manager(config, clock)
    try:
        scripted(manager, "a").push(ServerError("down"), "fine")
        round_ = await monitor.check_now("a")
        assert not round_.healthy
        assert [r.ok for r in round_.results] == [True, False]
        assert "request: server_error: down" in round_.detail
        assert not monitor.healthy("a")
        assert (await monitor.run_check("a", 0)).ok
        assert not monitor.healthy("a")  # the request check has not passed since
        assert (await monitor.run_check("a", 1)).ok
        assert monitor.healthy("a")
    finally:
        await manager.aclose()


@pytest.mark.anyio
async def test_passive_marking_from_live_traffic(clock: Any) -> None:
    health = {"failureThreshold": 3, "successThreshold": 2, "passive": {"failureThreshold": 3}}
    manager, monitor = await open_manager(scripted_config(health=health), clock)
    seen: list[Transition] = []
    monitor.on_transition(seen.append)
    try:
        provider = scripted(manager, "a")
        # Two provider faults, then a success: the run ends.
        provider.push(ServerError("e1"), OverloadedError("e2"))
        for _ in range(2):
            with pytest.raises(NoProviderAvailableError):
                await manager.complete(prompt="hi", provider="a")
        assert monitor.snapshot()["a"]["live_failures"] == 2
        await manager.complete(prompt="hi", provider="a")
        assert monitor.snapshot()["a"]["live_failures"] == 0
        # Rate limits say nothing about liveness.
        provider.push(*[RateLimitedError("slow down")] * 4)
        for _ in range(4):
            with pytest.raises(NoProviderAvailableError):
                await manager.complete(prompt="hi", provider="a")
        assert monitor.healthy("a")
        # Three in a row, failing over to b each time: a is marked unhealthy.
        provider.push(*[ServerError("boom")] * 3)
        for _ in range(3):
            assert (await manager.complete(prompt="hi", model="m", preferences={"providers": ["a"]})).provider == "b"
        assert not monitor.healthy("a")
        assert not manager.handle("a").healthy  # type: ignore[union-attr]
        assert [(t.provider, t.healthy, t.source) for t in seen] == [("a", False, "passive")]
        assert "3 live failures in a row, the last: server_error: boom" in seen[0].detail
        # Live successes do not recover it; a live failure restarts the probes' count.
        await monitor.run_check("a")
        provider.push(ServerError("still broken"))
        with pytest.raises(NoProviderAvailableError):
            await manager.complete(prompt="hi", provider="a")
        await manager.complete(prompt="hi", provider="a")
        await monitor.run_check("a")
        assert not monitor.healthy("a")
        await monitor.run_check("a")
        assert monitor.healthy("a")
        assert [(t.healthy, t.source) for t in seen] == [(False, "passive"), (True, "active")]
        assert monitor.snapshot()["a"]["last_error"] == "live server_error: still broken"
    finally:
        await manager.aclose()


@pytest.mark.anyio
async def test_passive_can_be_switched_off(clock: Any) -> None:
    health = {"passive": {"enabled": False}}
    manager, monitor = await open_manager(scripted_config(health=health), clock)
    try:
        scripted(manager, "a").push(*[ServerError("boom")] * 8)
        for _ in range(8):
            with pytest.raises(NoProviderAvailableError):
                await manager.complete(prompt="hi", provider="a")
        assert monitor.healthy("a")
    finally:
        await manager.aclose()


@pytest.mark.anyio
async def test_uptime_since_start_and_over_the_window(clock: Any) -> None:
    health = {"failureThreshold": 1, "successThreshold": 1, "uptimeWindow": 100_000}
    manager, monitor = await open_manager(scripted_config(health=health), clock)
    try:
        assert monitor.snapshot()["a"]["uptime"] is None  # nothing observed yet
        await monitor.run_check("a")  # t=0: healthy
        clock.advance(60)
        set_healthy(manager, "a", False)
        await monitor.run_check("a")  # t=60: down
        clock.advance(20)
        snap = monitor.snapshot()["a"]
        assert snap["uptime"] == pytest.approx(60 / 80)
        assert snap["uptime_window"] == pytest.approx(60 / 80)
        assert snap["observed_seconds"] == pytest.approx(80)
        set_healthy(manager, "a", True)
        await monitor.run_check("a")  # t=80: up again
        clock.advance(120)  # t=200
        snap = monitor.snapshot()["a"]
        assert snap["uptime"] == pytest.approx(180 / 200)
        assert snap["uptime_window"] == pytest.approx(1.0)  # the last 100 s were all healthy
        clock.advance(-50)  # look at t=150: the window [50, 150] holds the 20 s outage
        assert monitor.snapshot()["a"]["uptime_window"] == pytest.approx(80 / 100)
        assert monitor.snapshot()["b"]["uptime"] is None
    finally:
        await manager.aclose()


@pytest.mark.anyio
async def test_snapshot_reports_the_last_check_and_error(clock: Any) -> None:
    manager, monitor = await open_manager(scripted_config(health={"interval": 1000}), clock)
    try:
        set_healthy(manager, "b", False)
        await monitor.probe_round()
        snap = monitor.snapshot()
        assert snap["a"]["last_check"] == clock.now
        assert snap["a"]["last_error"] is None
        assert snap["a"]["consecutive_successes"] == 1
        assert snap["b"]["last_error"] == "ping: scripted"
        assert snap["b"]["last_error_at"] == clock.now
        assert snap["b"]["consecutive_failures"] == 1
        check = snap["b"]["checks"][0]
        assert check["type"] == "ping"
        assert check["interval_ms"] == 1000.0
        assert check["last"]["ok"] is False
        json.dumps(snap)
    finally:
        await manager.aclose()


@pytest.mark.anyio
async def test_callbacks_sync_async_failing_and_unregistered(clock: Any) -> None:
    health = {"failureThreshold": 1, "successThreshold": 1, "alerts": {"notifications": ["webhook"]}}
    manager, monitor = await open_manager(scripted_config(health=health), clock)
    sync_seen: list[Transition] = []
    async_seen: list[Transition] = []
    removed: list[Transition] = []

    async def slow(transition: Transition) -> None:
        await anyio.lowlevel.checkpoint()
        async_seen.append(transition)

    def broken(transition: Transition) -> None:
        raise RuntimeError("callback bug")

    monitor.on_transition(sync_seen.append)
    monitor.on_transition(slow)
    monitor.on_transition(broken)
    unregister = monitor.on_transition(removed.append)
    unregister()
    unregister()
    try:
        set_healthy(manager, "a", False)
        await monitor.run_check("a")
        set_healthy(manager, "a", True)
        await monitor.run_check("a")
        assert [t.healthy for t in sync_seen] == [False, True]
        assert [t.healthy for t in async_seen] == [False, True]
        assert removed == []
        down = sync_seen[0]
        assert down.provider == "a"
        assert down.source == "active"
        assert down.notifications == ("webhook",)
        assert down.to_dict()["notifications"] == ["webhook"]
        assert down.at == clock.now
    finally:
        await manager.aclose()


@pytest.mark.anyio
async def test_a_verdict_is_shared_between_gateways(clock: Any) -> None:
    store = MemoryStateStore()

    class Keep(MemoryStateStore):
        """The shared store, not closed when one gateway closes."""

        async def aclose(self) -> None:
            return None

    shared = Keep()
    drivers = {**SCRIPTED, "swarmgate.state": {"memory": lambda _options: shared}}
    health = {"failureThreshold": 1, "successThreshold": 1}
    one, first = await open_manager(scripted_config(health=health), clock, drivers=drivers)
    two, second = await open_manager(scripted_config(health=health), clock, drivers=drivers)
    seen: list[Transition] = []
    second.on_transition(seen.append)
    try:
        set_healthy(one, "a", False)
        await first.run_check("a")
        assert not first.healthy("a")
        raw = await shared.get(VERDICT_PREFIX + "a")
        assert raw is not None
        assert json.loads(raw)["healthy"] is False
        # The second gateway adopts it before its next check (whose own result then counts).
        set_healthy(two, "a", False)
        await second.run_check("a")
        assert [(t.healthy, t.source) for t in seen] == [(False, "shared")]
        assert f"(reported by gateway {first.instance})" in seen[0].detail
        assert not two.handle("a").healthy  # type: ignore[union-attr]
        # Its recovery is adopted by the first in turn.
        set_healthy(two, "a", True)
        await second.run_check("a")
        assert second.healthy("a")
        set_healthy(one, "a", True)
        await first.sync_shared("a")
        assert first.healthy("a")
        assert first.snapshot()["a"]["source"] == "shared"
        # An unreadable verdict is ignored.
        await shared.set(VERDICT_PREFIX + "a", b"not json")
        assert await first.sync_shared("a") is None
    finally:
        await one.aclose()
        await two.aclose()
        await store.aclose()


@pytest.mark.anyio
async def test_providers_added_and_removed_at_run_time(clock: Any) -> None:
    manager, monitor = await open_manager(scripted_config(health={"failureThreshold": 1}), clock)
    try:
        await manager.add_provider(
            "c", {"type": "scripted", "models": {"m": {}}, "healthy": False, "healthCheck": {"timeout": 100}}
        )
        assert "c" in monitor.providers()
        assert monitor.plan("c").checks[0].timeout == 0.1
        await monitor.run_check("c")
        assert not monitor.healthy("c")
        await manager.update_provider("c", {"healthy": True})
        assert monitor.healthy("c")  # a new instance starts afresh, as the kernel's does
        await manager.remove_provider("c")
        assert "c" not in monitor.providers()
        with pytest.raises(Exception, match="not known to the health monitor"):
            await monitor.run_check("c")
    finally:
        await manager.aclose()


@pytest.mark.anyio
async def test_loaded_from_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-health")
    config = scripted_config(health={"interval": 3_600_000})
    async with ProviderManager(config, drivers=SCRIPTED) as manager:
        plugin = manager.plugins.get("health")
        assert isinstance(plugin, HealthPlugin)
        assert manager.extensions["health"] is plugin.monitor
        assert plugin.monitor is not None
        assert plugin.monitor.running
        assert sorted((await plugin.monitor.probe_round()).keys()) == ["a", "b"]
    assert not plugin.monitor.running
