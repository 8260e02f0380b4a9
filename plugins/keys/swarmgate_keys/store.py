"""The caller-key store: one SQLite file (WAL) any number of gateway
processes and CLI commands share.

At rest: each key's digest (:mod:`swarmgate_keys.hashing`), never the key;
its fingerprint, name, limits, times and metadata. The file is created
readable by its owner only.

Authentication (:meth:`KeyStore.authenticate`) runs on the request path,
synchronously (it never waits on a writer: WAL readers do not block):

1. a token that is not shaped like a caller key (``sg-`` + 43 characters)
   is refused without touching the database;
2. ``PRAGMA data_version`` is read (about 3 µs): it changes whenever another
   connection -- another process's, or this store's own admin connection --
   committed to the file. When it changed, every cached lookup is dropped,
   so a key revoked or created anywhere is seen on the very next request;
3. the token's digest is looked up in the cache, else in the database (the
   digest column is indexed), and compared once more with
   :func:`hmac.compare_digest`;
4. revocation and expiry are checked against the time now, so an expired
   key is refused at the moment it expires, cached or not.

Lookups by digest are not constant-time (a dict and a B-tree), but what
they could leak is the position of an HMAC/SHA-256 digest of the presented
token, which says nothing about any stored key. Revocation, creation and
listing use a second connection (the admin connection) under its own lock,
so a long listing never holds up a request.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Final

import attrs
import orjson

from swarmgate import CallerPolicy, ConfigError, SwarmgateError
from swarmgate.errors import ErrorKind
from swarmgate.logs import fingerprint
from swarmgate_keys.hashing import Hasher, generate_key, looks_like_key
from swarmgate_keys.settings import SECTION
from swarmgate_keys.spec import CallerKey, IssuedKey, KeySpec

#: Version of the schema below, kept in ``meta``.
SCHEMA_VERSION: Final = "1"
#: Cached lookups kept at most (the cache is cleared beyond it).
MAX_CACHED: Final = 10_000
#: How long a connection waits for another's write lock (seconds).
BUSY_TIMEOUT: Final = 5.0

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS caller_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    hash BLOB NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    models TEXT,
    requests_per_minute REAL,
    tokens_per_minute REAL,
    burst_capacity REAL,
    daily_budget REAL,
    monthly_budget REAL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS caller_keys_live_name ON caller_keys (name) WHERE revoked_at IS NULL;
CREATE INDEX IF NOT EXISTS caller_keys_fingerprint ON caller_keys (fingerprint);
"""

_COLUMNS: Final = (
    "id, name, fingerprint, created_at, expires_at, revoked_at, models, requests_per_minute, "
    "tokens_per_minute, burst_capacity, daily_budget, monthly_budget, metadata"
)


class KeyNotFoundError(SwarmgateError):
    """No key has that id or fingerprint, and no key that is not revoked has that name (HTTP 404)."""

    kind: ClassVar[ErrorKind] = ErrorKind.NOT_FOUND
    status_code: ClassVar[int] = 404


class KeyNameTakenError(SwarmgateError):
    """A key that is not revoked already has that name (HTTP 409)."""

    kind: ClassVar[ErrorKind] = ErrorKind.INVALID_REQUEST
    status_code: ClassVar[int] = 409


def _record(row: tuple[Any, ...]) -> CallerKey:
    models = orjson.loads(row[6]) if row[6] is not None else None
    return CallerKey(
        id=row[0],
        name=row[1],
        fingerprint=row[2],
        created_at=row[3],
        expires_at=row[4],
        revoked_at=row[5],
        models=tuple(models) if models is not None else None,
        requests_per_minute=row[7],
        tokens_per_minute=row[8],
        burst_capacity=row[9],
        daily_budget=row[10],
        monthly_budget=row[11],
        metadata=orjson.loads(row[12]),
    )


@attrs.frozen
class _Cached:
    digest: bytes = attrs.field(repr=False)
    key: CallerKey


def _create_private(path: Path) -> None:
    """Create ``path`` empty, readable by its owner only (SQLite gives its
    ``-wal`` and ``-shm`` files the same permissions)."""
    if path.exists():
        return
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
    return conn


class KeyStore:
    """The store at ``path`` (see the module docstring), hashing with
    ``hasher``. Opening creates the file and schema when missing and checks
    that the keys in it were hashed the way ``hasher`` hashes (else
    ConfigError at ``security.callerKeys.pepperEnv``: a different pepper, or
    none, would refuse every key). Thread-safe; :meth:`close` when done."""

    def __init__(self, path: str | os.PathLike[str], hasher: Hasher | None = None) -> None:
        self.path = Path(path)
        self.hasher = hasher or Hasher(None)
        self._admin_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(self.path)
        self._admin = _connect(self.path)
        try:
            self._admin.execute("PRAGMA journal_mode = WAL")
            # Writes are rare (create, revoke) and must survive a power cut.
            self._admin.execute("PRAGMA synchronous = FULL")
            self._prepare()
            self._reader = _connect(self.path)
        except BaseException:
            self._admin.close()
            raise
        self._version: int | None = None
        self._by_digest: dict[bytes, _Cached] = {}
        self._policies: dict[str, CallerPolicy | None] = {}
        self._closed = False

    # -- set-up --------------------------------------------------------------------

    def _prepare(self) -> None:
        conn = self._admin
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                conn.execute(statement)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            schema = meta.get("schema")
            if schema is not None and schema != SCHEMA_VERSION:
                raise ConfigError(
                    [
                        (
                            f"{SECTION}.path",
                            f"{self.path} has schema version {schema}; this plugin reads {SCHEMA_VERSION}",
                        )
                    ]
                )
            scheme = meta.get("hash_scheme")
            wanted = self.hasher.scheme
            if scheme is not None and scheme != wanted:
                (count,) = conn.execute("SELECT COUNT(*) FROM caller_keys").fetchone()
                if count:
                    raise ConfigError([(f"{SECTION}.pepperEnv", self._scheme_problem(scheme, wanted, count))])
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
            if scheme != wanted:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('hash_scheme', ?)", (wanted,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _scheme_problem(self, stored: str, wanted: str, count: int) -> str:
        where = f"the {count} key(s) in {self.path}"
        if stored == "sha256":
            return f"{where} were hashed without a pepper, but a pepper is set now: unset it, or issue the keys again"
        if wanted == "sha256":
            return (
                f"{where} were hashed with a pepper ({stored}), but none is set: "
                "set $SWARMGATE_KEY_PEPPER (or security.callerKeys.pepperEnv / pepperFile) to it"
            )
        return f"{where} were hashed with another pepper ({stored}, this one is {wanted}): set the pepper they were made with"

    def close(self) -> None:
        """Close both connections (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with self._read_lock:
            self._reader.close()
        with self._admin_lock:
            self._admin.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the request path ----------------------------------------------------------

    def _sync(self) -> None:
        """Drop every cached lookup when another connection committed (call
        with the read lock held)."""
        (version,) = self._reader.execute("PRAGMA data_version").fetchone()
        if version != self._version:
            self._version = version
            self._by_digest.clear()
            self._policies.clear()

    def lookup(self, token: str) -> CallerKey | None:
        """The stored key ``token`` is, whatever its state (revoked and
        expired ones included), or ``None``. See the module docstring."""
        if not looks_like_key(token):
            return None
        digest = self.hasher.digest(token)
        with self._read_lock:
            self._sync()
            cached = self._by_digest.get(digest)
            if cached is None:
                row = self._reader.execute(
                    f"SELECT {_COLUMNS}, hash FROM caller_keys WHERE hash = ?", (digest,)
                ).fetchone()
                if row is None:
                    return None
                cached = _Cached(row[13], _record(row))
                if len(self._by_digest) >= MAX_CACHED:
                    self._by_digest.clear()
                self._by_digest[digest] = cached
        if not hmac.compare_digest(cached.digest, digest):
            return None
        return cached.key

    def authenticate(self, token: str, *, now: float | None = None) -> CallerKey | None:
        """The key ``token`` is, if it is one and usable at ``now`` (default:
        the time now): not revoked, not expired; else ``None``."""
        key = self.lookup(token)
        if key is None or not key.usable(time.time() if now is None else now):
            return None
        return key

    def policy(self, name: str) -> CallerPolicy | None:
        """The limits of the key named ``name`` that is not revoked, or
        ``None`` when there is none (other caller directories then answer)."""
        with self._read_lock:
            self._sync()
            if name in self._policies:
                return self._policies[name]
            row = self._reader.execute(
                f"SELECT {_COLUMNS} FROM caller_keys WHERE name = ? AND revoked_at IS NULL", (name,)
            ).fetchone()
            policy = _record(row).policy() if row is not None else None
            if len(self._policies) >= MAX_CACHED:
                self._policies.clear()
            self._policies[name] = policy
            return policy

    # -- administration ------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._admin_lock:
            conn = self._admin
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def create(self, spec: KeySpec, *, now: float | None = None) -> IssuedKey:
        """Create a key for ``spec``; the answer holds the key in clear, the
        only time it exists outside the caller's hands. Raises
        :class:`KeyNameTakenError` when a key that is not revoked has the
        name (an expired one included: revoke it first)."""
        stamp = time.time() if now is None else now
        key = generate_key()
        key_id = "ck_" + secrets.token_hex(8)
        try:
            with self._write() as conn:
                conn.execute(
                    f"INSERT INTO caller_keys ({_COLUMNS}, hash) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key_id,
                        spec.name,
                        fingerprint(key),
                        stamp,
                        spec.expires_at,
                        orjson.dumps(list(spec.models)).decode() if spec.models is not None else None,
                        spec.requests_per_minute,
                        spec.tokens_per_minute,
                        spec.burst_capacity,
                        spec.daily_budget,
                        spec.monthly_budget,
                        orjson.dumps(spec.metadata).decode(),
                        self.hasher.digest(key),
                    ),
                )
        except sqlite3.IntegrityError:
            existing = self._find_live(spec.name)
            state = f" ({existing.status(stamp)}, id {existing.id})" if existing is not None else ""
            raise KeyNameTakenError(
                f"a key named {spec.name!r} already exists{state}: revoke it first, or choose another name"
            ) from None
        return IssuedKey(key, self.get(key_id))

    def _find_live(self, name: str) -> CallerKey | None:
        with self._admin_lock:
            row = self._admin.execute(
                f"SELECT {_COLUMNS} FROM caller_keys WHERE name = ? AND revoked_at IS NULL", (name,)
            ).fetchone()
        return _record(row) if row is not None else None

    def list(self, *, include_revoked: bool = True) -> list[CallerKey]:
        """Every key, oldest first (without the revoked ones if asked)."""
        query = f"SELECT {_COLUMNS} FROM caller_keys"
        if not include_revoked:
            query += " WHERE revoked_at IS NULL"
        with self._admin_lock:
            rows = self._admin.execute(query + " ORDER BY created_at, id").fetchall()
        return [_record(row) for row in rows]

    def get(self, ref: str) -> CallerKey:
        """The key ``ref`` names: its id (``ck_...``), its fingerprint
        (``key:...``) or the name of a key that is not revoked. Raises
        :class:`KeyNotFoundError`."""
        with self._admin_lock:
            if ref.startswith("key:"):
                rows = self._admin.execute(
                    f"SELECT {_COLUMNS} FROM caller_keys WHERE fingerprint = ?", (ref,)
                ).fetchall()
            else:
                rows = self._admin.execute(
                    f"SELECT {_COLUMNS} FROM caller_keys WHERE id = ? OR (name = ? AND revoked_at IS NULL)",
                    (ref, ref),
                ).fetchall()
        if not rows:
            raise KeyNotFoundError(f"no caller key {ref!r} (give its id, its fingerprint, or the name of a live key)")
        if len(rows) > 1:
            raise KeyNotFoundError(f"{ref!r} names {len(rows)} keys: give the id instead")
        return _record(rows[0])

    def revoke(self, ref: str, *, now: float | None = None) -> tuple[CallerKey, bool]:
        """Revoke the key ``ref`` names (see :meth:`get`): every process
        reading the store refuses it from its next request. Returns the key
        and whether this call revoked it (``False``: it already was)."""
        stamp = time.time() if now is None else now
        key = self.get(ref)
        if key.revoked_at is not None:
            return key, False
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE caller_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (stamp, key.id)
            ).rowcount
        return self.get(key.id), bool(changed)

    def count(self) -> int:
        """How many keys the store holds (revoked ones included)."""
        with self._admin_lock:
            (count,) = self._admin.execute("SELECT COUNT(*) FROM caller_keys").fetchone()
        return int(count)
