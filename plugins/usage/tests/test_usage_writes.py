"""How the writer inserts a batch: several rows per statement, and a
transaction that starts over deleting first when a record replaces a
logged one (or meets rows it would collide with)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from swarmgate_usage import AttemptRecord, UsageLog, UsageRecord
from swarmgate_usage.log import _RECORD

pytestmark = pytest.mark.anyio


def _record(rid: str, ts: float, attempts: int, *, cost: float = 0.5, caller: str | None = "alice") -> UsageRecord:
    atts = tuple(
        AttemptRecord(provider=f"p{i}", model=f"m{i}", ok=i == attempts - 1, cost=cost, status=200, latency_ms=i)
        for i in range(attempts)
    )
    return UsageRecord(
        id=rid,
        ts=ts,
        caller=caller,
        provider=atts[-1].provider if atts else None,
        cost=cost * attempts,
        attempts=atts,
        tags=("t", rid),
    )


async def _started(path: Path, **options: Any) -> UsageLog:
    usage = UsageLog(path, **options)
    await anyio.to_thread.run_sync(usage.start)
    return usage


async def test_a_large_batch_round_trips_in_order(tmp_path: Path) -> None:
    """More rows than one statement holds, with a remainder of every size."""
    usage = await _started(tmp_path / "usage.db", commit_interval=600.0, max_batch=10_000)
    try:
        sent = [_record(f"r{i:04d}", 1000.0 + i, i % 4) for i in range(347)]
        for r in sent:
            usage.record(r)
        await usage.flush()
        assert await usage.records() == sent
        stats = usage.stats()
        assert (stats["rows"], stats["commits"], stats["dropped"]) == (347, 1, 0)
    finally:
        await usage.aclose()


async def test_records_that_replace_logged_ones_in_a_later_commit(tmp_path: Path) -> None:
    usage = await _started(tmp_path / "usage.db")
    try:
        usage.record(_record("kept", 1000.0, 1))
        usage.record(_record("same", 1001.0, 3))
        await usage.flush()
        # One batch mixing a new id and a logged one: the logged one is replaced, attempts included.
        usage.record(_record("new", 1002.0, 2))
        usage.record(_record("same", 1001.0, 1, cost=2.0))
        await usage.flush()
        records = {r.id: r for r in await usage.records()}
        assert sorted(records) == ["kept", "new", "same"]
        assert [(a.provider, a.cost) for a in records["same"].attempts] == [("p0", 2.0)]
        assert len(records["new"].attempts) == 2
        assert usage.stats()["rows"] == 3
        assert usage.stats()["dropped"] == 0
        assert await usage.spend(since=0) == 0.5 + 2.0 + 1.0
    finally:
        await usage.aclose()


async def test_stray_attempts_of_a_new_id_do_not_lose_the_batch(tmp_path: Path) -> None:
    """Attempts left without their request (edited outside the log) collide
    with a new record's: the batch is written, the stray rows replaced."""
    db = tmp_path / "usage.db"
    usage = await _started(db)
    try:
        with sqlite3.connect(db) as conn:
            conn.execute(
                "INSERT INTO attempts (request_id, idx, ts, provider, model, ok, status, input_tokens, "
                "output_tokens, cost, latency_ms, refused) VALUES ('fresh', 0, 1, 'stray', 'm', 1, 200, 0, 0, 9.0, 0, 0)"
            )
        conn.close()
        usage.record(_record("other", 1000.0, 1))
        usage.record(_record("fresh", 1000.0, 1))
        await usage.flush()
        records = {r.id: r for r in await usage.records()}
        assert sorted(records) == ["fresh", "other"]
        assert [a.provider for a in records["fresh"].attempts] == ["p0"]
        assert usage.stats()["rows"] == 2
    finally:
        await usage.aclose()


def _temp_store(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA temp_store").fetchone()[0])


def test_the_writer_keeps_statement_journals_in_memory(tmp_path: Path) -> None:
    """The write connection's temporary storage is in memory (the statement
    journals of multi-row inserts), and a batch written through it round-trips."""
    usage = UsageLog(tmp_path / "usage.db")
    conn = usage._open_writer()
    try:
        assert _temp_store(conn) == 2  # MEMORY
        batch: list[tuple[Any, ...]] = [(_RECORD, _record(f"r{i:03d}", 1000.0 + i, 1 + i % 3)) for i in range(200)]
        assert usage._commit(conn, batch) is None
        count = conn.execute("SELECT COUNT(*), (SELECT COUNT(*) FROM attempts) FROM requests").fetchone()
        assert count == (200, sum(1 + i % 3 for i in range(200)))
    finally:
        conn.close()


@pytest.mark.parametrize("delete", ["purge", "forget"])
def test_bulk_deletes_spill_temporary_tables_to_disk_and_restore_memory(tmp_path: Path, delete: str) -> None:
    """A purge or an erasure on the writer connection runs with temporary
    storage in files (its key lists may be huge) and gives the connection
    back with it in memory."""
    usage = UsageLog(tmp_path / "usage.db")
    conn = usage._open_writer()
    try:
        usage._commit(conn, [(_RECORD, _record(f"r{i}", 1000.0 + i, 2)) for i in range(10)])
        seen: list[str] = []
        conn.set_trace_callback(seen.append)
        deleted = usage._purge(conn, 1005.0) if delete == "purge" else usage._forget(conn, "alice")
        conn.set_trace_callback(None)
        assert deleted == (5 if delete == "purge" else 10)
        pragmas = [s for s in seen if s.startswith("PRAGMA temp_store =")]
        assert pragmas == ["PRAGMA temp_store = 1", "PRAGMA temp_store = 2"]
        first_delete = next(i for i, s in enumerate(seen) if s.startswith("DELETE"))
        assert seen.index("PRAGMA temp_store = 1") < first_delete < seen.index("PRAGMA temp_store = 2")
        assert _temp_store(conn) == 2
    finally:
        conn.close()


def test_a_failed_bulk_delete_restores_temporary_storage_in_memory(tmp_path: Path) -> None:
    usage = UsageLog(tmp_path / "usage.db")
    conn = usage._open_writer()
    try:
        conn.execute("PRAGMA query_only = 1")  # every write fails
        with pytest.raises(sqlite3.OperationalError):
            usage._purge(conn, 2000.0)
        with pytest.raises(sqlite3.OperationalError):
            usage._forget(conn, "alice")
        assert _temp_store(conn) == 2
        assert not conn.in_transaction
    finally:
        conn.close()


def test_a_connection_with_temporary_storage_in_files_is_left_as_it_is(tmp_path: Path) -> None:
    """The direct (not writing) purge's own connection: no pragma round trip."""
    usage = UsageLog(tmp_path / "usage.db")
    conn = usage._open_writer()
    try:
        usage._commit(conn, [(_RECORD, _record("old", 1000.0, 1))])
        conn.execute("PRAGMA temp_store = FILE")
        seen: list[str] = []
        conn.set_trace_callback(seen.append)
        assert usage._purge(conn, 2000.0) == 1
        conn.set_trace_callback(None)
        assert not [s for s in seen if s.startswith("PRAGMA temp_store =")]
        assert _temp_store(conn) == 1
    finally:
        conn.close()
