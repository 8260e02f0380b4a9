"""The log itself: group commit, spend, retention and purge, statistics,
reading a recorded file with ``open_log``, and a writer that never holds up
the event loop."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from usage_helpers import DRIVERS, config, priced, scripted, usage_of

import swarmgate_usage.log as log_module
from swarmgate import ProviderManager
from swarmgate_usage import SCHEMA_VERSION, AttemptRecord, UsageLog, UsageLogError, UsageRecord, open_log

pytestmark = pytest.mark.anyio

DAY = 86400.0


def record(
    rid: str,
    ts: float,
    *,
    caller: str | None = None,
    attempts: tuple[tuple[str, float], ...] = (("a", 0.01),),
    cache_hit: bool = False,
) -> UsageRecord:
    """A record whose cost is the sum of ``attempts`` ((provider, cost) pairs); the last one answered."""
    atts = tuple(
        AttemptRecord(provider=p, model=f"m{p}", ok=i == len(attempts) - 1, cost=c, status=200)
        for i, (p, c) in enumerate(attempts)
    )
    return UsageRecord(
        id=rid,
        ts=ts,
        caller=caller,
        provider=attempts[-1][0] if attempts else None,
        model=f"m{attempts[-1][0]}" if attempts else None,
        cost=sum(c for _, c in attempts),
        attempts=atts,
        cache_hit=cache_hit,
    )


async def started(path: Path, **options: Any) -> UsageLog:
    usage = UsageLog(path, **options)
    await anyio.to_thread.run_sync(usage.start)
    return usage


async def wait_for(condition: Any) -> None:
    """Poll ``condition`` (the writer thread changes what it sees) for up to 5 s."""
    with anyio.fail_after(5.0):
        while True:
            if await condition():
                return
            await anyio.sleep(0.01)


async def test_records_become_visible_at_the_group_commit_not_before(db: Path) -> None:
    usage = await started(db, commit_interval=30.0)
    try:
        usage.record(record("r1", time.time()))
        await anyio.sleep(0.05)
        assert await usage.records() == []  # committed at most commit_interval later, not yet
        assert usage.stats()["pending"] == 1
        await usage.flush()
        assert [r.id for r in await usage.records()] == ["r1"]
        assert usage.stats()["pending"] == 0
    finally:
        await usage.aclose()


async def test_the_commit_interval_bounds_how_long_a_record_stays_pending(db: Path) -> None:
    usage = await started(db, commit_interval=0.1)
    try:
        queued = time.monotonic()
        usage.record(record("r1", time.time()))

        async def visible() -> bool:
            return len(await usage.records()) == 1

        await wait_for(visible)
        assert time.monotonic() - queued < 3.0
        assert usage.stats()["commits"] == 1
    finally:
        await usage.aclose()


async def test_max_batch_commits_early(db: Path) -> None:
    usage = await started(db, commit_interval=600.0, max_batch=5)
    try:
        for i in range(4):
            usage.record(record(f"r{i}", time.time()))
        await anyio.sleep(0.05)
        assert usage.stats()["commits"] == 0
        usage.record(record("r4", time.time()))

        async def committed() -> bool:
            return usage.stats()["commits"] == 1

        await wait_for(committed)
        assert len(await usage.records()) == 5
    finally:
        await usage.aclose()


async def test_many_requests_share_few_commits(db: Path) -> None:
    async with ProviderManager(config(db, usage={"commitInterval": 100}), drivers=DRIVERS) as manager:
        usage = usage_of(manager)
        for _ in range(50):
            await manager.complete(prompt="hi")
        await usage.flush()
        stats = usage.stats()
        assert stats["rows"] == 50
        assert 1 <= stats["commits"] < 50
        assert stats["pending"] == 0
        assert stats["dropped"] == 0
        assert stats["last_commit_ts"] is not None
        assert abs(stats["last_commit_ts"] - time.time()) < 5


async def test_spend_per_provider_caller_and_since(db: Path) -> None:
    now = time.time()
    usage = await started(db)
    try:
        usage.record(record("old", now - 2 * DAY, caller="alice", attempts=(("a", 1.0),)))
        usage.record(record("r1", now - 10, caller="alice", attempts=(("a", 0.25), ("b", 0.5))))
        usage.record(record("r2", now - 5, caller="bob", attempts=(("b", 0.125),)))
        usage.record(record("r3", now - 1, caller=None, attempts=(("a", 0.0625),)))
        usage.record(record("hit", now - 1, caller="bob", attempts=(), cache_hit=True))
        await usage.flush()
        since = now - DAY
        assert await usage.spend(since=since) == pytest.approx(0.25 + 0.5 + 0.125 + 0.0625)
        assert await usage.spend(since=0) == pytest.approx(1.0 + 0.25 + 0.5 + 0.125 + 0.0625)
        assert await usage.spend(since=since, caller="alice") == pytest.approx(0.75)
        assert await usage.spend(since=since, caller="bob") == pytest.approx(0.125)
        # A request that failed over splits its cost between the providers it tried.
        assert await usage.spend(since=since, provider="a") == pytest.approx(0.25 + 0.0625)
        assert await usage.spend(since=since, provider="b") == pytest.approx(0.5 + 0.125)
        assert await usage.spend(since=since, provider="b", caller="alice") == pytest.approx(0.5)
        assert await usage.spend(since=since, provider="nobody") == 0.0
        assert await usage.spend(since=now + 10) == 0.0
    finally:
        await usage.aclose()


async def test_spend_of_served_requests(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS) as manager:
        scripted(manager, "a").push("one", "two words", "three words here")
        start = time.time() - 1
        for caller in ("alice", "alice", "bob"):
            await manager.complete(prompt="hi", caller=caller)
        usage = usage_of(manager)
        await usage.flush()
        records = await usage.records()
        assert await usage.spend(since=start) == pytest.approx(sum(r.cost for r in records))
        assert await usage.spend(since=start, caller="bob") == pytest.approx(records[-1].cost)
        assert records[-1].cost == pytest.approx(priced(records[-1].input_tokens, records[-1].output_tokens))


async def test_records_filters_and_limits(db: Path) -> None:
    now = time.time()
    usage = await started(db)
    try:
        for i in range(10):
            usage.record(record(f"r{i}", now - 100 + i * 10))
        await usage.flush()
        assert [r.id for r in await usage.records()] == [f"r{i}" for i in range(10)]
        assert [r.id for r in await usage.records(since=now - 60)] == [f"r{i}" for i in range(4, 10)]
        assert [r.id for r in await usage.records(since=now - 60, until=now - 30)] == ["r4", "r5", "r6"]
        assert [r.id for r in await usage.records(limit=3)] == ["r0", "r1", "r2"]
        assert [r.id for r in await usage.records(limit=3, latest=True)] == ["r7", "r8", "r9"]
        assert await usage.records(limit=0) == []
        with pytest.raises(ValueError, match="limit"):
            await usage.records(limit=-1)
    finally:
        await usage.aclose()


async def test_a_record_with_a_logged_id_replaces_it_and_its_attempts(db: Path) -> None:
    usage = await started(db)
    try:
        usage.record(record("same", 1000.0, attempts=(("a", 1.0), ("b", 2.0))))
        usage.record(record("same", 1000.0, attempts=(("b", 0.5),)))
        await usage.flush()
        (only,) = await usage.records()
        assert [(a.provider, a.cost) for a in only.attempts] == [("b", 0.5)]
        assert await usage.spend(since=0, provider="a") == 0.0
    finally:
        await usage.aclose()


async def test_purge_deletes_old_requests_and_their_attempts(db: Path) -> None:
    now = time.time()
    usage = await started(db)
    try:
        usage.record(record("ancient", now - 30 * DAY, attempts=(("a", 1.0), ("b", 1.0))))
        usage.record(record("old", now - 8 * DAY))
        usage.record(record("new", now - 60))
        assert await usage.purge(7 * DAY) == 2  # commits the pending records first
        assert [r.id for r in await usage.records()] == ["new"]
        assert usage.stats()["rows"] == 1
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 1
        assert await usage.purge(7 * DAY) == 0
        with pytest.raises(ValueError, match="non-negative"):
            await usage.purge(-1)
    finally:
        await usage.aclose()


async def test_retention_purges_at_start_up_and_then_periodically(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    first = await started(db)
    first.record(record("expired", now - 3 * DAY))
    first.record(record("kept", now - 60))
    await first.aclose()

    monkeypatch.setattr(UsageLog, "purge_every", 0.05)
    cfg = config(db, usage={"retention": DAY * 1000})
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        usage = usage_of(manager)
        await usage.flush()
        assert [r.id for r in await usage.records()] == ["kept"]
        # Rows that age past the retention while running go at the next periodic purge.
        usage.record(record("aged", now - 2 * DAY))

        async def purged() -> bool:
            await usage.flush()
            return [r.id for r in await usage.records()] == ["kept"]

        await wait_for(purged)


async def test_retention_null_keeps_everything(db: Path) -> None:
    first = await started(db)
    first.record(record("ancient", 1000.0))
    await first.aclose()
    async with ProviderManager(config(db, usage={"retention": None}), drivers=DRIVERS) as manager:
        usage = usage_of(manager)
        await usage.flush()
        assert [r.id for r in await usage.records()] == ["ancient"]


async def test_the_event_loop_goes_on_while_the_writer_is_slow(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow disk (a commit that takes a second) holds up nothing on the loop:
    requests keep completing while the writer sleeps, and nothing is lost."""
    slow_commit = log_module.UsageLog._commit

    slept = []

    def commit_on_a_slow_disk(self: UsageLog, conn: sqlite3.Connection, batch: list[Any]) -> str | None:
        if not slept:  # the first commit takes a second
            slept.append(True)
            time.sleep(1.0)
        return slow_commit(self, conn, batch)

    monkeypatch.setattr(log_module.UsageLog, "_commit", commit_on_a_slow_disk)
    async with ProviderManager(config(db, usage={"commitInterval": 0, "maxBatch": 1}), drivers=DRIVERS) as manager:
        usage = usage_of(manager)
        await manager.complete(prompt="first")  # the writer now sleeps in its commit
        begun = time.monotonic()
        for _ in range(20):
            await manager.complete(prompt="hi")
        assert time.monotonic() - begun < 0.9
        assert usage.stats()["pending"] >= 19
        with anyio.fail_after(60):
            await usage.flush()
        assert len(await usage.records()) == 21


async def test_records_can_keep_only_failures_and_failovers(db: Path) -> None:
    """``failures_only``: failed requests and answered ones with a failed
    attempt; a refused attempt before the answer is routing, not a failure."""
    now = time.time()
    usage = await started(db)
    try:
        usage.record(record("plain", now - 50))
        usage.record(record("failover", now - 40, attempts=(("a", 0.0), ("b", 0.01))))
        refused = AttemptRecord(provider="a", model="ma", ok=False, refused=True, error_kind="rate_limit", status=429)
        answered = AttemptRecord(provider="b", model="mb", ok=True, cost=0.01, status=200)
        usage.record(
            UsageRecord(id="refused-first", ts=now - 30, provider="b", model="mb", attempts=(refused, answered))
        )
        usage.record(UsageRecord(id="failed", ts=now - 20, ok=False, status=502, error_kind="server_error"))
        await usage.flush()
        assert [r.id for r in await usage.records(failures_only=True)] == ["failover", "failed"]
        assert [r.id for r in await usage.records(failures_only=True, limit=1, latest=True)] == ["failed"]
        assert [r.id for r in await usage.records(failures_only=True, since=now - 25)] == ["failed"]
        assert len(await usage.records()) == 4
    finally:
        await usage.aclose()


async def test_stats_count_records_dropped_after_close(db: Path) -> None:
    usage = await started(db)
    usage.record(record("r1", time.time()))
    await usage.aclose()
    assert not usage.writable
    usage.record(record("late", time.time()))
    stats = usage.stats()
    assert (stats["rows"], stats["pending"], stats["dropped"]) == (1, 0, 1)
    await usage.flush()  # a closed log has nothing pending: a no-op


async def test_open_log_reads_a_recorded_file_without_a_manager(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS) as manager:
        for caller in ("alice", "bob"):
            await manager.complete(prompt="hi", caller=caller)
    # plugin_shutdown committed everything.
    usage = open_log(db)
    try:
        assert not usage.writable
        assert usage.path == db
        assert usage.stats()["rows"] == 2
        records = await usage.records()
        assert [r.caller for r in records] == ["alice", "bob"]
        assert await usage.spend(since=0, caller="alice") == pytest.approx(records[0].cost)
        await usage.flush()
        assert await usage.purge(0) == 2
        assert await usage.records() == []
    finally:
        usage.close()


def test_open_log_refuses_what_is_not_a_usage_log(tmp_path: Path) -> None:
    with pytest.raises(UsageLogError, match="no usage log at"):
        open_log(tmp_path / "missing.db")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(UsageLogError, match="not a usage log"):
        open_log(garbage)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE things (x)")
    with pytest.raises(UsageLogError, match="no schema version"):
        open_log(other)


async def test_a_log_of_a_newer_schema_is_refused(db: Path) -> None:
    usage = await started(db)
    await usage.aclose()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(UsageLogError, match="upgrade"):
        await started(db)
    with pytest.raises(UsageLogError, match="schema"):
        open_log(db)


async def test_the_file_is_in_wal_mode_with_the_indexes(db: Path) -> None:
    usage = await started(db)
    await usage.aclose()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"requests_ts", "requests_provider_ts", "requests_caller_ts", "attempts_provider_ts"} <= indexes
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


async def test_a_writer_that_dies_releases_flush_and_counts_what_it_lost(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the writer (not a database error) must not hang flush() or
    leave records counted as pending forever."""

    def broken(self: UsageLog, conn: sqlite3.Connection, batch: list[Any]) -> str | None:
        raise RuntimeError("a bug in the writer")

    monkeypatch.setattr(log_module.UsageLog, "_commit", broken)
    usage = await started(db, commit_interval=600.0)
    try:
        usage.record(record("r1", time.time()))
        with anyio.fail_after(10), pytest.raises(UsageLogError):
            await usage.flush()
        assert not usage.writable
        usage.record(record("r2", time.time()))
        assert usage.stats()["pending"] == 0
        assert usage.stats()["dropped"] == 2
    finally:
        await usage.aclose()


@pytest.mark.anyio
async def test_a_new_log_is_readable_by_its_owner_only(manager: Any, db: Path) -> None:
    import stat

    await manager.complete(prompt="hi")
    await manager.extensions["usage"].flush()
    for path in (db, db.with_name(db.name + "-wal")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
