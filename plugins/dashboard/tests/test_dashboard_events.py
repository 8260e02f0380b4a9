"""Recent failovers and errors from a real usage log (SQLite), merged with
the alert hub's alerts."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from swarmgate import Alert
from swarmgate_dashboard import EventLog, record_event
from swarmgate_usage import AttemptRecord, UsageLog, UsageRecord

pytestmark = pytest.mark.anyio


def ok(provider: str) -> AttemptRecord:
    return AttemptRecord(provider=provider, model="m", ok=True, cost=0.001, latency_ms=20.0)


def failed(provider: str, kind: str = "server_error", status: int = 500, *, refused: bool = False) -> AttemptRecord:
    return AttemptRecord(provider=provider, model="m", ok=False, error_kind=kind, status=status, refused=refused)


def record(rid: str, ts: float, *attempts: AttemptRecord, status: int = 200, kind: str | None = None) -> UsageRecord:
    last = attempts[-1] if attempts else None
    return UsageRecord(
        id=rid,
        ts=ts,
        requested_model="m",
        provider=last.provider if last else None,
        model=last.model if last else None,
        ok=status == 200,
        status=status,
        error_kind=kind,
        latency_ms=250.0,
        attempts=attempts,
    )


def test_what_is_notable() -> None:
    now = 1000.0
    assert record_event(record("plain", now, ok("a"))) is None
    assert (
        record_event(record("refused-then-ok", now, failed("a", "budget_exceeded", 429, refused=True), ok("b"))) is None
    )
    assert record_event(record("lost-hedge", now, failed("a", "cancelled", 499), ok("b"))) is None
    assert record_event(record("caller-left", now, failed("a", "cancelled", 499), status=499, kind="cancelled")) is None

    failover = record_event(record("fo", now, failed("a", "timeout", 504), ok("b")))
    assert failover is not None
    assert failover["kind"] == "failover"
    assert failover["severity"] == "warning"
    assert failover["provider"] == "b"
    assert failover["at"] == 1000.25
    assert failover["message"] == "m: a ✗ timeout → b answered"
    assert [step["provider"] for step in failover["path"]] == ["a", "b"]
    assert failover["path"][0] == {
        "provider": "a",
        "model": "m",
        "ok": False,
        "errorKind": "timeout",
        "status": 504,
        "refused": False,
    }

    error = record_event(
        record("err", now, failed("a"), failed("b", "connection_error", 502), status=502, kind="connection_error")
    )
    assert error is not None
    assert (error["kind"], error["severity"], error["status"]) == ("error", "critical", 502)
    assert error["message"] == "m: 502 connection_error (a ✗ server_error → b ✗ connection_error)"

    limited = record_event(record("limited", now, status=429, kind="rate_limited"))
    assert limited is not None
    assert (limited["severity"], limited["provider"]) == ("warning", None)
    assert limited["message"] == "m: 429 rate_limited (no provider tried)"


def test_the_log_keeps_the_newest_and_merges_alerts() -> None:
    events = EventLog(size=3, span=3600.0)
    records = [record(f"r{i}", 100.0 + i, failed("a"), ok("b")) for i in range(5)]
    assert events.add(records) == 5
    assert events.add(records) == 0  # seen already, or older than what is kept
    assert events.add([record("older", 99.0, failed("a"), ok("b"))]) == 0
    assert events.add([record("newer", 110.0, failed("a"), ok("b"))]) == 1
    assert [e["id"] for e in events.recent()] == ["newer", "r4", "r3"]
    events = EventLog(size=3, span=3600.0)
    events.add(records)
    alert = Alert("provider_down", "provider 'a' is down", severity="critical", provider="a", at=102.9)
    merged = events.recent([alert])
    assert [e["id"] for e in merged] == ["r4", "r3", "alert:102.900000:0", "r2"]
    assert merged[2]["kind"] == "alert"
    assert merged[2]["message"] == "provider_down: provider 'a' is down"
    assert [e["id"] for e in events.recent([alert], limit=2)] == ["r4", "r3"]


async def test_poll_reads_a_real_usage_log(tmp_path: Path) -> None:
    log = UsageLog(tmp_path / "usage.db", commit_interval=0.01)
    await anyio.to_thread.run_sync(log.start)
    try:
        now = time.time()
        log.record(record("old", now - 7200, failed("a"), ok("b")))  # outside the span
        log.record(record("fine", now - 5, ok("a")))
        log.record(record("fo", now - 4, failed("a", "overloaded", 503), ok("b")))
        log.record(record("err", now - 3, failed("a"), failed("b"), status=502, kind="server_error"))
        await log.flush()
        events = EventLog(size=50, span=3600.0)
        assert await events.poll(log, now) == 2
        assert [e["id"] for e in events.recent()] == ["err", "fo"]
        # The next read starts a little before the newest record seen: a
        # request that started earlier but was logged later is still found.
        log.record(record("late", now - 30, failed("a", "timeout", 504), ok("b")))
        await log.flush()
        assert await events.poll(log, now + 1) == 1
        assert [e["id"] for e in events.recent()] == ["err", "fo", "late"]
    finally:
        await log.aclose()
