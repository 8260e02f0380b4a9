"""Audit bodies sealed by the real encryption plugin (loaded from its entry
point, master key from the environment): records written before and after a
data-key rotation and a restart stay readable; a body tampered with on disk
is refused, and verification names its record."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import ALLOWED, audit_of, sql, stored_bytes

from swarmgate import ProviderManager
from swarmgate.plugins import ALLOW_ENV
from swarmgate_audit import AuditLogError, canonical_json, open_bodies, open_log
from swarmgate_encryption import EncryptionService, generate_key_text, key_id_of

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _with_encryption(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, ALLOWED + ",swarmgate-encryption")
    monkeypatch.setenv("SWARMGATE_MASTER_KEY", generate_key_text())


def config(tmp_path: Path) -> dict[str, Any]:
    return {
        "providers": {"sim": {"type": "sim", "timeScale": 0, "seed": 5, "models": {"m": {}}}},
        "security": {
            "audit": {"path": str(tmp_path / "audit.db"), "includeBodies": True},
            "encryption": {"keyringPath": str(tmp_path / "keys.db"), "keyRotation": None},
        },
    }


def service_of(manager: ProviderManager) -> EncryptionService:
    service = manager.extensions["encryption"]
    assert isinstance(service, EncryptionService)
    return service


def key_ids(path: Path) -> list[int]:
    rows = sql(path, "SELECT data FROM personal ORDER BY seq")
    return [key_id_of(base64.b64decode(json.loads(row[0])["bodies_encrypted"])) for row in rows]


async def test_bodies_written_before_and_after_a_rotation_and_a_restart_stay_readable(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    async with ProviderManager(config(tmp_path)) as manager:
        service = service_of(manager)
        await manager.complete(prompt="before the rotation", caller="a")
        audit = audit_of(manager)
        await audit.flush()  # bodies are sealed when written, by the writer thread
        await service.rotate()
        await manager.complete(prompt="after the rotation", caller="a")
        await audit.flush()
        records = await audit.records()
        assert [open_bodies(r, service)["prompt"][0]["text"] for r in records] == [  # type: ignore[index]
            "before the rotation",
            "after the rotation",
        ]
        first_key, second_key = key_ids(db)
        assert first_key != second_key
        assert b"rotation" not in stored_bytes(db)
    async with ProviderManager(config(tmp_path)) as manager:  # a restart: same master key and keyring
        await manager.complete(prompt="after the restart", caller="a")
        audit = audit_of(manager)
        await audit.flush()
        records = await audit.records()
        texts = [open_bodies(r, service_of(manager))["prompt"][0]["text"] for r in records]  # type: ignore[index]
        assert (await audit.verify()).ok
    assert texts == ["before the rotation", "after the rotation", "after the restart"]


async def test_a_body_tampered_with_on_disk_is_refused_and_its_record_named(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    async with ProviderManager(config(tmp_path)) as manager:
        await manager.complete(prompt="one", caller="a")
        await manager.complete(prompt="two", caller="a")
        audit = audit_of(manager)
        await audit.flush()
        victim = (await audit.records())[1]
        personal = json.loads(sql(db, "SELECT data FROM personal WHERE seq = 2")[0][0])
        blob = bytearray(base64.b64decode(personal["bodies_encrypted"]))
        blob[-3] ^= 0x40
        personal["bodies_encrypted"] = base64.b64encode(bytes(blob)).decode()
        sql(db, "UPDATE personal SET data = ? WHERE seq = 2", canonical_json(personal))
        tampered = (await audit.records())[1]
        with pytest.raises(AuditLogError, match="failed to decrypt"):
            open_bodies(tampered, service_of(manager))
        assert open_bodies((await audit.records())[0], service_of(manager)) is not None
    recorded = open_log(db)
    try:
        report = recorded.verify_sync()
    finally:
        recorded.close()
    assert report.broken is not None
    assert (report.broken.seq, report.broken.id) == (2, victim.id)
    assert "personal fields were altered" in report.broken.problem
