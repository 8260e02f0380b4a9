"""A sliding window of samples with exact quantiles.

Why a window and not a P² or t-digest sketch: provider latency drifts (load,
deployments, outages), so the model must *forget*; P² and t-digest summarise
everything ever seen and cannot drop old samples. A window of the last
``size`` samples no older than ``horizon`` seconds forgets by construction,
gives exact quantiles, is deterministic, and at the sizes that matter here
(tens to a few hundred samples per target) costs less than a sketch: the
samples are kept twice, in arrival order (to evict the oldest) and sorted
(``bisect``), so an insertion is O(size) memory moves and a quantile read is
O(1). Hand-written because it is twenty lines on the hot path and no
well-kept library offers a time-bounded exact window.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque


class SlidingQuantiles:
    """The last ``size`` samples, each at most ``horizon`` seconds old.

    Timestamps come from the caller's clock (seconds, non-decreasing).
    """

    __slots__ = ("_sorted", "_times", "_values", "horizon", "size")

    def __init__(self, size: int, horizon: float) -> None:
        self.size = size
        self.horizon = horizon
        self._times: deque[float] = deque()
        self._values: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._sorted)

    def add(self, now: float, value: float) -> None:
        """Record ``value`` observed at ``now``, evicting the oldest sample
        when the window is full."""
        if len(self._values) >= self.size:
            self._drop_oldest()
        self._times.append(now)
        self._values.append(value)
        insort(self._sorted, value)

    def expire(self, now: float) -> bool:
        """Drop samples older than ``horizon``; whether any were dropped."""
        times = self._times
        limit = now - self.horizon
        dropped = False
        while times and times[0] <= limit:
            self._drop_oldest()
            dropped = True
        return dropped

    def oldest(self) -> float | None:
        """Timestamp of the oldest sample (``None`` when empty)."""
        return self._times[0] if self._times else None

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1) by linear interpolation between the
        closest ranks. The window must not be empty."""
        data = self._sorted
        pos = q * (len(data) - 1)
        low = int(pos)
        if low + 1 >= len(data):
            return data[-1]
        return data[low] + (data[low + 1] - data[low]) * (pos - low)

    def clear(self) -> None:
        """Forget every sample."""
        self._times.clear()
        self._values.clear()
        self._sorted.clear()

    def _drop_oldest(self) -> None:
        self._times.popleft()
        value = self._values.popleft()
        data = self._sorted
        del data[bisect_left(data, value)]
