"""The ``security.audit`` section: defaults, every bad value named by its
path, ``enabled: false`` costing nothing, a path that is not an audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from audit_helpers import DRIVERS, config, sql

from swarmgate import ConfigError, ProviderManager, load_config
from swarmgate_audit import AuditPlugin, AuditSettings, default_path
from swarmgate_audit.settings import redaction_required

pytestmark = pytest.mark.anyio


def test_defaults() -> None:
    settings = AuditSettings()
    assert settings.enabled is True
    assert settings.log_level == "info"
    assert settings.retention == 90 * 24 * 3600 * 1000.0
    assert settings.include_bodies is False
    assert settings.commit_interval == 200.0
    assert default_path(None).name == "audit.db"


def test_the_guides_example_parses() -> None:
    cfg = load_config({"security": {"audit": {"enabled": True, "logLevel": "info", "retention": 7776000000}}})
    settings = AuditSettings.from_config(cfg)
    assert settings.retention == 7776000000


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ({"logLevel": "verbose"}, "security.audit.logLevel"),
        ({"retention": 0}, "security.audit.retention"),
        ({"retention": -5}, "security.audit.retention"),
        ({"commitInterval": -1}, "security.audit.commitInterval"),
        ({"maxBatch": 0}, "security.audit.maxBatch"),
        ({"path": " "}, "security.audit.path"),
        ({"includeBodies": "yes"}, "security.audit.includeBodies"),
        ({"enabeld": True}, "security.audit.enabeld"),
    ],
)
def test_bad_values_are_named(section: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AuditSettings.from_config(load_config({"security": {"audit": section}}))
    assert path in str(caught.value)


def test_redaction_follows_gdpr_or_hipaa() -> None:
    assert not redaction_required(None)
    assert not redaction_required(load_config({"security": {"compliance": {"gdpr": False}}}))
    assert redaction_required(load_config({"security": {"compliance": {"gdpr": True}}}))
    assert redaction_required(load_config({"security": {"compliance": {"hipaa": True}}}))


async def test_disabled_the_plugin_unregisters_and_writes_nothing(db: Path) -> None:
    plugin = AuditPlugin()
    async with ProviderManager(config(db, audit={"enabled": False}), drivers=DRIVERS, plugins=[plugin]) as manager:
        await manager.complete(prompt="hi")
        assert "audit" not in manager.extensions
        assert all(
            not isinstance(p, AuditPlugin) for p in (manager.plugins.get(i.name) for i in manager.plugins.plugins())
        )
    assert not await anyio.Path(db).exists()


async def test_a_path_that_is_not_an_audit_log_is_a_config_error(tmp_path: Path) -> None:
    other = tmp_path / "usage.db"
    sql(other, "CREATE TABLE requests (id TEXT)")
    with pytest.raises(ConfigError) as caught:
        async with ProviderManager(config(other), drivers=DRIVERS):
            pass
    assert "security.audit.path" in str(caught.value)
    assert "not an audit log" in str(caught.value)


async def test_a_relative_path_lives_in_the_data_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWARMGATE_HOME", str(tmp_path / "home"))
    cfg = config(tmp_path / "ignored.db", audit={"path": "logs/my-audit.db"})
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        assert manager.extensions["audit"].path == tmp_path / "home" / "logs" / "my-audit.db"
