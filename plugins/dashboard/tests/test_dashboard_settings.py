"""``server.dashboard``: defaults, every bad value named by its path, and a
bad section failing the manager's start-up."""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate import ConfigError, ProviderManager
from swarmgate.testing import ScriptedProvider
from swarmgate_dashboard import DashboardPlugin, DashboardSettings, load_settings

pytestmark = pytest.mark.anyio


def test_defaults() -> None:
    settings = load_settings(None)
    assert settings == DashboardSettings()
    assert settings.enabled
    assert (settings.refresh_interval, settings.sample_interval, settings.history) == (2000.0, 2000.0, 1_800_000.0)
    assert settings.points == 900
    assert settings.window is None
    assert settings.recent_events == 20


def test_camel_case_keys() -> None:
    settings = load_settings(
        {"refreshInterval": 500, "sampleInterval": 1000, "history": 60000, "window": "1h", "recentEvents": 5}
    )
    assert (settings.refresh_interval, settings.sample_interval, settings.history) == (500.0, 1000.0, 60000.0)
    assert settings.points == 60
    assert (settings.window, settings.recent_events) == ("1h", 5)


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        ({"enabled": "yes"}, "server.dashboard.enabled", "true or false"),
        ({"refreshInterval": 10}, "server.dashboard.refreshInterval", "at least 250"),
        ({"sampleInterval": -1}, "server.dashboard.sampleInterval", "at least 250"),
        ({"history": 100}, "server.dashboard.history", "between sampleInterval"),
        ({"history": 172_800_000}, "server.dashboard.history", "a day"),
        ({"history": 86_400_000, "sampleInterval": 250}, "server.dashboard.history", "points"),
        ({"window": "forever"}, "server.dashboard.window", "number and a unit"),
        ({"recentEvents": 0}, "server.dashboard.recentEvents", "between 1 and 500"),
        ({"refreshIntervall": 500}, "server.dashboard", "refreshIntervall"),
    ],
)
def test_bad_values_name_their_path(raw: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(raw)
    text = str(caught.value)
    assert path in text, text
    assert words in text, text


async def test_a_bad_section_fails_the_start() -> None:
    config = {
        "providers": {"a": {"type": "scripted", "models": {"m": {}}}},
        "server": {"dashboard": {"refreshInterval": 1}},
    }
    manager = ProviderManager(
        config,
        plugins=[DashboardPlugin(background=False)],
        drivers={"swarmgate.providers": {"scripted": ScriptedProvider}},
    )
    with pytest.raises(ConfigError) as caught:
        await manager.initialize()
    assert "server.dashboard.refreshInterval" in str(caught.value)
    await manager.aclose()


async def test_disabled_unregisters_the_plugin() -> None:
    plugin = DashboardPlugin()
    config = {
        "providers": {"a": {"type": "scripted", "models": {"m": {}}}},
        "server": {"dashboard": {"enabled": False}},
    }
    async with ProviderManager(
        config, plugins=[plugin], drivers={"swarmgate.providers": {"scripted": ScriptedProvider}}
    ) as manager:
        assert plugin.service is None
        assert "dashboard" not in manager.extensions
        assert plugin not in [manager.plugins.pm.get_plugin(info.name) for info in manager.plugins.plugins()]
        assert manager.plugins.gateway_routes(manager) == []
