"""What a request or an admin action leaves in the audit log: the right
fields, bodies only when configured, redacted under GDPR, encrypted when
the encryption service is there; logLevel; cache hits; admin actions."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from audit_helpers import (
    DRIVERS,
    FakeEncryption,
    FakeEncryptionPlugin,
    audit_of,
    config,
    scripted,
    sql,
    stored_bytes,
)

from swarmgate import (
    CompletionRequest,
    CompletionResponse,
    ProviderManager,
    RateLimitedError,
    ServerError,
    SwarmgateError,
    TokenUsage,
    hookimpl,
)
from swarmgate.errors import http_status
from swarmgate.testing import Outcome
from swarmgate_audit import AAD_PREFIX, AuditLogError, AuditRecord, open_bodies

pytestmark = pytest.mark.anyio

PERSONAL_PROMPT = (
    "I am jane.doe@example.org, call me on +44 20 7946 0958 or (555) 123-4567. "
    "My card is 4111 1111 1111 1111 and my laptop is at 192.168.10.24 / 2001:db8::8a2e:370:7334."
)


async def one_record(manager: ProviderManager) -> AuditRecord:
    audit = audit_of(manager)
    await audit.flush()
    records = await audit.records()
    assert len(records) == 1
    return records[0]


async def test_a_request_is_recorded_with_who_what_when_and_from_where(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS) as manager:
        scripted(manager, "a").push(Outcome("hello there", usage=(10, 5)))
        before = time.time()
        response = await manager.complete(
            prompt="hi", model="fast", caller="key#1a2b3c4d", user="end-user-7", metadata={"client": "203.0.113.9"}
        )
        record = await one_record(manager)
    assert record.id == response.id
    assert record.seq == 1
    assert before - 1 <= record.ts <= time.time()
    assert record.kind == "request"
    assert record.level == "info"
    assert record.data == {
        "requested_model": "fast",
        "route": "fast",
        "provider": "a",
        "model": "ma",
        "ok": True,
        "status": 200,
        "error_kind": None,
        "cost": pytest.approx(10 * 0.001 + 5 * 0.002),
        "input_tokens": 10,
        "output_tokens": 5,
        "latency_ms": pytest.approx(response.latency),
        "cache_hit": False,
        "stream": False,
        "attempts": [
            {
                "provider": "a",
                "model": "ma",
                "ok": True,
                "status": 200,
                "error_kind": None,
                "refused": False,
                "cost": pytest.approx(0.02),
            }
        ],
        "tags": [],
        "bodies": None,
    }
    assert record.who == "key#1a2b3c4d"
    assert record.client == "203.0.113.9"
    assert record.personal is not None
    assert record.personal["user"] == "end-user-7"
    assert "bodies" not in record.personal
    assert "bodies_encrypted" not in record.personal
    assert open_bodies(record) is None
    # Nothing of the prompt or the answer is anywhere in the file.
    assert b"hello there" not in stored_bytes(db)


async def test_a_failed_request_is_recorded_with_its_attempts_and_level(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS) as manager:
        scripted(manager, "a").push(ServerError("boom", provider="a"))
        scripted(manager, "b").push(RateLimitedError("slow down", provider="b"))
        with pytest.raises(SwarmgateError) as caught:
            await manager.complete(prompt="hi", model="fast", caller="bob", tags=("batch",))
        record = await one_record(manager)
    # Every target failed, the last one rate limited: the gateway answers 429, and records it.
    assert http_status(caught.value) == 429
    assert record.level == "warning"
    data = record.data
    assert data["ok"] is False
    assert data["status"] == 429
    assert data["error_kind"] == caught.value.kind.value
    assert (data["provider"], data["model"]) == ("b", "mb")
    assert [(a["provider"], a["ok"], a["error_kind"]) for a in data["attempts"]] == [
        ("a", False, "server_error"),
        ("b", False, "rate_limited"),
    ]
    assert data["tags"] == ["batch"]
    assert record.who == "bob"
    assert record.client is None


async def test_a_server_fault_is_an_error_level_record(db: Path) -> None:
    async with ProviderManager(config(db, routing={}), drivers=DRIVERS) as manager:
        scripted(manager, "a").push(ServerError("boom", provider="a"))
        with pytest.raises(SwarmgateError):
            await manager.complete(prompt="hi", model="a/ma")
        record = await one_record(manager)
    assert record.level == "error"
    assert record.data["status"] >= 500
    assert record.personal is None  # no caller, no user, no client, no bodies: nothing personal


@pytest.mark.parametrize(
    ("level", "expected"),
    [("info", ["ok", "refused", "broken"]), ("warning", ["refused", "broken"]), ("error", ["broken"])],
)
async def test_log_level_chooses_which_requests_are_recorded(db: Path, level: str, expected: list[str]) -> None:
    async with ProviderManager(config(db, audit={"logLevel": level}, routing={}), drivers=DRIVERS) as manager:
        scripted(manager, "a").push("fine", ServerError("boom", provider="a"))
        await manager.complete(prompt="1", model="a/ma", caller="ok")
        for caller, model in (("refused", "no-such-model"), ("broken", "a/ma")):  # a 404, then a 503
            with pytest.raises(SwarmgateError):
                await manager.complete(prompt="2", model=model, caller=caller)
        audit = audit_of(manager)
        audit.record_admin("providers.update", "admin", "a")  # admin actions whatever the level
        await audit.flush()
        records = await audit.records()
    assert [r.who for r in records if r.kind == "request"] == expected
    assert [r.data["action"] for r in records if r.kind == "admin"] == ["providers.update"]


async def test_bodies_are_stored_only_when_configured(db: Path) -> None:
    async with ProviderManager(config(db, audit={"includeBodies": True}), drivers=DRIVERS) as manager:
        scripted(manager, "a").push(Outcome("the answer is 42"))
        await manager.complete(messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "q?"}])
        record = await one_record(manager)
    assert record.data["bodies"] == {"redacted": False, "encrypted": False}
    assert open_bodies(record) == {
        "prompt": [{"role": "system", "text": "be brief"}, {"role": "user", "text": "q?"}],
        "completion": {"text": "the answer is 42"},
    }


async def test_a_failed_request_keeps_its_prompt_and_no_completion(db: Path) -> None:
    async with ProviderManager(config(db, audit={"includeBodies": True}, routing={}), drivers=DRIVERS) as manager:
        scripted(manager, "a").push(ServerError("boom", provider="a"))
        with pytest.raises(SwarmgateError):
            await manager.complete(prompt="why?", model="a/ma")
        record = await one_record(manager)
    assert open_bodies(record) == {"prompt": [{"role": "user", "text": "why?"}], "completion": None}


async def test_gdpr_redacts_personal_data_in_stored_bodies(db: Path) -> None:
    cfg = config(db, audit={"includeBodies": True}, security={"compliance": {"gdpr": True}})
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        scripted(manager, "a").push(Outcome("Noted: write to jane.doe@example.org from 10.1.2.3."))
        await manager.complete(prompt=PERSONAL_PROMPT, caller="jane")
        record = await one_record(manager)
    assert record.data["bodies"] == {"redacted": True, "encrypted": False}
    bodies = open_bodies(record)
    assert bodies is not None
    assert bodies["prompt"][0]["text"] == (
        "I am [EMAIL], call me on [PHONE] or [PHONE]. My card is [CARD] and my laptop is at [IP] / [IP]."
    )
    assert bodies["completion"]["text"] == "Noted: write to [EMAIL] from [IP]."
    stored = stored_bytes(db)
    for secret in (b"jane.doe@example.org", b"4111 1111", b"7946 0958", b"192.168.10.24", b"2001:db8"):
        assert secret not in stored
    assert record.who == "jane"  # the caller is kept: it is erased on request (forget), not redacted


async def test_hipaa_redacts_too(db: Path) -> None:
    cfg = config(db, audit={"includeBodies": True}, security={"compliance": {"hipaa": True}})
    encryption = FakeEncryptionPlugin()  # HIPAA mode requires encryption at rest
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=[encryption]) as manager:
        await manager.complete(prompt="patient reachable at +1 415 555 0100")
        record = await one_record(manager)
    assert record.data["bodies"] == {"redacted": True, "encrypted": True}
    bodies = open_bodies(record, encryption.service)
    assert bodies is not None
    assert bodies["prompt"][0]["text"] == "patient reachable at [PHONE]"


async def test_bodies_are_encrypted_when_the_encryption_service_is_there(db: Path) -> None:
    fake = FakeEncryptionPlugin()
    cfg = config(db, audit={"includeBodies": True}, security={"compliance": {"gdpr": True}})
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=[fake]) as manager:
        scripted(manager, "a").push(Outcome("a secret answer"))
        await manager.complete(prompt="my mail is x@y.org and a secret question")
        record = await one_record(manager)
    assert fake.service.calls == 1
    assert record.data["bodies"] == {"redacted": True, "encrypted": True}
    assert record.personal is not None
    assert "bodies" not in record.personal
    stored = stored_bytes(db)
    assert b"secret" not in stored
    with pytest.raises(AuditLogError, match="encrypted"):
        open_bodies(record)
    assert open_bodies(record, fake.service) == {
        "prompt": [{"role": "user", "text": "my mail is [EMAIL] and a secret question"}],
        "completion": {"text": "a secret answer"},
    }
    # Another key (a lost keyring) or a tampered blob: reported, never returned.
    with pytest.raises(AuditLogError, match="failed to decrypt"):
        open_bodies(record, FakeEncryption())
    blob = bytearray(base64.b64decode(record.personal["bodies_encrypted"]))
    blob[-1] ^= 1
    tampered = AuditRecord(
        **{
            **record.to_dict(),
            "personal": {**record.personal, "bodies_encrypted": base64.b64encode(bytes(blob)).decode()},
        }
    )
    with pytest.raises(AuditLogError, match="tampered"):
        open_bodies(tampered, fake.service)
    # The blob is bound to its record: moved to another record, it fails too.
    assert fake.service.decrypt(base64.b64decode(record.personal["bodies_encrypted"]), AAD_PREFIX + record.id.encode())
    moved = AuditRecord(**{**record.to_dict(), "id": "sg-other"})
    with pytest.raises(AuditLogError):
        open_bodies(moved, fake.service)


async def test_a_failing_encryption_never_stores_bodies_in_clear(db: Path) -> None:
    class Broken:
        def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
            raise RuntimeError("keyring unavailable")

        def decrypt(self, blob: bytes, aad: bytes) -> bytes:
            raise AssertionError("never called")

    class Publish:
        @hookimpl
        def plugin_setup(self, manager: ProviderManager) -> None:
            manager.extensions["encryption"] = Broken()

    cfg = config(db, audit={"includeBodies": True})
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=[Publish()]) as manager:
        await manager.complete(prompt="top secret prompt")
        record = await one_record(manager)
    assert record.data["bodies"] == "encryption_failed"
    assert open_bodies(record) is None
    assert b"top secret" not in stored_bytes(db)


async def test_a_cache_hit_is_recorded(db: Path) -> None:
    class Cache:
        @hookimpl
        def before_request(self, request: CompletionRequest) -> CompletionResponse:
            return CompletionResponse(
                content="cached", provider="a", model="ma", cost=0.0, latency=0.1, tokens=TokenUsage.of(1, 1),
                finish_reason="stop", cached=True,
            )  # fmt: skip

    async with ProviderManager(config(db), drivers=DRIVERS, plugins=[Cache()]) as manager:
        await manager.complete(prompt="hi", caller="c")
        record = await one_record(manager)
    assert record.data["cache_hit"] is True
    assert record.data["cost"] == 0.0
    assert record.data["attempts"] == []


async def test_streams_are_recorded_once_they_end(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS) as manager:
        events = [event async for event in manager.stream(prompt="hi", caller="s")]
        assert events
        record = await one_record(manager)
    assert record.data["stream"] is True
    assert record.data["ok"] is True


async def test_admin_actions_are_recorded(db: Path) -> None:
    async with ProviderManager(config(db, security={"compliance": {"gdpr": True}}), drivers=DRIVERS) as manager:
        audit = audit_of(manager)
        first = audit.record_admin("keys.create", "admin#9f8e7d6c", "key#1a2b3c4d", {"models": ["ma"]}, client="::1")
        second = audit.record_admin("keys.revoke", "admin#9f8e7d6c", "key#1a2b3c4d", {"reason": "mail ops@x.io"})
        with pytest.raises(ValueError, match="non-empty"):
            audit.record_admin("", "admin")
        with pytest.raises(TypeError):
            audit.record_admin("keys.create", "admin", details={"when": object()})
        await audit.flush()
        records = await audit.records(kind="admin")
    assert [r.id for r in records] == [first, second]
    assert all(r.kind == "admin" and r.level == "info" for r in records)
    assert records[0].data == {"action": "keys.create"}
    assert records[0].who == "admin#9f8e7d6c"
    assert records[0].client == "::1"
    assert records[0].personal is not None
    assert records[0].personal["target"] == "key#1a2b3c4d"
    assert records[0].personal["details"] == {"models": ["ma"]}
    assert records[1].personal is not None
    assert records[1].personal["details"] == {"reason": "mail [EMAIL]"}


async def test_a_closed_log_refuses_admin_actions(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS) as manager:
        audit = audit_of(manager)
    with pytest.raises(AuditLogError, match="not writing"):
        audit.record_admin("keys.create", "admin")
    assert "audit" not in manager.extensions


async def test_records_are_written_off_the_event_loop(db: Path) -> None:
    """The hooks only queue: a slow disk (a writer that holds a lock) never
    holds up requests."""
    async with ProviderManager(config(db, audit={"commitInterval": 0}), drivers=DRIVERS) as manager:
        audit = audit_of(manager)
        with sql_lock(db):
            started = time.perf_counter()
            for _ in range(20):
                await manager.complete(prompt="hi")
            elapsed = time.perf_counter() - started
            assert audit.stats()["pending"] > 0
        assert elapsed < 1.0
        await audit.flush()
        assert len(await audit.records()) == 20
        assert audit.stats()["pending"] == 0


class sql_lock:
    """Hold the database's write lock (as another process would) for the block."""

    def __init__(self, path: Path) -> None:
        import sqlite3

        self.conn = sqlite3.connect(path, isolation_level=None)

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, *exc: Any) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


async def test_records_committed_within_the_commit_interval(db: Path) -> None:
    async with ProviderManager(config(db, audit={"commitInterval": 50}), drivers=DRIVERS) as manager:
        await manager.complete(prompt="hi")
        with anyio.fail_after(5):
            while True:
                if sql(db, "SELECT id FROM records"):
                    break
                await anyio.sleep(0.02)
