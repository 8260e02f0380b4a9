"""Group commit for writer threads (the usage log, the audit log).

Recording threads put tuples on a queue; one writer thread takes them in
batches (:func:`gather_batch`) and writes each batch in one transaction,
several rows per ``INSERT`` (:func:`insert_rows`). Hand-written because it
is small and central: the batching rule is what keeps recording cheap under
load.
"""

from __future__ import annotations

import itertools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final


def gather_batch(
    get_nowait: Callable[[], Any], wake: threading.Event, first: Any, *, max_batch: int, window: float
) -> tuple[list[tuple[Any, ...]], Any | None]:
    """The batch of records (tuples) that ``first`` opens, and the control
    message (any non-tuple item) that ended it, if one did.

    The first record opens a window of ``window`` seconds; the writer sleeps
    until it closes -- or until ``wake`` is set (a control message or a full
    batch) -- and then takes what was queued meanwhile at once: not one
    wake-up per record, which under load cost the recording thread a GIL
    hand-over each. ``get_nowait`` raises :class:`queue.Empty` when nothing
    is queued."""
    deadline = time.monotonic() + window
    pending: list[tuple[Any, ...]] = []
    item = first
    while True:
        if type(item) is not tuple:
            return pending, item
        pending.append(item)
        if len(pending) >= max_batch:
            return pending, None
        while True:
            try:
                item = get_nowait()
                break
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return pending, None
                wake.wait(remaining)
                wake.clear()  # then look again: nothing queued before the clear is missed


#: Rows per multi-row ``INSERT`` statement (fewer when the connection allows
#: fewer bound parameters): one ``sqlite3_step`` -- one release of the GIL --
#: per chunk instead of one per row, and no per-row statement reset.
INSERT_CHUNK: Final = 64

_statements: dict[tuple[str, int, int], str] = {}


def insert_rows(conn: sqlite3.Connection, insert: str, width: int, rows: Sequence[tuple[Any, ...]]) -> None:
    """Execute ``insert`` for every row of ``rows``, several rows per statement.

    ``insert`` is an ``INSERT INTO table (columns) VALUES`` clause without
    placeholders; every row has ``width`` values. The rows go in chunks of
    :data:`INSERT_CHUNK` (a remainder in chunks of powers of two, so a
    connection's statement cache holds a handful of statements per table,
    not one per batch size), in order, inside the caller's transaction. The
    effect is that of ``conn.executemany`` with one row's placeholders; a
    constraint violation raises :class:`sqlite3.IntegrityError` with the
    rows of earlier statements inserted (the caller rolls back)."""
    total = len(rows)
    if total == 0:
        return
    limit = max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
    chunk = min(INSERT_CHUNK, limit)
    flat = itertools.chain.from_iterable
    start = 0
    while start < total:
        n = min(chunk, total - start)
        if n < chunk:
            n = 1 << (n.bit_length() - 1)  # the largest power of two that fits
        key = (insert, width, n)
        sql = _statements.get(key)
        if sql is None:
            row = "(" + ", ".join("?" * width) + ")"
            sql = _statements.setdefault(key, f"{insert} {', '.join([row] * n)}")
        conn.execute(sql, list(flat(rows[start : start + n])))
        start += n
