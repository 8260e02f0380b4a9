"""The keyring: data keys wrapped by the master key, and where they are kept.

A data key is 32 random bytes. Its record, stored as compact JSON, holds
its id, when it was made (``created``) and when it becomes current
(``activates``, wall-clock seconds), the fingerprint of the master key
that wraps it, and the wrapped key: ``nonce (12) | AES-256-GCM(key-wrapping
key, data key) + tag``, with the id and both times as associated data, so
that a record cannot be edited or moved to another id without failing
authentication. Records are never deleted: old keys stay for decryption.

Two stores (``security.encryption.keyring``):

* :class:`StateKeyStore` -- the StateStore: ``encryption:keys:<id>`` holds
  a record, the counter ``encryption:keys:seq`` hands out ids. Gateways
  sharing a backend (Redis) share the keyring, and it lives as long as
  the backend's data does.
* :class:`SqliteKeyStore` -- a small SQLite file (default
  ``encryption-keys.db`` under the data directory, mode 0600), the choice
  for the in-process ``memory`` backend, which would lose the keys at
  every restart. Processes on one host share it.

:func:`rotate_master` re-wraps every data key under a new master key
(``encryption rotate-master``).
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

import anyio
import attrs
from cryptography.exceptions import InvalidTag

from swarmgate import StateStore
from swarmgate_encryption.envelope import NONCE_SIZE
from swarmgate_encryption.masterkey import KEY_SIZE, MasterKey

T = TypeVar("T")

#: The StateStore prefix of the keyring.
STATE_PREFIX: Final = "encryption:keys:"
#: The counter handing out key ids in the StateStore.
STATE_SEQ: Final = STATE_PREFIX + "seq"

_RECORD_VERSION: Final = 1
#: How many times :func:`rotate_master` re-reads the keyring for keys added meanwhile.
_PASSES: Final = 4


class KeyringError(Exception):
    """A keyring record is malformed, or fails authentication under the master key that should wrap it."""


@attrs.frozen
class KeyRecord:
    """One wrapped data key (see the module docstring)."""

    id: int
    created: float
    activates: float
    master: str
    wrapped: bytes = attrs.field(repr=False)

    def dump(self) -> bytes:
        """The stored form (compact JSON)."""
        return json.dumps(
            {
                "v": _RECORD_VERSION,
                "id": self.id,
                "created": self.created,
                "activates": self.activates,
                "master": self.master,
                "wrapped": base64.b64encode(self.wrapped).decode("ascii"),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def load(cls, data: bytes) -> KeyRecord:
        """Parse :meth:`dump`'s output; KeyringError on anything else."""
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict) or raw.get("v") != _RECORD_VERSION:
                raise KeyringError(f"not a version {_RECORD_VERSION} key record")
            key_id, created, activates, master = raw["id"], raw["created"], raw["activates"], raw["master"]
            if type(key_id) is not int or not all(type(v) in (int, float) for v in (created, activates)):
                raise KeyringError("bad id or times")
            if not isinstance(master, str):
                raise KeyringError("bad master key fingerprint")
            wrapped = base64.b64decode(raw["wrapped"], validate=True)
        except KeyringError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"malformed key record ({type(exc).__name__})") from None
        return cls(key_id, float(created), float(activates), master, wrapped)

    def _aad(self) -> bytes:
        return f"swarmgate-encryption/v1/data-key|{self.id}|{self.created!r}|{self.activates!r}".encode()

    @classmethod
    def wrap(cls, master: MasterKey, key_id: int, created: float, activates: float, data_key: bytes) -> KeyRecord:
        """A record of ``data_key`` wrapped under ``master``."""
        record = cls(key_id, created, activates, master.fingerprint, b"")
        nonce = os.urandom(NONCE_SIZE)
        return attrs.evolve(record, wrapped=nonce + master.wrapper.encrypt(nonce, data_key, record._aad()))

    def unwrap(self, master: MasterKey) -> bytes:
        """The data key; KeyringError when ``master`` is not the key that
        wrapped it or the record was modified."""
        if self.master != master.fingerprint:
            raise KeyringError(
                f"wrapped under master key {self.master}, not {master.fingerprint} (the master key given)"
            )
        nonce, body = self.wrapped[:NONCE_SIZE], self.wrapped[NONCE_SIZE:]
        try:
            key = master.wrapper.decrypt(nonce, body, self._aad())
        except InvalidTag:
            raise KeyringError("failed authentication (the record was modified)") from None
        if len(key) != KEY_SIZE:
            raise KeyringError(f"holds a {len(key)}-byte key")
        return key

    def rewrap(self, old: MasterKey, new: MasterKey) -> KeyRecord:
        """The same data key, id and times wrapped under ``new``."""
        return KeyRecord.wrap(new, self.id, self.created, self.activates, self.unwrap(old))


@runtime_checkable
class KeyStore(Protocol):
    """Where keyring records are kept. Every method is atomic on its own."""

    #: A description for status output (``state:redis``, ``sqlite:/path``).
    description: str

    async def load(self) -> dict[int, bytes]:
        """Every stored record, by key id."""
        ...

    async def allocate_id(self) -> int:
        """A key id no other caller (process) will get."""
        ...

    async def put(self, key_id: int, record: bytes) -> None:
        """Store (or replace) the record of ``key_id``."""
        ...


class StateKeyStore:
    """The keyring in the StateStore (see the module docstring)."""

    def __init__(self, state: StateStore, backend: str) -> None:
        self._state = state
        self.description = f"state:{backend}"

    async def load(self) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for name in await self._state.keys(STATE_PREFIX):
            suffix = name[len(STATE_PREFIX) :]
            if suffix.isdigit():
                value = await self._state.get(name)
                if value is not None:
                    found[int(suffix)] = value
        return found

    async def allocate_id(self) -> int:
        return int(await self._state.incr(STATE_SEQ))

    async def put(self, key_id: int, record: bytes) -> None:
        await self._state.set(f"{STATE_PREFIX}{key_id}", record)


class SqliteKeyStore:
    """The keyring in a SQLite file (see the module docstring). Each call
    opens its own connection in a worker thread: calls are rare (start-up,
    refreshes, rotations) and must not block the event loop on a disk sync."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"sqlite:{path}"
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS data_keys (id INTEGER PRIMARY KEY AUTOINCREMENT, record BLOB)")
            self._ready = True
            return conn
        return sqlite3.connect(self.path, timeout=30.0, isolation_level=None)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            conn = self._connect()
            try:
                return fn(conn)
            finally:
                conn.close()

        return await anyio.to_thread.run_sync(call)

    async def load(self) -> dict[int, bytes]:
        def read(conn: sqlite3.Connection) -> dict[int, bytes]:
            rows = conn.execute("SELECT id, record FROM data_keys WHERE record IS NOT NULL").fetchall()
            return {int(key_id): bytes(record) for key_id, record in rows}

        return await self._run(read)

    async def allocate_id(self) -> int:
        def allocate(conn: sqlite3.Connection) -> int:
            cursor = conn.execute("INSERT INTO data_keys (record) VALUES (NULL)")
            assert cursor.lastrowid is not None
            return int(cursor.lastrowid)

        return await self._run(allocate)

    async def put(self, key_id: int, record: bytes) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO data_keys (id, record) VALUES (?, ?)", (key_id, record))

        await self._run(write)


@attrs.frozen
class MasterRotation:
    """What :func:`rotate_master` did: records re-wrapped now, records
    already under the new key (a resumed rotation), and records it could
    not re-wrap (id -> reason; unusable under the old key as well)."""

    rewrapped: int
    already: int
    unusable: dict[int, str]
    old_fingerprint: str
    new_fingerprint: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rewrapped": self.rewrapped,
            "already": self.already,
            "unusable": {str(k): v for k, v in self.unusable.items()},
            "old_fingerprint": self.old_fingerprint,
            "new_fingerprint": self.new_fingerprint,
        }


class MasterMismatchError(KeyringError):
    """The keyring holds data keys wrapped under neither master key given."""


async def rotate_master(store: KeyStore, old: MasterKey, new: MasterKey) -> MasterRotation:
    """Re-wrap every data key of ``store`` from ``old`` to ``new``.

    Idempotent and resumable: records already under ``new`` are left alone,
    so running it again after an interruption finishes the job. Keys added
    meanwhile (a gateway still on ``old`` provisioning its next key) are
    picked up by re-reading until none is left under ``old`` (a few passes
    at most, then KeyringError: stop those gateways first). Raises
    :class:`MasterMismatchError` when a record is wrapped under a third key,
    or when the keyring has records but none under ``old`` or ``new`` (the
    wrong old key), before writing anything.
    """
    if old.fingerprint == new.fingerprint:
        raise MasterMismatchError("the new master key is the current one")
    rewrapped = 0
    already: int | None = None
    unusable: dict[int, str] = {}
    for _ in range(_PASSES):
        records: dict[int, KeyRecord] = {}
        for key_id, data in sorted((await store.load()).items()):
            try:
                record = KeyRecord.load(data)
            except KeyringError as exc:
                unusable[key_id] = str(exc)
                continue
            if record.id != key_id:
                unusable[key_id] = f"stored under id {key_id} but names id {record.id}"
                continue
            records[key_id] = record
        strangers = sorted(i for i, r in records.items() if r.master not in (old.fingerprint, new.fingerprint))
        if strangers:
            raise MasterMismatchError(
                f"data keys {strangers} are wrapped under master key {records[strangers[0]].master}, "
                f"neither the old ({old.fingerprint}) nor the new ({new.fingerprint}) one"
            )
        pending = {i: r for i, r in records.items() if r.master == old.fingerprint and i not in unusable}
        if already is None:
            already = len(records) - len(pending)
            if not records and unusable:
                raise MasterMismatchError(f"no data key of the keyring is usable: {unusable}")
        if not pending:
            return MasterRotation(rewrapped, already, unusable, old.fingerprint, new.fingerprint)
        for key_id, record in pending.items():
            try:
                fresh = record.rewrap(old, new)
            except KeyringError as exc:
                unusable[key_id] = str(exc)
                continue
            await store.put(key_id, fresh.dump())
            rewrapped += 1
    raise KeyringError(
        f"data keys keep appearing under the old master key after {_PASSES} passes: "
        "stop the gateways still running with it, then run the rotation again"
    )
