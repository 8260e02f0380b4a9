"""The in-memory StateStore, with a controllable clock."""

from __future__ import annotations

import pytest

from swarmgate import ConfigError, MemoryStateStore, StateStore

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
