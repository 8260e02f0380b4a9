"""The service in process (a scripted provider, no sockets), on asyncio and
trio: the background sampler, the summary document, and what it says when
the analytics or the usage log is missing."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from swarmgate import CompletionRequest, Message, ProviderManager, ServerError
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import Outcome, ScriptedProvider
from swarmgate_analytics import AnalyticsPlugin
from swarmgate_dashboard import DashboardPlugin, DashboardService, provider_status

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}


@pytest.fixture(autouse=True)
def _kernel_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate")  # the tests pass their plugins in code


def config(**dashboard: Any) -> dict[str, Any]:
    return {
        "providers": {
            "a": {"type": "scripted", "priority": 1, "models": {"m": {"costPerToken": 0.001}}},
            "b": {"type": "scripted", "priority": 2, "models": {"m": {"costPerToken": 0.002}}},
        },
        "server": {"dashboard": {"sampleInterval": 250, **dashboard}},
    }


def request(text: str = "hello") -> CompletionRequest:
    return CompletionRequest(messages=(Message("user", text),), model="m")


async def wait_until(condition: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await anyio.sleep(0.02)
    raise AssertionError(f"not true within {seconds}s")


def test_provider_status() -> None:
    assert provider_status(False, False, False, None) == "disabled"
    assert provider_status(True, False, True, None) == "down"
    assert provider_status(True, True, False, {"m": "closed"}) == "down"
    assert provider_status(True, True, True, {"m": "closed", "n": "half_open"}) == "degraded"
    assert provider_status(True, True, True, {"m": "open"}) == "degraded"
    assert provider_status(True, True, True, {"m": "closed"}) == "up"
    assert provider_status(True, True, True, None) == "up"


async def test_the_sampler_runs_in_the_background_and_stops_with_the_manager() -> None:
    plugin = DashboardPlugin()
    async with ProviderManager(config(), plugins=[AnalyticsPlugin(), plugin], drivers=DRIVERS) as manager:
        service = manager.extensions["dashboard"]
        assert isinstance(service, DashboardService)
        assert service is plugin.service
        scripted = manager.provider("a")
        assert isinstance(scripted, ScriptedProvider)
        scripted.push(Outcome(error=ServerError("boom")))
        for i in range(6):
            await manager.complete(request(f"hello {i}"))
        await wait_until(lambda: sum(p["requests"] for p in service.history.since(None)) == 6)
        points = service.history.since(None)
        assert sum(p["providers"]["a"]["requests"] for p in points) == 6  # one failure, five answers
        assert sum(p["providers"]["a"]["errors"] for p in points) == 1
        assert sum(p["providers"]["b"]["requests"] for p in points) == 1  # the failover
        analytics = await manager.get_analytics()
        assert points[-1]["providers"]["b"]["spent"] == analytics["providers"][1]["totalCost"]
        sampler = plugin._sampler
        assert sampler is not None
    assert sampler._done.is_set()  # plugin_shutdown waited for the task to end
    assert "dashboard" not in manager.extensions
    count = len(service.history.since(None))
    await anyio.sleep(0.6)
    assert len(service.history.since(None)) == count  # no sampling after the shutdown


async def test_summary_document() -> None:
    plugin = DashboardPlugin(background=False)
    async with ProviderManager(
        config(window="1h", recentEvents=7), plugins=[AnalyticsPlugin(), plugin], drivers=DRIVERS
    ) as manager:
        service = plugin.service
        assert service is not None
        await service.sample()  # the time since the analytics started: nothing yet
        await manager.complete(request())
        await service.sample()
        summary = await service.summary("1h")
        assert summary["window"] == "1h"
        assert summary["settings"] == {
            "refreshInterval": 2000.0,
            "sampleInterval": 250.0,
            "history": 1_800_000.0,
            "window": "1h",
        }
        assert summary["analytics"]["totals"]["requests"] == 1
        assert [p["name"] for p in summary["providers"]] == ["a", "b"]
        row = summary["providers"][0]
        assert (row["status"], row["healthy"], row["live"], row["circuits"]) == ("up", True, True, None)
        assert summary["series"]["step"] == 0.25
        assert summary["series"]["providers"] == ["a", "b"]
        first, point = summary["series"]["points"]
        assert (first["requests"], point["requests"]) == (0, 1)
        assert (await service.summary(None, since=point["t"]))["series"]["points"] == []
        assert summary["events"] == []
        # No usage log here: the page says where failovers and errors come from.
        assert any("swarmgate-usage" in p for p in summary["problems"])
        manager.set_health("b", False, "probe failed")
        assert [p["status"] for p in service.providers()] == ["up", "down"]
        assert service.providers()[1]["detail"] == "probe failed"


async def test_without_analytics_the_summary_says_what_to_install() -> None:
    plugin = DashboardPlugin(background=False)
    async with ProviderManager(config(), plugins=[plugin], drivers=DRIVERS) as manager:
        service = plugin.service
        assert service is not None
        await service.sample()
        assert service.metrics_problem is not None
        assert "swarmgate-analytics" in service.metrics_problem
        await manager.complete(request())
        summary = await service.summary()
        assert summary["analytics"] is None
        assert summary["series"]["points"] == []
        assert any("swarmgate-analytics" in p for p in summary["problems"])
        assert [p["status"] for p in summary["providers"]] == ["up", "up"]
