"""swarmgate.writer.BatchWriter: the writer-thread skeleton of the usage
and audit logs, driven through a minimal log of its own."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from swarmgate.logs import get_logger
from swarmgate.writer import BatchWriter, Control

pytestmark = pytest.mark.anyio


class NoteError(RuntimeError):
    pass


class _Clear(Control):
    __slots__ = ()
    action = "clear"


class NoteLog(BatchWriter):
    """One table of notes; ``fail`` makes the next commit or control fail."""

    kind = "note"
    error_type = NoteError
    logger = get_logger("tests.note")

    def __init__(self, path: Path, **options: Any) -> None:
        super().__init__(
            path,
            commit_interval=options.get("commit_interval", 0.05),
            max_batch=100,
            retention=options.get("retention"),
        )
        self.purges = 0
        self.fail: str | None = None

    def _open_writer(self) -> sqlite3.Connection:
        if self.path.suffix == ".bad":
            raise OSError("not a note log")
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("CREATE TABLE IF NOT EXISTS notes (text TEXT NOT NULL)")
        return conn

    def _commit(self, conn: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> str | None:
        if self.fail == "bug":
            raise RuntimeError("a bug")
        self._handled += len(batch)
        if self.fail == "commit":
            self._dropped_writer += len(batch)
            return "disk full"
        conn.executemany("INSERT INTO notes VALUES (?)", batch)
        self._commits += 1
        return None

    def _control(self, conn: sqlite3.Connection, control: Control) -> None:
        if self.fail == "control":
            raise sqlite3.OperationalError("locked")
        control.result = conn.execute("DELETE FROM notes").rowcount

    def _retention_purge(self, conn: sqlite3.Connection) -> None:
        self.purges += 1

    def _open_reader(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, check_same_thread=False)

    def note(self, text: str) -> None:
        self._enqueue((text,))

    def notes(self) -> list[str]:
        result: list[str] = self._read(lambda conn: [row[0] for row in conn.execute("SELECT text FROM notes")])
        return result


async def _until(condition: Callable[[], bool]) -> None:
    """Wait (up to ten seconds) until ``condition()`` holds."""
    for _ in range(1000):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError("the condition never held")


async def _started(path: Path, **options: Any) -> NoteLog:
    log = NoteLog(path, **options)
    await anyio.to_thread.run_sync(log.start)
    return log


async def test_records_are_committed_in_batches_and_on_flush(tmp_path: Path) -> None:
    log = await _started(tmp_path / "notes.db", commit_interval=600.0)
    try:
        assert log.writable
        assert log._writer is not None
        assert log._writer.name == "swarmgate-note-writer:notes.db"
        for i in range(5):
            log.note(f"n{i}")
        assert log.notes() == []  # the window is ten minutes: nothing committed yet
        await log.flush()
        assert log.notes() == [f"n{i}" for i in range(5)]
        assert log._commits == 1
    finally:
        await log.aclose()
    assert not log.writable
    log.note("late")
    assert log._dropped_closed == 1


async def test_a_full_batch_commits_before_the_window_closes(tmp_path: Path) -> None:
    log = await _started(tmp_path / "notes.db", commit_interval=600.0)
    try:
        for i in range(100):
            log.note(f"n{i}")
        await _until(lambda: log._commits > 0)
        assert len(log.notes()) == 100
    finally:
        await log.aclose()


async def test_a_control_message_commits_first_then_runs(tmp_path: Path) -> None:
    log = await _started(tmp_path / "notes.db", commit_interval=600.0)
    try:
        log.note("a")
        log.note("b")
        assert await log._send(_Clear()) == 2
        log.fail = "control"
        with pytest.raises(NoteError, match="clear failed: locked"):
            await log._send(_Clear())
    finally:
        await log.aclose()


async def test_a_failed_commit_fails_the_flush(tmp_path: Path) -> None:
    log = await _started(tmp_path / "notes.db")
    try:
        log.fail = "commit"
        log.note("lost")
        with pytest.raises(NoteError, match="disk full"):
            await log.flush()
        assert log.writable
    finally:
        await log.aclose()


async def test_a_writer_that_crashes_releases_flush_and_counts_what_it_lost(tmp_path: Path) -> None:
    log = await _started(tmp_path / "notes.db", commit_interval=600.0)
    try:
        log.fail = "bug"
        log.note("one")
        with anyio.fail_after(10), pytest.raises(NoteError, match="the note log writer"):
            await log.flush()
        assert not log.writable
        assert log._dropped_writer == 1
        assert log._handled == log._enqueued
    finally:
        await log.aclose()


async def test_a_file_that_cannot_be_opened_fails_start_with_the_error_type(tmp_path: Path) -> None:
    with pytest.raises(NoteError, match="not a note log"):
        await _started(tmp_path / "notes.bad")


async def test_retention_purges_at_start_and_periodically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(NoteLog, "purge_every", 0.02)
    log = await _started(tmp_path / "notes.db", retention=60.0)
    try:
        await _until(lambda: log.purges >= 3)
    finally:
        await log.aclose()
    unpurged = await _started(tmp_path / "other.db")
    await unpurged.aclose()
    assert unpurged.purges == 0
