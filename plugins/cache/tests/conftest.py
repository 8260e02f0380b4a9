"""Shared set-up of the cache plugin's tests.

Only the kernel's plugins and the openai driver load from entry points: the
tests register :class:`~swarmgate_cache.CachePlugin` in code (with injected
clocks where they need them), and another installed plugin (retry, breaker,
...) must not change what they observe. Tests that go through the cache's
own entry point or the CLI widen the list themselves. Helpers are fixtures
(``--import-mode=importlib``: test modules cannot import each other or this
file).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from swarmgate import MemoryStateStore
from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _kernel_and_openai_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai")
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    monkeypatch.delenv("SWARMGATE_CONFIG", raising=False)


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SharedStore(MemoryStateStore):
    """A memory store that outlives the managers using it, standing in for a
    backend shared by several gateway instances (closing a manager does not
    clear it)."""

    async def aclose(self) -> None:
        return None


@pytest.fixture
def clock() -> FakeClock:
    """A fresh :class:`FakeClock` (``clock.now``, ``clock.advance(s)``)."""
    return FakeClock()


@pytest.fixture
def shared_store(clock: FakeClock) -> SharedStore:
    """A store several managers share, expiring entries on ``clock``."""
    return SharedStore(clock=clock)


@pytest.fixture
def state_drivers(shared_store: SharedStore) -> dict[str, dict[str, Any]]:
    """``drivers=`` for a ProviderManager whose ``memory`` backend is ``shared_store``."""
    return {"swarmgate.state": {"memory": lambda options: shared_store}}


@pytest.fixture
def make_config() -> Callable[..., dict[str, Any]]:
    """``make_config(url, **caching)``: two openai providers (``a`` with
    models ``m`` and ``n``, ``b`` with ``m``) on the upstream at ``url``,
    priced at 0.001 per token, and ``optimization.caching`` with
    ``enabled: true`` and the given keys (``section=False`` leaves it out)."""

    def build(url: str, *, section: bool = True, **keys: Any) -> dict[str, Any]:
        price = {"costPerToken": 0.001}
        config: dict[str, Any] = {
            "providers": {
                "a": {
                    "type": "openai",
                    "endpoint": url,
                    "apiKey": "sk-test-a",
                    "priority": 1,
                    "models": {"m": dict(price), "n": dict(price)},
                },
                "b": {"type": "openai", "endpoint": url, "apiKey": "sk-test-b", "priority": 2, "models": {"m": price}},
            },
        }
        if section:
            config["optimization"] = {"caching": {"enabled": True, **keys}}
        return config

    return build
