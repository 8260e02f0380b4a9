"""GDPR and HIPAA: requests marked personal never reach the cache (the real
cache plugin, loaded from its entry point), audit bodies are redacted (and,
under HIPAA, encrypted), and HIPAA refuses to start without encryption or
the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from compliance_helpers import ALLOWED, DRIVERS, FakeEncryptionPlugin, config, scripted

from swarmgate import ConfigError, ProviderManager
from swarmgate.plugins import ALLOW_ENV
from swarmgate_audit import AuditLog, open_bodies
from swarmgate_encryption import generate_key_text

pytestmark = pytest.mark.anyio

CACHING = {"optimization": {"caching": {"enabled": True, "cacheNonDeterministic": True}}}


async def calls_for(manager: ProviderManager, **fields: Any) -> tuple[int, list[bool]]:
    """Send the same request twice; how many upstream calls, and which answers were cached."""
    before = len(scripted(manager, "us").calls)
    cached = []
    for _ in range(2):
        response = await manager.complete(prompt="my phone is +44 20 7946 0958", model="us/m", **fields)
        cached.append(response.cached)
    return len(scripted(manager, "us").calls) - before, cached


async def test_gdpr_keeps_personal_requests_out_of_the_cache(tmp_path: Path) -> None:
    async with ProviderManager(config(tmp_path, compliance={"gdpr": True}, **CACHING), drivers=DRIVERS) as manager:
        assert await calls_for(manager, tags=("personal",)) == (2, [False, False])
        assert await calls_for(manager, metadata={"personal": True}) == (2, [False, False])
        assert await calls_for(manager, tags=("other",)) == (1, [False, True])  # not personal: cached
        cache = manager.extensions["cache"]
        stats = await cache.stats()
    assert stats["hits"] == 1


async def test_the_personal_tag_is_configurable(tmp_path: Path) -> None:
    cfg = config(tmp_path, compliance={"gdpr": True, "personalDataTag": "pii"}, **CACHING)
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        assert await calls_for(manager, tags=("pii",)) == (2, [False, False])
        assert await calls_for(manager, tags=("personal",)) == (1, [False, True])


async def test_without_gdpr_personal_requests_are_cached(tmp_path: Path) -> None:
    async with ProviderManager(config(tmp_path, **CACHING), drivers=DRIVERS) as manager:
        assert await calls_for(manager, tags=("personal",)) == (1, [False, True])


async def test_gdpr_redacts_the_audit_bodies(tmp_path: Path) -> None:
    cfg = config(tmp_path, compliance={"gdpr": True})
    cfg["security"]["audit"]["includeBodies"] = True
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        await manager.complete(prompt="reach me at ann@example.com", model="us/m", caller="ann")
        audit = manager.extensions["audit"]
        assert isinstance(audit, AuditLog)
        await audit.flush()
        (record,) = await audit.records()
    bodies = open_bodies(record)
    assert bodies is not None
    assert bodies["prompt"][0]["text"] == "reach me at [EMAIL]"


async def test_hipaa_requires_encryption_at_rest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        async with ProviderManager(config(tmp_path, compliance={"hipaa": True}), drivers=DRIVERS):
            pass
    problems = dict(caught.value.problems)
    assert "encryption" in problems["security.compliance.hipaa"]


async def test_hipaa_requires_the_audit_log(tmp_path: Path) -> None:
    cfg = config(tmp_path, compliance={"hipaa": True})
    cfg["security"]["audit"]["enabled"] = False
    with pytest.raises(ConfigError) as caught:
        async with ProviderManager(cfg, drivers=DRIVERS, plugins=[FakeEncryptionPlugin()]):
            pass
    assert "audit log" in str(caught.value)
    assert "security.compliance.hipaa" in str(caught.value)


async def test_hipaa_turns_on_the_controls(tmp_path: Path) -> None:
    cfg = config(tmp_path, compliance={"hipaa": True}, **CACHING)
    cfg["security"]["audit"]["includeBodies"] = True
    encryption = FakeEncryptionPlugin()
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=[encryption]) as manager:
        assert await calls_for(manager, tags=("personal",)) == (2, [False, False])
        audit = manager.extensions["audit"]
        assert isinstance(audit, AuditLog)
        await audit.flush()
        records = await audit.records()
    assert records
    assert all(r.data["bodies"] == {"redacted": True, "encrypted": True} for r in records)
    bodies = open_bodies(records[0], encryption.service)
    assert bodies is not None
    assert bodies["prompt"][0]["text"] == "my phone is [PHONE]"
    assert b"7946" not in (tmp_path / "audit.db").read_bytes()


async def test_hipaa_with_the_real_encryption_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, ALLOWED + ",swarmgate-encryption")
    cfg = config(tmp_path, compliance={"hipaa": True}, **CACHING)
    cfg["security"]["audit"]["includeBodies"] = True
    cfg["security"]["encryption"] = {"keyringPath": str(tmp_path / "keys.db")}
    monkeypatch.delenv("SWARMGATE_MASTER_KEY", raising=False)
    with pytest.raises(ConfigError):  # no master key: no start, and certainly no plaintext
        async with ProviderManager(cfg, drivers=DRIVERS):
            pass
    monkeypatch.setenv("SWARMGATE_MASTER_KEY", generate_key_text())
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        assert await calls_for(manager, tags=("personal",)) == (2, [False, False])
        assert await calls_for(manager, tags=("routine",)) == (1, [False, True])  # cached, encrypted
        audit = manager.extensions["audit"]
        assert isinstance(audit, AuditLog)
        await audit.flush()
        records = await audit.records()
        texts = [open_bodies(r, manager.extensions["encryption"])["prompt"][0]["text"] for r in records]  # type: ignore[index]
    assert texts == ["my phone is [PHONE]"] * 4
    assert all(r.data["bodies"] == {"redacted": True, "encrypted": True} for r in records)
