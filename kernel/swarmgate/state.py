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

Batches: :meth:`StateStore.take_many`, :meth:`StateStore.incr_many` and
:meth:`StateStore.get_many` do in one atomic call (one round trip on a
shared backend) what a request would otherwise do in several. They joined
the protocol after the first backends were written: a plugin reaches them
through :func:`batch_ops`, which falls back to the single-key methods
(same results, one call per key, not atomic as a whole) for a store that
lacks them.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import anyio
import attrs


@attrs.frozen
class BucketResult:
    """Outcome of :meth:`StateStore.take_tokens`: whether the tokens were
    taken, how many remain, and (when refused) seconds until enough refill."""

    allowed: bool
    remaining: float
    retry_after: float


class BucketShape(Protocol):
    """What :meth:`StateStore.take_many` needs of a bucket: its StateStore
    ``key``, its refill ``rate`` (tokens per second) and its ``capacity``.
    Any object with these attributes will do (a plugin passes its own
    precomputed descriptors); :class:`TokenBucket` is the plain one."""

    @property
    def key(self) -> str: ...

    @property
    def rate(self) -> float: ...

    @property
    def capacity(self) -> float: ...


@attrs.frozen
class TokenBucket:
    """A token bucket's key and shape (see :class:`BucketShape`)."""

    key: str
    rate: float
    capacity: float


#: How :meth:`StateStore.take_many` takes from one bucket:
#:
#: * ``take`` -- as :meth:`StateStore.take_tokens` (refused when short;
#:   negative gives back, zero reads the level);
#: * ``reserve`` -- take ``tokens`` plus the bucket's *debt*, at most the
#:   whole bucket: refused when the bucket holds less than
#:   ``min(tokens + debt, capacity)``; when taken, the debt is paid and what
#:   exceeded the capacity becomes the new debt;
#: * ``charge`` -- always allowed: take ``tokens`` if the bucket holds them,
#:   else all it holds, and the rest becomes debt.
#:
#: Debt is a bucket's second number (a plain ``take`` ignores it): tokens
#: owed, paid by the next ``reserve``. Debt added to a bucket without live
#: debt expires ``(capacity + debt) / rate`` seconds later (when a bucket
#: that had gone that far negative would be full again); debt added to live
#: debt, or paid down to zero, keeps that expiry.
TakeMode = Literal["take", "reserve", "charge"]

#: One operation of :meth:`StateStore.take_many`: (bucket, tokens, mode).
BucketOp = tuple[BucketShape, float, TakeMode]

#: One operation of :meth:`StateStore.incr_many`: (key, amount, ttl), as
#: the arguments of :meth:`StateStore.incr`.
CounterOp = tuple[str, float, float | None]


@attrs.frozen
class BucketsResult:
    """Outcome of :meth:`StateStore.take_many`. ``refused`` is the index of
    the first refused operation (-1: none was, and all were applied);
    ``retry_after`` is that operation's wait (0.0 when none was refused).
    ``levels`` are the buckets' levels (debt not counted) once the call is
    over: after each operation when all were applied; when one was refused,
    the unchanged levels of the buckets up to and including it (the
    operations after it are not evaluated)."""

    refused: int
    retry_after: float
    levels: tuple[float, ...]

    @property
    def allowed(self) -> bool:
        """Whether every operation passed (and the batch was applied)."""
        return self.refused < 0


@attrs.frozen
class CountersResult:
    """Outcome of :meth:`StateStore.incr_many`. ``refused`` is the index of
    the first counter that would have passed its ceiling (-1: none would,
    and every increment was applied); ``values`` has each counter's value
    after its increment, the increments evaluated in order as if applied."""

    refused: int
    values: tuple[float, ...]

    @property
    def applied(self) -> bool:
        """Whether the increments were applied."""
        return self.refused < 0


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

    async def take_many(self, ops: Sequence[BucketOp]) -> BucketsResult:
        """Apply every (bucket, tokens, mode) of ``ops`` (see
        :data:`TakeMode`), all or nothing, atomically: evaluated in order (a
        bucket named twice sees the first operation's effect); if one is
        refused, no bucket changes. Buckets are those of :meth:`take_tokens`
        (the same key is the same bucket)."""
        ...

    async def incr_many(self, ops: Sequence[CounterOp], ceilings: Sequence[float] | None = None) -> CountersResult:
        """Apply every (key, amount, ttl) of ``ops`` as :meth:`incr` would,
        all or nothing, atomically, in order. With ``ceilings`` (one per
        operation; ``math.inf``: none), nothing is applied if a counter
        would end above its ceiling. Raises ValueError (nothing applied) if
        a key holds a value that is not a number."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """:meth:`get` of each key, in one call."""
        ...

    async def aclose(self) -> None:
        """Release connections. The store is unusable afterwards."""
        ...


class BatchOps:
    """The batch operations of a store, bound once (:func:`batch_ops`):
    the store's own methods, or for a store written before they joined the
    protocol, equivalents built on its single-key methods."""

    __slots__ = ("get_many", "incr_many", "native", "take_many")

    def __init__(
        self,
        take_many: Callable[[Sequence[BucketOp]], Awaitable[BucketsResult]],
        incr_many: Callable[[Sequence[CounterOp], Sequence[float] | None], Awaitable[CountersResult]],
        get_many: Callable[[Sequence[str]], Awaitable[list[bytes | None]]],
        native: bool,
    ) -> None:
        self.take_many = take_many
        self.incr_many = incr_many
        self.get_many = get_many
        #: Whether these are the store's own (atomic) methods.
        self.native = native


def batch_ops(store: StateStore) -> BatchOps:
    """``store``'s :meth:`~StateStore.take_many`, :meth:`~StateStore.incr_many`
    and :meth:`~StateStore.get_many`. A store without them (one written
    for the protocol before they joined it) gets equivalents that make one
    single-key call per key: the same results and the same state, but not
    atomic as a whole (a refused batch is undone by compensating calls)
    and with the debt of :data:`TakeMode` kept as a counter at
    ``<bucket key>:debt``."""
    take = getattr(store, "take_many", None)
    incr = getattr(store, "incr_many", None)
    get = getattr(store, "get_many", None)
    if take is not None and incr is not None and get is not None:
        return BatchOps(take, incr, get, True)

    async def take_many(ops: Sequence[BucketOp]) -> BucketsResult:
        return await _take_many_by_one(store, ops)

    async def incr_many(ops: Sequence[CounterOp], ceilings: Sequence[float] | None = None) -> CountersResult:
        return await _incr_many_by_one(store, ops, ceilings)

    async def get_many(keys: Sequence[str]) -> list[bytes | None]:
        return [await store.get(key) for key in keys]

    return BatchOps(take_many, incr_many, get_many, False)


def _debt_ttl(bucket: BucketShape, amount: float) -> float:
    return (bucket.capacity + amount) / bucket.rate if bucket.rate > 0 else math.inf


async def _claim_debt(store: StateStore, key: str) -> float:
    """Claim a debt counter's whole value (an over-claim against a
    concurrent claimer is put back)."""
    raw = await store.get(key)
    if raw is None:
        return 0.0
    try:
        owed = float(raw)
    except ValueError:
        return 0.0
    if owed <= 0:
        return 0.0
    left = await store.incr(key, -owed)
    if left < 0:
        await store.incr(key, -left)
        owed += left
    return max(owed, 0.0)


async def _take_many_by_one(store: StateStore, ops: Sequence[BucketOp]) -> BucketsResult:
    """:meth:`StateStore.take_many` from single-key calls (see :func:`batch_ops`)."""
    levels: list[float] = []
    # What each applied operation did: (bucket, tokens taken from it, debt added to it).
    done: list[tuple[BucketShape, float, float]] = []
    try:
        for position, (bucket, tokens, mode) in enumerate(ops):
            key, rate, capacity = bucket.key, bucket.rate, bucket.capacity
            debt_key = key + ":debt"
            if mode == "reserve":
                debt = await _claim_debt(store, debt_key)
                want = tokens + debt
                take = min(want, capacity)
                result = await store.take_tokens(key, rate=rate, capacity=capacity, tokens=take)
                if not result.allowed:
                    if debt > 0:
                        await store.incr(debt_key, debt, ttl=_debt_ttl(bucket, debt))
                else:
                    if want > take:
                        await store.incr(debt_key, want - take, ttl=_debt_ttl(bucket, want - take))
                    done.append((bucket, take, tokens - take))
            else:
                result = await store.take_tokens(key, rate=rate, capacity=capacity, tokens=tokens)
                if result.allowed:
                    done.append((bucket, tokens, 0.0))
                elif mode == "charge":
                    drained = 0.0
                    if result.remaining > 0:
                        rest = await store.take_tokens(key, rate=rate, capacity=capacity, tokens=result.remaining)
                        if rest.allowed:
                            drained = result.remaining
                            result = rest
                    owed = tokens - drained
                    await store.incr(debt_key, owed, ttl=_debt_ttl(bucket, owed))
                    done.append((bucket, drained, owed))
                    result = BucketResult(True, result.remaining, 0.0)
            if not result.allowed:
                index = position
                break
            levels.append(result.remaining)
        else:
            return BucketsResult(-1, 0.0, tuple(levels))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _undo_takes(store, done)
        raise
    restored = await _undo_takes(store, done)
    # Each bucket's level now: the one its earliest operation's undo restored.
    now: dict[str, float] = {key: result.remaining}
    for (undone, _taken, _debt), level in reversed(list(zip(done, restored, strict=True))):
        now[undone.key] = level
    levels = [now[bucket.key] for bucket, _tokens, _mode in ops[: index + 1]]
    return BucketsResult(index, result.retry_after, tuple(levels))


async def _undo_takes(store: StateStore, done: Sequence[tuple[BucketShape, float, float]]) -> list[float]:
    """Undo applied take operations (last first); the levels they restored, in their order."""
    levels: list[float] = []
    for bucket, taken, debt in reversed(done):
        result = await store.take_tokens(bucket.key, rate=bucket.rate, capacity=bucket.capacity, tokens=-taken)
        levels.append(result.remaining)
        if debt:
            await store.incr(bucket.key + ":debt", -debt)
    levels.reverse()
    return levels


async def _incr_many_by_one(
    store: StateStore, ops: Sequence[CounterOp], ceilings: Sequence[float] | None
) -> CountersResult:
    """:meth:`StateStore.incr_many` from single-key calls (see :func:`batch_ops`)."""
    values: list[float] = []
    done: list[tuple[str, float]] = []
    try:
        for index, (key, amount, ttl) in enumerate(ops):
            try:
                value = await store.incr(key, amount, ttl)
            except ValueError:  # undone below
                raise ValueError(f"the value at {key!r} is not a number") from None
            done.append((key, amount))
            values.append(value)
            if ceilings is not None and value > ceilings[index]:
                break
        else:
            return CountersResult(-1, tuple(values))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _undo_incrs(store, done)
        raise
    await _undo_incrs(store, done)
    return CountersResult(index, tuple(values))


async def _undo_incrs(store: StateStore, done: Sequence[tuple[str, float]]) -> None:
    for key, amount in reversed(done):
        await store.incr(key, -amount)


def _owe(bucket: _Bucket, amount: float, capacity: float, rate: float, now: float) -> None:
    """Add ``amount`` of debt to ``bucket`` (see :data:`TakeMode`)."""
    if bucket.debt_expires > now:
        bucket.debt += amount
    else:
        bucket.debt = amount
        bucket.debt_expires = now + (capacity + amount) / rate if rate > 0 else math.inf


@attrs.define
class _Bucket:
    level: float
    stamp: float
    #: Tokens owed (see :data:`TakeMode`) and when that debt expires.
    debt: float = 0.0
    debt_expires: float = -math.inf


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

    async def take_many(self, ops: Sequence[BucketOp]) -> BucketsResult:
        # One synchronous pass, in place: each bucket is refilled to now and
        # changed as its operation says; ``saved`` keeps what each touched
        # bucket held before, to put back if an operation is refused.
        now = self._clock()
        buckets = self._buckets
        saved: list[tuple[str, _Bucket | None, float, float, float, float]] = []
        levels: list[float] = []
        for index, (bucket, tokens, mode) in enumerate(ops):
            key, capacity = bucket.key, bucket.capacity
            found = buckets.get(key)
            if found is None:
                found = buckets[key] = _Bucket(capacity, now)
                saved.append((key, None, capacity, now, 0.0, -math.inf))
                level = capacity
            else:
                saved.append((key, found, found.level, found.stamp, found.debt, found.debt_expires))
                level = found.level + (now - found.stamp) * bucket.rate
                if level > capacity:
                    level = capacity
                found.stamp = now
            if mode == "take":
                if level < tokens:
                    return self._undo(saved, index, tokens - level, bucket.rate, now, ops)
                found.level = level - tokens
            elif mode == "reserve":
                debt = found.debt if found.debt_expires > now and found.debt > 0 else 0.0
                want = tokens + debt
                take = want if want < capacity else capacity
                if level < take:
                    return self._undo(saved, index, take - level, bucket.rate, now, ops)
                found.level = level - take
                if debt > 0:
                    found.debt = 0.0
                if want > take:
                    _owe(found, want - take, capacity, bucket.rate, now)
            elif level >= tokens:
                found.level = level - tokens
            else:
                drained = level if level > 0 else 0.0
                found.level = level - drained
                _owe(found, tokens - drained, capacity, bucket.rate, now)
            levels.append(found.level)
        return BucketsResult(-1, 0.0, tuple(levels))

    def _undo(
        self,
        saved: list[tuple[str, _Bucket | None, float, float, float, float]],
        index: int,
        short: float,
        rate: float,
        now: float,
        ops: Sequence[BucketOp],
    ) -> BucketsResult:
        """Put back every bucket a batch refused at ``index`` touched (last
        first); the result names the buckets' levels before the batch."""
        for key, found, level, stamp, debt, expires in reversed(saved):
            if found is None:
                del self._buckets[key]
            else:
                found.level, found.stamp, found.debt, found.debt_expires = level, stamp, debt, expires
        levels = []
        for bucket, _tokens, _mode in ops[: index + 1]:
            found = self._buckets.get(bucket.key)
            if found is None:
                levels.append(bucket.capacity)
            else:
                levels.append(min(bucket.capacity, found.level + (now - found.stamp) * bucket.rate))
        return BucketsResult(index, short / rate if rate > 0 else math.inf, tuple(levels))

    async def incr_many(self, ops: Sequence[CounterOp], ceilings: Sequence[float] | None = None) -> CountersResult:
        now = self._clock()
        values = self._values
        saved: list[tuple[str, tuple[bytes | float, float] | None]] = []
        out: list[float] = []
        for index, (key, amount, ttl) in enumerate(ops):
            entry = values.get(key)
            saved.append((key, entry))
            if entry is None or entry[1] <= now:
                value, expires = 0.0 + amount, (now + ttl if ttl is not None else math.inf)
            else:
                current, expires = entry
                if isinstance(current, bytes):
                    try:
                        current = float(current.decode() or 0)
                    except ValueError:
                        self._put_back(saved)
                        raise ValueError(f"the value at {key!r} is not a number") from None
                value = current + amount
            values[key] = (value, expires)
            out.append(value)
            if ceilings is not None and value > ceilings[index]:
                self._put_back(saved)
                return CountersResult(index, tuple(out))
        return CountersResult(-1, tuple(out))

    def _put_back(self, saved: list[tuple[str, tuple[bytes | float, float] | None]]) -> None:
        """Restore the counters an incr_many changed (last first)."""
        values = self._values
        for key, entry in reversed(saved):
            if entry is None:
                values.pop(key, None)
            else:
                values[key] = entry

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for key in keys:
            entry = self._live(key)
            if entry is None:
                out.append(None)
            else:
                value = entry[0]
                out.append(value if isinstance(value, bytes) else repr(value).encode())
        return out

    async def aclose(self) -> None:
        self._values.clear()
        self._windows.clear()
        self._window_sums.clear()
        self._buckets.clear()
