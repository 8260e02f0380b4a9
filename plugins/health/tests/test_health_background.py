"""The background task: checks on their intervals, start/stop on asyncio and
trio without leaking tasks, and a real upstream (FakeUpstream + the openai
driver) going down and up."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest

from swarmgate import ProviderManager, ServerError, hookimpl
from swarmgate.testing import FakeUpstream, ScriptedProvider, ScriptedReply
from swarmgate_health import HealthMonitor, HealthPlugin, Transition
from swarmgate_health.monitor import VERDICT_PREFIX

SCRIPTED = {"swarmgate.providers": {"scripted": ScriptedProvider}}
#: Generous bound for waiting on a background transition (they take ~0.1 s).
PATIENCE = 5.0


def scripted_config(health: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "providers": {
            "a": {"type": "scripted", "models": {"m": {}}, "priority": 1},
            "b": {"type": "scripted", "models": {"m": {}}, "priority": 2},
        },
        "routing": {"healthCheck": dict(health)},
    }


def set_healthy(manager: ProviderManager, name: str, healthy: bool) -> None:
    provider = manager.provider(name)
    provider.settings = attrs.evolve(provider.settings, healthy=healthy)


class Transitions:
    """Collects transitions; ``wait_for(provider, healthy)`` blocks until one arrives."""

    def __init__(self) -> None:
        self.seen: list[Transition] = []
        self._changed = anyio.Event()

    def __call__(self, transition: Transition) -> None:
        self.seen.append(transition)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, provider: str, healthy: bool) -> Transition:
        with anyio.fail_after(PATIENCE):
            while True:
                for transition in self.seen:
                    if (transition.provider, transition.healthy) == (provider, healthy):
                        return transition
                await self._changed.wait()


class ProbeCounter:
    """Counts health probes (answers nothing: the driver's probe decides)."""

    def __init__(self) -> None:
        self.calls = 0
        self._probed = anyio.Event()

    @hookimpl(tryfirst=True)
    def health_probe(self) -> None:
        self.calls += 1
        self._probed.set()
        self._probed = anyio.Event()

    async def reach(self, calls: int) -> None:
        """Wait until at least ``calls`` probes were made."""
        with anyio.fail_after(PATIENCE):
            while self.calls < calls:
                await self._probed.wait()


def task_ids() -> set[int]:
    return {task.id for task in anyio.get_running_tasks()}


def monitor_of(manager: ProviderManager) -> HealthMonitor:
    monitor = manager.extensions["health"]
    assert isinstance(monitor, HealthMonitor)
    return monitor


@pytest.mark.anyio
async def test_background_checks_mark_and_recover_then_stop_cleanly() -> None:
    before = task_ids()
    plugin = HealthPlugin()
    transitions = Transitions()
    health = {"interval": 10, "failureThreshold": 2, "successThreshold": 2}
    async with ProviderManager(scripted_config(health), drivers=SCRIPTED, plugins=[plugin]) as manager:
        monitor = monitor_of(manager)
        assert monitor.running
        assert task_ids() > before  # the check loops run
        monitor.on_transition(transitions)
        set_healthy(manager, "a", False)
        down = await transitions.wait_for("a", False)
        assert down.source == "active"
        assert not manager.handle("a").healthy  # type: ignore[union-attr]
        assert (await manager.complete(prompt="hi")).provider == "b"
        set_healthy(manager, "a", True)
        await transitions.wait_for("a", True)
        assert (await manager.complete(prompt="hi")).provider == "a"
        assert monitor.snapshot()["b"]["transitions"] == 0
        assert monitor.snapshot()["b"]["last_check"] is not None
    assert not monitor.running
    assert task_ids() == before


@pytest.mark.anyio
async def test_stop_halts_the_checks_and_start_resumes_them() -> None:
    counter = ProbeCounter()
    health = {"interval": 5, "jitter": 0}
    async with ProviderManager(scripted_config(health), drivers=SCRIPTED, plugins=[HealthPlugin(), counter]) as manager:
        monitor = monitor_of(manager)
        await counter.reach(4)
        monitor.stop()
        monitor.stop()
        await anyio.sleep(0.01)  # a check under way may still reach its probe before it is cancelled
        stopped_at = counter.calls
        await anyio.sleep(0.05)
        assert counter.calls == stopped_at
        assert not monitor.running
        async with anyio.create_task_group() as tg:
            monitor.start(tg)
            await counter.reach(stopped_at + 2)
            monitor.stop()


@pytest.mark.anyio
async def test_shutdown_cancels_a_hanging_check() -> None:
    class Hanging:
        @hookimpl(tryfirst=True)
        async def health_probe(self) -> None:
            await anyio.sleep_forever()

    before = task_ids()
    health = {"interval": 1, "jitter": 0, "timeout": 60_000}
    with anyio.fail_after(PATIENCE):
        async with ProviderManager(
            scripted_config(health), drivers=SCRIPTED, plugins=[HealthPlugin(), Hanging()]
        ) as manager:
            await anyio.sleep(0.02)  # both checks are now stuck in their probes
            assert monitor_of(manager).snapshot()["a"]["last_check"] is None
    assert task_ids() == before


@pytest.mark.anyio
async def test_a_failing_initialize_closes_the_task_group() -> None:
    class Broken:
        @hookimpl(trylast=True)
        def plugin_setup(self) -> None:
            raise RuntimeError("another plugin's setup failed")

    before = task_ids()
    manager = ProviderManager(scripted_config({"interval": 1}), drivers=SCRIPTED, plugins=[HealthPlugin(), Broken()])
    with pytest.raises(RuntimeError, match="another plugin's setup failed"):
        await manager.initialize()
    assert task_ids() == before


@pytest.mark.anyio
async def test_passive_transition_announced_through_the_task_group() -> None:
    received = anyio.Event()
    got: list[Transition] = []

    async def alert(transition: Transition) -> None:
        await anyio.lowlevel.checkpoint()
        got.append(transition)
        received.set()

    health = {"interval": 3_600_000, "passive": {"failureThreshold": 2}}
    async with ProviderManager(scripted_config(health), drivers=SCRIPTED, plugins=[HealthPlugin()]) as manager:
        monitor = monitor_of(manager)
        monitor.on_transition(alert)
        provider = manager.provider("a")
        assert isinstance(provider, ScriptedProvider)
        provider.push(ServerError("boom"), ServerError("boom"))
        for _ in range(2):
            response = await manager.complete(prompt="hi", model="m")
            assert response.provider == "b"
        with anyio.fail_after(PATIENCE):
            await received.wait()
        assert [(t.provider, t.healthy, t.source) for t in got] == [("a", False, "passive")]
        raw = await manager.state.get(VERDICT_PREFIX + "a")
        assert raw is not None
        assert json.loads(raw)["source"] == "passive"


@pytest.mark.anyio
async def test_real_upstream_going_down_and_up() -> None:
    before = task_ids()
    async with FakeUpstream() as upstream:
        config = {
            "providers": {
                "up": {"type": "openai", "endpoint": upstream.url, "models": {"gpt-4o-mini": {}}, "timeout": 2000},
            },
            "routing": {
                "healthCheck": {
                    "checks": [
                        {"type": "ping", "interval": 10, "timeout": 1000},
                        {"type": "request", "interval": 10, "testPrompt": "ping?", "expectedResponseLength": 5},
                    ],
                    "failureThreshold": 2,
                    "successThreshold": 2,
                }
            },
        }
        transitions = Transitions()
        async with ProviderManager(config, plugins=[HealthPlugin()]) as manager:
            monitor = monitor_of(manager)
            monitor.on_transition(transitions)
            upstream.models_reply = ScriptedReply.error(503, "maintenance")
            upstream.default = ScriptedReply.error(500, "down for maintenance")
            down = await transitions.wait_for("up", False)
            assert "time(s) in a row" in down.detail
            assert "maintenance" in down.detail
            assert not manager.handle("up").healthy  # type: ignore[union-attr]
            upstream.models_reply = None
            upstream.default = ScriptedReply(content="pong, I am here")
            await transitions.wait_for("up", True)
            snapshot = monitor.snapshot()["up"]
            assert snapshot["healthy"]
            assert snapshot["uptime"] is not None
            assert 0.0 < snapshot["uptime"] < 1.0
            assert {c["type"] for c in snapshot["checks"]} == {"ping", "request"}
        assert any(r.path.endswith("/models") for r in upstream.requests)
        probes = [r for r in upstream.completions if r.json["messages"][-1]["content"] == "ping?"]
        assert probes
        assert all(r.json["max_tokens"] == 16 for r in probes)
    assert task_ids() == before
