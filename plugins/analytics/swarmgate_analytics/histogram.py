"""Fixed, log-spaced bins for latencies and times to first token.

Hand-written because it is small and on the hot path: one ``bisect`` per
observation into a sparse ``{bin: count}`` dict. The bounds follow the
Renard R10 series of preferred numbers (1, 1.25, 1.6, 2, 2.5, 3.15, 4, 5,
6.3, 8 per decade), from 0.1 ms to 1000 s, so the neighbours of a bound
differ by at most 28% and the round values 1, 2, 2.5 and 5 of every decade
are exact bounds (the Prometheus exporter's ``le`` buckets are a subset of
them, so its cumulative counts are exact).

Bin ``i`` holds values in ``(BOUNDS[i-1], BOUNDS[i]]`` (bin 0 holds
``[0, BOUNDS[0]]``); the last bin, ``len(BOUNDS)``, holds everything above
``BOUNDS[-1]`` (the overflow bin).

A percentile is estimated by the nearest-rank rule: the bin holding the
``ceil(q * n)``-th smallest value is found exactly, and the value is
interpolated linearly inside it, then clamped to the observed minimum and
maximum. The estimate therefore always lies in the same bin as the true
nearest-rank percentile (at most one bin width, 28%, away from it).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Final

#: The R10 preferred numbers of one decade.
R10: Final = ("1", "1.25", "1.6", "2", "2.5", "3.15", "4", "5", "6.3", "8")

#: Upper bounds of the bins, in milliseconds (0.1 ms ... 1000 s).
BOUNDS: Final[tuple[float, ...]] = (*(float(f"{m}e{e}") for e in range(-1, 6) for m in R10), 1e6)

#: Index of the overflow bin.
OVERFLOW: Final = len(BOUNDS)

#: The bounds (milliseconds) exported as Prometheus ``le`` buckets: 1, 2.5
#: and 5 of every decade from 1 ms to 100 s, each one of :data:`BOUNDS`.
EXPORT_BOUNDS: Final[tuple[float, ...]] = (*(float(f"{m}e{e}") for e in range(5) for m in ("1", "2.5", "5")), 1e5)


def bin_of(value: float) -> int:
    """The bin of ``value`` (milliseconds; negative values go to bin 0)."""
    return bisect_left(BOUNDS, value)


def lower_bound(index: int) -> float:
    """The lower edge of bin ``index`` (0 for the first bin)."""
    return 0.0 if index == 0 else BOUNDS[index - 1]


def upper_bound(index: int) -> float:
    """The upper edge of bin ``index`` (``inf`` for the overflow bin)."""
    return math.inf if index >= OVERFLOW else BOUNDS[index]


def merge(target: dict[int, int], source: Mapping[int, int]) -> None:
    """Add the counts of ``source`` into ``target``."""
    for index, count in source.items():
        target[index] = target.get(index, 0) + count


def percentile(hist: Mapping[int, int], q: float, low: float, high: float) -> float | None:
    """The ``q``-quantile (0 < q <= 1) of the values counted in ``hist``,
    by the nearest-rank rule interpolated inside its bin and clamped to
    ``[low, high]`` (the observed minimum and maximum). ``None`` when
    ``hist`` is empty."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1.0, math.ceil(q * total - 1e-9))
    seen = 0
    for index in sorted(hist):
        count = hist[index]
        if seen + count >= rank:
            lower = lower_bound(index)
            upper = upper_bound(index)
            estimate = high if math.isinf(upper) else lower + (upper - lower) * (rank - seen) / count
            return min(max(estimate, low), high)
        seen += count
    return high  # unreachable: the ranks add up to ``total``


def cumulative(hist: Mapping[int, int], bounds: Iterable[float]) -> list[tuple[float, int]]:
    """``(bound, count of values <= bound)`` for each of ``bounds`` (each one
    of :data:`BOUNDS`), then ``(inf, total)``."""
    ordered = sorted(hist.items())
    out: list[tuple[float, int]] = []
    position = 0
    running = 0
    for bound in bounds:
        limit = bin_of(bound)
        while position < len(ordered) and ordered[position][0] <= limit:
            running += ordered[position][1]
            position += 1
        out.append((bound, running))
    out.append((math.inf, sum(hist.values())))
    return out


def sparse(hist: Mapping[int, int]) -> list[list[float | int | None]]:
    """A JSON-ready copy of ``hist``: ``[upper bound in ms, count]`` per
    non-empty bin in order, ``None`` as the overflow bin's bound."""
    return [[None if i >= OVERFLOW else BOUNDS[i], hist[i]] for i in sorted(hist)]


def from_sparse(pairs: Iterable[Iterable[float | int | None]]) -> dict[int, int]:
    """The inverse of :func:`sparse`."""
    hist: dict[int, int] = {}
    for bound, count in (tuple(pair) for pair in pairs):
        index = OVERFLOW if bound is None else bin_of(float(bound))
        hist[index] = hist.get(index, 0) + int(count or 0)
    return hist
