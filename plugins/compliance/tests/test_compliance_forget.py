"""Erasure of a caller's records (GDPR): the usage log's requests deleted, the
audit log's personal fields erased with the chain intact; through the
service and through ``compliance forget``; and ``compliance check``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner
from compliance_helpers import DRIVERS, config

from swarmgate import ProviderManager
from swarmgate.cli import build_cli
from swarmgate_audit import open_log as open_audit
from swarmgate_compliance import ComplianceService, ForgetReport
from swarmgate_usage import open_log as open_usage


def usage_callers(path: Path) -> list[str | None]:
    usage = open_usage(path)
    try:
        return sorted((r.caller for r in usage.records_sync()), key=str)
    finally:
        usage.close()


def audit_state(path: Path) -> tuple[bool, int, list[str | None]]:
    audit = open_audit(path)
    try:
        report = audit.verify_sync()
        records = audit.records_sync(kind="request")
    finally:
        audit.close()
    return report.ok, report.erased, [r.who for r in records]


async def serve(manager: ProviderManager) -> None:
    for caller in ("alice", "bob", "alice"):
        await manager.complete(prompt=f"hello from {caller}", model="us/m", caller=caller)
    manager.extensions["audit"].record_admin("keys.create", "admin", "alice")


@pytest.mark.anyio
async def test_forget_erases_a_callers_records_everywhere(tmp_path: Path) -> None:
    cfg = config(tmp_path, compliance={"gdpr": True})
    cfg["security"]["audit"]["includeBodies"] = True
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        await serve(manager)
        service = manager.extensions["compliance"]
        assert isinstance(service, ComplianceService)
        report = await service.forget("alice", actor="dpo")
        with pytest.raises(ValueError, match="non-empty"):
            await service.forget(" ")
    assert report == ForgetReport(caller="alice", usage_records=2, audit_records=3)
    assert usage_callers(tmp_path / "usage.db") == ["bob"]
    ok, erased, who = audit_state(tmp_path / "audit.db")
    assert ok
    assert erased == 3
    assert who == [None, "bob", None]
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        raw = json.dumps(conn.execute("SELECT * FROM personal").fetchall())
    conn.close()
    assert "alice" not in raw


@pytest.mark.anyio
async def test_forget_reports_logs_that_are_not_active(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg["monitoring"]["usageLog"]["enabled"] = False
    cfg["security"]["audit"]["enabled"] = False
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        report = await manager.extensions["compliance"].forget("alice")
    assert report == ForgetReport(caller="alice", usage_records=None, audit_records=None)


def write_traffic(cfg_path: Path) -> None:
    async def run() -> None:
        async with ProviderManager(cfg_path) as manager:
            for caller in ("alice", "bob"):
                await manager.complete(prompt="hi", caller=caller)

    anyio.run(run)


def test_the_forget_command(tmp_path: Path) -> None:
    cfg_path = tmp_path / "config.json"
    cfg = config(tmp_path)
    cfg["providers"] = {"sim": {"type": "sim", "timeScale": 0, "seed": 3, "models": {"m": {}}}}
    cfg_path.write_text(json.dumps(cfg))
    write_traffic(cfg_path)
    runner = CliRunner()
    result = runner.invoke(build_cli(), ["compliance", "forget", "alice", "--config", str(cfg_path)], input="n\n")
    assert result.exit_code == 1  # declined: nothing erased
    assert usage_callers(tmp_path / "usage.db") == ["alice", "bob"]
    result = runner.invoke(build_cli(), ["compliance", "forget", "alice", "--config", str(cfg_path), "--yes", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"caller": "alice", "usage_records": 1, "audit_records": 1}
    assert usage_callers(tmp_path / "usage.db") == ["bob"]
    ok, erased, who = audit_state(tmp_path / "audit.db")
    assert (ok, erased, who) == (True, 1, [None, "bob"])
    audit = open_audit(tmp_path / "audit.db")
    try:
        last = audit.records_sync(kind="admin")[-1]
    finally:
        audit.close()
    assert last.data == {"action": "audit.forget", "records": 1}
    assert (last.who or "").startswith("cli")
    result = runner.invoke(build_cli(), ["compliance", "forget", "bob", "--config", str(cfg_path), "--yes"])
    assert result.exit_code == 0
    assert result.output.strip() == "caller bob: 1 usage record(s) deleted; 1 audit record(s) erased"


def test_the_check_command(tmp_path: Path) -> None:
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(config(tmp_path, compliance={"gdpr": True, "dataResidency": ["eu"]})))
    result = CliRunner().invoke(build_cli(), ["compliance", "check", "--config", str(cfg_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["gdpr"] is True
    assert data["personal_requests_cached"] is False
    assert data["data_residency"] == ["eu"]
    verdicts = {p["provider"]: (p["allowed"], p["reason"]) for p in data["providers"]}
    assert verdicts["eu"] == (True, None)
    assert verdicts["us"][0] is False
    assert "provider us is in us-west-2, outside the allowed regions [eu]" in verdicts["us"][1]
    assert verdicts["nowhere"][0] is False
    result = CliRunner().invoke(build_cli(), ["compliance", "check", "--config", str(cfg_path)], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert "us-west-2" in result.output


def test_a_bad_section_is_one_clear_error(tmp_path: Path) -> None:
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(config(tmp_path, compliance={"dataResidency": 5})))
    result = CliRunner().invoke(build_cli(), ["compliance", "check", "--config", str(cfg_path)])
    assert result.exit_code == 2
    assert "security.compliance.dataResidency" in result.output


def test_check_without_a_config_reads_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWARMGATE_CONFIG", raising=False)
    result = CliRunner().invoke(build_cli(), ["compliance", "check", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["data_residency"] is None
    assert data["providers"]
    assert all(p["allowed"] for p in data["providers"])
