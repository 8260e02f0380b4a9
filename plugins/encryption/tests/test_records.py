"""The record path of the service: round trips, the envelope, and every way
of tampering with a record (a flipped bit in each part, truncation, another
key id, other associated data), each refused, counted and logged."""

from __future__ import annotations

import os
from typing import Any

import pytest
from structlog.testing import capture_logs

from swarmgate import MemoryStateStore
from swarmgate_encryption import (
    OVERHEAD,
    VERSION,
    EncryptionService,
    EncryptionSettings,
    MasterKey,
    StateKeyStore,
    TamperedError,
    key_id_of,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def service(clock: Any) -> EncryptionService:
    settings = EncryptionSettings(key_rotation=60_000.0)
    store = StateKeyStore(MemoryStateStore(), "memory")
    svc = EncryptionService(settings, MasterKey(os.urandom(32), "test"), store, clock=clock)
    await svc.start()
    return svc


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 4096, 1 << 20])
async def test_round_trip(service: EncryptionService, size: int) -> None:
    plaintext = os.urandom(size)
    blob = service.encrypt(plaintext, b"purpose:id-1")
    assert len(blob) == size + OVERHEAD
    assert blob[0] == VERSION
    assert key_id_of(blob) == service.current_key_id()
    assert service.decrypt(blob, b"purpose:id-1") == plaintext


async def test_records_are_sealed_with_fresh_nonces(service: EncryptionService) -> None:
    secret = b"the patient's diagnosis is confidential"
    one, two = service.encrypt(secret, b"a"), service.encrypt(secret, b"a")
    assert one != two  # random nonces: equal plaintexts do not give equal records
    assert one[5:17] != two[5:17]
    for blob in (one, two):
        assert secret not in blob
        assert b"diagnosis" not in blob
    assert service.decrypt(one, b"a") == service.decrypt(two, b"a") == secret
    assert service.decrypt(bytearray(one), b"a") == secret  # any bytes-like record
    assert service.decrypt(memoryview(two), b"a") == secret
    status = service.status()
    assert (status["encrypted"], status["decrypted"], status["tampered"]) == (2, 4, 0)


def flip(blob: bytes, index: int, bit: int = 0) -> bytes:
    data = bytearray(blob)
    data[index] ^= 1 << bit
    return bytes(data)


@pytest.mark.parametrize(
    ("part", "index"),
    [
        ("version", 0),
        ("key id (high byte)", 1),
        ("key id (low byte)", 4),
        ("nonce (first byte)", 5),
        ("nonce (last byte)", 16),
        ("ciphertext (first byte)", 17),
        ("ciphertext (last byte)", -17),
        ("tag (first byte)", -16),
        ("tag (last byte)", -1),
    ],
)
async def test_a_flipped_bit_anywhere_is_refused(service: EncryptionService, part: str, index: int) -> None:
    blob = service.encrypt(b"an answer worth protecting", b"cache:k1")
    for bit in (0, 7):
        with pytest.raises(TamperedError) as caught:
            service.decrypt(flip(blob, index, bit), b"cache:k1")
        assert "tampered" in str(caught.value), part
    assert service.status()["tampered"] == 2
    assert service.decrypt(blob, b"cache:k1") == b"an answer worth protecting"  # the original still reads


async def test_other_associated_data_is_refused(service: EncryptionService) -> None:
    blob = service.encrypt(b"answer for prompt one", b"cache:key-one")
    for aad in (b"cache:key-two", b"", b"cache:key-one ", b"audit:key-one"):
        with pytest.raises(TamperedError, match="authentication failed"):
            service.decrypt(blob, aad)
    unbound = service.encrypt(b"no associated data")
    with pytest.raises(TamperedError):
        service.decrypt(unbound, b"x")
    assert service.decrypt(unbound) == b"no associated data"


async def test_truncated_and_foreign_records_are_refused(service: EncryptionService) -> None:
    blob = service.encrypt(b"x" * 40, b"a")
    for bad in (b"", b"\x01", blob[: OVERHEAD - 1], blob[:-1], blob[:OVERHEAD], b'{"content": "plaintext"}'):
        with pytest.raises(TamperedError):
            service.decrypt(bad, b"a")
    with pytest.raises(TamperedError, match="too short") as caught:
        service.decrypt(b"\x01\x00", b"a")
    assert caught.value.key_id is None


async def test_a_key_id_the_keyring_does_not_have_is_refused(service: EncryptionService) -> None:
    blob = service.encrypt(b"payload", b"a")
    unknown = bytes([VERSION]) + (4242).to_bytes(4, "big") + blob[5:]
    with pytest.raises(TamperedError, match="data key 4242") as caught:
        service.decrypt(unknown, b"a")
    assert caught.value.key_id == 4242


async def test_a_record_pointed_at_another_real_key_is_refused(service: EncryptionService) -> None:
    blob = service.encrypt(b"payload", b"a")
    other = await service.rotate()
    assert other != key_id_of(blob)
    moved = blob[:1] + other.to_bytes(4, "big") + blob[5:]
    with pytest.raises(TamperedError, match="authentication failed") as caught:
        service.decrypt(moved, b"a")
    assert caught.value.key_id == other


async def test_a_refused_record_is_logged_without_its_content(service: EncryptionService) -> None:
    blob = service.encrypt(b"SECRET-PROMPT-TEXT", b"a")
    with capture_logs() as logs, pytest.raises(TamperedError):
        service.decrypt(flip(blob, 20), b"a")
    (event,) = logs
    assert event["event"] == "encryption_record_tampered"
    assert event["log_level"] == "warning"
    assert event["key_id"] == key_id_of(blob)
    assert "authentication failed" in event["reason"]
    assert "SECRET" not in repr(logs)
    assert service.status()["tampered"] == 1


async def test_encrypting_before_start_is_an_error(clock: Any) -> None:
    svc = EncryptionService(
        EncryptionSettings(),
        MasterKey(os.urandom(32), "test"),
        StateKeyStore(MemoryStateStore(), "memory"),
        clock=clock,
    )
    with pytest.raises(RuntimeError, match="start"):
        svc.encrypt(b"x")
