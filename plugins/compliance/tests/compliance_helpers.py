"""Helpers shared by the compliance plugin's tests (put on ``sys.path`` by conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from swarmgate import ProviderManager, hookimpl
from swarmgate.testing import ScriptedProvider

#: Load only these distributions' entry points in the tests.
ALLOWED = "swarmgate,swarmgate-sim,swarmgate-cache,swarmgate-usage,swarmgate-audit,swarmgate-compliance"
PRICES = {"inputCostPerToken": 0.001, "outputCostPerToken": 0.002}
DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}


def config(tmp: Path, *, compliance: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Providers in three regions (``eu`` in eu-west-1, ``us`` in us-west-2,
    ``nowhere`` without a region; ``us`` first by priority), both logs under ``tmp``."""
    data: dict[str, Any] = {
        "providers": {
            "us": {"type": "scripted", "priority": 1, "region": "us-west-2", "models": {"m": dict(PRICES)}},
            "eu": {"type": "scripted", "priority": 2, "region": "eu-west-1", "models": {"m": dict(PRICES)}},
            "nowhere": {"type": "scripted", "priority": 3, "models": {"m": dict(PRICES)}},
        },
        "monitoring": {"usageLog": {"path": str(tmp / "usage.db")}},
        "security": {"audit": {"path": str(tmp / "audit.db")}, "compliance": compliance or {}},
    }
    data.update(extra)
    return data


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


class FakeEncryption:
    """The encryption service's interface over AES-256-GCM with one key."""

    def __init__(self) -> None:
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        return self._aead.decrypt(blob[:12], blob[12:], aad)


class FakeEncryptionPlugin:
    """Publishes a :class:`FakeEncryption` as ``extensions["encryption"]`` (tryfirst, like the real one)."""

    def __init__(self) -> None:
        self.service = FakeEncryption()

    @hookimpl(tryfirst=True)
    def plugin_setup(self, manager: ProviderManager) -> None:
        manager.extensions["encryption"] = self.service
