"""Group commit for writer threads (the usage log, the audit log).

Recording threads put tuples on a queue; one writer thread takes them in
batches. Hand-written because it is small and central: the batching rule is
what keeps recording cheap under load.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any


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
