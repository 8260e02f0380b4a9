"""The StateStore contract, run against the in-memory store and against
Redis: the plugins see the same semantics on both."""

from __future__ import annotations

from typing import Any

import pytest
from redis_helpers import remove_prefix, require_redis, unique_prefix

from swarmgate import MemoryStateStore, StateStore
from swarmgate.testing.state_contract import StateStoreContract
from swarmgate_redis import RedisStateStore, create_store


class TestMemoryStoreContract(StateStoreContract):
    """The kernel's in-process store: the reference."""

    async def open_store(self) -> StateStore:
        return MemoryStateStore()


class TestRedisStoreContract(StateStoreContract):
    """The Redis store, through its entry-point factory; the peer is a second
    store (own connections) on the same namespace, as another gateway has."""

    async def open_store(self) -> StateStore:
        url = require_redis()
        return create_store({"url": url, "prefix": unique_prefix()})

    async def open_peer(self, store: StateStore) -> StateStore:
        assert isinstance(store, RedisStateStore)
        return create_store({"url": store.options.url, "prefix": store.options.prefix})

    async def close_store(self, store: StateStore) -> None:
        assert isinstance(store, RedisStateStore)
        await store.clear()
        await store.aclose()
        remove_prefix(store.options.url, store.options.prefix)


@pytest.mark.parametrize("cls", [TestMemoryStoreContract, TestRedisStoreContract])
def test_both_backends_run_every_contract_test(cls: Any) -> None:
    names = {name for name in dir(StateStoreContract) if name.startswith("test_")}
    assert len(names) >= 20
    assert names <= set(dir(cls))
