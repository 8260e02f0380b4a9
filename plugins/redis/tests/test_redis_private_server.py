"""Against a private ``redis-server`` of the test's own: a password, TLS,
and a Redis that goes away and comes back (the pooled connections and the
script cache recover; a gateway answers 503 meanwhile)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from redis_helpers import PrivateRedis

from swarmgate import ConfigError, ProviderManager
from swarmgate.logs import scrub_secrets
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import ScriptedProvider
from swarmgate_redis import StateUnavailableError, create_store

pytestmark = pytest.mark.anyio

PASSWORD = "s3cret-redis-password"


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, password=PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, ca=trustme.CA())
    server.start()
    yield server
    server.stop()


async def test_a_password_protected_redis(locked_redis: PrivateRedis) -> None:
    store = create_store({"url": locked_redis.url})
    try:
        assert (await store.take_tokens("b", rate=1.0, capacity=2.0)).allowed
        assert store.display_url == f"redis://:***@127.0.0.1:{locked_redis.port}/0"
    finally:
        await store.aclose()
    assert PASSWORD not in scrub_secrets(f"url={locked_redis.url}")
    wrong = locked_redis.url.replace(PASSWORD, "not-the-password")
    with pytest.raises(ConfigError, match=r"state\.options\.url: Redis at .* refused the credentials") as caught:
        create_store({"url": wrong})
    assert "not-the-password" not in str(caught.value)
    with pytest.raises(ConfigError, match="refused the credentials"):
        create_store({"url": f"redis://127.0.0.1:{locked_redis.port}/0"})


async def test_tls(tls_redis: PrivateRedis) -> None:
    store = create_store({"url": tls_redis.url})
    try:
        assert await store.incr("c", 2.0) == 2.0
        assert await store.window_add("w", 1.0, 10.0) == 1.0
        assert await store.keys("") == ["c"]
    finally:
        await store.aclose()
    # Without the CA the server's certificate is not trusted.
    with pytest.raises(StateUnavailableError, match=r"cannot reach Redis at rediss://127\.0\.0\.1"):
        create_store({"url": f"rediss://127.0.0.1:{tls_redis.port}/0", "socketTimeout": 2000})


async def test_a_redis_that_goes_away_and_comes_back(private_redis: PrivateRedis) -> None:
    store = create_store({"url": private_redis.url, "socketTimeout": 2000})
    try:
        assert (await store.take_tokens("b", rate=1e-6, capacity=2.0)).remaining == pytest.approx(1.0)
        assert await store.incr("c") == 1.0
        private_redis.stop()
        with pytest.raises(StateUnavailableError, match=r"the Redis state backend at redis://127\.0\.0\.1"):
            await store.incr("c")
        private_redis.start()  # empty again (no persistence), and it knows no script
        # The stale pooled connections are replaced, the scripts reloaded.
        assert await store.incr("c") == 1.0
        assert (await store.take_tokens("b", rate=1e-6, capacity=2.0)).remaining == pytest.approx(1.0)
        assert await store.window_add("w", 1.0, 10.0) == 1.0
        assert await store.delete("b", "c", "w") == 3
    finally:
        await store.aclose()


async def test_a_gateway_whose_redis_goes_away_answers_503_and_recovers(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-redis,swarmgate-ratelimit")
    config = {
        "providers": {"a": {"type": "scripted", "models": {"m": {}}}},
        "optimization": {"rateLimiting": {"requestsPerMinute": 600}},
        "state": {"backend": "redis", "options": {"url": private_redis.url, "socketTimeout": 2000}},
    }
    drivers: dict[str, Any] = {"swarmgate.providers": {"scripted": ScriptedProvider}}
    async with ProviderManager(config, drivers=drivers) as manager:
        assert (await manager.complete(prompt="hi", model="a/m")).content == "ok"
        private_redis.stop()
        with pytest.raises(StateUnavailableError) as caught:
            await manager.complete(prompt="hi", model="a/m")
        assert caught.value.status_code == 503
        provider = manager.provider("a")
        assert isinstance(provider, ScriptedProvider)
        assert len(provider.calls) == 1  # refused before any provider was called
        private_redis.start()
        assert (await manager.complete(prompt="hi", model="a/m")).content == "ok"
