"""``audit verify``, ``audit tail`` and ``audit purge`` on a recorded log,
through the real CLI (plugins' commands registered by entry point)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest
from audit_helpers import sql, started
from click.testing import CliRunner

from swarmgate.cli import build_cli
from swarmgate_audit import canonical_json

DAY = 86400.0


def write_log(path: Path) -> list[str]:
    """Five admin records, the first three 100 days old; their ids."""

    async def write() -> list[str]:
        clock = [time.time() - 100 * DAY]
        audit = await started(path, clock=lambda: clock[0])
        ids = [audit.record_admin("keys.create", "admin#1", f"key{i}", {"i": i}, client="10.0.0.1") for i in range(3)]
        clock[0] = time.time()
        ids += [audit.record_admin("keys.revoke", "admin#2", f"key{i}") for i in range(2)]
        await audit.aclose()
        return ids

    return anyio.run(write)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(), list(args), catch_exceptions=False, env={"COLUMNS": "250"})
    return result.exit_code, result.output


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "recorded.db"
    return path, write_log(path)


def test_verify_an_intact_log(recorded: tuple[Path, list[str]]) -> None:
    path, _ = recorded
    code, out = run("audit", "verify", "--path", str(path))
    assert code == 0, out
    assert out.startswith("ok: 5 record(s) verified (seq 1..5) from the start")
    code, out = run("audit", "verify", "--path", str(path), "--json")
    report = json.loads(out)
    assert report["ok"] is True
    assert report["checked"] == 5
    assert report["broken"] is None
    code, _ = run("audit", "verify", "--path", str(path), "--head", report["head_hash"])
    assert code == 0


def test_verify_names_an_edited_record_and_exits_1(recorded: tuple[Path, list[str]]) -> None:
    path, ids = recorded
    data = json.loads(sql(path, "SELECT data FROM records WHERE seq = 2")[0][0])
    data["action"] = "keys.list"
    sql(path, "UPDATE records SET data = ? WHERE seq = 2", canonical_json(data))
    code, out = run("audit", "verify", "--path", str(path))
    assert code == 1
    assert out.startswith(f"BROKEN: record {ids[1]} (seq 2, ts ")
    assert "altered" in out
    assert "expected " in out
    assert "found " in out
    code, out = run("audit", "verify", "--path", str(path), "--json")
    assert code == 1
    assert json.loads(out)["broken"]["id"] == ids[1]


def test_verify_names_the_record_after_a_deleted_one(recorded: tuple[Path, list[str]]) -> None:
    path, ids = recorded
    sql(path, "DELETE FROM records WHERE seq = 3")
    code, out = run("audit", "verify", "--path", str(path))
    assert code == 1
    assert f"record {ids[3]} (seq 4" in out
    assert "seq 3 deleted" in out


def test_tail(recorded: tuple[Path, list[str]]) -> None:
    path, ids = recorded
    code, out = run("audit", "tail", "--path", str(path), "-n", "2", "--json")
    assert code == 0
    records = json.loads(out)
    assert [r["id"] for r in records] == ids[3:]
    assert records[0]["personal"]["actor"] == "admin#2"
    code, out = run("audit", "tail", "--path", str(path))
    assert code == 0
    assert "keys.create key0" in out
    assert "admin#1" in out
    assert "10.0.0.1" in out


def test_purge_then_verify(recorded: tuple[Path, list[str]]) -> None:
    path, _ = recorded
    code, out = run("audit", "purge", "--path", str(path), "--older-than", "30", "--json")
    assert code == 0
    assert json.loads(out)["deleted"] == 3
    code, out = run("audit", "verify", "--path", str(path))
    assert code == 0, out
    assert "from anchor seq 3" in out
    code, out = run("audit", "tail", "--path", str(path), "--json")
    last = json.loads(out)[-1]
    assert last["data"]["action"] == "audit.purge"
    assert last["personal"]["actor"].startswith("cli")


def test_purge_uses_the_configured_retention(recorded: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, _ = recorded
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"security": {"audit": {"path": str(path), "retention": 50 * DAY * 1000}}}))
    code, out = run("audit", "purge", "--config", str(cfg))
    assert code == 0
    assert out.startswith("deleted 3 record(s) older than 50 day(s)")
    cfg.write_text(json.dumps({"security": {"audit": {"path": str(path), "retention": None}}}))
    result = CliRunner().invoke(build_cli(), ["audit", "purge", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "--older-than" in result.output


def test_a_missing_or_foreign_file_is_one_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(build_cli(), ["audit", "verify", "--path", str(tmp_path / "none.db")])
    assert result.exit_code == 2
    assert "no audit log at" in result.output
    other = tmp_path / "other.db"
    sql(other, "CREATE TABLE t (x)")
    result = CliRunner().invoke(build_cli(), ["audit", "tail", "--path", str(other)])
    assert result.exit_code == 2
    assert "not an audit log" in result.output


def test_a_bad_config_is_one_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"security": {"audit": {"logLevel": "loud"}}}))
    result = CliRunner().invoke(build_cli(), ["audit", "verify", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "security.audit.logLevel" in result.output
