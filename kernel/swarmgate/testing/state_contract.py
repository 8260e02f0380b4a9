"""The StateStore contract suite: what every state backend must do.

A backend's tests subclass :class:`StateStoreContract` and say how to open
a fresh, empty store (and, for a shared backend, a second handle on the
same state)::

    from swarmgate.testing.state_contract import StateStoreContract

    class TestMyBackendContract(StateStoreContract):
        async def open_store(self) -> StateStore:
            return MyStore(namespace=unique_name())

        async def open_peer(self, store: StateStore) -> StateStore:
            return MyStore(namespace=store.namespace)  # another client, same data

        async def close_store(self, store: StateStore) -> None:
            await store.clear()
            await store.aclose()

The kernel's :class:`~swarmgate.state.MemoryStateStore` passes it as is, and
the plugins rely on exactly what it checks: values with expiry, counters
whose ``ttl`` is set at creation only, sliding windows, token buckets
(a refused take changes nothing, a negative take gives back, a zero take
reads the level), ``delete`` across kinds, ``keys`` of live values and
counters only, the batches (``take_many`` with its modes and debt,
``incr_many`` with ceilings, ``get_many``: all or nothing, in order), and
atomicity under concurrent callers. A subclass may override :meth:`batch`
to check the batches a store gets another way (the single-key fallback).

Time is real: the tests sleep multiples of :attr:`StateStoreContract.tick`
seconds (a backend may use its own clock, e.g. its server's) and accept a
generous margin for a busy machine. The tests are ``@pytest.mark.anyio``:
the project's ``anyio_backend`` fixture decides the event loops (ours:
asyncio and trio). This module needs pytest, so :mod:`swarmgate.testing`
does not import it: import it by its full name.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import ClassVar

import anyio
import pytest

from swarmgate.state import BatchOps, BucketResult, BucketsResult, StateStore, TokenBucket, batch_ops

#: A refill rate so slow that no test sees it move (tokens per second).
STILL = 1e-6


class StateStoreContract:
    """Base class of every state backend's contract tests. Subclasses
    implement :meth:`open_store` and, where needed, :meth:`open_peer` and
    :meth:`close_store`."""

    #: The unit of every wait (seconds): expiries and windows last 1-8 ticks,
    #: sleeps 1-12, each with a margin of at least a tick either way.
    tick: ClassVar[float] = 0.05

    # -- what subclasses state ---------------------------------------------------

    async def open_store(self) -> StateStore:
        """A new store holding nothing (for a shared backend: its own namespace)."""
        raise NotImplementedError

    async def open_peer(self, store: StateStore) -> StateStore:
        """Another handle on ``store``'s state, as a second gateway process
        would open it. The default (an in-process backend) is ``store`` itself."""
        return store

    async def close_store(self, store: StateStore) -> None:
        """Release ``store`` (and, for a shared backend, remove what the test wrote)."""
        await store.aclose()

    # -- building blocks ---------------------------------------------------------

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[StateStore]:
        """A fresh store for one test, closed afterwards."""
        store = await self.open_store()
        try:
            yield store
        finally:
            with anyio.CancelScope(shield=True):
                await self.close_store(store)

    def batch(self, store: StateStore) -> BatchOps:
        """The batch operations under test: the store's own (:func:`batch_ops`)."""
        ops = batch_ops(store)
        assert ops.native, "the store lacks take_many, incr_many or get_many"
        return ops

    async def sleep_ticks(self, ticks: float) -> None:
        """Sleep ``ticks`` ticks."""
        await anyio.sleep(ticks * self.tick)

    # -- values ------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_is_a_state_store(self) -> None:
        async with self.opened() as store:
            assert isinstance(store, StateStore)

    @pytest.mark.anyio
    async def test_values_round_trip_any_bytes(self) -> None:
        async with self.opened() as store:
            assert await store.get("absent") is None
            everything = bytes(range(256)) * 3
            await store.set("bin", everything)
            await store.set("empty", b"")
            await store.set("unicode:ключ ✓", b"v")
            assert await store.get("bin") == everything
            assert await store.get("empty") == b""
            assert await store.get("unicode:ключ ✓") == b"v"
            await store.set("bin", b"replaced")
            assert await store.get("bin") == b"replaced"

    @pytest.mark.anyio
    async def test_values_expire_after_their_ttl(self) -> None:
        async with self.opened() as store:
            await store.set("short", b"1", ttl=2 * self.tick)
            await store.set("forever", b"2")
            await store.set("renewed", b"3", ttl=2 * self.tick)
            await store.set("renewed", b"4")  # a set without ttl: no expiry any more
            assert await store.get("short") == b"1"
            assert sorted(await store.keys("")) == ["forever", "renewed", "short"]
            await self.sleep_ticks(4)
            assert await store.get("short") is None
            assert await store.get("forever") == b"2"
            assert await store.get("renewed") == b"4"
            assert sorted(await store.keys("")) == ["forever", "renewed"]

    @pytest.mark.anyio
    async def test_a_ttl_of_zero_or_less_expires_at_once(self) -> None:
        async with self.opened() as store:
            await store.set("zero", b"old")
            await store.set("zero", b"new", ttl=0)
            await store.set("negative", b"v", ttl=-5)
            assert await store.get("zero") is None
            assert await store.get("negative") is None
            assert await store.keys("") == []

    # -- keys and delete -----------------------------------------------------------

    @pytest.mark.anyio
    async def test_keys_lists_live_values_and_counters_by_prefix(self) -> None:
        async with self.opened() as store:
            await store.set("cache:e:1", b"a")
            await store.set("cache:e:2", b"b")
            await store.set("cache:ix:1", b"")
            await store.incr("cache:stat:hits")
            await store.incr("cache:stat:old", ttl=self.tick)
            await store.window_add("cache:window", 1.0, 60.0)
            await store.take_tokens("cache:bucket", rate=1.0, capacity=5.0)
            await store.set("other", b"c")
            # Glob and regex characters in keys and prefixes are plain text.
            await store.set("glob*[a]?\\x", b"d")
            await store.set("globbing", b"e")
            await self.sleep_ticks(2)
            assert sorted(await store.keys("cache:e:")) == ["cache:e:1", "cache:e:2"]
            assert sorted(await store.keys("cache:")) == ["cache:e:1", "cache:e:2", "cache:ix:1", "cache:stat:hits"]
            assert await store.keys("glob*[a]?\\") == ["glob*[a]?\\x"]
            assert await store.keys("glob*") == ["glob*[a]?\\x"]
            assert await store.keys("nothing") == []
            assert len(await store.keys("")) == 7

    @pytest.mark.anyio
    async def test_delete_removes_every_kind_and_counts_keys(self) -> None:
        async with self.opened() as store:
            await store.set("value", b"v")
            await store.incr("counter", 2.0)
            await store.window_add("window", 3.0, 60.0)
            await store.take_tokens("bucket", rate=STILL, capacity=5.0, tokens=5.0)
            await store.set("all", b"v")
            await store.window_add("all", 1.0, 60.0)
            await store.take_tokens("all", rate=STILL, capacity=5.0, tokens=5.0)
            await store.set("expired", b"v", ttl=self.tick)
            await self.sleep_ticks(2)
            assert await store.delete() == 0
            assert await store.delete("value", "counter", "window", "bucket", "all", "expired", "absent") == 5
            assert await store.get("value") is None
            assert await store.get("counter") is None
            assert await store.window_total("window", 60.0) == 0.0
            assert await store.window_total("all", 60.0) == 0.0
            for key in ("bucket", "all"):  # a deleted bucket starts full again
                level = await store.take_tokens(key, rate=STILL, capacity=5.0, tokens=0.0)
                assert level.remaining == 5.0
            assert await store.keys("") == []
            assert await store.delete("value", "value") == 0

    # -- counters -------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_counters_add_floats_exactly(self) -> None:
        async with self.opened() as store:
            assert await store.incr("c") == 1.0
            assert await store.incr("c", 2.5) == 3.5
            assert await store.incr("c", -4.0) == -0.5
            raw = await store.get("c")
            assert raw is not None
            assert float(raw) == -0.5
            expected = 0.0
            for amount in (0.1, 0.2, 0.3, 1e-9, 12345.678, -0.7):
                expected += amount
                assert await store.incr("sum", amount) == expected
            raw = await store.get("sum")
            assert raw is not None
            assert float(raw) == expected
            assert sorted(await store.keys("")) == ["c", "sum"]

    @pytest.mark.anyio
    async def test_counters_count_on_values_set_as_numbers(self) -> None:
        async with self.opened() as store:
            await store.set("n", b"2")
            assert await store.incr("n", 1.5) == 3.5
            await store.set("blank", b"")
            assert await store.incr("blank", 2.0) == 2.0
            await store.set("word", b"abc")
            with pytest.raises(ValueError, match=r"float|number"):
                await store.incr("word")
            assert await store.get("word") == b"abc"

    @pytest.mark.anyio
    async def test_a_counter_ttl_is_set_at_creation_only(self) -> None:
        async with self.opened() as store:
            assert await store.incr("t", 1.0, ttl=6 * self.tick) == 1.0
            await store.set("v", b"5", ttl=6 * self.tick)
            await self.sleep_ticks(1)
            assert await store.incr("t", 1.0, ttl=1000.0) == 2.0  # keeps the first expiry
            assert await store.incr("t", 1.0) == 3.0
            assert await store.incr("v", 1.0) == 6.0  # a value's expiry carries over to the counting
            await self.sleep_ticks(7)
            assert await store.get("t") is None
            assert await store.get("v") is None
            assert await store.incr("t", 1.0, ttl=6 * self.tick) == 1.0
            # Created with a ttl of zero or less: the value is returned, nothing is kept.
            assert await store.incr("gone", 4.0, ttl=0) == 4.0
            assert await store.get("gone") is None
            assert await store.incr("gone", 1.0) == 1.0

    @pytest.mark.anyio
    async def test_counters_are_atomic_under_concurrent_callers(self) -> None:
        async with self.opened() as store:
            peer = await self.open_peer(store)
            seen: list[float] = []

            async def bump(on: StateStore) -> None:
                seen.append(await on.incr("hits", 1.0, ttl=60.0))

            try:
                async with anyio.create_task_group() as tg:
                    for i in range(60):
                        tg.start_soon(bump, store if i % 2 else peer)
            finally:
                if peer is not store:
                    await peer.aclose()
            assert sorted(seen) == [float(n) for n in range(1, 61)]
            raw = await store.get("hits")
            assert raw is not None
            assert float(raw) == 60.0

    # -- sliding windows -------------------------------------------------------------

    @pytest.mark.anyio
    async def test_windows_slide(self) -> None:
        async with self.opened() as store:
            window = 8 * self.tick
            assert await store.window_total("w", window) == 0.0
            assert await store.window_add("w", 1.0, window) == 1.0
            await self.sleep_ticks(5)
            assert await store.window_add("w", 2.0, window) == 3.0
            assert await store.window_total("w", window) == 3.0
            await self.sleep_ticks(4)  # the first point is now older than the window, the second is not
            assert await store.window_total("w", window) == 2.0
            assert await store.window_add("w", 0.5, window) == 2.5
            await self.sleep_ticks(9)
            assert await store.window_total("w", window) == 0.0
            assert await store.window_add("w", 4.0, window) == 4.0

    @pytest.mark.anyio
    async def test_window_totals_add_floats_exactly(self) -> None:
        async with self.opened() as store:
            expected = 0.0
            for amount in (0.1, 0.2, 0.3, -0.05, 7.25):
                expected += amount
                assert await store.window_add("f", amount, 60.0) == expected
            assert await store.window_total("f", 60.0) == expected

    @pytest.mark.anyio
    async def test_windows_are_atomic_under_concurrent_callers(self) -> None:
        async with self.opened() as store:
            peer = await self.open_peer(store)
            seen: list[float] = []

            async def add(on: StateStore) -> None:
                seen.append(await on.window_add("requests", 1.0, 60.0))

            try:
                async with anyio.create_task_group() as tg:
                    for i in range(50):
                        tg.start_soon(add, store if i % 2 else peer)
            finally:
                if peer is not store:
                    await peer.aclose()
            assert sorted(seen) == [float(n) for n in range(1, 51)]
            assert await store.window_total("requests", 60.0) == 50.0

    # -- token buckets ------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_a_bucket_starts_full_and_refuses_when_empty(self) -> None:
        async with self.opened() as store:
            for left in (2.0, 1.0, 0.0):
                taken = await store.take_tokens("b", rate=STILL, capacity=3.0)
                assert taken.allowed
                assert taken.remaining == pytest.approx(left, abs=1e-3)
                assert taken.retry_after == 0.0
            refused = await store.take_tokens("b", rate=0.5, capacity=3.0)  # refills at 0.5/s since the last take
            assert not refused.allowed
            assert 0.0 <= refused.remaining < 0.05
            assert refused.retry_after == pytest.approx((1.0 - refused.remaining) / 0.5)

    @pytest.mark.anyio
    async def test_a_refused_take_leaves_the_bucket_unchanged(self) -> None:
        async with self.opened() as store:
            assert (await store.take_tokens("b", rate=STILL, capacity=5.0, tokens=4.0)).remaining == pytest.approx(1.0)
            refused = await store.take_tokens("b", rate=STILL, capacity=5.0, tokens=3.0)
            assert not refused.allowed
            assert refused.remaining == pytest.approx(1.0)
            assert refused.retry_after == pytest.approx(2.0 / STILL, rel=1e-3)
            taken = await store.take_tokens("b", rate=STILL, capacity=5.0, tokens=1.0)
            assert taken.allowed
            assert taken.remaining == pytest.approx(0.0, abs=1e-3)

    @pytest.mark.anyio
    async def test_a_bucket_refills_at_its_rate_up_to_its_capacity(self) -> None:
        async with self.opened() as store:
            rate = 10.0 / self.tick  # ten tokens per tick
            assert (await store.take_tokens("b", rate=rate, capacity=100.0, tokens=100.0)).allowed
            await self.sleep_ticks(3)
            level = await store.take_tokens("b", rate=rate, capacity=100.0, tokens=0.0)
            assert level.allowed
            assert 25.0 <= level.remaining <= 80.0  # 30 expected; a busy machine sleeps longer
            await self.sleep_ticks(9)
            assert (await store.take_tokens("b", rate=rate, capacity=100.0, tokens=0.0)).remaining == 100.0

    @pytest.mark.anyio
    async def test_a_zero_take_reads_the_level(self) -> None:
        async with self.opened() as store:
            fresh = await store.take_tokens("b", rate=STILL, capacity=7.0, tokens=0.0)
            assert fresh == BucketResult(True, 7.0, 0.0)
            await store.take_tokens("b", rate=STILL, capacity=7.0, tokens=2.0)
            for _ in range(3):
                level = await store.take_tokens("b", rate=STILL, capacity=7.0, tokens=0.0)
                assert level.allowed
                assert level.remaining == pytest.approx(5.0, abs=1e-3)

    @pytest.mark.anyio
    async def test_a_negative_take_gives_back_capped_by_the_next_call(self) -> None:
        async with self.opened() as store:
            assert (await store.take_tokens("b", rate=STILL, capacity=5.0, tokens=5.0)).allowed
            back = await store.take_tokens("b", rate=STILL, capacity=5.0, tokens=-2.0)
            assert back.allowed
            assert back.remaining == pytest.approx(2.0, abs=1e-3)
            over = await store.take_tokens("b", rate=STILL, capacity=5.0, tokens=-10.0)
            assert over.allowed
            assert over.remaining == pytest.approx(12.0, abs=1e-3)
            assert (await store.take_tokens("b", rate=STILL, capacity=5.0, tokens=0.0)).remaining == 5.0

    @pytest.mark.anyio
    async def test_takes_beyond_capacity_or_without_refill(self) -> None:
        async with self.opened() as store:
            big = await store.take_tokens("big", rate=2.0, capacity=5.0, tokens=9.0)
            assert not big.allowed
            assert big.remaining == 5.0
            assert big.retry_after == pytest.approx(2.0, abs=1e-2)
            assert (await store.take_tokens("frozen", rate=0.0, capacity=1.0)).allowed
            never = await store.take_tokens("frozen", rate=0.0, capacity=1.0)
            assert not never.allowed
            assert never.retry_after == math.inf

    @pytest.mark.anyio
    async def test_buckets_are_atomic_under_concurrent_callers(self) -> None:
        async with self.opened() as store:
            peer = await self.open_peer(store)
            allowed: list[bool] = []

            async def take(on: StateStore) -> None:
                allowed.append((await on.take_tokens("shared", rate=STILL, capacity=10.0)).allowed)

            try:
                async with anyio.create_task_group() as tg:
                    for i in range(40):
                        tg.start_soon(take, store if i % 2 else peer)
            finally:
                if peer is not store:
                    await peer.aclose()
            assert allowed.count(True) == 10
            assert allowed.count(False) == 30

    # -- batches ------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_take_many_applies_every_operation_or_none(self) -> None:
        async with self.opened() as store:
            take_many = self.batch(store).take_many
            a, b = TokenBucket("a", STILL, 5.0), TokenBucket("b", STILL, 1.0)
            taken = await take_many([(a, 2.0, "take"), (b, 1.0, "take")])
            assert taken.allowed
            assert taken.refused == -1
            assert taken.retry_after == 0.0
            assert taken.levels == pytest.approx((3.0, 0.0), abs=1e-3)
            refused = await take_many([(a, 3.0, "take"), (b, 1.0, "take"), (a, 99.0, "take")])
            assert not refused.allowed
            assert refused.refused == 1
            assert refused.retry_after == pytest.approx(1.0 / STILL, rel=1e-3)
            assert refused.levels == pytest.approx((3.0, 0.0), abs=1e-3)  # unchanged; the third not evaluated
            assert (await store.take_tokens("a", rate=STILL, capacity=5.0, tokens=0.0)).remaining == pytest.approx(
                3.0, abs=1e-3
            )
            assert await take_many([]) == BucketsResult(-1, 0.0, ())

    @pytest.mark.anyio
    async def test_take_many_sees_its_own_earlier_operations(self) -> None:
        async with self.opened() as store:
            take_many = self.batch(store).take_many
            a = TokenBucket("a", STILL, 5.0)
            twice = await take_many([(a, 2.0, "take"), (a, 2.0, "take")])
            assert twice.levels == pytest.approx((3.0, 1.0), abs=1e-3)
            over = await take_many([(a, 1.0, "take"), (a, 1.0, "take")])
            assert over.refused == 1
            assert over.levels == pytest.approx((1.0, 1.0), abs=1e-3)
            back = await take_many([(a, -10.0, "take"), (a, 0.0, "take")])
            assert back.levels == pytest.approx((11.0, 5.0), abs=1e-3)  # capped by the next operation

    @pytest.mark.anyio
    async def test_take_many_shares_buckets_with_take_tokens(self) -> None:
        async with self.opened() as store:
            take_many = self.batch(store).take_many
            await store.take_tokens("a", rate=STILL, capacity=4.0, tokens=3.0)
            assert (await take_many([(TokenBucket("a", STILL, 4.0), 1.0, "take")])).levels == pytest.approx(
                (0.0,), abs=1e-3
            )
            assert not (await store.take_tokens("a", rate=STILL, capacity=4.0, tokens=1.0)).allowed
            assert await store.delete("a") == 1

    @pytest.mark.anyio
    async def test_charges_owe_what_the_bucket_lacks_and_reservations_pay_it(self) -> None:
        async with self.opened() as store:
            take_many = self.batch(store).take_many
            bucket = TokenBucket("t", STILL, 10.0)
            assert (await take_many([(bucket, 4.0, "take")])).levels == pytest.approx((6.0,), abs=1e-3)
            charged = await take_many([(bucket, 10.0, "charge")])  # 6 there: drained, 4 owed
            assert charged.allowed
            assert charged.levels == pytest.approx((0.0,), abs=1e-3)
            refused = await take_many([(bucket, 1.0, "reserve")])  # needs 1 + 4 owed
            assert refused.refused == 0
            assert refused.retry_after == pytest.approx(5.0 / STILL, rel=1e-3)
            await take_many([(bucket, -8.0, "take")])
            paid = await take_many([(bucket, 1.0, "reserve")])
            assert paid.levels == pytest.approx((3.0,), abs=1e-3)
            again = await take_many([(bucket, 1.0, "reserve")])  # the debt is paid
            assert again.levels == pytest.approx((2.0,), abs=1e-3)
            covered = await take_many([(bucket, 2.0, "charge")])  # the bucket holds it: a plain take
            assert covered.levels == pytest.approx((0.0,), abs=1e-3)

    @pytest.mark.anyio
    async def test_a_reservation_beyond_the_capacity_takes_the_bucket_and_owes_the_rest(self) -> None:
        async with self.opened() as store:
            take_many = self.batch(store).take_many
            bucket = TokenBucket("t", STILL, 10.0)
            big = await take_many([(bucket, 15.0, "reserve")])
            assert big.allowed
            assert big.levels == pytest.approx((0.0,), abs=1e-3)
            await take_many([(bucket, -10.0, "take")])
            paid = await take_many([(bucket, 1.0, "reserve")])  # 1 + 5 owed
            assert paid.levels == pytest.approx((4.0,), abs=1e-3)

    @pytest.mark.anyio
    async def test_debt_expires_once_the_bucket_would_have_refilled(self) -> None:
        async with self.opened() as store:
            take_many = self.batch(store).take_many
            bucket = TokenBucket("t", 10.0 / self.tick, 10.0)  # refills completely in one tick
            await take_many([(bucket, 30.0, "charge")])  # 10 drained, 20 owed for (10 + 20) / rate: 3 ticks
            assert (await take_many([(bucket, 1.0, "reserve")])).refused == 0
            await self.sleep_ticks(6)
            paid = await take_many([(bucket, 1.0, "reserve")])
            assert paid.allowed
            assert paid.levels[0] >= 8.0  # 9: the debt is gone (it would have taken the whole bucket)

    @pytest.mark.anyio
    async def test_take_many_is_atomic_under_concurrent_callers(self) -> None:
        async with self.opened() as store:
            peer = await self.open_peer(store)
            small, large = TokenBucket("small", STILL, 10.0), TokenBucket("large", STILL, 1000.0)
            allowed: list[bool] = []

            async def take(on: StateStore) -> None:
                result = await self.batch(on).take_many([(large, 1.0, "take"), (small, 1.0, "take")])
                allowed.append(result.allowed)

            try:
                async with anyio.create_task_group() as tg:
                    for i in range(40):
                        tg.start_soon(take, store if i % 2 else peer)
            finally:
                if peer is not store:
                    await peer.aclose()
            assert allowed.count(True) == 10
            level = await store.take_tokens("large", rate=STILL, capacity=1000.0, tokens=0.0)
            assert level.remaining == pytest.approx(990.0, abs=1e-2)

    @pytest.mark.anyio
    async def test_incr_many_adds_in_order_all_or_nothing(self) -> None:
        async with self.opened() as store:
            incr_many = self.batch(store).incr_many
            done = await incr_many([("a", 1.5, None), ("b", 2.0, None), ("a", 0.25, None)], None)
            assert done.applied
            assert done.values == (1.5, 2.0, 1.75)
            refused = await incr_many([("a", 1.0, None), ("c", 5.0, None), ("b", 1.0, None)], [10.0, 4.0, math.inf])
            assert not refused.applied
            assert refused.refused == 1
            assert refused.values == (2.75, 5.0)
            assert float(await store.get("a") or b"nan") == 1.75
            assert float(await store.get("c") or b"0") == 0.0  # absent, or back at 0 (the single-key fallback)
            within = await incr_many([("a", 0.1, None), ("a", 0.2, None)], [math.inf, 2.1])
            assert within.applied
            assert within.values == (1.85, 1.85 + 0.2)
            assert await store.incr("a", 0.0) == 1.85 + 0.2
            assert (await incr_many([], None)).values == ()

    @pytest.mark.anyio
    async def test_incr_many_sets_a_ttl_at_creation_only_and_refuses_non_numbers(self) -> None:
        async with self.opened() as store:
            incr_many = self.batch(store).incr_many
            await incr_many([("short", 1.0, 2 * self.tick), ("kept", 1.0, None)], None)
            await incr_many([("short", 1.0, 1000.0), ("kept", 1.0, 2 * self.tick)], None)
            await self.sleep_ticks(4)
            assert await store.get("short") is None
            assert float(await store.get("kept") or b"nan") == 2.0
            await store.set("text", b"not a number")
            with pytest.raises(ValueError, match="text"):
                await incr_many([("kept", 1.0, None), ("text", 1.0, None)], None)
            assert float(await store.get("kept") or b"nan") == 2.0

    @pytest.mark.anyio
    async def test_incr_many_is_atomic_under_concurrent_callers(self) -> None:
        async with self.opened() as store:
            peer = await self.open_peer(store)
            applied: list[bool] = []

            async def reserve(on: StateStore) -> None:
                result = await self.batch(on).incr_many([("all", 1.0, None), ("capped", 1.0, None)], [math.inf, 10.0])
                applied.append(result.applied)

            try:
                async with anyio.create_task_group() as tg:
                    for i in range(40):
                        tg.start_soon(reserve, store if i % 2 else peer)
            finally:
                if peer is not store:
                    await peer.aclose()
            assert applied.count(True) == 10
            assert await store.incr("all", 0.0) == 10.0
            assert await store.incr("capped", 0.0) == 10.0

    @pytest.mark.anyio
    async def test_get_many_reads_values_and_counters(self) -> None:
        async with self.opened() as store:
            await store.set("v", b"value")
            await store.incr("c", 2.5)
            await store.set("gone", b"x", ttl=0)
            got = await self.batch(store).get_many(["v", "c", "absent", "gone", "v"])
            assert got[0] == b"value"
            assert float(got[1] or b"nan") == 2.5
            assert got[2:] == [None, None, b"value"]
            assert await self.batch(store).get_many([]) == []

    # -- kinds sharing a name, handles sharing a state ----------------------------------

    @pytest.mark.anyio
    async def test_a_value_a_window_and_a_bucket_may_share_a_name(self) -> None:
        async with self.opened() as store:
            await store.set("k", b"value")
            assert await store.window_add("k", 2.0, 60.0) == 2.0
            assert (await store.take_tokens("k", rate=STILL, capacity=3.0)).remaining == pytest.approx(2.0)
            assert await store.get("k") == b"value"
            assert await store.window_total("k", 60.0) == 2.0
            assert (await store.take_tokens("k", rate=STILL, capacity=3.0, tokens=0.0)).remaining == pytest.approx(
                2.0, abs=1e-3
            )
            assert await store.keys("") == ["k"]
            assert await store.delete("k") == 1

    @pytest.mark.anyio
    async def test_a_second_handle_sees_the_same_state(self) -> None:
        async with self.opened() as store:
            peer = await self.open_peer(store)
            try:
                await store.set("v", b"from one")
                await peer.incr("c", 2.0)
                await store.window_add("w", 1.0, 60.0)
                await peer.window_add("w", 1.0, 60.0)
                await store.take_tokens("b", rate=STILL, capacity=2.0)
                assert await peer.get("v") == b"from one"
                assert await store.incr("c") == 3.0
                assert await peer.window_total("w", 60.0) == 2.0
                assert (await peer.take_tokens("b", rate=STILL, capacity=2.0)).allowed
                assert not (await store.take_tokens("b", rate=STILL, capacity=2.0)).allowed
                assert sorted(await peer.keys("")) == ["c", "v"]
                assert await peer.delete("v", "w", "b") == 3
                assert await store.get("v") is None
            finally:
                if peer is not store:
                    await peer.aclose()
