"""``UsageLog``: the durable usage log, a SQLite file written by one thread.

Writing. The request hooks call :meth:`UsageLog.enqueue_success` /
:meth:`UsageLog.enqueue_failure`, which put a tuple of references on a
``queue.SimpleQueue`` and return: no I/O and no record building on the event
loop. A dedicated writer thread owns the write connection; it turns queued
tuples into rows and commits them as a group, ``commit_interval`` seconds
after the first of them was queued or as soon as ``max_batch`` are pending,
whichever comes first, and on :meth:`flush`, :meth:`purge` and shutdown.
The same thread purges rows older than ``retention`` when it starts and
then every hour.

Durability. The database runs in WAL mode with ``synchronous=NORMAL``: a
commit appends to the write-ahead log without an fsync; the WAL is synced at
checkpoints. A process crash (``kill -9``, an exception that takes the
process down) loses nothing that was committed, because the WAL is in the OS
page cache; only the requests queued since the last group commit (at most
``commit_interval`` of them, plus a batch being written) are lost. An OS
crash or power loss may also lose the last commits before the latest
checkpoint; the database stays consistent either way.

Reading. :meth:`records` and :meth:`spend` run in a worker thread
(``anyio.to_thread.run_sync``) on a separate, query-only connection; they
see what is committed (call :meth:`flush` first to include what is pending).
"""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypedDict

import anyio
import anyio.to_thread

from swarmgate import (
    Attempt,
    CompletionRequest,
    CompletionResponse,
    SwarmgateConfig,
    SwarmgateError,
)
from swarmgate.batching import insert_rows
from swarmgate.errors import ErrorKind, attempt_status, http_status
from swarmgate.logs import get_logger
from swarmgate.paths import create_private
from swarmgate.writer import BatchWriter, Control
from swarmgate_usage.records import AttemptRecord, UsageRecord
from swarmgate_usage.settings import UsageLogSettings

log = get_logger("swarmgate.usage")

#: The schema version this package writes (``meta.schema_version``).
SCHEMA_VERSION: Final = 1
#: Milliseconds a connection waits for another connection's lock.
BUSY_TIMEOUT_MS: Final = 5000
#: ``PRAGMA temp_store`` values: temporary tables and journals in files (spilled
#: to disk past the page cache), or in memory.
_TEMP_STORE_FILE: Final = 1
_TEMP_STORE_MEMORY: Final = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    caller TEXT,
    requested_model TEXT NOT NULL,
    provider TEXT,
    model TEXT,
    ok INTEGER NOT NULL,
    status INTEGER NOT NULL,
    error_kind TEXT,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    cache_hit INTEGER NOT NULL,
    cost_saved REAL NOT NULL,
    stream INTEGER NOT NULL,
    tags TEXT NOT NULL,
    route TEXT
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
CREATE INDEX IF NOT EXISTS requests_provider_ts ON requests (provider, ts);
CREATE INDEX IF NOT EXISTS requests_caller_ts ON requests (caller, ts);
CREATE TABLE IF NOT EXISTS attempts (
    request_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    ts REAL NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    ok INTEGER NOT NULL,
    error_kind TEXT,
    status INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    refused INTEGER NOT NULL,
    PRIMARY KEY (request_id, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attempts_provider_ts ON attempts (provider, ts);
CREATE INDEX IF NOT EXISTS attempts_ts ON attempts (ts);
"""

#: The ``WHERE`` term of ``records(failures_only=True)``: the request failed,
#: or one of its attempts failed without being a refusal.
_FAILURES_ONLY: Final = (
    "(ok = 0 OR EXISTS (SELECT 1 FROM attempts f WHERE f.request_id = requests.id AND f.ok = 0 AND f.refused = 0))"
)
_REQUEST_COLUMNS: Final = (
    "id, ts, caller, requested_model, provider, model, ok, status, error_kind, input_tokens, output_tokens, "
    "cost, latency_ms, ttft_ms, cache_hit, cost_saved, stream, tags, route"
)
_ATTEMPT_COLUMNS: Final = (
    "request_id, idx, ts, provider, model, ok, error_kind, status, input_tokens, output_tokens, cost, latency_ms, "
    "ttft_ms, refused"
)
#: ``INSERT`` clauses for :func:`swarmgate.batching.insert_rows` (19 and 14 values a row).
_INSERT_REQUESTS: Final = f"INSERT INTO requests ({_REQUEST_COLUMNS}) VALUES"
_INSERT_ATTEMPTS: Final = f"INSERT INTO attempts ({_ATTEMPT_COLUMNS}) VALUES"
_DELETE_ATTEMPTS: Final = "DELETE FROM attempts WHERE request_id = ?"
_DELETE_REQUEST: Final = "DELETE FROM requests WHERE id = ?"

#: Queue entries. The hooks enqueue tuples whose first item says which:
#: ``(_OK, id, ts, request, response, route, stream)``,
#: ``(_FAILED, id, ts, latency_ms, request, error, attempts, route, stream)``,
#: ``(_RECORD, record)``. Anything else on the queue is a control message.
_OK: Final = 0
_FAILED: Final = 1
_RECORD: Final = 2


class UsageStats(TypedDict):
    """What :meth:`UsageLog.stats` reports.

    ``rows``: requests in the log as this instance knows it (counted when it
    opened, plus what it committed, minus what it purged); ``pending``:
    recorded but not yet committed; ``commits``: group commits made;
    ``last_commit_ts``: unix time of the last one (``None`` before the
    first); ``dropped``: records that could not be written (a failed commit,
    a record that could not be converted, a record after close).
    """

    rows: int
    pending: int
    commits: int
    last_commit_ts: float | None
    dropped: int


class UsageLogError(RuntimeError):
    """The usage log could not do what was asked (a failed commit, a file
    that is not a usage log, a log that is closed)."""


class _Purge(Control):
    """Delete requests older than ``cutoff`` (``result``: how many went)."""

    __slots__ = ("cutoff",)
    action = "purge"

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        self.cutoff = cutoff


class _Forget(Control):
    """Delete the requests of ``caller`` (``result``: how many went)."""

    __slots__ = ("caller",)
    action = "forget"

    def __init__(self, caller: str) -> None:
        super().__init__()
        self.caller = caller


# ---------------------------------------------------------------------------
# Building records (in the writer thread)


def attempt_record(attempt: Attempt) -> AttemptRecord:
    """The logged form of a kernel :class:`~swarmgate.Attempt`: ``status``
    200 for a success, else the upstream's status, else the gateway status
    of the error kind (500 for an unknown kind)."""
    rows, _, _, _ = _attempt_rows_of("", 0.0, (attempt,))
    return _attempt_of(rows[0][3:])


def _attempt_rows_of(
    request_id: str, ts: float, attempts: Sequence[Attempt]
) -> tuple[list[tuple[Any, ...]], int, int, float]:
    """The ``attempts`` rows of ``attempts`` (see :func:`attempt_record`) and
    their summed input tokens, output tokens and cost."""
    rows: list[tuple[Any, ...]] = []
    tin = tout = 0
    costs: list[float] = []
    for idx, a in enumerate(attempts):
        status = attempt_status(a)
        tokens = a.tokens
        rows.append(
            (
                request_id,
                idx,
                ts,
                a.provider,
                a.model,
                1 if a.ok else 0,
                a.error_kind,
                status,
                tokens.input,
                tokens.output,
                a.cost,
                a.latency,
                a.ttft,
                1 if a.refused else 0,
            )
        )
        tin += tokens.input
        tout += tokens.output
        costs.append(a.cost)
    return rows, tin, tout, math.fsum(costs)


def _tags_json(tags: Sequence[str]) -> str:
    return json.dumps(list(tags)) if tags else "[]"


#: A record as rows: its ``requests`` row and its ``attempts`` rows.
_Rows = tuple[tuple[Any, ...], list[tuple[Any, ...]]]


def _success_rows(
    request_id: str,
    ts: float,
    request: CompletionRequest,
    response: CompletionResponse,
    route: str | None,
    stream: bool,
) -> _Rows:
    """The rows of an answered request (the writer builds these straight
    from the queued references; :func:`success_record` states the rules)."""
    cache_hit = response.cached
    attempts = response.attempts
    if attempts:
        rows, input_tokens, output_tokens, cost = _attempt_rows_of(request_id, ts, attempts)
    elif cache_hit:
        rows, input_tokens, output_tokens, cost = [], 0, 0, 0.0
    else:
        tokens = response.tokens
        rows, input_tokens, output_tokens, cost = [], tokens.input, tokens.output, response.cost
    cost_saved = 0.0
    if cache_hit:
        saved = response.metadata.get("cost_saved", 0.0)
        cost_saved = float(saved) if isinstance(saved, int | float) and not isinstance(saved, bool) else 0.0
    head = (
        request_id,
        ts,
        request.caller,
        request.model,
        response.provider,
        response.model,
        1,
        200,
        None,
        input_tokens,
        output_tokens,
        cost,
        response.latency,
        response.ttft,
        1 if cache_hit else 0,
        cost_saved,
        1 if stream else 0,
        _tags_json(request.tags),
        route,
    )
    return head, rows


def _failure_rows(
    request_id: str,
    ts: float,
    latency_ms: float,
    request: CompletionRequest,
    error: SwarmgateError,
    attempts: Sequence[Attempt],
    route: str | None,
    stream: bool,
) -> _Rows:
    """The rows of a request that ended without an answer (the rules:
    :func:`failure_record`)."""
    rows, input_tokens, output_tokens, cost = _attempt_rows_of(request_id, ts, attempts)
    if attempts:
        last = attempts[-1]
        provider: str | None = last.provider
        model: str | None = last.model
        ttft = last.ttft
    else:
        provider, model, ttft = error.provider, error.model, None
    kind = error.kind
    status = http_status(
        error,
        caller_timeout_ms=request.timeouts.total if request.timeouts is not None else None,
        elapsed_ms=latency_ms,
    )
    head = (
        request_id,
        ts,
        request.caller,
        request.model,
        provider,
        model,
        0,
        status,
        kind.value if isinstance(kind, ErrorKind) else str(kind),
        input_tokens,
        output_tokens,
        cost,
        latency_ms,
        ttft,
        0,
        0.0,
        1 if stream else 0,
        _tags_json(request.tags),
        route,
    )
    return head, rows


def _record_of_rows(rows: _Rows) -> UsageRecord:
    head, attempt_rows = rows
    return _usage_record(head, tuple(_attempt_of(row[3:]) for row in attempt_rows))


def success_record(
    request_id: str,
    ts: float,
    request: CompletionRequest,
    response: CompletionResponse,
    *,
    route: str | None = None,
    stream: bool = False,
) -> UsageRecord:
    """The record of an answered request: what the log stores for it.

    Tokens and cost are summed over ``response.attempts`` (a failed
    attempt's partial usage counts: it was billed). A cache hit costs 0 and
    consumed no tokens; ``cost_saved`` is ``response.metadata["cost_saved"]``
    (what the cached answer cost when it was produced). An answer a hook
    produced without attempts and without ``cached`` counts its own cost and
    tokens.
    """
    return _record_of_rows(_success_rows(request_id, ts, request, response, route, stream))


def failure_record(
    request_id: str,
    ts: float,
    latency_ms: float,
    request: CompletionRequest,
    error: SwarmgateError,
    attempts: Sequence[Attempt],
    *,
    route: str | None = None,
    stream: bool = False,
) -> UsageRecord:
    """The record of a request that ended without an answer (refused,
    failed, cancelled): what the log stores for it. ``status`` is
    :func:`swarmgate.errors.http_status` (what the gateway answered: 502
    for an upstream failure, 503 when no provider could take it, 504
    timeout, 499 cancelled...); ``provider`` and ``model`` are those of the
    last attempt (else the error's own, else ``None``); tokens and cost are
    summed over ``attempts``, partial usage of a cancelled or broken stream
    included; ``ttft_ms`` is the last attempt's."""
    return _record_of_rows(_failure_rows(request_id, ts, latency_ms, request, error, attempts, route, stream))


def _rows_of(item: tuple[Any, ...]) -> _Rows:
    """The rows of a queued entry (see ``_OK``)."""
    kind = item[0]
    if kind == _OK:
        _, rid, ts, request, response, route, stream = item
        return _success_rows(rid, ts, request, response, route, stream)
    if kind == _FAILED:
        _, rid, ts, latency, request, error, attempts, route, stream = item
        return _failure_rows(rid, ts, latency, request, error, attempts, route, stream)
    record: UsageRecord = item[1]
    return _request_row(record), list(_attempt_rows(record))


def _request_row(r: UsageRecord) -> tuple[Any, ...]:
    return (
        r.id,
        r.ts,
        r.caller,
        r.requested_model,
        r.provider,
        r.model,
        int(r.ok),
        r.status,
        r.error_kind,
        r.input_tokens,
        r.output_tokens,
        r.cost,
        r.latency_ms,
        r.ttft_ms,
        int(r.cache_hit),
        r.cost_saved,
        int(r.stream),
        json.dumps(list(r.tags)),
        r.route,
    )


def _attempt_rows(r: UsageRecord) -> Iterable[tuple[Any, ...]]:
    for idx, a in enumerate(r.attempts):
        yield (
            r.id,
            idx,
            r.ts,
            a.provider,
            a.model,
            int(a.ok),
            a.error_kind,
            a.status,
            a.input_tokens,
            a.output_tokens,
            a.cost,
            a.latency_ms,
            a.ttft_ms,
            int(a.refused),
        )


# ---------------------------------------------------------------------------
# Connections


def _connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    create_private(path)  # owner-only (0600); SQLite's -wal/-shm files follow it
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000.0, isolation_level=None, check_same_thread=check_same_thread
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _schema_version(conn: sqlite3.Connection) -> int | None:
    """The stored schema version, ``None`` for a file without the meta table."""
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if has_meta is None:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row is not None else None


def _create_schema(conn: sqlite3.Connection, path: Path) -> None:
    """WAL mode, the tables and the version; raises UsageLogError for a file
    of a newer schema or that is not a SQLite database."""
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        version = _schema_version(conn)
        if version is not None and version > SCHEMA_VERSION:
            raise UsageLogError(
                f"{path} has usage-log schema {version}; this swarmgate-usage reads up to {SCHEMA_VERSION}: upgrade it"
            )
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise UsageLogError(f"{path} is not a usable usage log: {exc}") from None


@contextmanager
def _temp_on_disk(conn: sqlite3.Connection) -> Iterator[None]:
    """Run a bulk delete with SQLite's temporary storage in files, then
    restore the connection's setting (also when the delete fails).

    The writer connection keeps it in memory (:meth:`UsageLog._open_writer`);
    a purge or an erasure collects the keys of the rows it deletes in a
    temporary table (``attempts`` has no rowid; ``forget`` lists the
    caller's ids), which for an hour of traffic is millions of keys: in
    files it spills to disk past the page cache instead of growing the
    process."""
    previous = int(conn.execute("PRAGMA temp_store").fetchone()[0])
    if previous == _TEMP_STORE_FILE:
        yield
        return
    conn.execute(f"PRAGMA temp_store = {_TEMP_STORE_FILE}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA temp_store = {previous}")


def _insert(conn: sqlite3.Connection, heads: list[tuple[Any, ...]], attempts: list[tuple[Any, ...]]) -> int:
    """Insert ``heads`` (``requests`` rows, distinct ids) and ``attempts`` in
    one transaction; how many logged requests they replaced.

    Kernel request ids are unique, so the rows go in as they are; when an
    id is already logged (an import, a replay: the insert violates a key)
    the transaction starts over, deleting the requests of those ids and
    their attempts first."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        try:
            insert_rows(conn, _INSERT_REQUESTS, 19, heads)
            insert_rows(conn, _INSERT_ATTEMPTS, 14, attempts)
            replaced = 0
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            ids = [(head[0],) for head in heads]
            conn.executemany(_DELETE_ATTEMPTS, ids)
            replaced = max(0, conn.executemany(_DELETE_REQUEST, ids).rowcount)
            insert_rows(conn, _INSERT_REQUESTS, 19, heads)
            insert_rows(conn, _INSERT_ATTEMPTS, 14, attempts)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return replaced


def _purge_rows(conn: sqlite3.Connection, cutoff: float) -> int:
    """Delete requests (and their attempts) that started before ``cutoff``; how many requests went."""
    with _temp_on_disk(conn):
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM attempts WHERE ts < ?", (cutoff,))
            deleted = conn.execute("DELETE FROM requests WHERE ts < ?", (cutoff,)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return int(deleted)


def _forget_rows(conn: sqlite3.Connection, caller: str) -> int:
    """Delete the requests of ``caller`` (and their attempts); how many requests went."""
    with _temp_on_disk(conn):
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "DELETE FROM attempts WHERE request_id IN (SELECT id FROM requests WHERE caller = ?)", (caller,)
            )
            deleted = conn.execute("DELETE FROM requests WHERE caller = ?", (caller,)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return int(deleted)


def _parse_records(rows: Sequence[Sequence[Any]]) -> list[UsageRecord]:
    """Records from rows of ``requests LEFT JOIN attempts`` (19 request
    columns, then 12 attempt columns, NULL without attempts), the rows of
    one request adjacent and its attempts in order."""
    out: list[UsageRecord] = []
    for _rid, group in itertools.groupby(rows, key=lambda row: row[0]):
        joined = list(group)
        attempts = tuple(_attempt_of(row[20:]) for row in joined if row[19] is not None)
        out.append(_usage_record(joined[0][:19], attempts))
    return out


def _attempt_of(columns: Sequence[Any]) -> AttemptRecord:
    provider, model, ok, error_kind, status, tin, tout, cost, latency, ttft, refused = columns
    return AttemptRecord(
        provider=provider,
        model=model,
        ok=bool(ok),
        error_kind=error_kind,
        status=status,
        input_tokens=tin,
        output_tokens=tout,
        cost=cost,
        latency_ms=latency,
        ttft_ms=ttft,
        refused=bool(refused),
    )


def _usage_record(head: Sequence[Any], attempts: Sequence[AttemptRecord]) -> UsageRecord:
    (rid, ts, caller, requested, provider, model, ok, status, kind, tin, tout, cost, latency, ttft, cache_hit,
     saved, stream, tags, route) = head  # fmt: skip
    return UsageRecord(
        id=rid,
        ts=ts,
        caller=caller,
        requested_model=requested,
        provider=provider,
        model=model,
        ok=bool(ok),
        status=status,
        error_kind=kind,
        input_tokens=tin,
        output_tokens=tout,
        cost=cost,
        latency_ms=latency,
        ttft_ms=ttft,
        cache_hit=bool(cache_hit),
        cost_saved=saved,
        stream=bool(stream),
        attempts=tuple(attempts),
        tags=tuple(json.loads(tags)),
        route=route,
    )


# ---------------------------------------------------------------------------
# The log


class UsageLog(BatchWriter):
    """The usage log at ``path``; see the module docstring.

    Built by the plugin (``manager.extensions["usage"]``) or by
    :func:`open_log` for reading a recorded file. ``commit_interval`` and
    ``retention`` are seconds (``retention`` ``None``: keep everything).
    A log is *writable* once :meth:`start` ran (the writer thread is up) and
    until :meth:`aclose`/:meth:`close`; reads and :meth:`purge` work either
    way. The writer thread, :meth:`flush` and the lifecycle are
    :class:`swarmgate.writer.BatchWriter`'s.
    """

    kind = "usage"
    error_type = UsageLogError
    logger = log

    def __init__(
        self,
        path: str | Path,
        *,
        commit_interval: float = 0.2,
        max_batch: int = 500,
        retention: float | None = None,
    ) -> None:
        super().__init__(path, commit_interval=commit_interval, max_batch=max_batch, retention=retention)
        self._rows = 0  # requests in the file: counted at open, then kept by the writer

    @classmethod
    def from_settings(cls, settings: UsageLogSettings) -> UsageLog:
        """A log configured by ``monitoring.usageLog`` (not started)."""
        return cls(
            settings.resolved_path(),
            commit_interval=settings.commit_interval / 1000.0,
            max_batch=settings.max_batch,
            retention=None if settings.retention is None else settings.retention / 1000.0,
        )

    # -- recording (on the event loop: no I/O) -------------------------------------

    def enqueue_success(
        self,
        request_id: str,
        ts: float,
        request: CompletionRequest,
        response: CompletionResponse,
        route: str | None,
        stream: bool,
    ) -> None:
        """Queue an answered request; the writer builds its rows (see
        :func:`success_record`). Never blocks, never does I/O."""
        self._enqueue((_OK, request_id, ts, request, response, route, stream))

    def enqueue_failure(
        self,
        request_id: str,
        ts: float,
        latency_ms: float,
        request: CompletionRequest,
        error: SwarmgateError,
        attempts: Sequence[Attempt],
        route: str | None,
        stream: bool,
    ) -> None:
        """Queue a request that ended without an answer (see
        :func:`failure_record`). Never blocks, never does I/O."""
        self._enqueue((_FAILED, request_id, ts, latency_ms, request, error, attempts, route, stream))

    def record(self, record: UsageRecord) -> None:
        """Queue a ready-made record (an import, a replay, a test). A record
        with the id of a logged one replaces it. Never blocks."""
        self._enqueue((_RECORD, record))

    # -- the writer thread ---------------------------------------------------------

    def _open_writer(self) -> sqlite3.Connection:
        """The write connection, schema created; its temporary storage in
        memory. Each multi-row ``INSERT`` of a commit keeps a statement
        journal (the pages it changes, to undo a failed statement alone);
        in files it spilled past 64 KiB into a temporary file, a write
        system call per page and per page number: about a third of the
        writer's system calls, ~10% of its CPU. It holds the pages one
        statement changes (a few hundred KiB) and is freed when the
        statement ends; purges and erasures, which may collect millions of
        keys, run with it in files (:func:`_temp_on_disk`)."""
        conn = _connect(self.path)
        try:
            _create_schema(conn, self.path)
            conn.execute(f"PRAGMA temp_store = {_TEMP_STORE_MEMORY}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _writer_started(self, conn: sqlite3.Connection) -> None:
        # Counted after start() returned: a large log must not delay start-up.
        self._rows += int(conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def _commit(self, conn: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> str | None:
        """Write ``batch`` in one transaction; the error text if it failed (the batch is then dropped).

        Kernel request ids are unique; a record with the id of a logged one
        (an import, a replay) replaces it, attempts included, and the last of
        several with one id in a batch wins."""
        rows: dict[str, _Rows] = {}
        bad = 0
        for item in batch:
            try:
                record = _rows_of(item)
                rows[record[0][0]] = record
            except Exception as exc:  # noqa: BLE001 - one bad record must not lose the batch
                bad += 1
                log.error("usage_record_unwritable", error=f"{type(exc).__name__}: {exc}")
        heads = [head for head, _ in rows.values()]
        attempts = [a for _, attempt_rows in rows.values() for a in attempt_rows]
        error: str | None = None
        try:
            replaced = _insert(conn, heads, attempts)
        except sqlite3.Error as exc:
            error = f"{len(rows)} usage record(s) could not be written to {self.path}: {exc}"
            log.error("usage_commit_failed", path=str(self.path), error=str(exc), records=len(rows))
            self._dropped_writer += len(rows) + bad
        else:
            self._rows += len(rows) - replaced
            self._commits += 1
            self._last_commit = time.time()
            self._dropped_writer += bad
        self._handled += len(batch)
        return error

    def _control(self, conn: sqlite3.Connection, control: Control) -> None:
        if isinstance(control, _Purge):
            control.result = self._purge(conn, control.cutoff)
        elif isinstance(control, _Forget):
            control.result = self._forget(conn, control.caller)

    def _purge(self, conn: sqlite3.Connection, cutoff: float) -> int:
        deleted = _purge_rows(conn, cutoff)
        self._rows = max(0, self._rows - deleted)
        return deleted

    def _retention_purge(self, conn: sqlite3.Connection) -> None:
        assert self.retention is not None
        try:
            deleted = self._purge(conn, time.time() - self.retention)
        except sqlite3.Error as exc:
            log.error("usage_purge_failed", path=str(self.path), error=str(exc))
            return
        if deleted:
            log.info("usage_purged", path=str(self.path), deleted=deleted, retention_s=self.retention)

    # -- maintenance -----------------------------------------------------------------

    async def purge(self, older_than_seconds: float) -> int:
        """Delete requests that started more than ``older_than_seconds`` ago
        (and their attempts), committing what is pending first; returns how
        many requests were deleted. Works on a log that is not writing too."""
        if not (older_than_seconds >= 0 and math.isfinite(older_than_seconds)):
            raise ValueError(f"older_than_seconds must be a non-negative number, got {older_than_seconds}")
        cutoff = time.time() - older_than_seconds
        if self._writing:
            return await self._send(_Purge(cutoff))
        return await anyio.to_thread.run_sync(self._purge_direct, cutoff)

    def _forget(self, conn: sqlite3.Connection, caller: str) -> int:
        deleted = _forget_rows(conn, caller)
        self._rows = max(0, self._rows - deleted)
        return deleted

    async def forget(self, caller: str) -> int:
        """Delete every request of ``caller`` (and its attempts), committing
        what is pending first (the GDPR right to erasure); returns how many
        requests were deleted. Works on a log that is not writing too."""
        if not isinstance(caller, str) or not caller:
            raise ValueError(f"caller must be a non-empty string, got {caller!r}")
        if self._writing:
            return await self._send(_Forget(caller))
        return await anyio.to_thread.run_sync(self._forget_direct, caller)

    def _forget_direct(self, caller: str) -> int:
        conn = _connect(self.path)
        try:
            return self._forget(conn, caller)
        finally:
            conn.close()

    def _purge_direct(self, cutoff: float) -> int:
        conn = _connect(self.path)
        try:
            deleted = _purge_rows(conn, cutoff)
        finally:
            conn.close()
        self._rows = max(0, self._rows - deleted)
        return deleted

    def stats(self) -> UsageStats:
        """Counters of this instance (see :class:`UsageStats`); no I/O."""
        dropped = self._dropped_writer + self._dropped_closed
        return UsageStats(
            rows=self._rows,
            pending=max(0, self._enqueued - self._handled),
            commits=self._commits,
            last_commit_ts=self._last_commit,
            dropped=dropped,
        )

    # -- reading (worker threads, the read connection) -----------------------------

    def _open_reader(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise UsageLogError(f"no usage log at {self.path}")
        conn = _connect(self.path, check_same_thread=False)
        conn.execute("PRAGMA query_only = 1")
        return conn

    def open_reader(self) -> None:
        """Open the read connection now and check the file is a usage log
        (blocking). Raises UsageLogError otherwise."""

        def check(conn: sqlite3.Connection) -> None:
            try:
                version = _schema_version(conn)
            except sqlite3.DatabaseError as exc:
                raise UsageLogError(f"{self.path} is not a usage log: {exc}") from None
            if version is None:
                raise UsageLogError(f"{self.path} is not a usage log (no schema version)")
            if version > SCHEMA_VERSION:
                raise UsageLogError(
                    f"{self.path} has usage-log schema {version}; this swarmgate-usage reads up to {SCHEMA_VERSION}"
                )
            self._rows = int(conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

        self._read(check)

    def records_sync(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        latest: bool = False,
        failures_only: bool = False,
    ) -> list[UsageRecord]:
        """Blocking :meth:`records`."""
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        if until is not None:
            where.append("ts < ?")
            params.append(until)
        if failures_only:
            where.append(_FAILURES_ONLY)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        order = "DESC" if latest else "ASC"
        limit_clause = ""
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be non-negative, got {limit}")
            limit_clause = "LIMIT ?"
            params.append(limit)
        sql = (
            f"WITH r AS (SELECT rowid AS rid, {_REQUEST_COLUMNS} FROM requests {clause} "
            f"ORDER BY ts {order}, rowid {order} {limit_clause}) "
            f"SELECT r.id, r.ts, r.caller, r.requested_model, r.provider, r.model, r.ok, r.status, r.error_kind, "
            f"r.input_tokens, r.output_tokens, r.cost, r.latency_ms, r.ttft_ms, r.cache_hit, r.cost_saved, "
            f"r.stream, r.tags, r.route, a.idx, a.provider, a.model, a.ok, a.error_kind, a.status, "
            f"a.input_tokens, a.output_tokens, a.cost, a.latency_ms, a.ttft_ms, a.refused "
            f"FROM r LEFT JOIN attempts a ON a.request_id = r.id ORDER BY r.ts, r.rid, a.idx"
        )

        def run(conn: sqlite3.Connection) -> list[UsageRecord]:
            return _parse_records(conn.execute(sql, params).fetchall())

        result: list[UsageRecord] = self._read(run)
        return result

    async def records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        latest: bool = False,
        failures_only: bool = False,
    ) -> list[UsageRecord]:
        """Committed records of requests that started in ``[since, until)``
        (unix seconds; ``None``: unbounded), oldest first. ``limit`` keeps
        the oldest ``limit`` of them, or with ``latest=True`` the newest
        ``limit`` (still returned oldest first). ``failures_only`` keeps the
        requests that failed or had a failed attempt (refused attempts do
        not count; cancelled ones do), selected by SQLite: a reader looking
        for trouble decodes only those."""
        return await anyio.to_thread.run_sync(
            lambda: self.records_sync(since=since, until=until, limit=limit, latest=latest, failures_only=failures_only)
        )

    def spend_sync(self, *, since: float, provider: str | None = None, caller: str | None = None) -> float:
        """Blocking :meth:`spend`."""
        if provider is None:
            sql = "SELECT COALESCE(SUM(cost), 0.0) FROM requests WHERE ts >= ?"
            params: list[Any] = [since]
            if caller is not None:
                sql += " AND caller = ?"
                params.append(caller)
        elif caller is None:
            sql = "SELECT COALESCE(SUM(cost), 0.0) FROM attempts WHERE provider = ? AND ts >= ?"
            params = [provider, since]
        else:
            sql = (
                "SELECT COALESCE(SUM(a.cost), 0.0) FROM attempts a JOIN requests r ON r.id = a.request_id "
                "WHERE a.provider = ? AND a.ts >= ? AND r.caller = ?"
            )
            params = [provider, since, caller]

        def run(conn: sqlite3.Connection) -> float:
            return float(conn.execute(sql, params).fetchone()[0])

        result: float = self._read(run)
        return result

    async def spend(self, *, since: float, provider: str | None = None, caller: str | None = None) -> float:
        """What requests that started at or after ``since`` (unix seconds)
        cost, from committed records. With ``provider``: the cost of the
        attempts at that provider (a request that failed over between
        providers splits its cost between them); with ``caller``: only that
        caller's requests. ``None`` means any."""
        return await anyio.to_thread.run_sync(lambda: self.spend_sync(since=since, provider=provider, caller=caller))


# ---------------------------------------------------------------------------
# Standalone access


def default_path(config: SwarmgateConfig | None = None) -> Path:
    """Where the usage log of ``config`` lives (``monitoring.usageLog.path``,
    relative to the data directory; default ``usage.db`` there). Raises
    ConfigError for a bad section."""
    return UsageLogSettings.from_config(config).resolved_path()


def open_log(path: str | Path) -> UsageLog:
    """Open an existing usage log for reading (and :meth:`UsageLog.purge`)
    without a manager: no writer thread. Raises UsageLogError when there is
    no usage log at ``path``."""
    usage = UsageLog(Path(path).expanduser())
    usage.open_reader()
    return usage


__all__ = [
    "SCHEMA_VERSION",
    "UsageLog",
    "UsageLogError",
    "UsageStats",
    "attempt_record",
    "default_path",
    "failure_record",
    "open_log",
    "success_record",
]
