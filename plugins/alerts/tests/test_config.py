"""``monitoring.alerts``: validation with named paths, the SLA default,
delivery channels without their plugin, and an inactive plugin."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from swarmgate import Alert, ConfigError, ProviderManager, hookimpl
from swarmgate.alerts import PROVIDER_DOWN
from swarmgate.testing import ScriptedProvider
from swarmgate_alerts import AlertsPlugin, AlertsSettings, ErrorRateSettings

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}


def config(alerts: Any = None, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"providers": {"a": {"type": "scripted", "models": {"m": {}}}}, **extra}
    if alerts is not None:
        cfg["monitoring"] = {"alerts": alerts}
    return cfg


async def problems(cfg: dict[str, Any], *plugins: object) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        async with ProviderManager(cfg, drivers=DRIVERS, plugins=(AlertsPlugin(), *plugins)):
            pass
    return list(caught.value.problems)


@pytest.mark.parametrize(
    ("alerts", "path", "reason"),
    [
        ({"errorRate": {"threshold": 0}}, "monitoring.alerts.errorRate.threshold", "must be a fraction in (0, 1]"),
        ({"errorRate": {"minRequests": 0}}, "monitoring.alerts.errorRate.minRequests", "must be at least 1"),
        ({"errorRate": {"window": -5}}, "monitoring.alerts.errorRate.window", "positive number of milliseconds"),
        ({"latencySla": 0}, "monitoring.alerts.latencySla", "positive number of milliseconds"),
        ({"latencySla": "fast"}, "monitoring.alerts.latencySla", 'expected a number, got "fast"'),
        ({"cooldown": -1}, "monitoring.alerts.cooldown", "non-negative number of milliseconds"),
        (
            {"latencyMinSamples": 50, "latencyMaxSamples": 10},
            "monitoring.alerts.latencyMaxSamples",
            "must be at least latencyMinSamples (50)",
        ),
        ({"latencySLA": 100}, "monitoring.alerts.latencySLA", "unknown key"),
    ],
)
async def test_bad_values_are_named(alerts: dict[str, Any], path: str, reason: str) -> None:
    [(where, message)] = await problems(config(alerts))
    assert where == path
    assert reason in message


async def test_a_bad_routing_sla_max_latency_is_named() -> None:
    [(where, message)] = await problems(config({}, routing={"sla": {"maxLatency": "1s"}}))
    assert where == "routing.sla.maxLatency"
    assert "positive number of milliseconds" in message


async def test_a_delivery_channel_needs_its_plugin() -> None:
    found = await problems(config({"webhook": {"url": "http://127.0.0.1:9/hook"}, "email": {"to": ["x@y"]}}))
    assert found == [
        (
            "monitoring.alerts.webhook",
            "no plugin delivers webhook alerts: install 'swarmgate-webhook' (pip install swarmgate-webhook)",
        ),
        (
            "monitoring.alerts.email",
            "no plugin delivers email alerts: install 'swarmgate-email' (pip install swarmgate-email)",
        ),
    ]


class FakeWebhook:
    """Stands for a delivery plugin: what the check looks for."""

    alert_channel = "webhook"


async def test_a_delivery_channel_with_its_plugin_is_accepted() -> None:
    cfg = config({"webhook": {"url": "http://127.0.0.1:9/hook"}})
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(AlertsPlugin(), FakeWebhook())) as manager:
        assert manager.extensions["alerts"].active


@pytest.mark.parametrize(
    "alerts",
    [None, {"enabled": False}, {"errorRate": {"enabled": False}}],
    ids=["absent", "disabled", "no-watcher"],
)
async def test_without_watchers_the_hooks_unregister_and_the_service_stays(alerts: Any) -> None:
    plugin = AlertsPlugin()
    async with ProviderManager(config(alerts), drivers=DRIVERS, plugins=(plugin,)) as manager:
        assert plugin not in manager.plugins.pm.get_plugins()
        service = manager.extensions["alerts"]
        assert not service.active
        manager.set_health("a", False, "probe failed")
        hub = manager.alerts
        assert hub is not None
        await hub.deliver_pending()
        [recent] = service.recent()
        assert recent["type"] == PROVIDER_DOWN
        assert recent["provider"] == "a"
        assert service.by_type() == {PROVIDER_DOWN: 1}
        assert service.counters()["seen"] == 1
        assert service.recent(limit=0) == []


def test_the_defaults() -> None:
    settings = AlertsSettings()
    assert settings.cooldown == 300_000
    assert settings.error_rate == ErrorRateSettings(enabled=True, threshold=0.5, min_requests=20, window=60_000)
    assert settings.latency_sla is None


class SlowDelivery:
    """A delivery plugin that takes its time."""

    def __init__(self) -> None:
        self.delivered: list[str] = []

    @hookimpl
    async def deliver_alert(self, alert: Alert) -> None:
        await anyio.sleep(0.05)
        self.delivered.append(alert.type)


async def test_the_hubs_drain_waits_for_the_alert_being_delivered() -> None:
    """``AlertHub.drain`` returns once the hooks are done with every alert,
    the one that has already left the queue included."""
    slow = SlowDelivery()
    async with ProviderManager(config(None), drivers=DRIVERS, plugins=(slow,)) as manager:
        hub = manager.alerts
        assert hub is not None
        manager.emit_alert(Alert("custom", "one"))
        await anyio.sleep(0.01)  # the background task has taken it off the queue
        with anyio.fail_after(5):
            await hub.drain()
        assert slow.delivered == ["custom"]
