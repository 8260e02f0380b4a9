"""The cache's store: TTLs, LRU/FIFO eviction at ``maxSize``, each
invalidation strategy, provider changes, tampered entries, counters, and
two gateway instances sharing one backend. Real loopback upstream (the
``openai`` provider type); the StateStore and wall clock run on a fake
clock."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from swarmgate import CompletionRequest, PluginError, ProviderManager, hookimpl
from swarmgate.testing import FakeUpstream, ScriptedReply
from swarmgate_cache import CachePlugin, ResponseCache

pytestmark = pytest.mark.anyio

Config = Callable[..., dict[str, Any]]

#: The entries :func:`populated` stores: prompt -> (model, tags).
ENTRIES = {"one": ("a/m", ["t1"]), "two": ("a/n", ["t2"]), "three": ("b/m", ["t1", "t2"])}


def ask(prompt: str, model: str = "a/m", **fields: Any) -> dict[str, Any]:
    return {"prompt": prompt, "model": model, "temperature": 0, **fields}


async def cached(manager: ProviderManager, prompt: str) -> bool:
    model, tags = ENTRIES[prompt]
    return (await manager.complete(**ask(prompt, model, tags=tags))).cached


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(default=ScriptedReply(content="an answer")) as server:
        yield server


@pytest.fixture
def gateway(make_config: Config, upstream: FakeUpstream, clock: Any, state_drivers: Any) -> Callable[..., Any]:
    """``gateway(**caching)``: a manager with the cache on the shared store and fake clock."""

    def build(*extra_plugins: object, **caching: Any) -> ProviderManager:
        return ProviderManager(
            make_config(upstream.url, **caching),
            plugins=[*extra_plugins, CachePlugin(clock=clock, monotonic=clock)],
            drivers=state_drivers,
        )

    return build


async def populate(manager: ProviderManager, clock: Any, gap: float = 0.0) -> None:
    for prompt, (model, tags) in ENTRIES.items():
        await manager.complete(**ask(prompt, model, tags=tags))
        clock.advance(gap)


def cache_of(manager: ProviderManager) -> ResponseCache:
    service = manager.extensions["cache"]
    assert isinstance(service, ResponseCache)
    return service


# -- expiry ---------------------------------------------------------------------


async def test_entries_expire_after_the_configured_ttl(gateway: Any, upstream: FakeUpstream, clock: Any) -> None:
    async with gateway(ttl=60_000) as manager:
        await manager.complete(**ask("q"))
        clock.advance(59)
        assert (await manager.complete(**ask("q"))).cached
        clock.advance(2)
        assert not (await manager.complete(**ask("q"))).cached
        assert len(upstream.completions) == 2
        assert await manager.state.keys("cache:default:ix:") != []  # the new answer, indexed


async def test_a_request_ttl_overrides_the_configured_one(gateway: Any, upstream: FakeUpstream, clock: Any) -> None:
    async with gateway(ttl=60_000) as manager:
        await manager.complete(**ask("short", cache={"ttl": 5}))
        await manager.complete(**ask("long", cache={"ttl": 600}))
        clock.advance(6)
        assert not (await manager.complete(**ask("short"))).cached
        clock.advance(100)  # past the configured minute, within the request's ten
        assert (await manager.complete(**ask("long"))).cached
        assert len(upstream.completions) == 3


# -- eviction -------------------------------------------------------------------


async def test_lru_evicts_the_least_recently_used_entry(gateway: Any, upstream: FakeUpstream) -> None:
    async with gateway(maxSize=2) as manager:
        await manager.complete(**ask("q1"))
        await manager.complete(**ask("q2", tags=["x"]))
        assert (await manager.complete(**ask("q1"))).cached  # q1 is now the most recent
        await manager.complete(**ask("q3"))  # evicts q2
        stats = await cache_of(manager).stats()
        assert (stats["entries"], stats["evictions"], stats["local_entries"]) == (2, 1, 2)
        # q2's index keys went with it
        assert await manager.state.keys("cache:default:tag:") == []
        assert len(await manager.state.keys("cache:default:ix:")) == 2
        assert (await manager.complete(**ask("q1"))).cached
        assert (await manager.complete(**ask("q3"))).cached
        assert not (await manager.complete(**ask("q2"))).cached
        assert len(upstream.completions) == 4


async def test_fifo_evicts_the_oldest_entry_whatever_its_hits(gateway: Any, upstream: FakeUpstream) -> None:
    async with gateway(maxSize=2, strategy="fifo") as manager:
        await manager.complete(**ask("q1"))
        await manager.complete(**ask("q2"))
        assert (await manager.complete(**ask("q1"))).cached
        await manager.complete(**ask("q3"))  # evicts q1, the first stored
        assert (await manager.complete(**ask("q2"))).cached
        assert not (await manager.complete(**ask("q1"))).cached
        assert len(upstream.completions) == 4


# -- invalidation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("criteria", "removed"),
    [
        ({"provider": "a"}, {"one", "two"}),
        ({"provider": "b"}, {"three"}),
        ({"model": "m"}, {"one", "three"}),
        ({"tag": "t1"}, {"one", "three"}),
        ({"tag": "t2", "provider": "a"}, {"two"}),
        ({"older_than": 50.0}, {"one", "two"}),
        ({"older_than": 150.0}, {"one"}),
        ({"older_than": 250.0}, set()),
        ({"older_than": 0.0}, {"one", "two", "three"}),
        ({"model": "m", "older_than": 50.0}, {"one"}),
        ({"provider": "nobody"}, set()),
        ({"all": True}, {"one", "two", "three"}),
    ],
)
async def test_invalidation_strategies(gateway: Any, clock: Any, criteria: dict[str, Any], removed: set[str]) -> None:
    async with gateway() as manager:
        await populate(manager, clock, gap=100.0)  # one at t0, two at t0+100, three at t0+200; now t0+300
        clock.advance(-100.0)  # now t0+200: one is 200 s old, two 100 s, three 0 s
        assert await cache_of(manager).invalidate(**criteria) == len(removed)
        stats = await cache_of(manager).stats()
        assert stats["entries"] == 3 - len(removed)
        assert stats["invalidated"] == len(removed)
        assert len(await manager.state.keys("cache:default:ix:")) == 3 - len(removed)
        for prompt in ENTRIES:
            assert await cached(manager, prompt) is (prompt not in removed), prompt


async def test_invalidation_by_key(gateway: Any, clock: Any) -> None:
    async with gateway() as manager:
        await populate(manager, clock)
        cache = cache_of(manager)
        key = cache.key_for(CompletionRequest.create("two", model="a/n", temperature=0))
        assert await cache.invalidate(key=key) == 1
        assert await cache.invalidate(key=key) == 0
        assert [k for k in await manager.state.keys("cache:default:") if k.endswith(key)] == []
        assert [await cached(manager, p) for p in ENTRIES] == [True, False, True]


async def test_tag_and_provider_names_with_separators(gateway: Any, clock: Any) -> None:
    async with gateway() as manager:
        await manager.complete(**ask("q", tags=["team:a/b", "plain"]))
        assert await cache_of(manager).invalidate(tag="team") == 0
        assert await cache_of(manager).invalidate(tag="team:a/b") == 1


async def test_invalidate_refuses_unclear_orders(gateway: Any) -> None:
    async with gateway() as manager:
        cache = cache_of(manager)
        with pytest.raises(ValueError, match="needs a criterion"):
            await cache.invalidate()
        with pytest.raises(ValueError, match="no other criterion"):
            await cache.invalidate(all=True, provider="a")
        with pytest.raises(ValueError, match="non-negative"):
            await cache.invalidate(older_than=-1)


async def test_provider_changes_drop_what_may_change_its_answers(
    gateway: Any, clock: Any, upstream: FakeUpstream
) -> None:
    async with gateway() as manager:
        await populate(manager, clock)
        await manager.update_provider("a", {"priority": 5, "apiKey": "sk-rotated", "weight": 2.0})
        assert await cached(manager, "one")  # nothing that changes answers changed
        await manager.update_provider("a", {"headers": {"X-Tenant": "blue"}})
        assert not await cached(manager, "one")
        assert not await cached(manager, "two")
        assert await cached(manager, "three")
        await manager.remove_provider("b")
        assert await manager.state.keys("cache:default:ix:b:") == []
        await manager.add_provider("b", {"type": "openai", "endpoint": upstream.url, "models": {"m": {}}})
        assert not await cached(manager, "three")
        stats = await cache_of(manager).stats()
    assert stats["invalidated"] == 3


# -- tampering -------------------------------------------------------------------


class SigningCodec:
    """An HMAC-SHA256 tag in front of each value; a value without the right
    tag raises on decode (what an authenticated cipher does)."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.hash_key = secret

    def _tag(self, data: bytes) -> bytes:
        return hmac.new(self.secret, data, hashlib.sha256).digest()

    def encode(self, data: bytes) -> bytes:
        return self._tag(data) + data

    def decode(self, data: bytes) -> bytes:
        tag, body = data[:32], data[32:]
        if not hmac.compare_digest(tag, self._tag(body)):
            raise ValueError("authentication tag mismatch")
        return body


class CodecPlugin:
    """Publishes a codec in its plugin_setup, as an encryption plugin would."""

    def __init__(self, codec: object) -> None:
        self.codec = codec

    @hookimpl
    def plugin_setup(self, manager: ProviderManager) -> None:
        manager.extensions["cache_codec"] = self.codec


async def test_a_tampered_entry_is_refused_counted_and_replaced(gateway: Any, upstream: FakeUpstream) -> None:
    codec = SigningCodec(b"0123456789abcdef")
    # Registered after the cache plugin would normally set up first; trylast makes the cache pick it up.
    async with gateway(CodecPlugin(codec)) as manager:
        cache = cache_of(manager)
        assert cache.codec is codec
        await manager.complete(**ask("q"))
        (entry_key,) = await manager.state.keys("cache:default:e:")
        stored = await manager.state.get(entry_key)
        assert stored is not None
        assert b"an answer" in stored
        assert not stored.startswith(b"{")
        assert (await manager.complete(**ask("q"))).cached
        await manager.state.set(entry_key, stored.replace(b"an answer", b"a forgery"))
        with capture_logs() as logs:
            response = await manager.complete(**ask("q"))
        assert not response.cached
        assert response.content == "an answer"
        (warning,) = [e for e in logs if e.get("log_level") == "warning"]
        assert warning["event"] == "cache_entry_tampered"
        assert "authentication tag mismatch" in warning["error"]
        stats = await cache.stats()
        assert (stats["tampered"], stats["hits"], stats["misses"], stats["stores"]) == (1, 1, 2, 2)
        assert (await manager.complete(**ask("q"))).cached  # the fresh answer replaced it
        assert len(upstream.completions) == 2


async def test_corrupt_values_are_tampered_entries_too(gateway: Any) -> None:
    async with gateway() as manager:
        await manager.complete(**ask("q"))
        (entry_key,) = await manager.state.keys("cache:default:e:")
        for junk in (b"not json", b"[1, 2]", b'{"content": 1}'):
            await manager.state.set(entry_key, junk)
            assert not (await manager.complete(**ask("q"))).cached
        assert (await cache_of(manager).stats())["tampered"] == 3


async def test_a_codec_hash_key_keys_the_hash(gateway: Any, make_config: Config) -> None:
    request = CompletionRequest.create("q", model="a/m", temperature=0)
    async with gateway(CodecPlugin(SigningCodec(b"k" * 16))) as keyed:
        keyed_key = cache_of(keyed).key_for(request)
    async with gateway() as plain:
        plain_key = cache_of(plain).key_for(request)
    assert len(keyed_key) == len(plain_key) == 32
    assert keyed_key != plain_key


async def test_something_else_as_codec_is_a_plugin_error(gateway: Any) -> None:
    with pytest.raises(PluginError, match=r"cache_codec.*encode"):
        async with gateway(CodecPlugin("rot13")):
            pass


# -- counters and sharing ------------------------------------------------------------


async def test_stats_count_hits_misses_and_cost_saved(gateway: Any, clock: Any) -> None:
    async with gateway(statsInterval=60_000) as manager:
        first = await manager.complete(**ask("q"))
        await manager.complete(**ask("q"))
        await manager.complete(**ask("q"))
        await manager.complete(prompt="creative", model="a/m", temperature=0.9)
        # batched: the first lookup wrote its miss, the rest waits for the interval
        assert await manager.state.get("cache:default:stat:hits") is None
        stats = await cache_of(manager).stats()
        assert await manager.state.get("cache:default:stat:hits") == b"2.0"
    assert stats["hits"] == 2
    assert stats["misses"] == 1
    assert stats["stores"] == 1
    assert stats["skipped"] == 1
    assert stats["hit_ratio"] == pytest.approx(2 / 3)
    assert stats["cost_saved"] == pytest.approx(2 * first.cost)
    assert first.cost > 0
    assert stats["entries"] == 1
    assert (stats["namespace"], stats["backend"], stats["strategy"]) == ("default", "memory", "lru")
    assert (stats["max_size"], stats["ttl_ms"]) == (1000, 3_600_000.0)


async def test_two_gateways_share_entries_and_counters(gateway: Any, upstream: FakeUpstream) -> None:
    async with gateway() as one, gateway() as two:
        await one.complete(**ask("q"))
        hit = await two.complete(**ask("q"))
        assert hit.cached
        assert (await cache_of(one).stats())["hits"] == 1
        stats = await cache_of(two).stats()
        assert (stats["hits"], stats["misses"], stats["stores"], stats["local_entries"]) == (1, 1, 1, 1)
        # an invalidation in one is seen by the other
        assert await cache_of(two).invalidate(provider="a") == 1
        assert not (await one.complete(**ask("q"))).cached
        assert len(upstream.completions) == 2


async def test_namespaces_keep_gateways_apart(gateway: Any, upstream: FakeUpstream) -> None:
    async with gateway(namespace="blue") as blue, gateway(namespace="green") as green:
        await blue.complete(**ask("q"))
        assert not (await green.complete(**ask("q"))).cached
        assert await cache_of(green).invalidate(all=True) == 1
        assert (await blue.complete(**ask("q"))).cached
        assert len(upstream.completions) == 2


async def test_a_starting_gateway_learns_the_entries_already_stored(gateway: Any, clock: Any) -> None:
    async with gateway() as first:
        await populate(first, clock, gap=1.0)
    async with gateway(maxSize=2) as second:  # seeded oldest first: "one" is evicted at once
        stats = await cache_of(second).stats()
        assert (stats["entries"], stats["local_entries"], stats["evictions"]) == (2, 2, 1)
        # hits first: the miss on "one" stores it again and evicts the least recent
        assert [await cached(second, p) for p in ("three", "two", "one")] == [True, True, False]
