"""Helpers shared by the Redis backend's tests (imported by name: the
conftest puts this directory on ``sys.path``).

The tests talk to the real Redis at ``127.0.0.1:6379`` (db 0; override with
``SWARMGATE_TEST_REDIS_URL``), each under a namespace of its own
(``swarmgate-test:<random>:``) that is removed afterwards.
"""

from __future__ import annotations

import functools
import os
import uuid

import pytest
import redis

URL = os.environ.get("SWARMGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: A loopback port nothing listens on (connections are refused at once).
DEAD_URL = "redis://:hunter2-secret-pw@127.0.0.1:1/0"


@functools.cache
def _probe(url: str) -> str | None:
    """``None`` if Redis answers at ``url``, else why not."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def require_redis() -> str:
    """The test Redis's URL; skips the test, saying why, when none answers."""
    error = _probe(URL)
    if error is not None:
        pytest.skip(f"needs Redis at 127.0.0.1:6379: {error}")
    return URL


def unique_prefix() -> str:
    """A key namespace no other test (or test run) uses."""
    return f"swarmgate-test:{uuid.uuid4().hex[:16]}:"


def raw_keys(url: str, prefix: str) -> list[str]:
    """Every Redis key under ``prefix``, sorted (a plain client, not the store)."""
    client = redis.Redis.from_url(url)
    try:
        return sorted(k.decode() for k in client.scan_iter(match=prefix + "*", count=1000))
    finally:
        client.close()


def remove_prefix(url: str, prefix: str) -> None:
    """Delete every Redis key under ``prefix``."""
    names = raw_keys(url, prefix)
    if names:
        client = redis.Redis.from_url(url)
        try:
            client.unlink(*names)
        finally:
            client.close()
