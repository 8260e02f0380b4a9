"""Garbage-collector settings for a gateway process."""

from __future__ import annotations

import gc

#: Allocations between collections of the youngest generation (CPython's default: 700).
YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Tune the collector of a gateway process, once the gateway has started.

    The objects made at start-up (modules, the config, the plugins: most of
    the heap) move to a permanent generation that collections no longer walk
    (``gc.freeze``), and the youngest generation is collected every
    :data:`YOUNG_THRESHOLD` allocations instead of 700: a request allocates
    hundreds of objects, nearly all freed at once by reference counting, so
    frequent collections mostly re-walk live objects. Measured with the full
    default plugin stack: +20-30% requests/s per core (docs/benchmarks.md).
    Process-wide: the CLI's ``serve`` calls it, an embedding program or a
    test does not.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 50, 100)
