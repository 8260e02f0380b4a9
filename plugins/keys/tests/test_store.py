"""The store on a real SQLite file: hashed at rest, create/list/revoke,
expiry, constant-time comparison, and revocation seen at once by a second
store instance and by another process."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from swarmgate import CallerPolicy, ConfigError
from swarmgate.testing.leaks import assert_no_secrets
from swarmgate_keys import (
    KEY_PREFIX,
    CallerKey,
    Hasher,
    KeyNameTakenError,
    KeyNotFoundError,
    KeySpec,
    KeyStore,
    generate_key,
    parse_expiry,
    spec_from_json,
)


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name)}


def test_a_key_is_random_and_shaped_as_documented() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert key.startswith(KEY_PREFIX)
        assert len(key) == 46
        assert all(c.isalnum() or c in "-_" for c in key[3:])


def test_keys_are_stored_only_as_peppered_digests(store: KeyStore, store_path: Path, pepper: str) -> None:
    issued = [store.create(KeySpec(name=f"team-{i}", metadata={"owner": f"o{i}"})) for i in range(5)]
    keys = [i.key for i in issued]
    store.revoke("team-0")
    # Neither the database nor its WAL holds any key or any 6-character slice of one.
    files = _files(store_path)
    assert {store_path.name, store_path.name + "-wal"} <= set(files)
    assert_no_secrets(files, keys)
    everything = b"".join(files.values())
    for key in keys:
        assert hmac.digest(pepper.encode(), key.encode(), "sha256") in everything
        assert hashlib.sha256(key.encode()).digest() not in everything  # the pepper is used
    # Nor does anything shown: records, their JSON, their repr.
    shown = [repr(i) for i in issued] + [repr(k.to_json()) for k in store.list()] + [repr(store.list())]
    assert_no_secrets(shown, keys)


def test_the_store_file_is_private(store: KeyStore, store_path: Path) -> None:
    store.create(KeySpec(name="alice"))
    for name in (store_path, store_path.with_name(store_path.name + "-wal")):
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o600


def test_create_list_get_revoke(store: KeyStore) -> None:
    alice = store.create(
        KeySpec(
            name="alice",
            models=("gpt-4o-mini", "fast"),
            requests_per_minute=60,
            burst_capacity=10,
            tokens_per_minute=1000,
            daily_budget=1.5,
            monthly_budget=20,
            metadata={"team": "a"},
        )
    )
    bob = store.create(KeySpec(name="bob"))
    record = alice.record
    assert record.id.startswith("ck_")
    assert record.name == "alice"
    assert record.fingerprint.startswith("key:")
    assert len(record.fingerprint) == 12
    assert record.status() == "active"
    assert record.metadata == {"team": "a"}
    assert [k.name for k in store.list()] == ["alice", "bob"]
    for ref in (record.id, record.fingerprint, "alice"):
        assert store.get(ref) == record
    assert store.authenticate(alice.key) == record
    assert store.policy("alice") == CallerPolicy(
        allowed_models=("gpt-4o-mini", "fast"),
        requests_per_minute=60,
        tokens_per_minute=1000,
        burst_capacity=10,
        daily_budget=1.5,
        monthly_budget=20,
    )
    revoked, changed = store.revoke("alice")
    assert changed
    assert revoked.status() == "revoked"
    assert revoked.revoked_at is not None
    assert store.revoke(record.id) == (revoked, False)  # idempotent
    assert store.authenticate(alice.key) is None
    assert store.policy("alice") is None
    assert store.authenticate(bob.key) == bob.record
    assert [k.name for k in store.list(include_revoked=False)] == ["bob"]
    with pytest.raises(KeyNotFoundError, match="no caller key 'alice'"):
        store.get("alice")  # a name only names a live key
    with pytest.raises(KeyNotFoundError):
        store.revoke("key:00000000")


def test_names_are_unique_among_live_keys(store: KeyStore) -> None:
    first = store.create(KeySpec(name="alice", expires_at=time.time() + 60))
    with pytest.raises(KeyNameTakenError, match=r"'alice' already exists \(active, id ck_"):
        store.create(KeySpec(name="alice"))
    store.revoke("alice")
    second = store.create(KeySpec(name="alice"))
    assert store.authenticate(second.key) == second.record
    assert store.authenticate(first.key) is None
    assert store.get(first.record.id).status() == "revoked"


def test_expired_keys_are_refused(store: KeyStore) -> None:
    now = time.time()
    issued = store.create(KeySpec(name="temp", expires_at=now + 0.4))
    assert store.authenticate(issued.key) == issued.record  # cached from here on
    assert store.authenticate(issued.key, now=now + 0.4) is None
    time.sleep(0.45)
    assert store.authenticate(issued.key) is None  # the cached entry is checked against the clock
    assert store.get("temp").status() == "expired"
    assert store.lookup(issued.key) == issued.record  # still known, just not usable


def test_other_tokens_never_match(store: KeyStore) -> None:
    issued = store.create(KeySpec(name="alice"))
    for token in ("", "sk-other-key", issued.key[:-1], issued.key + "x", issued.key[:-1] + "?", "sg-" + "A" * 43):
        assert store.authenticate(token) is None


def test_the_final_comparison_is_constant_time(store: KeyStore, monkeypatch: pytest.MonkeyPatch, pepper: str) -> None:
    issued = store.create(KeySpec(name="alice"))
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    digest = Hasher(pepper.encode()).digest(issued.key)
    assert store.authenticate(issued.key) is not None  # from the database
    assert store.authenticate(issued.key) is not None  # from the cache
    assert calls == [(digest, digest), (digest, digest)]


def test_revocation_is_seen_at_once_by_a_second_store(store: KeyStore, store_path: Path, pepper: str) -> None:
    issued = store.create(KeySpec(name="alice", requests_per_minute=5))
    with KeyStore(store_path, Hasher(pepper.encode())) as other:
        assert other.authenticate(issued.key) == issued.record  # now cached in `other`
        assert other.policy("alice") is not None
        store.revoke(issued.record.id)
        assert other.authenticate(issued.key) is None
        assert other.policy("alice") is None
        # And a key created by the first is accepted by the second at once.
        fresh = store.create(KeySpec(name="bob"))
        assert other.authenticate(fresh.key) == fresh.record


def test_revocation_by_another_process_is_seen_at_once(store: KeyStore, store_path: Path, pepper: str) -> None:
    issued = store.create(KeySpec(name="alice"))
    assert store.authenticate(issued.key) is not None
    script = textwrap.dedent(
        f"""
        from swarmgate_keys import Hasher, KeyStore
        with KeyStore({str(store_path)!r}, Hasher({pepper.encode()!r})) as store:
            print(store.revoke({issued.record.id!r})[1])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.strip() == "True"
    assert store.authenticate(issued.key) is None


def test_a_store_refuses_another_hashing_scheme(store_path: Path, pepper: str) -> None:
    with KeyStore(store_path, Hasher(pepper.encode())) as store:
        store.create(KeySpec(name="alice"))
    with pytest.raises(ConfigError, match=r"hashed with a pepper .* but none is set") as raised:
        KeyStore(store_path, Hasher(None))
    assert raised.value.problems[0][0] == "security.callerKeys.pepperEnv"
    with pytest.raises(ConfigError, match="hashed with another pepper"):
        KeyStore(store_path, Hasher(b"another-pepper-0123456789"))
    plain = store_path.with_name("plain.db")
    with KeyStore(plain, Hasher(None)) as store:
        issued = store.create(KeySpec(name="alice"))
        assert store.authenticate(issued.key) is not None
        assert hashlib.sha256(issued.key.encode()).digest() in b"".join(_files(plain).values())
    with pytest.raises(ConfigError, match="hashed without a pepper, but a pepper is set"):
        KeyStore(plain, Hasher(pepper.encode()))
    # An empty store takes the scheme of whoever opens it.
    empty = store_path.with_name("empty.db")
    KeyStore(empty, Hasher(None)).close()
    with KeyStore(empty, Hasher(pepper.encode())) as store:
        assert store.count() == 0


def test_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    from swarmgate_keys import CallerKeysSettings, open_store

    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match=r"cannot use .* as the caller-key store") as raised:
        open_store(CallerKeysSettings(path=str(bad)))
    assert raised.value.problems[0][0] == "security.callerKeys.path"


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ({"name": "admin"}, "name", "reserved"),
        ({"name": "ck_123"}, "name", "reserved"),
        ({"name": "has space"}, "name", "letters, digits"),
        ({"name": "a", "requestsPerMinute": -1}, "requestsPerMinute", "positive"),
        ({"name": "a", "dailyBudget": -0.5}, "dailyBudget", "non-negative"),
        ({"name": "a", "burstCapacity": 5}, "burstCapacity", "needs requestsPerMinute"),
        ({"name": "a", "models": ["ok", ""]}, "models[1]", "non-empty"),
        ({"name": "a", "models": "gpt-4o"}, "models", ""),
        ({"name": "a", "colour": "red"}, "colour", ""),
        ({"name": "a", "expires": "soon"}, "expires", "neither a duration"),
        ({"name": "a", "expires": "2001-01-01"}, "expires", "not in the future"),
        ({"name": "a", "expiresAt": 1.0}, "expiresAt", "not in the future"),
        ({"name": "a", "expires": "1d", "expiresAt": 1e12}, "expires", "not both"),
        ({"name": "a", "metadata": {"x": "y" * 5000}}, "metadata", "at most 4096 bytes"),
        ({}, "name", ""),
    ],
)
def test_bad_specs_name_the_key(body: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        spec_from_json(body)
    paths = [p for p, _ in raised.value.problems]
    assert any(p == path or p.endswith("." + path) for p in paths), raised.value.problems
    assert message in str(raised.value)


def test_expiry_forms() -> None:
    now = 1_000_000.0
    assert parse_expiry("30d", now=now) == now + 30 * 86_400
    assert parse_expiry("12h", now=now) == now + 12 * 3600
    assert parse_expiry("90m", now=now) == now + 5400
    assert parse_expiry("2w", now=now) == now + 14 * 86_400
    assert parse_expiry("45s", now=now) == now + 45
    assert parse_expiry("never", now=now) is None
    assert parse_expiry("2100-01-01", now=now) == 4102444800.0
    assert parse_expiry("2100-01-01T01:00:00+01:00", now=now) == 4102444800.0
    with pytest.raises(ValueError, match="positive"):
        parse_expiry("0d", now=now)


def test_a_record_shows_its_status() -> None:
    key = CallerKey(id="ck_1", name="a", fingerprint="key:00000000", created_at=0.0, expires_at=10.0)
    assert key.status(now=5.0) == "active"
    assert key.status(now=10.0) == "expired"
    assert CallerKey(id="ck_1", name="a", fingerprint="key:0", created_at=0.0, revoked_at=1.0).status() == "revoked"
