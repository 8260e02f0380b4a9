"""``monitoring.usageLog``: defaults, every mistake a ConfigError naming its
path, ``enabled: false`` unregistering the plugin, where the file goes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from usage_helpers import DRIVERS, config, usage_of

from swarmgate import ConfigError, ProviderManager, hookimpl, load_config
from swarmgate_usage import UsageLog, UsageLogSettings, default_path
from swarmgate_usage.settings import DEFAULT_RETENTION_MS

pytestmark = pytest.mark.anyio


def test_the_defaults() -> None:
    settings = UsageLogSettings()
    assert (settings.enabled, settings.path, settings.commit_interval, settings.max_batch) == (True, None, 200.0, 500)
    assert settings.retention == DEFAULT_RETENTION_MS == 90 * 86400 * 1000


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ({"commitInterval": -1}, "monitoring.usageLog.commitInterval", "non-negative"),
        ({"maxBatch": 0}, "monitoring.usageLog.maxBatch", "at least 1"),
        ({"retention": 0}, "monitoring.usageLog.retention", "positive"),
        ({"path": "  "}, "monitoring.usageLog.path", "empty"),
        ({"enabled": "yes"}, "monitoring.usageLog.enabled", "true or false"),
        ({"commitIntervall": 10}, "monitoring.usageLog.commitIntervall", "unknown key"),
    ],
)
def test_mistakes_name_their_path(section: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as failed:
        UsageLogSettings.from_config(load_config({"monitoring": {"usageLog": section}}))
    assert [p for p, _ in failed.value.problems] == [path]
    assert message in failed.value.problems[0][1]


async def test_a_bad_section_fails_start_up(db: Path) -> None:
    with pytest.raises(ConfigError, match="maxBatch"):
        async with ProviderManager(config(db, usage={"maxBatch": -5}), drivers=DRIVERS):
            pass


async def test_a_path_that_is_not_a_usage_log_fails_start_up(tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("these are my notes, not a database; " * 50)
    with pytest.raises(ConfigError) as failed:
        async with ProviderManager(config(not_a_db), drivers=DRIVERS):
            pass
    assert failed.value.problems[0][0] == "monitoring.usageLog.path"
    assert "not a usable usage log" in failed.value.problems[0][1]
    assert not_a_db.read_text().startswith("these are my notes")


async def test_disabled_unregisters_the_plugin_and_writes_nothing(db: Path) -> None:
    async with ProviderManager(config(db, usage={"enabled": False}), drivers=DRIVERS) as manager:
        await manager.complete(prompt="hi")
        assert "usage" not in manager.extensions
        assert "usage" not in [info.name for info in manager.plugins.plugins()]
    assert not db.exists()  # noqa: ASYNC240 - after the manager closed


async def test_enabled_by_default_under_the_data_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMGATE_HOME", str(tmp_path / "home"))
    cfg = config(tmp_path / "unused.db")
    del cfg["monitoring"]
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        usage = usage_of(manager)
        assert usage.path == tmp_path / "home" / "usage.db" == default_path(manager.config)
        assert usage.writable
        assert "usage" in [info.name for info in manager.plugins.plugins()]
        await manager.complete(prompt="hi")
    assert not usage.writable  # plugin_shutdown closed it
    assert "usage" not in manager.extensions


async def test_a_relative_path_is_under_the_data_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMGATE_HOME", str(tmp_path / "home"))
    loaded = load_config({"monitoring": {"usageLog": {"path": "logs/requests.db"}}})
    assert default_path(loaded) == tmp_path / "home" / "logs" / "requests.db"
    assert default_path(None) == tmp_path / "home" / "usage.db"
    assert (tmp_path / "home" / "logs").is_dir()


def test_settings_become_log_options(tmp_path: Path) -> None:
    settings = UsageLogSettings(path=str(tmp_path / "x.db"), commit_interval=50, max_batch=7, retention=None)
    usage = UsageLog.from_settings(settings)
    assert (usage.path, usage.commit_interval, usage.max_batch, usage.retention) == (tmp_path / "x.db", 0.05, 7, None)
    hourly = UsageLog.from_settings(UsageLogSettings(path=str(tmp_path / "y.db"), retention=3_600_000))
    assert hourly.retention == 3600.0


async def test_the_log_is_open_before_other_plugins_set_up(db: Path) -> None:
    """plugin_setup is tryfirst: a plugin registered before it (a budget
    reading past spend) finds the log already published."""
    seen: list[Any] = []

    class ReadsSpendAtSetUp:
        @hookimpl
        async def plugin_setup(self, manager: ProviderManager) -> None:
            usage = manager.extensions.get("usage")
            seen.append(usage)
            if usage is not None:
                seen.append(await usage.spend(since=0))

    async with ProviderManager(config(db), drivers=DRIVERS, plugins=(ReadsSpendAtSetUp(),)) as manager:
        assert seen == [usage_of(manager), 0.0]
