"""Duplicate prompts a response cache would have answered.

The usage log keeps no prompts, so the advisor fingerprints every answered
request itself (:func:`fingerprint`: BLAKE2b over the fields that change an
answer, the same idea as the cache plugin's key) and *simulates* the cache
that ``optimization.caching`` would enable: an LRU map of at most
``maxSize`` fingerprints, each remembered for ``ttl`` after it was stored.
A request whose fingerprint is in the map and younger than ``ttl`` is a
hit the cache would have served; its cost (every attempt's) is what the
cache would have saved. Like the cache plugin by default, only
deterministic requests are cacheable (``temperature`` 0, or
``request.cache.allow``, or ``cacheNonDeterministic``); a request that asks
to bypass the cache is not.

The counts are kept per hour and requested model in a small SQLite
database of the advisor's own (``<usage log stem>.advisor.db`` next to the
usage log by default): table ``traffic`` (requests, cacheable, hits, cost
saved) and table ``duplicates`` (hits and cost saved per fingerprint, for
the repeated prompts; fingerprints never repeated are not written). The
hook only updates in-memory counters; every ``flushInterval`` they are
handed to a writer thread that owns the write connection (no disk I/O on the
event loop). Reads open their own connection in a worker thread. Rows older
than the advisor's ``lookback`` are purged by the writer.

The simulated cache itself lives in memory: a restart starts it empty, as a
real in-memory cache would.
"""

from __future__ import annotations

import hashlib
import json
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import attrs

from swarmgate import CompletionRequest
from swarmgate.logs import get_logger

log = get_logger("swarmgate.advisor")

SCHEMA_VERSION: Final = 1
HOUR: Final = 3600.0

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS traffic (
    hour INTEGER NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    cacheable INTEGER NOT NULL,
    hits INTEGER NOT NULL,
    saved REAL NOT NULL,
    PRIMARY KEY (hour, model)
);
CREATE TABLE IF NOT EXISTS duplicates (
    hour INTEGER NOT NULL,
    fp BLOB NOT NULL,
    model TEXT NOT NULL,
    hits INTEGER NOT NULL,
    saved REAL NOT NULL,
    PRIMARY KEY (hour, fp, model)
);
"""


def _canonical(value: Any) -> Any:
    """``value`` with tuples as lists and mappings as dicts (JSON-ready)."""
    if isinstance(value, tuple | list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if hasattr(value, "items"):
        return {str(k): _canonical(v) for k, v in value.items()}
    return value


def fingerprint(request: CompletionRequest) -> bytes:
    """16 bytes of BLAKE2b over what changes the answer to ``request``: the
    messages (role, content parts, name, tool calls), the requested model
    and forced provider, and the generation options (temperature, max
    tokens, top_p, stop, tools, tool choice, response format, extra body
    fields). Not the caller, metadata or tags."""
    body = [
        [[m.role, _canonical(m.content), m.name, _canonical(m.tool_calls), m.tool_call_id] for m in request.messages],
        request.model,
        request.provider,
        request.temperature,
        request.max_tokens,
        request.top_p,
        _canonical(request.stop),
        _canonical(request.tools),
        _canonical(request.tool_choice),
        _canonical(request.response_format),
        _canonical(request.extra),
    ]
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.blake2b(data.encode("utf-8"), digest_size=16).digest()


def cacheable(request: CompletionRequest, non_deterministic: bool) -> bool:
    """Whether the cache plugin would store the answer to ``request`` by
    default: not bypassed, and deterministic (temperature 0) unless allowed."""
    control = request.cache
    if control is not None and control.bypass:
        return False
    return request.temperature == 0 or non_deterministic or (control is not None and control.allow)


def default_path(usage_log: Path | None) -> Path:
    """The fingerprint database next to ``usage_log``: ``usage.db`` ->
    ``usage.advisor.db``; without a usage log, ``advisor.db`` in the data directory."""
    if usage_log is None:
        from swarmgate.paths import data_path

        return data_path("advisor.db")
    return usage_log.with_name(usage_log.stem + ".advisor.db")


@attrs.frozen
class DuplicateTotals:
    """What the fingerprint database holds for a span of time."""

    requests: int = 0
    cacheable: int = 0
    hits: int = 0
    saved: float = 0.0
    #: The most costly repeated prompts: ``(fingerprint hex, model, hits, saved)``.
    top: tuple[tuple[str, str, int, float], ...] = ()
    #: Per requested model: ``model -> (requests, cacheable, hits, saved)``.
    by_model: dict[str, tuple[int, int, int, float]] = attrs.field(factory=dict)


def _connect(path: Path, *, attempts: int = 50) -> sqlite3.Connection:
    """The write connection (WAL, ``synchronous=NORMAL``: a process crash
    loses nothing committed), with the schema created. Switching to WAL
    does not wait for another connection's lock, so a busy database is
    retried for a few seconds."""
    tries = 0
    while True:
        connection = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            connection.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            connection.commit()
        except sqlite3.OperationalError as exc:
            connection.close()
            tries += 1
            if "locked" not in str(exc) or tries >= attempts:
                raise
            time.sleep(0.05)
        else:
            return connection


def read_totals(path: Path, since: float, until: float, *, top: int = 5) -> DuplicateTotals:
    """The counts recorded between ``since`` and ``until`` (unix seconds,
    whole hours: an hour counts when it overlaps the span). Blocking: call
    it in a worker thread. A missing file reads as no data."""
    if not path.exists():
        return DuplicateTotals()
    first, last = int(since // HOUR), int(until // HOUR)
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "traffic" not in tables:
            return DuplicateTotals()
        by_model: dict[str, tuple[int, int, int, float]] = {}
        for model, requests, cacheable_count, hits, saved in connection.execute(
            "SELECT model, SUM(requests), SUM(cacheable), SUM(hits), SUM(saved) FROM traffic"
            " WHERE hour BETWEEN ? AND ? GROUP BY model ORDER BY model",
            (first, last),
        ):
            by_model[model] = (int(requests), int(cacheable_count), int(hits), float(saved))
        rows = connection.execute(
            "SELECT fp, model, SUM(hits), SUM(saved) FROM duplicates WHERE hour BETWEEN ? AND ?"
            " GROUP BY fp, model ORDER BY SUM(saved) DESC, SUM(hits) DESC, fp LIMIT ?",
            (first, last, top),
        ).fetchall()
    finally:
        connection.close()
    return DuplicateTotals(
        requests=sum(v[0] for v in by_model.values()),
        cacheable=sum(v[1] for v in by_model.values()),
        hits=sum(v[2] for v in by_model.values()),
        saved=sum(v[3] for v in by_model.values()),
        top=tuple((bytes(fp).hex(), model, int(hits), float(saved)) for fp, model, hits, saved in rows),
        by_model=by_model,
    )


_Traffic = dict[tuple[int, str], list[float]]
_Dups = dict[tuple[int, bytes, str], list[float]]


class _Writer(threading.Thread):
    """Owns the write connection: applies batches of counts, purges old rows."""

    def __init__(self, path: Path, retention_s: float, clock: Callable[[], float]) -> None:
        super().__init__(name="swarmgate-advisor-writer", daemon=True)
        self.path = path
        self.retention_s = retention_s
        self.clock = clock
        self.inbox: queue.SimpleQueue[tuple[_Traffic, _Dups, threading.Event | None] | None] = queue.SimpleQueue()
        self.failed: str | None = None
        self._last_purge = 0.0

    def run(self) -> None:
        try:
            connection = _connect(self.path)
        except sqlite3.Error as exc:
            self.failed = f"{type(exc).__name__}: {exc}"
            log.error("advisor_db_open_failed", path=str(self.path), error=self.failed)
            self._drain_failed()
            return
        try:
            while True:
                item = self.inbox.get()
                if item is None:
                    return
                traffic, dups, done = item
                try:
                    self._apply(connection, traffic, dups)
                except sqlite3.Error as exc:
                    log.error("advisor_db_write_failed", path=str(self.path), error=f"{type(exc).__name__}: {exc}")
                if done is not None:
                    done.set()
        finally:
            connection.close()

    def _drain_failed(self) -> None:
        while True:
            item = self.inbox.get()
            if item is None:
                return
            if item[2] is not None:
                item[2].set()

    def _apply(self, connection: sqlite3.Connection, traffic: _Traffic, dups: _Dups) -> None:
        with connection:
            if traffic:
                connection.executemany(
                    "INSERT INTO traffic (hour, model, requests, cacheable, hits, saved) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (hour, model) DO UPDATE SET requests = requests + excluded.requests,"
                    " cacheable = cacheable + excluded.cacheable, hits = hits + excluded.hits,"
                    " saved = saved + excluded.saved",
                    [(h, m, int(v[0]), int(v[1]), int(v[2]), v[3]) for (h, m), v in traffic.items()],
                )
            if dups:
                connection.executemany(
                    "INSERT INTO duplicates (hour, fp, model, hits, saved) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (hour, fp, model) DO UPDATE SET hits = hits + excluded.hits,"
                    " saved = saved + excluded.saved",
                    [(h, fp, m, int(v[0]), v[1]) for (h, fp, m), v in dups.items()],
                )
            now = self.clock()
            if now - self._last_purge >= HOUR:
                self._last_purge = now
                oldest = int((now - self.retention_s) // HOUR)
                connection.execute("DELETE FROM traffic WHERE hour < ?", (oldest,))
                connection.execute("DELETE FROM duplicates WHERE hour < ?", (oldest,))


class DuplicateTracker:
    """The simulated cache and its counters (see the module docstring).

    :meth:`observe` runs on the event loop for every answered request and
    does no I/O. :meth:`start` launches the writer thread; :meth:`flush`
    waits until everything observed so far is committed; :meth:`aclose`
    flushes and stops the writer.
    """

    def __init__(
        self,
        path: Path,
        *,
        ttl_ms: float,
        max_size: int,
        non_deterministic: bool,
        flush_interval_ms: float,
        retention_ms: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._ttl = ttl_ms / 1000.0
        self._max_size = max_size
        self._non_deterministic = non_deterministic
        self._flush_every = flush_interval_ms / 1000.0
        self._clock = clock
        self._lru: OrderedDict[bytes, float] = OrderedDict()
        self._traffic: _Traffic = {}
        self._dups: _Dups = {}
        self._next_flush = 0.0
        self._writer = _Writer(path, retention_ms / 1000.0, clock)
        self._started = False

    def start(self) -> None:
        """Start the writer thread (it opens the database)."""
        if not self._started:
            self._started = True
            self._writer.start()

    @property
    def entries(self) -> int:
        """Fingerprints held by the simulated cache now."""
        return len(self._lru)

    def observe(self, request: CompletionRequest, cost: float) -> bool:
        """Count one answered request that cost ``cost`` (every attempt);
        returns whether the simulated cache would have answered it."""
        now = self._clock()
        model = request.model
        hour = int(now // HOUR)
        slot = self._traffic.get((hour, model))
        if slot is None:
            slot = self._traffic[(hour, model)] = [0, 0, 0, 0.0]
        slot[0] += 1
        hit = False
        if cacheable(request, self._non_deterministic):
            slot[1] += 1
            fp = fingerprint(request)
            lru = self._lru
            stored = lru.get(fp)
            if stored is not None and now - stored < self._ttl:
                hit = True
                lru.move_to_end(fp)
                slot[2] += 1
                slot[3] += cost
                dup = self._dups.get((hour, fp, model))
                if dup is None:
                    dup = self._dups[(hour, fp, model)] = [0, 0.0]
                dup[0] += 1
                dup[1] += cost
            else:
                lru[fp] = now
                lru.move_to_end(fp)
                if len(lru) > self._max_size:
                    lru.popitem(last=False)
        if now >= self._next_flush:
            self._hand_over(None)
        return hit

    def _hand_over(self, done: threading.Event | None) -> None:
        self._next_flush = self._clock() + self._flush_every
        if not self._started:
            if done is not None:
                done.set()
            return
        if self._traffic or self._dups or done is not None:
            traffic, self._traffic = self._traffic, {}
            dups, self._dups = self._dups, {}
            self._writer.inbox.put((traffic, dups, done))

    async def flush(self) -> None:
        """Hand every pending count to the writer and wait until it is committed."""
        done = threading.Event()
        self._hand_over(done)
        if not done.is_set():
            await anyio.to_thread.run_sync(done.wait)

    async def aclose(self) -> None:
        """Flush, stop the writer thread and wait for it."""
        if not self._started:
            return
        await self.flush()
        self._writer.inbox.put(None)
        await anyio.to_thread.run_sync(self._writer.join)
        self._started = False

    async def totals(self, since: float, until: float) -> DuplicateTotals:
        """The committed counts between ``since`` and ``until`` (after a flush)."""
        await self.flush()
        return await anyio.to_thread.run_sync(read_totals, self.path, since, until)
