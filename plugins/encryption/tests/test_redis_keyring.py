"""Two gateways on a real Redis (``state.backend: redis``, the test Redis at
127.0.0.1:6379 under a prefix of this test's own, removed afterwards): the
keyring lives in Redis, so the second gateway reads the cache entries the
first one encrypted, a rotation made by one is read by the other, and an
entry modified in Redis is refused."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from swarmgate import CompletionRequest, ProviderManager
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import ScriptedProvider
from swarmgate_cache import CachePlugin, ResponseCache
from swarmgate_encryption import EncryptionPlugin, EncryptionService, StateKeyStore, key_id_of

pytestmark = pytest.mark.anyio

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-redis")
    name = f"swarmgate-test-encryption-{uuid.uuid4().hex[:12]}:"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{name}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def gateway(prefix: str) -> Callable[[], ProviderManager]:
    config: dict[str, Any] = {
        "providers": {"p": {"type": "scripted", "models": {"m": {}}}},
        "state": {"backend": "redis", "options": {"url": REDIS_URL, "prefix": prefix}},
        "security": {"encryption": {"enabled": True, "keyRotation": 86_400_000}},
        "optimization": {"caching": {"enabled": True, "statsInterval": 0}},
    }

    def build() -> ProviderManager:
        return ProviderManager(
            config,
            drivers={"swarmgate.providers": {"scripted": ScriptedProvider}},
            plugins=[EncryptionPlugin(background=False), CachePlugin()],
        )

    return build


def services(manager: ProviderManager) -> tuple[EncryptionService, ResponseCache, ScriptedProvider]:
    service, cache, provider = manager.extensions["encryption"], manager.extensions["cache"], manager.provider("p")
    assert isinstance(service, EncryptionService)
    assert isinstance(cache, ResponseCache)
    assert isinstance(provider, ScriptedProvider)
    return service, cache, provider


async def test_gateways_share_the_keyring_and_the_encrypted_cache_through_redis(
    gateway: Callable[[], ProviderManager], prefix: str
) -> None:
    ask = {"prompt": "shared question", "model": "p/m", "temperature": 0}
    async with gateway() as one, gateway() as two:
        first, cache_one, provider_one = services(one)
        second, _, provider_two = services(two)
        assert isinstance(first.store, StateKeyStore)
        assert first.status()["keyring"] == "state:redis"
        assert first.current_key_id() == second.current_key_id()
        provider_one.push("answered by one")
        await one.complete(**ask)
        served = await two.complete(**ask)
        assert (served.content, served.cached) == ("answered by one", True)
        assert provider_two.calls == []
        # The entry in Redis is an envelope without the plaintext; the keyring is there too.
        name = "cache:default:e:" + cache_one.key_for(
            CompletionRequest.create("shared question", model="p/m", temperature=0)
        )
        raw = await two.state.get(name)
        keyring = await two.state.keys("encryption:keys:")
        assert isinstance(raw, bytes)
        assert b"answered by one" not in raw
        assert key_id_of(raw) == first.current_key_id()
        assert sorted(keyring) == ["encryption:keys:1", "encryption:keys:2", "encryption:keys:seq"]
        client = redis.Redis.from_url(REDIS_URL)
        try:  # and it is really in Redis, under this test's prefix
            assert any(b"encryption:keys:" in k for k in client.scan_iter(match=f"{prefix}*"))
        finally:
            client.close()
        # A rotation by one: two learns the key at its next refresh and reads what one writes.
        new_key = await first.rotate()
        await second.refresh()
        assert second.decrypt(first.encrypt(b"after rotation", b"x"), b"x") == b"after rotation"
        assert second.current_key_id() == new_key
        # An entry modified in Redis is refused by both gateways.
        stored = await one.state.get(name)
        assert stored is not None
        await one.state.set(name, stored[:-1] + bytes([stored[-1] ^ 1]))
        provider_two.push("fresh from two")
        refused = await two.complete(**ask)
        assert (refused.content, refused.cached) == ("fresh from two", False)
        assert (await cache_one.stats())["tampered"] == 1
