"""Shared set-up of the Redis state backend's tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV

sys.path.insert(0, str(Path(__file__).parent))  # redis_helpers (tests run with --import-mode=importlib)

from redis_helpers import PrivateRedis, remove_prefix, require_redis, unique_prefix


@pytest.fixture(autouse=True)
def _kernel_and_redis_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kernel's plugins and this one load from entry points; a test
    that runs other plugins next to the backend widens the list itself."""
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-redis")
    monkeypatch.delenv(BLOCK_ENV, raising=False)


@pytest.fixture
def redis_url() -> str:
    """The test Redis's URL (the test is skipped, saying why, when none answers)."""
    return require_redis()


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A namespace of this test's own, removed from Redis afterwards."""
    name = unique_prefix()
    yield name
    remove_prefix(redis_url, name)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private ``redis-server`` on a free loopback port, stopped afterwards."""
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()
