"""The per-provider sliding windows behind the watchers.

Hand-written because they are small and on the request path: a bounded
window of latencies kept sorted (p95 is an index lookup; an insert is a
binary search and a short memmove), and a bucketed success/failure counter
(constant memory and constant time per attempt, whatever the traffic).
Timestamps come from the caller's monotonic clock, in seconds, and never
decrease.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque


class LatencyWindow:
    """The last ``size`` latencies, each at most ``horizon`` seconds old."""

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
        """Record ``value`` seen at ``now``; drop samples that are too old,
        and the oldest one when the window is full."""
        self.expire(now)
        if len(self._values) >= self.size:
            self._drop_oldest()
        self._times.append(now)
        self._values.append(value)
        insort(self._sorted, value)

    def expire(self, now: float) -> None:
        """Drop the samples older than ``horizon``."""
        times = self._times
        limit = now - self.horizon
        while times and times[0] <= limit:
            self._drop_oldest()

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1), interpolated between the closest
        ranks; ``0.0`` when the window is empty."""
        data = self._sorted
        if not data:
            return 0.0
        pos = q * (len(data) - 1)
        low = int(pos)
        if low + 1 >= len(data):
            return data[-1]
        return data[low] + (data[low + 1] - data[low]) * (pos - low)

    def _drop_oldest(self) -> None:
        self._times.popleft()
        value = self._values.popleft()
        del self._sorted[bisect_left(self._sorted, value)]


class RateWindow:
    """Attempts and failures over the last ``horizon`` seconds, counted in
    ``buckets`` slices (the window's edge is as fine as one slice)."""

    __slots__ = ("_buckets", "_width", "failures", "horizon", "total")

    def __init__(self, horizon: float, buckets: int = 60) -> None:
        self.horizon = horizon
        self._width = horizon / buckets
        # Each bucket: [start, attempts, failures].
        self._buckets: deque[list[float]] = deque()
        self.total = 0
        self.failures = 0

    def add(self, now: float, failed: bool) -> None:
        """Count one attempt seen at ``now`` (a failure when ``failed``)."""
        self.expire(now)
        buckets = self._buckets
        if buckets and now < buckets[-1][0] + self._width:
            bucket = buckets[-1]
        else:
            bucket = [now, 0, 0]
            buckets.append(bucket)
        bucket[1] += 1
        self.total += 1
        if failed:
            bucket[2] += 1
            self.failures += 1

    def expire(self, now: float) -> None:
        """Forget the slices that started ``horizon`` or more ago (a slice
        leaves the window whole, when its first attempt becomes too old)."""
        buckets = self._buckets
        limit = now - self.horizon
        while buckets and buckets[0][0] <= limit:
            _start, total, failures = buckets.popleft()
            self.total -= int(total)
            self.failures -= int(failures)

    @property
    def rate(self) -> float:
        """The failed share of the attempts in the window (``0.0`` when empty)."""
        return self.failures / self.total if self.total else 0.0
