"""Data keys: the rotation schedule (lazy switch on encrypt, the next key
provisioned ahead), manual rotation, restarts on the same keyring (SQLite
and StateStore), gateways sharing one keyring, a tampered keyring record,
and master key rotation (including an interrupted one)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from swarmgate import ConfigError, MemoryStateStore
from swarmgate_encryption import (
    EncryptionService,
    EncryptionSettings,
    KeyRecord,
    KeyStore,
    MasterKey,
    MasterMismatchError,
    SqliteKeyStore,
    StateKeyStore,
    TamperedError,
    key_id_of,
    rotate_master,
)

pytestmark = pytest.mark.anyio

MINUTE = 60.0


def settings(**keys: Any) -> EncryptionSettings:
    return EncryptionSettings(**{"key_rotation": 60_000.0, **keys})


@pytest.fixture
def master_raw() -> bytes:
    return os.urandom(32)


@pytest.fixture
def master(master_raw: bytes) -> MasterKey:
    return MasterKey(master_raw, "env:TEST")


@pytest.fixture(params=["state", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> KeyStore:
    """Each test runs on both keyring stores."""
    if request.param == "state":
        return StateKeyStore(MemoryStateStore(), "shared")
    return SqliteKeyStore(tmp_path / "keys.db")


async def started(store: KeyStore, master: MasterKey, clock: Any, **keys: Any) -> EncryptionService:
    service = EncryptionService(settings(**keys), master, store, clock=clock)
    await service.start()
    return service


async def test_the_first_start_makes_the_current_key_and_the_next(
    store: KeyStore, master: MasterKey, clock: Any
) -> None:
    service = await started(store, master, clock)
    status = service.status()
    assert status["keys"] == 2
    assert status["current_since"] == clock.now
    assert status["next_rotation"] == clock.now + MINUTE
    assert status["next_key"] != status["current_key"]
    assert status["master_key"] == {"source": "env:SWARMGATE_MASTER_KEY", "fingerprint": master.fingerprint}
    records = [KeyRecord.load(data) for data in (await store.load()).values()]
    assert {r.master for r in records} == {master.fingerprint}
    assert all(len(r.wrapped) == 12 + 32 + 16 for r in records)  # nonce | wrapped key | tag


async def test_the_key_rotates_on_schedule_and_old_records_stay_readable(
    store: KeyStore, master: MasterKey, clock: Any
) -> None:
    service = await started(store, master, clock)
    first = service.current_key_id()
    before = service.encrypt(b"written before the rotation", b"r1")
    clock.advance(MINUTE + 1)
    # The switch is lazy: the next encrypt uses the key provisioned ahead, no refresh needed.
    after = service.encrypt(b"written after the rotation", b"r2")
    second = key_id_of(after)
    assert second != first
    assert key_id_of(before) == first
    assert service.decrypt(before, b"r1") == b"written before the rotation"
    assert service.decrypt(after, b"r2") == b"written after the rotation"
    # A refresh provisions the one after, a minute after the second became current.
    await service.refresh()
    status = service.status()
    assert (status["current_key"], status["keys"]) == (second, 3)
    assert status["next_rotation"] == status["current_since"] + MINUTE
    clock.advance(MINUTE)
    third = key_id_of(service.encrypt(b"x", b"r3"))
    assert len({first, second, third}) == 3
    assert service.decrypt(before, b"r1") == b"written before the rotation"


async def test_a_refresh_does_not_provision_twice(store: KeyStore, master: MasterKey, clock: Any) -> None:
    service = await started(store, master, clock)
    for _ in range(3):
        clock.advance(5)
        await service.refresh()
    assert service.status()["keys"] == 2


async def test_without_key_rotation_only_manual_rotation(store: KeyStore, master: MasterKey, clock: Any) -> None:
    service = await started(store, master, clock, key_rotation=None)
    first = service.current_key_id()
    clock.advance(365 * 86400)
    await service.refresh()
    assert service.current_key_id() == first
    assert service.status()["next_rotation"] is None
    assert service.status()["keys"] == 1


async def test_manual_rotation(store: KeyStore, master: MasterKey, clock: Any) -> None:
    service = await started(store, master, clock)
    old = service.encrypt(b"old", b"a")
    new_id = await service.rotate()
    assert service.current_key_id() == new_id
    new = service.encrypt(b"new", b"a")
    assert key_id_of(new) == new_id != key_id_of(old)
    assert service.decrypt(old, b"a") == b"old"
    assert service.decrypt(new, b"a") == b"new"
    # A deferred rotation: current only once its time has come.
    later = await service.rotate(activate_in=30)
    assert service.current_key_id() == new_id
    clock.advance(30)
    assert service.current_key_id() == later
    with pytest.raises(ValueError, match="activate_in"):
        await service.rotate(activate_in=-1)


async def test_a_restart_reads_old_records_with_the_same_keys(store: KeyStore, master: MasterKey, clock: Any) -> None:
    service = await started(store, master, clock)
    early = service.encrypt(b"early", b"a")
    clock.advance(MINUTE + 1)
    late = service.encrypt(b"late", b"a")
    current = service.current_key_id()
    # A new service on the same keyring and master key: a restarted gateway.
    restarted = await started(store, master, clock)
    assert restarted.current_key_id() == current  # no new key at restart
    assert restarted.decrypt(early, b"a") == b"early"
    assert restarted.decrypt(late, b"a") == b"late"
    assert key_id_of(restarted.encrypt(b"x", b"a")) == current


async def test_a_restart_after_downtime_rotates_at_once(store: KeyStore, master: MasterKey, clock: Any) -> None:
    service = await started(store, master, clock)
    old = service.encrypt(b"old", b"a")
    clock.advance(10 * MINUTE)  # the gateway was down for ten rotation periods
    restarted = await started(store, master, clock)
    status = restarted.status()
    # The key provisioned ahead is long overdue: a new key is current at once, the next is scheduled.
    assert status["current_since"] == clock.now
    assert status["next_rotation"] == clock.now + MINUTE
    assert status["keys"] == 4
    assert key_id_of(restarted.encrypt(b"new", b"a")) == status["current_key"] != key_id_of(old)
    assert restarted.decrypt(old, b"a") == b"old"


async def test_the_wrong_master_key_is_a_config_error_at_start(store: KeyStore, master: MasterKey, clock: Any) -> None:
    await started(store, master, clock)
    other = MasterKey(os.urandom(32), "env:TEST")
    with pytest.raises(ConfigError) as caught:
        await started(store, other, clock)
    ((path, message),) = caught.value.problems
    assert path == "security.encryption.masterKeyEnv"
    assert master.fingerprint in message
    assert other.fingerprint in message
    assert "rotate-master" in message


async def test_gateways_sharing_a_keyring(store: KeyStore, master: MasterKey, clock: Any) -> None:
    one = await started(store, master, clock)
    two = await started(store, master, clock)
    assert one.current_key_id() == two.current_key_id()
    assert two.status()["keys"] == 2  # the second found both keys, made none
    record = one.encrypt(b"from one", b"a")
    assert two.decrypt(record, b"a") == b"from one"
    # The next key is known to both before it becomes current.
    clock.advance(MINUTE)
    assert one.current_key_id() == two.current_key_id()
    await one.refresh()  # one provisions the key after next ...
    await two.refresh()  # ... and two learns it instead of making its own
    assert one.status()["keys"] == two.status()["keys"] == 3
    clock.advance(MINUTE)
    from_two = two.encrypt(b"from two", b"b")
    assert key_id_of(from_two) == one.current_key_id()
    assert one.decrypt(from_two, b"b") == b"from two"


async def test_two_gateways_provisioning_the_same_slot_converge(store: KeyStore, master: MasterKey, clock: Any) -> None:
    one = await started(store, master, clock)
    two = await started(store, master, clock)
    clock.advance(MINUTE)
    one.encrypt(b"switch", b"a")
    two.encrypt(b"switch", b"a")
    # Both provision the next slot before either has seen the other's key.
    await one._provision()
    await two._provision()
    assert one.status()["next_key"] != two.status()["next_key"]
    early = one.encrypt(b"x", b"a")
    await one.refresh()
    await two.refresh()
    assert one.status()["next_key"] == two.status()["next_key"]  # the higher id wins everywhere
    clock.advance(MINUTE)
    assert one.current_key_id() == two.current_key_id()
    assert two.decrypt(early, b"a") == b"x"


async def test_a_modified_keyring_record_makes_its_key_unusable(store: KeyStore, master: MasterKey, clock: Any) -> None:
    service = await started(store, master, clock)
    record_bytes = service.encrypt(b"under the first key", b"a")
    first = key_id_of(record_bytes)
    stored = (await store.load())[first]
    record = KeyRecord.load(stored)
    # Someone with write access moves the key's activation time: the wrapping no longer authenticates.
    forged = KeyRecord(record.id, record.created, record.activates - 1000, record.master, record.wrapped)
    await store.put(first, forged.dump())
    with capture_logs() as logs:
        restarted = await started(store, master, clock)
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["encryption_keyring_record_unusable"]
    assert "failed authentication" in restarted.status()["unusable_keys"][str(first)]
    with pytest.raises(TamperedError, match="unusable"):
        restarted.decrypt(record_bytes, b"a")
    # Garbage in the keyring is unusable too, and does not stop the service.
    await store.put(first, b"not a record")
    await restarted.refresh()
    assert restarted.encrypt(b"still works", b"a")


async def test_master_key_rotation(store: KeyStore, master: MasterKey, clock: Any) -> None:
    service = await started(store, master, clock)
    early = service.encrypt(b"early", b"a")
    clock.advance(MINUTE)
    late = service.encrypt(b"late", b"a")
    await service.refresh()
    new = MasterKey(os.urandom(32), "env:NEW")
    result = await rotate_master(store, master, new)
    assert (result.rewrapped, result.already, result.unusable) == (3, 0, {})
    # The records are untouched; the new master key unwraps the same data keys.
    restarted = await started(store, new, clock)
    assert restarted.decrypt(early, b"a") == b"early"
    assert restarted.decrypt(late, b"a") == b"late"
    # The old master key no longer starts a gateway.
    with pytest.raises(ConfigError, match="does not unwrap 3 of the 3"):
        await started(store, master, clock)
    # The gateway still running with the old key keeps reading and writing with the keys it has,
    # but makes no new key (it would be wrapped under the old master).
    with capture_logs() as logs:
        await service.refresh()
    assert any(e["event"] == "encryption_master_key_rotated_elsewhere" for e in logs)
    assert service.decrypt(early, b"a") == b"early"
    with pytest.raises(ConfigError, match="restart with the new master key"):
        await service.rotate()
    clock.advance(MINUTE)
    await service.refresh()
    assert len(await store.load()) == 3
    # Running it again is a no-op.
    again = await rotate_master(store, master, new)
    assert (again.rewrapped, again.already) == (0, 3)


async def test_an_interrupted_master_rotation_resumes(store: KeyStore, master: MasterKey, clock: Any) -> None:
    service = await started(store, master, clock)
    record = service.encrypt(b"payload", b"a")
    await service.rotate()
    new = MasterKey(os.urandom(32), "env:NEW")

    class Crash(Exception):
        pass

    real_put = store.put
    calls = 0

    async def put_then_crash(key_id: int, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Crash
        await real_put(key_id, data)

    store.put = put_then_crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await rotate_master(store, master, new)
    store.put = real_put  # type: ignore[method-assign]
    # Half done: neither key starts a gateway, and the error says what to do.
    for key in (new, master):
        with pytest.raises(ConfigError, match="run `encryption rotate-master` again"):
            await started(store, key, clock)
    result = await rotate_master(store, master, new)
    assert (result.rewrapped, result.already) == (2, 1)
    assert (await started(store, new, clock)).decrypt(record, b"a") == b"payload"


async def test_master_rotation_refuses_the_wrong_old_key(store: KeyStore, master: MasterKey, clock: Any) -> None:
    await started(store, master, clock)
    stranger, new = MasterKey(os.urandom(32), "x"), MasterKey(os.urandom(32), "y")
    with pytest.raises(MasterMismatchError, match="neither the old"):
        await rotate_master(store, stranger, new)
    with pytest.raises(MasterMismatchError, match="the current one"):
        await rotate_master(store, master, master)
    assert {KeyRecord.load(d).master for d in (await store.load()).values()} == {master.fingerprint}


async def test_the_sqlite_keyring_file_is_private(
    tmp_path: Path, master: MasterKey, master_raw: bytes, clock: Any
) -> None:
    path = tmp_path / "nested" / "keys.db"
    await started(SqliteKeyStore(path), master, clock)
    assert path.stat().st_mode & 0o777 == 0o600
    assert master_raw not in path.read_bytes()
