"""``usage tail`` and ``usage purge`` on a recorded log, through the real
CLI (plugins' commands registered by entry point)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from swarmgate.cli import build_cli
from swarmgate_usage import AttemptRecord, UsageLog, UsageRecord

DAY = 86400.0


def write_log(path: Path, records: list[UsageRecord]) -> None:
    async def write() -> None:
        usage = UsageLog(path)
        await anyio.to_thread.run_sync(usage.start)
        for record in records:
            usage.record(record)
        await usage.aclose()

    anyio.run(write)


def sample(rid: str, ts: float, **fields: object) -> UsageRecord:
    attempt = AttemptRecord(provider="a", model="ma", ok=True, input_tokens=10, output_tokens=5, cost=0.02)
    values: dict[str, object] = {
        "id": rid,
        "ts": ts,
        "caller": "alice",
        "requested_model": "fast",
        "provider": "a",
        "model": "ma",
        "input_tokens": 10,
        "output_tokens": 5,
        "cost": 0.02,
        "latency_ms": 123.0,
        "attempts": (attempt,),
        "route": "fast",
        **fields,
    }
    return UsageRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    now = time.time()
    path = tmp_path / "recorded.db"
    write_log(
        path,
        [
            sample("req-ancient", now - 100 * DAY),
            sample("req-old", now - 10 * DAY),
            sample("req-failed", now - 60, ok=False, status=429, error_kind="rate_limited", caller="bob"),
            sample("req-cached", now - 30, cache_hit=True, cost=0.0, cost_saved=0.02, attempts=()),
            sample("req-last", now - 1, stream=True),
        ],
    )
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_cli(), list(args), env={"COLUMNS": "250"}, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_tail_json_gives_the_last_n_oldest_first(recorded: Path) -> None:
    code, out, _ = run("usage", "tail", "--log", str(recorded), "-n", "3", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["id"] for r in rows] == ["req-failed", "req-cached", "req-last"]
    assert rows[0]["status"] == 429
    assert rows[0]["error_kind"] == "rate_limited"
    assert rows[1]["cache_hit"] is True
    assert rows[1]["cost_saved"] == 0.02
    assert rows[2]["attempts"] == [
        {
            "provider": "a",
            "model": "ma",
            "ok": True,
            "error_kind": None,
            "status": 200,
            "input_tokens": 10,
            "output_tokens": 5,
            "cost": 0.02,
            "latency_ms": 0.0,
            "ttft_ms": None,
            "refused": False,
        }
    ]


def test_tail_prints_a_table(recorded: Path) -> None:
    code, out, _ = run("usage", "tail", "--log", str(recorded))
    assert code == 0
    for rid in ("req-ancient", "req-old", "req-failed", "req-cached", "req-last"):
        assert rid in out
    assert "rate_limited" in out
    assert "cache" in out
    assert "route=fast" in out
    assert "$0.020000" in out


def test_tail_finds_the_log_through_the_config(recorded: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.json"
    cfg.write_text(json.dumps({"monitoring": {"usageLog": {"path": str(recorded)}}}))
    code, out, _ = run("usage", "tail", "--config", str(cfg), "-n", "1", "--json")
    assert code == 0
    assert [r["id"] for r in json.loads(out)] == ["req-last"]


def test_purge_uses_the_configured_retention_by_default(recorded: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.json"
    cfg.write_text(json.dumps({"monitoring": {"usageLog": {"path": str(recorded), "retention": 30 * DAY * 1000}}}))
    code, out, _ = run("usage", "purge", "--config", str(cfg), "--json")
    assert code == 0
    assert json.loads(out) == {"path": str(recorded), "deleted": 1, "remaining": 4, "older_than_s": 30 * DAY}


def test_purge_older_than_days(recorded: Path) -> None:
    code, out, _ = run("usage", "purge", "--log", str(recorded), "--older-than", "5")
    assert code == 0
    assert out.strip() == f"deleted 2 request(s) older than 5 day(s) from {recorded}; 3 left"
    code, out, _ = run("usage", "tail", "--log", str(recorded), "--json")
    assert [r["id"] for r in json.loads(out)] == ["req-failed", "req-cached", "req-last"]


def test_purge_without_a_limit_when_retention_is_null(recorded: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.json"
    cfg.write_text(json.dumps({"monitoring": {"usageLog": {"path": str(recorded), "retention": None}}}))
    code, _, err = run("usage", "purge", "--config", str(cfg))
    assert code == 2
    assert "--older-than" in err


def test_a_missing_log_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, out, err = run("usage", "tail", "--log", str(tmp_path / "nothing.db"))
    assert code == 2
    assert out == ""
    assert err.strip() == f"error: no usage log at {tmp_path / 'nothing.db'}"
    assert not (tmp_path / "nothing.db").exists()


def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.json"
    cfg.write_text(json.dumps({"monitoring": {"usageLog": {"maxBatch": 0}}}))
    code, _, err = run("usage", "tail", "--config", str(cfg))
    assert code == 2
    assert "monitoring.usageLog.maxBatch" in err
