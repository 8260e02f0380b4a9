"""``BatchWriter``: the writer-thread skeleton of a durable SQLite log (the
usage log, the audit log).

A log built on it records on the event loop by putting a tuple on a
``queue.SimpleQueue`` (:meth:`BatchWriter._enqueue`: no I/O, no record
building); one thread owns the write connection and takes the queue in
batches (:func:`swarmgate.batching.gather_batch`), committing each batch in
one transaction ``commit_interval`` seconds after its first record was
queued, or as soon as ``max_batch`` are pending, or when a control message
(flush, stop, the log's own purge or erasure) arrives. The same thread runs
the log's retention purge when it starts and then every hour.

What a subclass supplies: how to open the write connection (schema and
all), how to write a batch (:meth:`~BatchWriter._commit`), how to run its
own control messages (:meth:`~BatchWriter._control`), the retention purge,
and how to open the read connection. The thread's life (start, stop,
crash), flushing, counters and the read connection's lock live here.
"""

from __future__ import annotations

import atexit
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Final

import anyio.to_thread

from swarmgate.batching import gather_batch

#: Seconds between retention purges while the writer runs.
PURGE_EVERY: Final = 3600.0


class Control:
    """A control message for the writer thread: ``done`` is set once it was
    handled, ``error`` then says what failed (``None``: nothing), ``result``
    carries what the handler returns (how many rows a purge deleted...).
    ``action`` names it in an error (``"purge failed: ..."``)."""

    __slots__ = ("done", "error", "result")
    action: ClassVar[str] = "control"

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: str | None = None
        self.result = 0


class Flush(Control):
    """Commit what is pending (and nothing else)."""

    __slots__ = ()
    action = "flush"


class Stop(Control):
    """Commit what is pending and end the writer thread."""

    __slots__ = ()
    action = "stop"


class BatchWriter:
    """A log at ``path`` written by one thread; see the module docstring.

    Subclasses set :attr:`kind` (``"usage"``: "the usage log", thread
    ``swarmgate-usage-writer:<file>``, log events ``usage_writer_crashed``),
    :attr:`error_type` (what a failed flush or control raises) and
    :attr:`logger`, and implement the ``_open_*``, ``_commit``, ``_control``
    and ``_retention_purge`` methods. ``commit_interval`` and ``retention``
    are seconds (``retention`` ``None``: no purge).

    Counters: ``_enqueued`` and ``_dropped_closed`` are written by the
    recording thread (the event loop's), the others by the writer thread:
    no counter has two writers.
    """

    kind: ClassVar[str]
    error_type: ClassVar[type[Exception]]
    logger: ClassVar[Any]
    #: Seconds between retention purges while the writer runs.
    purge_every: ClassVar[float] = PURGE_EVERY

    def __init__(self, path: str | Path, *, commit_interval: float, max_batch: int, retention: float | None) -> None:
        self.path = Path(path)
        self.commit_interval = commit_interval
        self.max_batch = max_batch
        self.retention = retention
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._put: Callable[[Any], None] = self._queue.put
        #: Wakes the writer before its batch window closes: a control message, a full batch.
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._writing = False  # the writer runs and accepts records
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._enqueued = 0
        self._handled = 0
        self._commits = 0
        self._last_commit: float | None = None
        self._dropped_writer = 0
        self._dropped_closed = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, writing={self._writing})"

    # -- what a log supplies ----------------------------------------------------------

    def _open_writer(self) -> sqlite3.Connection:
        """The write connection, schema created (writer thread). Raises
        :attr:`error_type` when the file is not a usable log."""
        raise NotImplementedError

    def _writer_started(self, conn: sqlite3.Connection) -> None:
        """Runs in the writer thread once :meth:`start` returned, before the
        first batch (a count of what the file holds...). Nothing by default."""

    def _commit(self, conn: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> str | None:
        """Write ``batch`` in one transaction and count it (``_handled``,
        ``_commits``, ``_last_commit``, ``_dropped_writer``); the error text
        if it failed (the batch is then dropped)."""
        raise NotImplementedError

    def _control(self, conn: sqlite3.Connection, control: Control) -> None:
        """Run a control message of the log's own (set ``control.result``); a
        :class:`sqlite3.Error` it raises becomes ``"<action> failed: ..."``.
        Flush and stop never come here."""
        raise NotImplementedError

    def _retention_purge(self, conn: sqlite3.Connection) -> None:
        """Purge what is older than :attr:`retention` (writer thread; errors logged, not raised)."""
        raise NotImplementedError

    def _open_reader(self) -> sqlite3.Connection:
        """A new read connection, checked to be such a log and query-only.
        Raises :attr:`error_type` otherwise."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------

    @property
    def writable(self) -> bool:
        """The writer thread runs: recorded entries will be written."""
        return self._writing

    def start(self) -> None:
        """Open the file (creating it and its schema if needed) and start the
        writer thread (blocking; call it through ``anyio.to_thread.run_sync``
        from async code). Raises :attr:`error_type` when the file is not a
        usable log."""
        if self._writer is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._ready.clear()
        self._start_error = None
        writer = threading.Thread(target=self._run, name=f"swarmgate-{self.kind}-writer:{self.path.name}", daemon=True)
        self._writer = writer
        writer.start()
        self._ready.wait()
        if self._start_error is not None:
            writer.join()
            self._writer = None
            raise self._start_error
        self._writing = True
        atexit.register(self.close)

    async def aclose(self) -> None:
        """Commit what is pending, stop the writer and close the connections.
        Records arriving later are dropped (and counted)."""
        self._writing = False  # here, on the recording thread: nothing is queued after the stop
        await anyio.to_thread.run_sync(self.close)

    def close(self) -> None:
        """Blocking :meth:`aclose` (for synchronous callers and interpreter exit)."""
        writer = self._writer
        if writer is not None:
            self._writing = False
            atexit.unregister(self.close)
            self._put(Stop())
            self._wake.set()
            writer.join()
            self._writer = None
            # A record queued by another thread after the stop: count it as dropped.
            self._abandon(f"the {self.kind} log is closed")
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # -- recording (on the event loop: no I/O) -------------------------------------

    def _enqueue(self, item: tuple[Any, ...]) -> None:
        """Queue a record (a tuple the log's ``_commit`` understands) if the
        writer runs, else count it as dropped. Never blocks, never does I/O."""
        if self._writing:
            self._enqueued += 1
            self._put(item)
            if self._enqueued - self._handled >= self.max_batch:
                self._wake.set()  # a full batch: commit it now
        else:
            self._dropped_closed += 1

    # -- the writer thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            conn = self._open_writer()
        except Exception as exc:  # noqa: BLE001 - reported to start()
            error = self.error_type
            self._start_error = exc if isinstance(exc, error) else error(f"{self.path}: {exc}")
            self._ready.set()
            return
        self._ready.set()
        try:
            self._writer_started(conn)
            self._loop(conn)
        except Exception as exc:
            # A bug, not a database error (those are handled where they happen):
            # stop taking records and release everyone waiting on the writer.
            self._writing = False
            self.logger.error(
                f"{self.kind}_writer_crashed", path=str(self.path), error=f"{type(exc).__name__}: {exc}", exc_info=True
            )
            self._abandon(f"the {self.kind} log writer stopped: {type(exc).__name__}: {exc}")
            lost = self._enqueued - self._handled  # the batch it held
            self._dropped_writer += lost
            self._handled += lost
        finally:
            conn.close()

    def _abandon(self, reason: str) -> None:
        """Drop what is still queued; fail the control messages waiting on it."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if type(item) is tuple:
                self._dropped_writer += 1
                self._handled += 1
            else:
                control: Control = item
                control.error = reason
                control.done.set()

    def _loop(self, conn: sqlite3.Connection) -> None:
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        wake = self._wake
        next_purge = time.monotonic() if self.retention is not None else math.inf
        while True:
            if time.monotonic() >= next_purge:
                self._retention_purge(conn)
                next_purge = time.monotonic() + self.purge_every
            try:
                item = get() if next_purge == math.inf else get(timeout=max(0.0, next_purge - time.monotonic()))
            except queue.Empty:
                continue
            pending, found = gather_batch(get_nowait, wake, item, max_batch=self.max_batch, window=self.commit_interval)
            error = self._commit(conn, pending) if pending else None
            if found is None:
                continue
            control: Control = found
            control.error = error
            if not isinstance(control, Flush | Stop):
                try:
                    self._control(conn, control)
                except sqlite3.Error as exc:
                    control.error = f"{control.action} failed: {exc}"
            control.done.set()
            if isinstance(control, Stop):
                return

    # -- control -------------------------------------------------------------------

    async def _send(self, control: Control) -> int:
        """Hand ``control`` to the writer, wait (in a worker thread) until it
        was handled and return its result. Raises :attr:`error_type` with
        its error."""
        self._put(control)
        self._wake.set()
        await anyio.to_thread.run_sync(self._wait, control, abandon_on_cancel=True)
        if control.error is not None:
            raise self.error_type(control.error)
        return control.result

    def _wait(self, control: Control) -> None:
        writer = self._writer
        while not control.done.wait(0.5):
            if writer is None or not writer.is_alive():
                if not control.done.is_set():
                    control.error = f"the {self.kind} log writer of {self.path} is not running"
                return

    async def flush(self) -> None:
        """Commit everything recorded so far and return once it is durable
        (against a process crash). A no-op on a log that is not writing.
        Raises :attr:`error_type` if that commit failed (the records are dropped)."""
        if self._writing:
            await self._send(Flush())

    # -- reading (worker threads, the read connection) -----------------------------

    def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``fn`` on the read connection (opened on first use), one reader at a time."""
        with self._read_lock:
            conn = self._reader
            if conn is None:
                conn = self._reader = self._open_reader()
            return fn(conn)
