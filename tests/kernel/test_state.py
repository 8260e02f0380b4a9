"""The in-memory StateStore, with a controllable clock."""

from __future__ import annotations

from typing import cast

import pytest

from swarmgate import ConfigError, MemoryStateStore, StateStore
from swarmgate.state import BatchOps, BucketResult, TokenBucket, batch_ops
from swarmgate.testing.state_contract import StateStoreContract

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_values_expire() -> None:
    clock = Clock()
    store = MemoryStateStore(clock=clock)
    assert isinstance(store, StateStore)
    await store.set("k", b"v", ttl=10)
    await store.set("forever", b"x")
    assert await store.get("k") == b"v"
    clock.now += 10
    assert await store.get("k") is None
    assert await store.keys("") == ["forever"]
    assert await store.delete("forever", "nothing") == 1


async def test_counters() -> None:
    clock = Clock()
    store = MemoryStateStore(clock=clock)
    assert await store.incr("c") == 1
    assert await store.incr("c", 2.5) == 3.5
    assert await store.incr("t", 1, ttl=5) == 1
    clock.now += 6
    assert await store.incr("t", 1, ttl=5) == 1


async def test_sliding_windows() -> None:
    clock = Clock()
    store = MemoryStateStore(clock=clock)
    await store.window_add("w", 1, window=10)
    clock.now += 5
    assert await store.window_add("w", 2, window=10) == 3
    clock.now += 6
    assert await store.window_total("w", window=10) == 2


async def test_token_bucket_refills_and_reports_retry_after() -> None:
    clock = Clock()
    store = MemoryStateStore(clock=clock)
    for _ in range(3):
        assert (await store.take_tokens("b", rate=1, capacity=3)).allowed
    refused = await store.take_tokens("b", rate=1, capacity=3)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(1.0)
    clock.now += 1
    assert (await store.take_tokens("b", rate=1, capacity=3)).allowed
    clock.now += 100
    assert (await store.take_tokens("b", rate=1, capacity=3, tokens=3)).remaining == 0


async def test_memory_backend_takes_no_options() -> None:
    with pytest.raises(ConfigError, match=r"state.options.url"):
        MemoryStateStore({"url": "redis://"})


class SingleKeyStore:
    """A StateStore written before the batches joined the protocol: only the
    single-key methods, delegated to a MemoryStateStore."""

    def __init__(self) -> None:
        self.inner = MemoryStateStore()
        self.calls = 0

    async def get(self, key: str) -> bytes | None:
        self.calls += 1
        return await self.inner.get(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.calls += 1
        await self.inner.set(key, value, ttl)

    async def delete(self, *keys: str) -> int:
        self.calls += 1
        return await self.inner.delete(*keys)

    async def keys(self, prefix: str) -> list[str]:
        self.calls += 1
        return await self.inner.keys(prefix)

    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        self.calls += 1
        return await self.inner.incr(key, amount, ttl)

    async def window_add(self, key: str, amount: float, window: float) -> float:
        self.calls += 1
        return await self.inner.window_add(key, amount, window)

    async def window_total(self, key: str, window: float) -> float:
        self.calls += 1
        return await self.inner.window_total(key, window)

    async def take_tokens(self, key: str, *, rate: float, capacity: float, tokens: float = 1.0) -> BucketResult:
        self.calls += 1
        return await self.inner.take_tokens(key, rate=rate, capacity=capacity, tokens=tokens)

    async def aclose(self) -> None:
        await self.inner.aclose()


class TestSingleKeyFallbackContract(StateStoreContract):
    """A store without the batch methods passes the whole contract through
    :func:`batch_ops`' single-key fallback (atomic here because the memory
    store underneath never yields between its calls)."""

    async def open_store(self) -> StateStore:
        return cast(StateStore, SingleKeyStore())

    def batch(self, store: StateStore) -> BatchOps:
        ops = batch_ops(store)
        assert not ops.native
        return ops

    @pytest.mark.anyio
    async def test_is_a_state_store(self) -> None:
        async with self.opened() as store:
            assert not isinstance(store, StateStore)  # the batches are missing
            assert batch_ops(MemoryStateStore()).native


async def test_the_fallback_keeps_debt_as_a_counter_and_undoes_refused_batches() -> None:
    store = SingleKeyStore()
    ops = batch_ops(cast(StateStore, store))
    bucket = TokenBucket("t", 1e-6, 10.0)
    other = TokenBucket("o", 1e-6, 1.0)
    await ops.take_many([(bucket, 15.0, "reserve")])  # takes 10, owes 5
    assert float(await store.get("t:debt") or b"nan") == 5.0
    refused = await ops.take_many([(other, 1.0, "take"), (bucket, 1.0, "reserve")])
    assert refused.refused == 1
    assert refused.levels == pytest.approx((1.0, 0.0), abs=1e-3)
    assert float(await store.get("t:debt") or b"nan") == 5.0  # claimed, then put back
    assert (await store.take_tokens("o", rate=1e-6, capacity=1.0, tokens=0.0)).remaining == pytest.approx(1.0)
    counted = await ops.incr_many([("x", 1.0, None), ("y", 3.0, None)], [5.0, 2.0])
    assert counted.refused == 1
    assert await store.get("x") == b"0.0"
    assert await store.get("y") == b"0.0"


async def test_the_fallback_undoes_what_it_applied_when_a_call_fails() -> None:
    class Failing(SingleKeyStore):
        async def take_tokens(self, key: str, *, rate: float, capacity: float, tokens: float = 1.0) -> BucketResult:
            if key == "bad" and tokens > 0:
                raise RuntimeError("backend down")
            return await super().take_tokens(key, rate=rate, capacity=capacity, tokens=tokens)

        async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
            if key == "bad":
                raise RuntimeError("backend down")
            return await super().incr(key, amount, ttl)

    store = Failing()
    ops = batch_ops(cast(StateStore, store))
    good = TokenBucket("good", 1e-6, 5.0)
    with pytest.raises(RuntimeError):
        await ops.take_many([(good, 2.0, "take"), (TokenBucket("bad", 1e-6, 5.0), 1.0, "take")])
    assert (await store.take_tokens("good", rate=1e-6, capacity=5.0, tokens=0.0)).remaining == pytest.approx(5.0)
    with pytest.raises(RuntimeError):
        await ops.incr_many([("ok", 2.0, None), ("bad", 1.0, None)], None)
    assert await store.get("ok") == b"0.0"
