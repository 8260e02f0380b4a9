"""``state.options`` for the redis backend: every mistake is a ConfigError
naming its path; a Redis that does not answer is a clear start-up error."""

from __future__ import annotations

from typing import Any

import pytest
from redis_helpers import DEAD_URL

from swarmgate import ConfigError, ProviderManager, registry
from swarmgate.testing import ScriptedProvider
from swarmgate_redis import (
    DEFAULT_PREFIX,
    DEFAULT_URL,
    RedisOptions,
    RedisStateStore,
    StateUnavailableError,
    create_store,
    mask_url,
)

DRIVERS: dict[str, Any] = {"swarmgate.providers": {"scripted": ScriptedProvider}}


def gateway(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "providers": {"a": {"type": "scripted", "models": {"m": {}}}},
        "state": {"backend": "redis", "options": options},
    }


def test_defaults() -> None:
    options = RedisOptions()
    assert options.url == DEFAULT_URL == "redis://127.0.0.1:6379/0"
    assert options.prefix == DEFAULT_PREFIX == "swarmgate:"
    assert options.socket_timeout == 5000.0
    assert options.timeout_seconds == 5.0
    assert options.max_connections == 50


@pytest.mark.parametrize(
    ("options", "path", "message"),
    [
        ({"url": "http://127.0.0.1:6379"}, "state.options.url", "expected a redis://, rediss:// or unix:// URL"),
        ({"url": "redis://"}, "state.options.url", "names no host"),
        ({"url": "redis://localhost:6379/zero"}, "state.options.url", "database must be a number"),
        ({"url": "redis://localhost:99999/0"}, "state.options.url", "not a valid URL"),
        ({"url": "unix://"}, "state.options.url", "needs a socket path"),
        ({"url": 6379}, "state.options.url", "expected a string"),
        ({"url": "redis://h/0?socket_timeout=9"}, "state.options.url", "unsupported URL parameter 'socket_timeout'"),
        ({"url": "redis://h/0?ssl_ca_certs=/ca.pem"}, "state.options.url", "ssl_ca_certs needs a rediss://"),
        ({"prefix": ""}, "state.options.prefix", "must not be empty"),
        ({"socketTimeout": 0}, "state.options.socketTimeout", "positive number of milliseconds"),
        ({"socketTimeout": "fast"}, "state.options.socketTimeout", "expected a number"),
        ({"maxConnections": 0}, "state.options.maxConnections", "at least 1"),
        ({"maxConnections": 2.5}, "state.options.maxConnections", "integer"),
        ({"host": "localhost"}, "state.options.host", "unknown key"),
    ],
)
def test_each_bad_option_names_its_path(options: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_store(options)
    assert [p for p, _ in caught.value.problems] == [path]
    assert message in caught.value.problems[0][1]


def test_a_password_never_shows_in_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        create_store({"url": "http://user:hunter2-secret-pw@localhost:6379/0"})
    assert "hunter2-secret-pw" not in str(caught.value)
    assert "user:***@localhost:6379" in str(caught.value)


def test_mask_url() -> None:
    assert mask_url("redis://:pw1234@host:6379/0") == "redis://:***@host:6379/0"
    assert mask_url("rediss://alice:pw1234@host/2") == "rediss://alice:***@host/2"
    assert mask_url("redis://host:6379/0") == "redis://host:6379/0"
    assert mask_url("unix:///run/redis.sock?db=1") == "unix:///run/redis.sock?db=1"


def test_the_entry_point_is_the_factory() -> None:
    assert registry.load_driver(registry.STATE, "redis") is create_store


def test_an_unreachable_redis_is_a_clear_error_at_creation() -> None:
    with pytest.raises(StateUnavailableError) as caught:
        create_store({"url": DEAD_URL, "socketTimeout": 1000})
    message = str(caught.value)
    assert message.startswith("cannot reach Redis at redis://:***@127.0.0.1:1/0 (state.options.url): ")
    assert "hunter2-secret-pw" not in message
    assert caught.value.status_code == 503


@pytest.mark.anyio
async def test_a_gateway_on_an_unreachable_redis_does_not_start() -> None:
    manager = ProviderManager(gateway({"url": DEAD_URL}), drivers=DRIVERS)
    with pytest.raises(StateUnavailableError, match=r"cannot reach Redis at redis://:\*\*\*@127.0.0.1:1/0"):
        await manager.initialize()


@pytest.mark.anyio
async def test_a_gateway_with_a_bad_option_names_it(redis_url: str) -> None:
    manager = ProviderManager(gateway({"url": redis_url, "maxConections": 5}), drivers=DRIVERS)
    with pytest.raises(ConfigError, match=r"state.options.maxConections: unknown key"):
        await manager.initialize()


def test_wrong_credentials_are_a_config_error(redis_url: str) -> None:
    url = redis_url.replace("redis://", "redis://nobody:wrong-password-1@", 1)
    with pytest.raises(ConfigError) as caught:
        create_store({"url": url})
    (path, message), *_ = caught.value.problems
    assert path == "state.options.url"
    assert "refused the credentials" in message or "needs a password" in message
    assert "wrong-password-1" not in str(caught.value)


@pytest.mark.anyio
async def test_a_gateway_on_redis_uses_the_store(redis_url: str, prefix: str) -> None:
    async with ProviderManager(gateway({"url": redis_url, "prefix": prefix}), drivers=DRIVERS) as manager:
        assert isinstance(manager.state, RedisStateStore)
        assert manager.state.options.prefix == prefix
        await manager.state.set("hello", b"world")
        assert (await manager.complete(prompt="hi", model="a/m")).content == "ok"
    async with ProviderManager(gateway({"url": redis_url, "prefix": prefix}), drivers=DRIVERS) as again:
        assert await again.state.get("hello") == b"world"  # a restarted gateway finds the state
