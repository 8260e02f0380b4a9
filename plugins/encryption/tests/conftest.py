"""Shared set-up of the encryption plugin's tests.

Only the kernel's plugins load from entry points: the tests register
:class:`~swarmgate_encryption.EncryptionPlugin` (with a fake clock, and no
background refresh unless a test wants one) and the cache plugin in code.
Tests that go through entry points or the CLI widen the list themselves.
Every test gets its own master key in ``$SWARMGATE_MASTER_KEY`` and its own
keyring file. Helpers are fixtures (``--import-mode=importlib``: test
modules cannot import each other or this file).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from swarmgate import MemoryStateStore
from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV
from swarmgate.testing import ScriptedProvider
from swarmgate_encryption import generate_key_text


@pytest.fixture(autouse=True)
def _kernel_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate")
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    monkeypatch.delenv("SWARMGATE_CONFIG", raising=False)


@pytest.fixture(autouse=True)
def master_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh master key (base64 text), set as ``$SWARMGATE_MASTER_KEY``."""
    key = generate_key_text()
    monkeypatch.setenv("SWARMGATE_MASTER_KEY", key)
    return key


class FakeClock:
    """A wall clock the test moves by hand (seconds)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SharedStore(MemoryStateStore):
    """A memory store that outlives the managers using it, standing in for a
    backend shared by several gateways (Redis): closing a manager keeps it."""

    async def aclose(self) -> None:
        return None


@pytest.fixture
def clock() -> FakeClock:
    """A fresh :class:`FakeClock` (``clock.now``, ``clock.advance(s)``)."""
    return FakeClock()


@pytest.fixture
def shared_store(clock: FakeClock) -> SharedStore:
    """A store several managers share (the state backend named ``shared``)."""
    return SharedStore(clock=clock)


@pytest.fixture
def drivers(shared_store: SharedStore) -> dict[str, dict[str, Any]]:
    """``drivers=`` for a ProviderManager: the ``scripted`` provider type and
    the ``shared`` state backend (``shared_store``)."""
    return {
        "swarmgate.providers": {"scripted": ScriptedProvider},
        "swarmgate.state": {"shared": lambda options: shared_store},
    }


@pytest.fixture
def keyring_path(tmp_path: Path) -> Path:
    """This test's SQLite keyring file."""
    return tmp_path / "keys.db"


@pytest.fixture
def make_config(keyring_path: Path) -> Callable[..., dict[str, Any]]:
    """``make_config(backend="shared", caching=None, section=True, **encryption)``:
    one scripted provider ``p`` (model ``m``, priced), the given state
    backend, ``security.encryption`` (``enabled: true``, the test's keyring
    file, and the given keys) and, with ``caching`` a dict,
    ``optimization.caching``."""

    def build(
        *, backend: str = "shared", caching: dict[str, Any] | None = None, section: bool = True, **encryption: Any
    ) -> dict[str, Any]:
        config: dict[str, Any] = {
            "providers": {"p": {"type": "scripted", "models": {"m": {"costPerToken": 0.001}}}},
            "state": {"backend": backend},
        }
        if section:
            config["security"] = {
                "encryption": {"enabled": True, "keyringPath": str(keyring_path), **encryption},
            }
        if caching is not None:
            config["optimization"] = {"caching": {"enabled": True, **caching}}
        return config

    return build
