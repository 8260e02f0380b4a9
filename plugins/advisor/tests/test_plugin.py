"""The plugin's life cycle and configuration: published from its entry
point, inert when disabled, bad values named by path, its database where
configured, closed at shutdown."""

from __future__ import annotations

from pathlib import Path

import pytest
from advisor_helpers import DRIVERS, advisor_of, answers, config

from swarmgate import ConfigError, ProviderManager
from swarmgate.paths import data_dir
from swarmgate_advisor import AdvisorPlugin, AdvisorSettings

pytestmark = pytest.mark.anyio


async def test_loaded_from_its_entry_point_and_published(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS) as manager:
        plugin = manager.plugins.get("advisor")
        assert isinstance(plugin, AdvisorPlugin)
        advisor = advisor_of(manager)
        assert advisor.duplicates is not None
        assert advisor.settings.min_samples == 10
        answers(manager, "pricey", 1)
        answers(manager, "cheap", 1)
        await manager.complete(prompt="hi", model="m", temperature=0)
        assert await advisor.recommendations() == []
    # Shut down: the writer committed and stopped, the extension is gone.
    assert "advisor" not in manager.extensions
    assert plugin.tracker is None


async def test_disabled_it_is_inert(db: Path) -> None:
    async with ProviderManager(config(db, advisor={"enabled": False}), drivers=DRIVERS) as manager:
        assert manager.plugins.get("advisor") is None
        assert "advisor" not in manager.extensions
        answers(manager, "pricey", 1)
        await manager.complete(prompt="hi", model="pricey/m")
    assert not db.with_name("usage.advisor.db").exists()


async def test_fingerprints_off_keeps_the_advisor_without_request_hooks(db: Path) -> None:
    async with ProviderManager(config(db, advisor={"fingerprints": False}), drivers=DRIVERS) as manager:
        assert manager.plugins.get("advisor") is None
        assert advisor_of(manager).duplicates is None


async def test_a_relative_path_goes_under_the_data_directory(db: Path) -> None:
    async with ProviderManager(config(db, advisor={"path": "advisor-test/fp.db"}), drivers=DRIVERS) as manager:
        tracker = advisor_of(manager).duplicates
        assert tracker is not None
        assert tracker.path == data_dir() / "advisor-test" / "fp.db"


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ({"minSamples": 0}, "monitoring.advisor.minSamples", "at least 1"),
        ({"lookback": -5}, "monitoring.advisor.lookback", "positive number of milliseconds"),
        ({"shiftShare": 1.5}, "monitoring.advisor.shiftShare", "fraction"),
        ({"errorRate": 0}, "monitoring.advisor.errorRate", "fraction"),
        ({"latencySla": {"pricey": -1}}, "monitoring.advisor.latencySla.pricey", "positive"),
        ({"latencySla": "fast"}, "monitoring.advisor.latencySla", "number of milliseconds or an object"),
        ({"bogus": 1}, "monitoring.advisor.bogus", "unknown key"),
        ({"minSamples": "10"}, "monitoring.advisor.minSamples", "expected an integer"),
    ],
)
async def test_bad_config_names_the_path(db: Path, section: dict[str, object], path: str, message: str) -> None:
    cfg = config(db)
    cfg["monitoring"]["advisor"] = section
    with pytest.raises(ConfigError) as info:
        async with ProviderManager(cfg, drivers=DRIVERS):
            pass
    assert any(p == path and message in m for p, m in info.value.problems), info.value.problems


def test_the_sla_of_a_provider() -> None:
    from swarmgate import load_config

    cfg = load_config({"routing": {"sla": {"maxLatency": 1500}}})
    assert AdvisorSettings(latency_sla={"a": 200, "*": 400}).sla_for("a", cfg) == 200.0
    assert AdvisorSettings(latency_sla={"a": 200, "*": 400}).sla_for("b", cfg) == 400.0
    assert AdvisorSettings(latency_sla={"a": 200}).sla_for("b", cfg) == 1500.0
    assert AdvisorSettings(latency_sla=300).sla_for("b", cfg) == 300.0
    assert AdvisorSettings().sla_for("b", load_config({})) is None
