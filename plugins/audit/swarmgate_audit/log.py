"""``AuditLog``: the tamper-evident audit log, a SQLite file written by one thread.

Writing. The request hooks call :meth:`AuditLog.enqueue_success` /
:meth:`AuditLog.enqueue_failure` and admin endpoints
:meth:`AuditLog.record_admin`; each puts a tuple of references on a
``queue.SimpleQueue`` and returns: no I/O, no record building, no
redaction and no encryption on the event loop. A dedicated writer thread
builds the records (redacting and encrypting bodies when configured),
then chains and commits them as a group, ``commit_interval`` seconds after
the first was queued or as soon as ``max_batch`` are pending, and on
:meth:`flush`, :meth:`purge`, :meth:`forget` and shutdown. It purges
records older than ``retention`` when it starts and then every hour.

Chaining. Each commit reads the chain's head (the last record, else the
anchor, else :data:`~swarmgate_audit.chain.GENESIS`) inside its write
transaction, so several processes writing one file still make one chain.
Records are only ever appended; the only deletions are a retention purge
(a prefix of the chain: its last hash becomes the anchor in
``chain_anchor``, in the same transaction, and an ``audit.purge`` record
that names it is appended) and erasing personal fields (``personal`` rows;
the chained digest stays, see :mod:`swarmgate_audit.chain`).

Durability. WAL mode with ``synchronous=NORMAL``: a process crash
(``kill -9``) loses nothing committed; it loses the records queued since
the last group commit (at most ``commit_interval`` worth, plus a batch
being written). An OS crash or power loss may also lose the last commits
before the latest WAL checkpoint; the database stays consistent either way.

Reading. :meth:`records` and :meth:`verify` run in a worker thread on a
separate query-only connection and see what is committed.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple, TypedDict

import anyio
import anyio.to_thread

from swarmgate import Attempt, CompletionRequest, CompletionResponse, SwarmgateConfig, SwarmgateError
from swarmgate.batching import insert_rows
from swarmgate.errors import attempt_status, http_status
from swarmgate.logs import get_logger
from swarmgate.paths import create_private
from swarmgate.writer import BatchWriter, Control
from swarmgate_audit.chain import (
    GENESIS,
    canonical_json,
    hashed_form,
    json_number,
    json_string,
    personal_digest,
    record_hash,
    record_hash_encoded,
)
from swarmgate_audit.records import ADMIN, REQUEST, AuditRecord, ChainBreak, Encryptor, VerifyReport
from swarmgate_audit.redact import redact_value
from swarmgate_audit.settings import AuditSettings

log = get_logger("swarmgate.audit")

_isfinite: Final = math.isfinite

#: The schema version this package writes (``meta.schema_version``).
SCHEMA_VERSION: Final = 1
#: ``meta.format``: what tells an audit log from another SQLite file.
FORMAT: Final = "swarmgate-audit"
#: Milliseconds a connection waits for another connection's lock.
BUSY_TIMEOUT_MS: Final = 5000
#: Prefix of the associated data bodies are encrypted under (then the record id).
AAD_PREFIX: Final = b"swarmgate-audit:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    level TEXT NOT NULL,
    data TEXT NOT NULL,
    personal_digest TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_id ON records (id);
CREATE INDEX IF NOT EXISTS records_ts ON records (ts);
CREATE TABLE IF NOT EXISTS personal (
    seq INTEGER PRIMARY KEY,
    subject TEXT,
    subject2 TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS personal_subject ON personal (subject);
CREATE INDEX IF NOT EXISTS personal_subject2 ON personal (subject2);
CREATE TABLE IF NOT EXISTS chain_anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    purged_at REAL NOT NULL,
    purged_total INTEGER NOT NULL
);
"""

#: ``INSERT`` clauses for :func:`swarmgate.batching.insert_rows` (9 and 4 values a row).
_INSERT_RECORDS: Final = "INSERT INTO records (seq, id, ts, kind, level, data, personal_digest, prev_hash, hash) VALUES"
_INSERT_PERSONALS: Final = "INSERT INTO personal (seq, subject, subject2, data) VALUES"
_SELECT: Final = (
    "SELECT r.seq, r.id, r.ts, r.kind, r.level, r.data, r.personal_digest, r.prev_hash, r.hash, p.data "
    "FROM records r LEFT JOIN personal p ON p.seq = r.seq"
)

#: Queue entries: ``(_OK, id, ts, request, response, route, stream)``,
#: ``(_FAILED, id, ts, latency_ms, request, error, attempts, route, stream)``,
#: ``(_ADMIN, id, ts, action, actor, target, details, client)``.
_OK: Final = 0
_FAILED: Final = 1
_ADMIN: Final = 2

#: Canonical JSON of a request record's fields, keys in sorted order, the
#: values already encoded (``%`` formatting: JSON's braces stay readable).
_ATTEMPT_JSON: Final = '{"cost":%s,"error_kind":%s,"model":%s,"ok":%s,"provider":%s,"refused":%s,"status":%s}'
_REQUEST_DATA_JSON: Final = (
    '{"attempts":%s,"bodies":%s,"cache_hit":%s,"cost":%s,"error_kind":%s,"input_tokens":%s,'
    '"latency_ms":%s,"model":%s,"ok":%s,"output_tokens":%s,"provider":%s,"requested_model":%s,'
    '"route":%s,"status":%s,"stream":%s,"tags":%s}'
)
#: The personal fields; the first ``%s`` is the bodies field and its comma, or nothing.
_REQUEST_PERSONAL_JSON: Final = '{%s"caller":%s,"client":%s,"salt":"%s","user":%s}'

#: One attempt's list (the ``attempts`` field without failover).
_ATTEMPTS_ONE_JSON: Final = "[" + _ATTEMPT_JSON + "]"
_fsum: Final = math.fsum
#: Personal-field salts cut from one draw of the system CSPRNG.
_SALTS_PER_DRAW: Final = 256

#: Canonical JSON of the names a record repeats (providers, models, routes,
#: error kinds; ``None``), read with ``_names_get(v) or _name(v)``: a dict
#: lookup instead of an encoder call per field. Names only: ids, callers and
#: users are not kept.
_NAMES: dict[Any, str] = {None: "null"}
_names_get: Final = _NAMES.get
#: The most names kept (past it the table starts over).
_NAMES_MAX: Final = 1024


def _name(value: Any) -> str:
    """:func:`json_string` of ``value``, kept in ``_NAMES`` when it is a string."""
    text = json_string(value)
    if type(value) is str:
        if len(_NAMES) >= _NAMES_MAX:
            _NAMES.clear()
            _NAMES[None] = "null"
        _NAMES[value] = text
    return text


class AuditLogError(RuntimeError):
    """The audit log could not do what was asked (a failed commit, a file
    that is not an audit log, a closed log, bodies that fail to decrypt)."""


class AuditStats(TypedDict):
    """What :meth:`AuditLog.stats` reports: ``pending`` (queued, not yet
    committed), ``commits`` (group commits made), ``last_commit_ts`` (unix
    time of the last one), ``dropped`` (records that could not be written:
    a failed commit, a record that could not be built, a request record
    after close)."""

    pending: int
    commits: int
    last_commit_ts: float | None
    dropped: int


class _Purge(Control):
    """A retention purge by ``actor`` at ``now`` of what is older than ``cutoff``."""

    __slots__ = ("actor", "cutoff", "now")
    action = "purge"

    def __init__(self, cutoff: float, now: float, actor: str) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.now = now
        self.actor = actor


class _Forget(Control):
    """Erasing the personal fields about ``subject``, by ``actor`` at ``now``."""

    __slots__ = ("actor", "now", "subject")
    action = "forget"

    def __init__(self, subject: str, now: float, actor: str | None) -> None:
        super().__init__()
        self.subject = subject
        self.now = now
        self.actor = actor


class _Entry(NamedTuple):
    """A record built and ready to chain (everything but seq and hashes)."""

    id: str
    ts: float
    kind: str
    level: str
    data: str  # canonical JSON of the public fields
    personal: str | None  # canonical JSON of the personal fields
    subject: str | None
    subject2: str | None


#: ``_Entry`` from a tuple of its fields without the generated ``__new__``
#: (what ``_Entry._make`` does, without its length check): ~0.15 us a record.
_new_entry: Final = tuple.__new__


# ---------------------------------------------------------------------------
# Building records (in the writer thread)


def _finite(value: float) -> str:
    """``value`` as a float in canonical JSON, ``null`` when it is not finite."""
    value = float(value)
    return float.__repr__(value) if _isfinite(value) else "null"


def _bool(value: Any) -> str:
    if value is True:
        return "true"
    return "false" if value is False else canonical_json(value)


def _attempts_json(attempts: Sequence[Attempt]) -> tuple[str, int, int, float, str | None]:
    """The ``attempts`` field of a request record, and the attempts' summed
    input tokens, output tokens and cost. Per attempt: ``provider``,
    ``model``, ``ok``, ``status`` (200 for a success, else the upstream's,
    else the gateway status of the error kind), ``error_kind``,
    ``refused`` and ``cost`` (``null`` when not finite). Last the summed
    cost as canonical JSON when it is known already (else ``None``)."""
    if not attempts:
        return "[]", 0, 0, 0.0, "0.0"
    if len(attempts) == 1:
        # No failover (the common case): no lists, and the sum's JSON is the
        # attempt's cost's (fsum of one value is that value, -0.0 made 0.0).
        attempt = attempts[0]
        status = attempt_status(attempt)
        cost = attempt.cost
        total = _fsum((cost,))
        cost_text = _finite(cost)
        tokens = attempt.tokens
        ok, refused = attempt.ok, attempt.refused
        logged = _ATTEMPTS_ONE_JSON % (
            cost_text,
            _names_get(attempt.error_kind) or _name(attempt.error_kind),
            _names_get(attempt.model) or _name(attempt.model),
            "true" if ok is True else "false" if ok is False else _bool(ok),
            _names_get(attempt.provider) or _name(attempt.provider),
            "false" if refused is False else "true" if refused is True else _bool(refused),
            json_number(status),
        )
        return logged, tokens.input, tokens.output, total, "0.0" if cost_text == "-0.0" else cost_text
    out = []
    tin = tout = 0
    costs = []
    for attempt in attempts:
        status = attempt_status(attempt)
        cost = attempt.cost
        tokens = attempt.tokens
        tin += tokens.input
        tout += tokens.output
        costs.append(cost)
        out.append(
            _ATTEMPT_JSON
            % (
                _finite(cost),
                json_string(attempt.error_kind),
                json_string(attempt.model),
                _bool(attempt.ok),
                json_string(attempt.provider),
                _bool(attempt.refused),
                json_number(status),
            )
        )
    return "[" + ",".join(out) + "]", tin, tout, math.fsum(costs), None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)


def _prompt(request: CompletionRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in request.messages:
        entry: dict[str, Any] = {"role": message.role, "text": message.text()}
        if message.tool_calls:
            entry["tool_calls"] = [_text(call) for call in message.tool_calls]
        out.append(entry)
    return out


class _Builder:
    """Turns queued tuples into :class:`_Entry` (writer thread)."""

    def __init__(
        self, *, include_bodies: bool, redact: bool, encryption: Callable[[], Encryptor | None] | None
    ) -> None:
        self.include_bodies = include_bodies
        self.redact = redact
        self.encryption = encryption
        # Salts are cut from one draw of the system CSPRNG per 256 records
        # (a getrandom call per record cost more than the rest of the salt)
        # and handed out by a list iterator: its ``next`` is one step under
        # the GIL, so no salt goes to two records without a lock per salt.
        self._salts: Iterator[str] = iter(())
        self._salt_lock = threading.Lock()

    def _salt(self) -> str:
        """A fresh random salt: 16 bytes from ``secrets``, as hex, never
        handed out twice (also to several threads)."""
        salt = next(self._salts, None)
        if salt is None:
            with self._salt_lock:  # one draw when several threads find it empty
                salt = next(self._salts, None)
                if salt is None:
                    drawn = secrets.token_hex(16 * _SALTS_PER_DRAW)
                    salts = iter([drawn[at : at + 32] for at in range(0, len(drawn), 32)])
                    salt = next(salts)
                    self._salts = salts
        return salt

    def _bodies(self, record_id: str, bodies: dict[str, Any]) -> tuple[str, str]:
        """The personal field holding ``bodies`` (canonical JSON of one
        key-value pair and a comma: it sorts before ``caller``; empty when
        encryption failed) and the public ``bodies`` note, as canonical JSON."""
        if self.redact:
            bodies = redact_value(bodies)
        encryptor = self.encryption() if self.encryption is not None else None
        redacted = _bool(self.redact)
        if encryptor is None:
            return '"bodies":' + canonical_json(bodies) + ",", '{"encrypted":false,"redacted":' + redacted + "}"
        plaintext = canonical_json(bodies).encode("ascii")
        try:
            blob = encryptor.encrypt(plaintext, AAD_PREFIX + record_id.encode())
        except Exception as exc:  # noqa: BLE001 - never fall back to plaintext
            log.error("audit_bodies_encryption_failed", record=record_id, error=f"{type(exc).__name__}: {exc}")
            return "", '"encryption_failed"'
        sealed = base64.b64encode(blob).decode("ascii")
        return '"bodies_encrypted":"' + sealed + '",', '{"encrypted":true,"redacted":' + redacted + "}"

    def _personal(self, fields: dict[str, Any]) -> str | None:
        if all(v is None for v in fields.values()):
            return None
        fields["salt"] = self._salt()
        return canonical_json(fields)

    def request_entry(
        self,
        record_id: str,
        ts: float,
        request: CompletionRequest,
        *,
        response: CompletionResponse | None,
        error: SwarmgateError | None,
        attempts: Sequence[Attempt],
        latency_ms: float,
        route: str | None,
        stream: bool,
    ) -> _Entry:
        logged, tin, tout, cost, cost_text = _attempts_json(attempts)
        if response is not None:
            ok, status, kind = "true", 200, None
            provider: str | None = response.provider
            model: str | None = response.model
            if not attempts:
                cost_text = None
                if response.cached:
                    tin = tout = 0
                    cost = 0.0
                else:
                    tin, tout, cost = response.tokens.input, response.tokens.output, response.cost
            level = "info"
        else:
            assert error is not None
            timeout = request.timeouts.total if request.timeouts is not None else None
            status = http_status(error, caller_timeout_ms=timeout, elapsed_ms=latency_ms)
            ok, kind = "false", error.kind.value
            if attempts:
                provider, model = attempts[-1].provider, attempts[-1].model
            else:
                provider, model = error.provider, error.model
            level = "error" if status >= 500 else "warning"
        bodies_note = "null"
        bodies_field = ""
        if self.include_bodies:
            bodies: dict[str, Any] = {"prompt": _prompt(request), "completion": None}
            if response is not None:
                completion: dict[str, Any] = {"text": response.content}
                if response.tool_calls:
                    completion["tool_calls"] = [_text(call) for call in response.tool_calls]
                bodies["completion"] = completion
            bodies_field, bodies_note = self._bodies(record_id, bodies)
        tags = request.tags
        # The public fields as canonical JSON, assembled in sorted key order
        # (tests check the bytes against canonical_json of the mapping).
        data = _REQUEST_DATA_JSON % (
            logged,
            bodies_note,
            "true" if response is not None and response.cached else "false",
            _finite(cost) if cost_text is None else cost_text,
            _names_get(kind) or _name(kind),
            json_number(tin),
            _finite(latency_ms),
            _names_get(model) or _name(model),
            ok,
            json_number(tout),
            _names_get(provider) or _name(provider),
            _names_get(request.model) or _name(request.model),
            _names_get(route) or _name(route),
            json_number(status),
            "true" if stream is True else "false" if stream is False else _bool(stream),
            canonical_json(list(tags)) if tags else "[]",
        )
        caller, user, client = request.caller, request.user, request.metadata.get("client")
        if not (isinstance(client, str) and client):  # the client address, when the transport gave one
            client = None
        if caller is None and user is None and client is None and not bodies_field:
            personal = None
        else:
            personal = _REQUEST_PERSONAL_JSON % (
                bodies_field,
                json_string(caller),
                json_string(client),
                self._salt(),
                json_string(user),
            )
        return _new_entry(_Entry, (record_id, float(ts), REQUEST, level, data, personal, caller, user))

    def admin_entry(
        self,
        record_id: str,
        ts: float,
        action: str,
        actor: str | None,
        target: str | None,
        details: Mapping[str, Any] | None,
        client: str | None,
        public: Mapping[str, Any] | None = None,
    ) -> _Entry:
        data: dict[str, Any] = {"action": action, **(public or {})}
        details_value: Any = dict(details) if details else None
        if self.redact and details_value is not None:
            details_value = redact_value(details_value)
        personal = {"actor": actor, "target": target, "details": details_value, "client": client}
        return _Entry(
            record_id, float(ts), ADMIN, "info", canonical_json(data), self._personal(personal), actor, target
        )

    def entry_of(self, item: tuple[Any, ...]) -> _Entry:
        kind = item[0]
        if kind == _OK:
            _, rid, ts, request, response, route, stream = item
            return self.request_entry(
                rid,
                ts,
                request,
                response=response,
                error=None,
                attempts=response.attempts,
                latency_ms=response.latency,
                route=route,
                stream=stream,
            )
        if kind == _FAILED:
            _, rid, ts, latency, request, error, attempts, route, stream = item
            return self.request_entry(
                rid,
                ts,
                request,
                response=None,
                error=error,
                attempts=attempts,
                latency_ms=latency,
                route=route,
                stream=stream,
            )
        _, rid, ts, action, actor, target, details, client = item
        return self.admin_entry(rid, ts, action, actor, target, details, client)


def new_admin_id() -> str:
    """A fresh id for an admin action record (``adm_`` and 24 hex digits)."""
    return "adm_" + uuid.uuid4().hex[:24]


# ---------------------------------------------------------------------------
# Connections and chain primitives (any thread holding a connection)


def _connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    create_private(path)  # owner-only (0600); SQLite's -wal/-shm files follow it
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000.0, isolation_level=None, check_same_thread=check_same_thread
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # Deleted content (erased personal fields, purged records) is overwritten
    # with zeros, not left in free pages.
    conn.execute("PRAGMA secure_delete = ON")
    return conn


def _meta(conn: sqlite3.Connection) -> dict[str, str] | None:
    """The meta table, ``None`` for a file without one."""
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if has_meta is None:
        return None
    return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta").fetchall()}


def _check_format(meta: dict[str, str] | None, path: Path) -> None:
    if meta is None:
        raise AuditLogError(f"{path} is not an audit log (no meta table)")
    if meta.get("format") != FORMAT:
        raise AuditLogError(f"{path} is not an audit log (format {meta.get('format')!r})")
    version = int(meta.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise AuditLogError(
            f"{path} has audit-log schema {version}; this swarmgate-audit reads up to {SCHEMA_VERSION}: upgrade it"
        )


def _create_schema(conn: sqlite3.Connection, path: Path) -> None:
    """WAL mode, the tables and the meta rows; raises AuditLogError for a
    file that is another kind of database, of a newer schema, or not SQLite."""
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            meta = _meta(conn)
            has_tables = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if meta is not None or has_tables:
                _check_format(meta, path)
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('format', ?)", (FORMAT,))
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.DatabaseError as exc:
        raise AuditLogError(f"{path} is not a usable audit log: {exc}") from None


def _anchor(conn: sqlite3.Connection) -> tuple[int, str] | None:
    row = conn.execute("SELECT seq, hash FROM chain_anchor WHERE id = 1").fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def _head(conn: sqlite3.Connection) -> tuple[int, str]:
    """The last record's ``(seq, hash)``, else the anchor's, else ``(0, GENESIS)``."""
    row = conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
    if row is not None:
        return int(row[0]), str(row[1])
    return _anchor(conn) or (0, GENESIS)


def _append(conn: sqlite3.Connection, entries: Sequence[_Entry]) -> None:
    """Chain ``entries`` after the head and insert them (inside a write transaction)."""
    seq, prev = _head(conn)
    records: list[tuple[Any, ...]] = []
    personal: list[tuple[Any, ...]] = []
    for e in entries:
        seq += 1
        fields = e.personal
        digest = None if fields is None else personal_digest(fields)
        current = record_hash_encoded(prev, seq, e.id, e.ts, e.kind, e.level, e.data, digest)
        records.append((seq, e.id, e.ts, e.kind, e.level, e.data, digest, prev, current))
        if fields is not None:
            personal.append((seq, e.subject, e.subject2, fields))
        prev = current
    insert_rows(conn, _INSERT_RECORDS, 9, records)
    insert_rows(conn, _INSERT_PERSONALS, 4, personal)


def _write(conn: sqlite3.Connection, entries: Sequence[_Entry]) -> int:
    _append(conn, entries)
    return len(entries)


def _transaction(conn: sqlite3.Connection, body: Callable[[], int]) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return result


def _purge_rows(conn: sqlite3.Connection, builder: _Builder, cutoff: float, now: float, actor: str) -> int:
    """Delete the longest prefix of the chain whose records are older than
    ``cutoff``, keep its last hash as the anchor and append an
    ``audit.purge`` record naming it, in one transaction. How many records went."""

    def body() -> int:
        first_young = conn.execute("SELECT seq FROM records WHERE ts >= ? ORDER BY seq LIMIT 1", (cutoff,)).fetchone()
        if first_young is None:
            row = conn.execute("SELECT MAX(seq) FROM records").fetchone()
            through = None if row[0] is None else int(row[0])
        else:
            through = int(first_young[0]) - 1
        lowest = conn.execute("SELECT MIN(seq) FROM records").fetchone()[0]
        if through is None or lowest is None or through < int(lowest):
            return 0
        anchor_hash = str(conn.execute("SELECT hash FROM records WHERE seq = ?", (through,)).fetchone()[0])
        conn.execute("DELETE FROM personal WHERE seq <= ?", (through,))
        deleted = int(conn.execute("DELETE FROM records WHERE seq <= ?", (through,)).rowcount)
        conn.execute(
            "INSERT INTO chain_anchor (id, seq, hash, purged_at, purged_total) VALUES (1, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
            "purged_at = excluded.purged_at, purged_total = chain_anchor.purged_total + excluded.purged_total",
            (through, anchor_hash, now, deleted),
        )
        public = {"through_seq": through, "anchor_hash": anchor_hash, "deleted": deleted, "cutoff": cutoff}
        _append(conn, [builder.admin_entry(new_admin_id(), now, "audit.purge", actor, None, None, None, public)])
        return deleted

    return _transaction(conn, body)


def _forget_rows(conn: sqlite3.Connection, builder: _Builder, subject: str, now: float, actor: str | None) -> int:
    """Erase the personal fields of every record about ``subject`` and
    append an ``audit.forget`` record (it does not name the subject), in
    one transaction. How many records had personal fields erased."""

    def body() -> int:
        erased = int(
            conn.execute("DELETE FROM personal WHERE subject = ? OR subject2 = ?", (subject, subject)).rowcount
        )
        public = {"records": erased}
        _append(conn, [builder.admin_entry(new_admin_id(), now, "audit.forget", actor, None, None, None, public)])
        return erased

    erased = _transaction(conn, body)
    # The WAL still holds the pages as they were before: copy the new ones
    # into the database and empty it, so the erased fields are gone from disk.
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    if busy:
        log.warning("audit_forget_checkpoint_busy", detail="erased fields stay in the WAL until the next checkpoint")
    return erased


# ---------------------------------------------------------------------------
# Reading and verifying


def _record_of(row: Sequence[Any]) -> AuditRecord:
    seq, rid, ts, kind, level, data, digest, prev, current, personal = row
    return AuditRecord(
        seq=seq,
        id=rid,
        ts=ts,
        kind=kind,
        level=level,
        data=json.loads(data),
        personal=None if personal is None else json.loads(personal),
        erased=digest is not None and personal is None,
        prev_hash=prev,
        hash=current,
    )


def _verify(conn: sqlite3.Connection, path: Path, head: str | None = None) -> VerifyReport:
    """Recompute the chain from the anchor (see :meth:`AuditLog.verify`)."""
    conn.execute("BEGIN")  # one snapshot for the anchor and every record
    try:
        anchor = _anchor(conn)
        expected_seq, expected_prev = (anchor[0] + 1, anchor[1]) if anchor else (1, GENESIS)
        checked = erased = 0
        first_seq: int | None = None
        last_seq: int | None = None
        vouched = anchor is None
        head_seen = head is None or (anchor is not None and anchor[1] == head)
        broken: ChainBreak | None = None
        for row in _rows(conn.execute(_SELECT + " ORDER BY r.seq")):
            seq, _rid, _ts, kind, _level, data_text, digest, _prev, stored, personal_text = row
            if first_seq is None:
                first_seq = seq
            last_seq = seq
            broken = _check_row(row, expected_seq, expected_prev)
            if broken is not None:
                break
            checked += 1
            if digest is not None and personal_text is None:
                erased += 1
            if anchor is not None and not vouched and kind == ADMIN:
                data = json.loads(data_text)
                vouched = (
                    data.get("action") == "audit.purge"
                    and data.get("through_seq") == anchor[0]
                    and data.get("anchor_hash") == anchor[1]
                )
            if not head_seen and stored == head:
                head_seen = True
            expected_seq, expected_prev = seq + 1, stored
        if broken is None and not head_seen:
            broken = ChainBreak(
                seq=expected_seq,
                id=None,
                ts=None,
                problem=(
                    "the head recorded earlier is not in the chain: records after it were deleted, "
                    "or the chain was rewritten (or that head was purged since)"
                ),
                expected=str(head),
                found=f"head {expected_prev}",
            )
        if broken is None and anchor is not None and not vouched:
            broken = ChainBreak(
                seq=anchor[0] + 1,
                id=None,
                ts=None,
                problem=(
                    "the chain starts after an anchor that no audit.purge record vouches for: "
                    "records were deleted outside a retention purge"
                ),
                expected=f"an audit.purge record naming seq {anchor[0]} and hash {anchor[1]}",
                found="none",
            )
        if broken is None:
            orphan = conn.execute(
                "SELECT p.seq FROM personal p LEFT JOIN records r ON r.seq = p.seq WHERE r.seq IS NULL "
                "ORDER BY p.seq LIMIT 1"
            ).fetchone()
            if orphan is not None:
                broken = ChainBreak(
                    seq=int(orphan[0]),
                    id=None,
                    ts=None,
                    problem="personal fields remain of a record that is missing (deleted)",
                    expected="a record",
                    found="none",
                )
    finally:
        conn.execute("COMMIT")
    return VerifyReport(
        path=str(path),
        ok=broken is None,
        checked=checked,
        first_seq=first_seq,
        last_seq=last_seq,
        anchor_seq=anchor[0] if anchor else None,
        anchor_hash=anchor[1] if anchor else None,
        head_hash=expected_prev,
        erased=erased,
        broken=broken,
    )


def _rows(cursor: sqlite3.Cursor) -> Iterator[Sequence[Any]]:
    while True:
        batch = cursor.fetchmany(1000)
        if not batch:
            return
        yield from batch


def _check_row(row: Sequence[Any], expected_seq: int, expected_prev: str) -> ChainBreak | None:
    seq, rid, ts, kind, level, data_text, digest, prev, stored, personal_text = row

    def broken(problem: str, expected: str, found: str) -> ChainBreak:
        return ChainBreak(seq=seq, id=rid, ts=ts, problem=problem, expected=expected, found=found)

    if seq != expected_seq:
        missing = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq}..{seq - 1}"
        return broken(f"the record(s) before it are missing ({missing} deleted)", f"seq {expected_seq}", f"seq {seq}")
    if prev != expected_prev:
        return broken("its prev_hash is not the hash of the record before it", expected_prev, str(prev))
    try:
        data = json.loads(data_text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        form = hashed_form(seq, rid, ts, kind, level, data, digest)
        recomputed = record_hash(prev, form)
    except (TypeError, ValueError) as exc:
        return broken(f"it was altered (its data cannot be read: {exc})", "canonical JSON", repr(data_text)[:80])
    if recomputed != stored:
        return broken("it was altered (its hash does not match its content)", recomputed, str(stored))
    if personal_text is not None:
        if digest is None:
            return broken("personal fields were added to it", "none", "a personal row")
        try:
            actual = personal_digest(canonical_json(json.loads(personal_text)))
        except (TypeError, ValueError) as exc:
            return broken(f"its personal fields were altered (unreadable: {exc})", str(digest), "unreadable")
        if actual != digest:
            return broken("its personal fields were altered (their digest does not match)", str(digest), actual)
    return None


def open_bodies(record: AuditRecord, encryptor: Encryptor | None = None) -> dict[str, Any] | None:
    """The prompt and completion stored with ``record`` (``{"prompt": [...],
    "completion": {...} | None}``), or ``None`` when it has none (not
    configured, or erased). Encrypted bodies need ``encryptor``; raises
    AuditLogError when they are encrypted and no encryptor is given, or
    when they fail to decrypt (tampered, or a key that is gone): they are
    never returned then."""
    personal = record.personal
    if personal is None:
        return None
    plain = personal.get("bodies")
    if isinstance(plain, dict):
        return plain
    blob = personal.get("bodies_encrypted")
    if not isinstance(blob, str):
        return None
    if encryptor is None:
        raise AuditLogError(f"the bodies of record {record.id} are encrypted: read them with the encryption service")
    try:
        plaintext = encryptor.decrypt(base64.b64decode(blob), AAD_PREFIX + record.id.encode())
        bodies = json.loads(plaintext)
    except Exception as exc:  # noqa: BLE001 - TamperedError and friends: reported, never returned
        raise AuditLogError(
            f"the bodies of record {record.id} failed to decrypt ({type(exc).__name__}): tampered with, "
            "or encrypted under a key that is gone"
        ) from None
    if not isinstance(bodies, dict):
        raise AuditLogError(f"the bodies of record {record.id} are not an object")
    return bodies


# ---------------------------------------------------------------------------
# The log


class AuditLog(BatchWriter):
    """The audit log at ``path``; see the module docstring.

    Built by the plugin (``manager.extensions["audit"]``) or by
    :func:`open_log` for a recorded file. ``commit_interval`` and
    ``retention`` are seconds (``retention`` ``None``: keep everything).
    ``include_bodies`` stores prompts and completions, ``redact`` redacts
    personal data in them (and in admin details), ``encryption`` returns the
    encryptor to seal bodies with (``None``: store them in clear); it is
    called in the writer thread for each record with bodies. ``clock``
    (unix seconds) stamps admin actions and dates purges.
    A log is *writable* once :meth:`start` ran and until :meth:`aclose`;
    reads, :meth:`verify`, :meth:`purge` and :meth:`forget` work either way.
    The writer thread, :meth:`flush` and the lifecycle are
    :class:`swarmgate.writer.BatchWriter`'s.
    """

    kind = "audit"
    error_type = AuditLogError
    logger = log

    def __init__(
        self,
        path: str | Path,
        *,
        commit_interval: float = 0.2,
        max_batch: int = 500,
        retention: float | None = None,
        include_bodies: bool = False,
        redact: bool = False,
        encryption: Callable[[], Encryptor | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(path, commit_interval=commit_interval, max_batch=max_batch, retention=retention)
        self._clock = clock
        self.include_bodies = include_bodies
        self.redact = redact
        self._builder = _Builder(include_bodies=include_bodies, redact=redact, encryption=encryption)

    @classmethod
    def from_settings(
        cls, settings: AuditSettings, *, redact: bool = False, encryption: Callable[[], Encryptor | None] | None = None
    ) -> AuditLog:
        """A log configured by ``security.audit`` (not started)."""
        return cls(
            settings.resolved_path(),
            commit_interval=settings.commit_interval / 1000.0,
            max_batch=settings.max_batch,
            retention=None if settings.retention is None else settings.retention / 1000.0,
            include_bodies=settings.include_bodies,
            redact=redact,
            encryption=encryption,
        )

    # -- recording (on the event loop: no I/O) -------------------------------------

    def enqueue_success(
        self,
        request_id: str,
        ts: float,
        request: CompletionRequest,
        response: CompletionResponse,
        route: str | None,
        stream: bool,
    ) -> None:
        """Queue the record of an answered request. Never blocks, never does I/O."""
        self._enqueue((_OK, request_id, ts, request, response, route, stream))

    def enqueue_failure(
        self,
        request_id: str,
        ts: float,
        latency_ms: float,
        request: CompletionRequest,
        error: SwarmgateError,
        attempts: Sequence[Attempt],
        route: str | None,
        stream: bool,
    ) -> None:
        """Queue the record of a request that ended without an answer. Never blocks."""
        self._enqueue((_FAILED, request_id, ts, latency_ms, request, error, attempts, route, stream))

    def record_admin(
        self,
        action: str,
        actor: str | None,
        target: str | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        client: str | None = None,
    ) -> str:
        """Queue the record of an admin action and return its id. Never blocks.

        ``action`` names it (``keys.create``, ``keys.rotate``,
        ``providers.update``...); ``actor`` is who did it (an admin key's
        fingerprint, ``cli:<user>``; never a key); ``target`` what it acted
        on; ``details`` a JSON-ready mapping (no secrets: it is stored as
        given, redacted of personal data under GDPR); ``client`` the
        address the request came from. Actor, target, details and client
        are personal fields (erasable). Raises ValueError for an empty
        action or details JSON cannot hold, AuditLogError when the log is
        not writing (an admin action is never dropped silently)."""
        if not isinstance(action, str) or not action:
            raise ValueError(f"action must be a non-empty string, got {action!r}")
        if details is not None:
            canonical_json(dict(details))  # fail here, in the caller, not in the writer
        if not self._writing:
            raise AuditLogError(f"the audit log {self.path} is not writing: admin action {action!r} not recorded")
        record_id = new_admin_id()
        self._enqueue((_ADMIN, record_id, self._clock(), action, actor, target, details, client))
        return record_id

    # -- the writer thread ---------------------------------------------------------

    def _open_writer(self) -> sqlite3.Connection:
        conn = _connect(self.path)
        try:
            _create_schema(conn, self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    def _commit(self, conn: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> str | None:
        """Build, chain and write ``batch`` in one transaction; the error text
        if it failed (the batch is then dropped and counted)."""
        entries: list[_Entry] = []
        bad = 0
        for item in batch:
            try:
                entries.append(self._builder.entry_of(item))
            except Exception as exc:  # noqa: BLE001 - one bad record must not lose the batch
                bad += 1
                log.error("audit_record_unwritable", error=f"{type(exc).__name__}: {exc}")
        error: str | None = None
        try:
            _transaction(conn, lambda: _write(conn, entries))
        except sqlite3.Error as exc:
            error = f"{len(entries)} audit record(s) could not be written to {self.path}: {exc}"
            log.error("audit_commit_failed", path=str(self.path), error=str(exc), records=len(entries))
            self._dropped_writer += len(entries) + bad
        else:
            self._commits += 1
            self._last_commit = time.time()
            self._dropped_writer += bad
        self._handled += len(batch)
        return error

    def _retention_purge(self, conn: sqlite3.Connection) -> None:
        assert self.retention is not None
        try:
            deleted = _purge_rows(conn, self._builder, self._clock() - self.retention, self._clock(), "retention")
        except sqlite3.Error as exc:
            log.error("audit_purge_failed", path=str(self.path), error=str(exc))
            return
        if deleted:
            log.info("audit_purged", path=str(self.path), deleted=deleted, retention_s=self.retention)

    def _control(self, conn: sqlite3.Connection, control: Control) -> None:
        if isinstance(control, _Purge):
            control.result = _purge_rows(conn, self._builder, control.cutoff, control.now, control.actor)
        elif isinstance(control, _Forget):
            control.result = _forget_rows(conn, self._builder, control.subject, control.now, control.actor)

    # -- maintenance -----------------------------------------------------------------

    def _direct(self, fn: Callable[[sqlite3.Connection], int]) -> int:
        """Run a write on a connection of its own (a log that is not writing)."""
        if not self.path.exists():
            raise AuditLogError(f"no audit log at {self.path}")
        conn = _connect(self.path)
        try:
            _check_format(_meta(conn), self.path)
            return fn(conn)
        except sqlite3.Error as exc:
            raise AuditLogError(f"{self.path}: {exc}") from None
        finally:
            conn.close()

    async def purge(self, older_than_seconds: float, *, actor: str = "retention") -> int:
        """Delete the longest prefix of the chain whose records are older
        than ``older_than_seconds`` (a younger record stops it: older ones
        after it go at a later purge), keeping verification whole: the last
        purged hash becomes the anchor and an ``audit.purge`` record by
        ``actor`` names it. Returns how many records were deleted."""
        if not (older_than_seconds >= 0 and math.isfinite(older_than_seconds)):
            raise ValueError(f"older_than_seconds must be a non-negative number, got {older_than_seconds}")
        now = self._clock()
        cutoff = now - older_than_seconds
        if self._writing:
            return await self._send(_Purge(cutoff, now, actor))
        builder = self._builder
        return await anyio.to_thread.run_sync(
            lambda: self._direct(lambda c: _purge_rows(c, builder, cutoff, now, actor))
        )

    async def forget(self, subject: str, *, actor: str | None = None) -> int:
        """Erase the personal fields (caller, end user, client address,
        bodies; an admin action's actor, target and details) of every record
        whose caller or end user, or admin actor or target, is ``subject``.
        The records stay, their chain still verifies (it covers a salted
        digest of those fields); an ``audit.forget`` record by ``actor``
        (not naming ``subject``) is appended. Returns how many records were erased."""
        if not isinstance(subject, str) or not subject:
            raise ValueError(f"subject must be a non-empty string, got {subject!r}")
        now = self._clock()
        if self._writing:
            return await self._send(_Forget(subject, now, actor))
        builder = self._builder
        return await anyio.to_thread.run_sync(
            lambda: self._direct(lambda c: _forget_rows(c, builder, subject, now, actor))
        )

    def stats(self) -> AuditStats:
        """Counters of this instance (see :class:`AuditStats`); no I/O."""
        return AuditStats(
            pending=max(0, self._enqueued - self._handled),
            commits=self._commits,
            last_commit_ts=self._last_commit,
            dropped=self._dropped_writer + self._dropped_closed,
        )

    # -- reading (worker threads, the read connection) -----------------------------

    def _open_reader(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise AuditLogError(f"no audit log at {self.path}")
        conn = _connect(self.path, check_same_thread=False)
        try:
            _check_format(_meta(conn), self.path)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise AuditLogError(f"{self.path} is not an audit log: {exc}") from None
        except AuditLogError:
            conn.close()
            raise
        conn.execute("PRAGMA query_only = 1")
        return conn

    def open_reader(self) -> None:
        """Open the read connection now and check the file is an audit log
        (blocking). Raises AuditLogError otherwise."""
        self._read(lambda conn: None)

    def records_sync(
        self,
        *,
        limit: int | None = None,
        latest: bool = False,
        since: float | None = None,
        until: float | None = None,
        kind: str | None = None,
    ) -> list[AuditRecord]:
        """Blocking :meth:`records`."""
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("r.ts >= ?")
            params.append(since)
        if until is not None:
            where.append("r.ts < ?")
            params.append(until)
        if kind is not None:
            where.append("r.kind = ?")
            params.append(kind)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = _SELECT + clause + (" ORDER BY r.seq DESC" if latest else " ORDER BY r.seq")
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be non-negative, got {limit}")
            sql += " LIMIT ?"
            params.append(limit)

        def run(conn: sqlite3.Connection) -> list[AuditRecord]:
            return [_record_of(row) for row in conn.execute(sql, params).fetchall()]

        out: list[AuditRecord] = self._read(run)
        if latest:
            out.reverse()
        return out

    async def records(
        self,
        *,
        limit: int | None = None,
        latest: bool = False,
        since: float | None = None,
        until: float | None = None,
        kind: str | None = None,
    ) -> list[AuditRecord]:
        """Committed records, in chain order (oldest first): those whose
        ``ts`` is in ``[since, until)`` and of ``kind`` (``"request"`` or
        ``"admin"``; ``None``: any). ``limit`` keeps the first ``limit``, or
        with ``latest=True`` the last ``limit`` (still oldest first)."""
        return await anyio.to_thread.run_sync(
            lambda: self.records_sync(limit=limit, latest=latest, since=since, until=until, kind=kind)
        )

    def verify_sync(self, *, head: str | None = None) -> VerifyReport:
        """Blocking :meth:`verify`."""
        report: VerifyReport = self._read(lambda conn: _verify(conn, self.path, head))
        return report

    async def verify(self, *, head: str | None = None) -> VerifyReport:
        """Recompute the chain of committed records from the anchor (or from
        the start) and report the first break: a record altered (its hash
        does not match its content), personal fields altered (their digest
        does not match), a record missing (a gap in ``seq``, or a
        ``prev_hash`` that is not the previous hash), or an anchor that no
        ``audit.purge`` record vouches for (a prefix deleted outside a purge).

        A chain whose newest records were deleted (personal rows too) is
        still a valid chain: pass ``head``, a :attr:`VerifyReport.head_hash`
        kept somewhere else since the last purge, to require that the chain
        still contains it."""
        return await anyio.to_thread.run_sync(lambda: self.verify_sync(head=head))


# ---------------------------------------------------------------------------
# Standalone access


def default_path(config: SwarmgateConfig | None = None) -> Path:
    """Where the audit log of ``config`` lives (``security.audit.path``,
    relative to the data directory; default ``audit.db`` there). Raises
    ConfigError for a bad section."""
    return AuditSettings.from_config(config).resolved_path()


def open_log(path: str | Path) -> AuditLog:
    """Open an existing audit log for reading, verifying, purging and
    erasing without a manager (no writer thread). Raises AuditLogError when
    there is no audit log at ``path``."""
    audit = AuditLog(Path(path).expanduser())
    audit.open_reader()
    return audit


__all__ = [
    "AAD_PREFIX",
    "FORMAT",
    "SCHEMA_VERSION",
    "AuditLog",
    "AuditLogError",
    "AuditStats",
    "default_path",
    "new_admin_id",
    "open_bodies",
    "open_log",
]
