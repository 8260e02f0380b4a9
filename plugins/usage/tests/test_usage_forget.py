"""``UsageLog.forget``: a caller's requests and their attempts go, others stay
(the GDPR erasure the compliance plugin asks for), on a writing log and on
a recorded one."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import anyio
import pytest

from swarmgate_usage import AttemptRecord, UsageLog, UsageRecord, open_log

pytestmark = pytest.mark.anyio


def record(rid: str, caller: str | None) -> UsageRecord:
    attempts = (
        AttemptRecord(provider="a", model="ma", ok=False, status=503, error_kind="server_error"),
        AttemptRecord(provider="b", model="mb", ok=True, cost=0.01),
    )
    return UsageRecord(id=rid, ts=time.time(), caller=caller, provider="b", model="mb", cost=0.01, attempts=attempts)


def rows(path: Path) -> tuple[list[tuple[str, str | None]], int]:
    with sqlite3.connect(path) as conn:
        requests = conn.execute("SELECT id, caller FROM requests ORDER BY id").fetchall()
        attempts = conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
    return requests, attempts


async def test_forget_deletes_a_callers_requests_and_attempts_pending_ones_included(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    usage = UsageLog(path, commit_interval=60.0)  # nothing commits on its own during the test
    await anyio.to_thread.run_sync(usage.start)
    try:
        for rid, caller in (("r1", "alice"), ("r2", "bob"), ("r3", "alice"), ("r4", None)):
            usage.record(record(rid, caller))
        assert await usage.forget("alice") == 2  # the pending ones were committed first, then deleted
        assert usage.stats()["rows"] == 2
        assert rows(path) == ([("r2", "bob"), ("r4", None)], 4)
        assert await usage.forget("nobody") == 0
        with pytest.raises(ValueError, match="non-empty"):
            await usage.forget("")
    finally:
        await usage.aclose()


async def test_forget_on_a_recorded_log(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    usage = UsageLog(path)
    await anyio.to_thread.run_sync(usage.start)
    usage.record(record("r1", "alice"))
    usage.record(record("r2", "bob"))
    await usage.aclose()

    recorded = open_log(path)
    try:
        assert await recorded.forget("bob") == 1
        assert [r.id for r in recorded.records_sync()] == ["r1"]
    finally:
        recorded.close()
    assert rows(path) == ([("r1", "alice")], 2)
