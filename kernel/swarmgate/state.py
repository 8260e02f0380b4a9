"""The StateStore: state that several gateway instances may share.

Plugins keep counters (usage, budgets), sliding windows (error rates), token
buckets (rate limits) and TTL'd values (cache entries, breaker state) here,
never in their own globals, so that swapping ``state.backend`` from
``memory`` to a shared backend (Redis) shares them between processes.

Every method is async and atomic with respect to other calls on the same
store. Keys are plain strings; plugins prefix them with their own name
(``"ratelimit:..."``). Durations are seconds.

A backend is an entry point in ``swarmgate.state`` naming a factory that
takes the ``state.options`` mapping and returns a StateStore.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs


@attrs.frozen
class BucketResult:
    """Outcome of :meth:`StateStore.take_tokens`: whether the tokens were
    taken, how many remain, and (when refused) seconds until enough refill."""

    allowed: bool
    remaining: float
    retry_after: float


@runtime_checkable
class StateStore(Protocol):
    """What a state backend provides. See the module docstring for the rules."""

    async def get(self, key: str) -> bytes | None:
        """The value stored at ``key``, or ``None`` if absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value`` at ``key``, expiring after ``ttl`` seconds (``None``: never)."""
        ...

    async def delete(self, *keys: str) -> int:
        """Remove keys (values, counters, windows and buckets alike); returns how many existed."""
        ...

    async def keys(self, prefix: str) -> list[str]:
        """Every live value or counter key starting with ``prefix`` (for invalidation; not hot-path)."""
        ...

    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        """Add ``amount`` to the counter at ``key`` (created at 0) and return the
        new value. ``ttl`` is set when the counter is created."""
        ...

    async def window_add(self, key: str, amount: float, window: float) -> float:
        """Record ``amount`` now in a sliding window of ``window`` seconds and
        return the window's total including it."""
        ...

    async def window_total(self, key: str, window: float) -> float:
        """The total recorded at ``key`` within the last ``window`` seconds."""
        ...

    async def take_tokens(self, key: str, *, rate: float, capacity: float, tokens: float = 1.0) -> BucketResult:
        """Token bucket at ``key`` refilling ``rate`` tokens per second up to
        ``capacity`` (starting full): take ``tokens`` if available. A refused
        take leaves the bucket unchanged. A negative ``tokens`` gives tokens
        back (always allowed; the level is capped at ``capacity`` again by
        the next call), and ``tokens=0`` reads the refilled level."""
        ...

    async def aclose(self) -> None:
        """Release connections. The store is unusable afterwards."""
        ...


@attrs.define
class _Bucket:
    level: float
    stamp: float


class MemoryStateStore:
    """The in-process StateStore (the embedded default). Not shared between
    processes. ``clock`` returns seconds (monotonic); tests may replace it."""

    def __init__(
        self, options: Mapping[str, Any] | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if options:
            from swarmgate.errors import ConfigError

            raise ConfigError([(f"state.options.{key}", "the memory backend takes no options") for key in options])
        self._clock = clock
        self._values: dict[str, tuple[bytes | float, float]] = {}
        self._windows: dict[str, deque[tuple[float, float]]] = {}
        self._window_sums: dict[str, float] = {}  # running totals, so reads are O(expired), not O(n)
        self._buckets: dict[str, _Bucket] = {}

    def _live(self, key: str) -> tuple[bytes | float, float] | None:
        entry = self._values.get(key)
        if entry is not None and entry[1] <= self._clock():
            del self._values[key]
            return None
        return entry

    async def get(self, key: str) -> bytes | None:
        entry = self._live(key)
        if entry is None:
            return None
        value = entry[0]
        return value if isinstance(value, bytes) else repr(value).encode()

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._values[key] = (value, self._clock() + ttl if ttl is not None else math.inf)

    async def delete(self, *keys: str) -> int:
        found = 0
        for key in keys:
            existed = self._live(key) is not None
            self._values.pop(key, None)
            existed |= self._windows.pop(key, None) is not None
            self._window_sums.pop(key, None)
            existed |= self._buckets.pop(key, None) is not None
            found += existed
        return found

    async def keys(self, prefix: str) -> list[str]:
        return [k for k in list(self._values) if k.startswith(prefix) and self._live(k) is not None]

    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        entry = self._live(key)
        if entry is None:
            value, expires = 0.0, (self._clock() + ttl if ttl is not None else math.inf)
        else:
            current, expires = entry
            value = float(current.decode() or 0) if isinstance(current, bytes) else float(current)
        value += amount
        self._values[key] = (value, expires)
        return value

    def _trim(self, key: str, window: float) -> deque[tuple[float, float]]:
        points = self._windows.setdefault(key, deque())
        horizon = self._clock() - window
        total = self._window_sums.get(key, 0.0)
        while points and points[0][0] <= horizon:
            total -= points.popleft()[1]
        self._window_sums[key] = total if points else 0.0
        return points

    async def window_add(self, key: str, amount: float, window: float) -> float:
        points = self._trim(key, window)
        points.append((self._clock(), amount))
        self._window_sums[key] += amount
        return self._window_sums[key]

    async def window_total(self, key: str, window: float) -> float:
        self._trim(key, window)
        return self._window_sums[key]

    async def take_tokens(self, key: str, *, rate: float, capacity: float, tokens: float = 1.0) -> BucketResult:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(capacity, now)
        else:
            bucket.level = min(capacity, bucket.level + (now - bucket.stamp) * rate)
            bucket.stamp = now
        if bucket.level >= tokens:
            bucket.level -= tokens
            return BucketResult(True, bucket.level, 0.0)
        wait = (tokens - bucket.level) / rate if rate > 0 else math.inf
        return BucketResult(False, bucket.level, wait)

    async def aclose(self) -> None:
        self._values.clear()
        self._windows.clear()
        self._window_sums.clear()
        self._buckets.clear()
