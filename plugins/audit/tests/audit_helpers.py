"""Helpers shared by the audit plugin's tests (put on ``sys.path`` by conftest.py)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from swarmgate import ProviderManager, hookimpl
from swarmgate.testing import ScriptedProvider
from swarmgate_audit import AuditLog

#: Load only these distributions' entry points in the tests (compliance: the
#: ``security.compliance`` switches the redaction tests set need their plugin).
ALLOWED = "swarmgate,swarmgate-sim,swarmgate-audit,swarmgate-compliance"
PRICES = {"inputCostPerToken": 0.001, "outputCostPerToken": 0.002}
DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}


def config(db: Path, *, audit: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Two scripted providers (``a`` first, ``b`` its fallback), a route
    ``fast`` over both, the audit log at ``db``."""
    data: dict[str, Any] = {
        "providers": {
            "a": {"type": "scripted", "priority": 1, "models": {"ma": dict(PRICES)}},
            "b": {"type": "scripted", "priority": 2, "models": {"mb": dict(PRICES)}},
        },
        "routing": {"fallbackChains": [["a", "b"]]},
        "routes": {"fast": {"targets": ["a/ma", "b/mb"], "ordered": True}},
        "security": {"audit": {"path": str(db), **(audit or {})}},
    }
    for key, value in extra.items():
        if key == "security":
            data["security"].update(value)
        else:
            data[key] = value
    return data


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


def audit_of(manager: ProviderManager) -> AuditLog:
    audit = manager.extensions["audit"]
    assert isinstance(audit, AuditLog)
    return audit


async def started(path: Path, **options: Any) -> AuditLog:
    audit = AuditLog(path, **options)
    await anyio.to_thread.run_sync(audit.start)
    return audit


def sql(path: Path, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on the file, as an attacker with file access would."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(statement, params).fetchall()
    conn.close()
    return rows


def stored_bytes(path: Path) -> bytes:
    """Everything the log wrote to disk: the database and its WAL, if any."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


class TamperedError(Exception):
    """What the fake encryption service raises for a record that fails authentication."""


class FakeEncryption:
    """The encryption service's interface (``encrypt``/``decrypt`` with
    associated data, ``TamperedError``) over AES-256-GCM with one key."""

    def __init__(self) -> None:
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self.calls = 0

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        self.calls += 1
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[:12], blob[12:], aad)
        except InvalidTag:
            raise TamperedError("record failed authentication") from None


class FakeEncryptionPlugin:
    """Publishes a :class:`FakeEncryption` as ``extensions["encryption"]``."""

    def __init__(self) -> None:
        self.service = FakeEncryption()

    @hookimpl
    def plugin_setup(self, manager: ProviderManager) -> None:
        manager.extensions["encryption"] = self.service
