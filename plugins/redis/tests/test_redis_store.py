"""What is particular to the Redis store: its key layout and expiries, the
script cache, failures, cancellation, the two transports, namespaces."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import redis
from redis_helpers import DEAD_URL, raw_keys

from swarmgate.logs import scrub_secrets
from swarmgate_redis import RedisOptions, RedisStateStore, StateUnavailableError, create_store
from swarmgate_redis.lua import INCR, Script

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(redis_url: str, prefix: str) -> AsyncIterator[RedisStateStore]:
    opened = create_store({"url": redis_url, "prefix": prefix})
    yield opened
    await opened.aclose()


def pttl(url: str, name: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.pttl(name))
    finally:
        client.close()


async def test_one_redis_key_per_kind_under_the_prefix(store: RedisStateStore, redis_url: str, prefix: str) -> None:
    await store.set("value", b"v")
    await store.set("cached", b"v", ttl=30)
    await store.incr("counter", 1.0, ttl=60)
    await store.window_add("window", 1.0, 10.0)
    await store.take_tokens("bucket", rate=2.0, capacity=10.0, tokens=4.0)
    assert raw_keys(redis_url, prefix) == [
        f"{prefix}b:bucket",
        f"{prefix}s:window",
        f"{prefix}v:cached",
        f"{prefix}v:counter",
        f"{prefix}v:value",
        f"{prefix}w:window",
    ]
    assert pttl(redis_url, f"{prefix}v:value") == -1
    assert 29_000 < pttl(redis_url, f"{prefix}v:cached") <= 30_000
    assert 59_000 < pttl(redis_url, f"{prefix}v:counter") <= 60_000
    # A window lives as long as its last point matters; a bucket until it
    # would be full again (4 tokens at 2/s) plus a second.
    assert 9_000 < pttl(redis_url, f"{prefix}w:window") <= 10_001
    assert 9_000 < pttl(redis_url, f"{prefix}s:window") <= 10_001
    assert 2_000 < pttl(redis_url, f"{prefix}b:bucket") <= 3_000
    # A bucket read full is kept one second only: an absent bucket reads full.
    await store.take_tokens("idle", rate=2.0, capacity=10.0, tokens=0.0)
    assert 0 < pttl(redis_url, f"{prefix}b:idle") <= 1_000
    assert await store.count_keys() == {"values": 3, "windows": 1, "buckets": 2}


async def test_counters_are_stored_as_their_shortest_decimal(store: RedisStateStore) -> None:
    await store.incr("a", 0.1)
    await store.incr("a", 0.2)
    await store.incr("b", 3)
    await store.incr("c", -1e-7)
    assert await store.get("a") == b"0.30000000000000004"
    assert await store.get("b") == b"3.0"
    assert await store.get("c") == b"-1e-07"
    assert [await store.get(k) for k in "abc"] == [repr(v).encode() for v in (0.1 + 0.2, 3.0, -1e-7)]


async def test_a_script_the_server_does_not_know_is_loaded_on_first_use(store: RedisStateStore) -> None:
    fresh = Script.of("incr", INCR + f"\n-- {store.options.prefix}")  # a new SHA: not in Redis's script cache
    name = store.options.prefix + "v:n"
    assert float(await store._eval(fresh, (name,), ("2.5", ""))) == 2.5
    assert float(await store._eval(fresh, (name,), ("1", ""))) == 3.5
    assert await store.get("n") == b"3.5"


async def test_namespaces_keep_deployments_apart(store: RedisStateStore, redis_url: str, prefix: str) -> None:
    other = create_store({"url": redis_url, "prefix": prefix + "other:"})
    try:
        await store.set("k", b"mine")
        await other.set("k", b"theirs")
        await other.take_tokens("b", rate=1.0, capacity=1.0)
        assert (await store.take_tokens("b", rate=1.0, capacity=1.0)).allowed
        assert await store.get("k") == b"mine"
        assert await other.keys("") == ["k"]
        assert await other.clear() == 2
        assert await store.get("k") == b"mine"
        assert await other.get("k") is None
    finally:
        await other.aclose()


async def test_a_failing_redis_raises_state_unavailable_without_the_password() -> None:
    store = RedisStateStore(RedisOptions(url=DEAD_URL, socket_timeout=500))  # no start-up check
    try:
        for operation in (
            store.get("k"),
            store.incr("k"),
            store.take_tokens("k", rate=1.0, capacity=1.0),
            store.keys(""),
        ):
            with pytest.raises(StateUnavailableError) as caught:
                await operation
            assert str(caught.value).startswith("the Redis state backend at redis://:***@127.0.0.1:1/0 failed: ")
            assert "hunter2-secret-pw" not in str(caught.value)
            assert caught.value.status_code == 503
            assert not caught.value.retryable
            assert not caught.value.failover
    finally:
        await store.aclose()
    # Registered as a secret: any log line or error that quotes the URL is scrubbed.
    assert "hunter2-secret-pw" not in scrub_secrets(f"connecting to {DEAD_URL}")


async def test_a_closed_store_refuses_work(redis_url: str, prefix: str) -> None:
    store = create_store({"url": redis_url, "prefix": prefix})
    await store.set("k", b"v")
    await store.aclose()
    await store.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await store.get("k")
    with pytest.raises(RuntimeError, match="closed"):
        await store.incr("k")


async def test_each_event_loop_gets_its_transport(store: RedisStateStore, anyio_backend: str) -> None:
    await store.ping()
    kind = type(store._transport).__name__
    assert kind == ("_AsyncioTransport" if anyio_backend == "asyncio" else "_ThreadTransport")


async def test_cancelled_operations_leave_the_store_consistent(store: RedisStateStore) -> None:
    with anyio.move_on_after(0):
        await store.incr("c")
    done = 0

    async def bump() -> None:
        nonlocal done
        await store.incr("c")
        done += 1

    with anyio.move_on_after(0.005):
        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(bump)
    # Whatever was cancelled ran once or not at all; the connections still work.
    value = await store.incr("c")
    raw_total = value - 1.0
    assert done <= raw_total <= 201
    assert await store.incr("c") == value + 1.0
    assert await store.ping() < 1.0


async def test_status_helpers(store: RedisStateStore) -> None:
    info = await store.server_info()
    assert info["redis_version"].split(".")[0].isdigit()
    assert info["maxmemory_policy"]
    assert 0 < await store.ping() < 1.0


async def test_a_url_without_password_is_shown_as_is() -> None:
    url = "redis://127.0.0.1:1/0"
    store = RedisStateStore(RedisOptions(url=url, socket_timeout=500))
    try:
        with pytest.raises(StateUnavailableError) as caught:
            await store.get("k")
    finally:
        await store.aclose()
    # Only passwords are registered with the log redaction, not whole URLs.
    assert scrub_secrets(str(caught.value)) == str(caught.value)
    assert f"the Redis state backend at {url} failed" in str(caught.value)
