"""The values of the audit log: :class:`AuditRecord` (one per request or
admin action), and what :meth:`AuditLog.verify <swarmgate_audit.AuditLog.verify>`
reports (:class:`VerifyReport`, :class:`ChainBreak`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

import attrs

#: ``AuditRecord.kind`` of a request record.
REQUEST = "request"
#: ``AuditRecord.kind`` of an admin action record.
ADMIN = "admin"


class Encryptor(Protocol):
    """What the encryption plugin publishes as ``manager.extensions["encryption"]``
    (the part the audit log uses). ``decrypt`` raises (``TamperedError``)
    when ``blob`` fails authentication under ``aad``. Both are called from
    the audit log's writer thread or a reader's thread, never the event loop."""

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, blob: bytes, aad: bytes) -> bytes: ...


@attrs.frozen(kw_only=True)
class AuditRecord:
    """One record, as stored.

    * ``seq`` -- its position in the chain (1, 2, ...; gaps only before the anchor);
    * ``id`` -- the request id (``context.id``) or ``adm_...`` for an admin action;
    * ``ts`` -- unix seconds: when the request started, or the action happened;
    * ``kind`` -- ``"request"`` or ``"admin"``; ``level`` -- ``info``,
      ``warning`` (a request that ended without an answer) or ``error``
      (one that failed with status 500 or more);
    * ``data`` -- the public fields (for a request: ``requested_model``,
      ``route``, ``provider``, ``model``, ``ok``, ``status``, ``error_kind``,
      ``cost``, ``input_tokens``, ``output_tokens``, ``latency_ms``,
      ``cache_hit``, ``stream``, ``attempts``, ``tags``, ``bodies``; for an
      admin action: ``action``, and what the log itself adds to its own
      ``audit.purge``/``audit.forget`` records);
    * ``personal`` -- the personal fields (request: ``caller``, ``user``,
      ``client``, and ``bodies`` or ``bodies_encrypted``; admin: ``actor``,
      ``target``, ``details``, ``client``; each with its ``salt``), ``None``
      when there were none or they were erased (``erased`` tells which);
    * ``prev_hash``/``hash`` -- the chain (see :mod:`swarmgate_audit.chain`).
    """

    seq: int
    id: str
    ts: float
    kind: str
    level: str
    data: Mapping[str, Any]
    personal: Mapping[str, Any] | None = None
    erased: bool = False
    prev_hash: str
    hash: str

    @property
    def who(self) -> str | None:
        """The caller of a request, the actor of an admin action (``None``
        when unknown or erased)."""
        if self.personal is None:
            return None
        value = self.personal.get("caller" if self.kind == REQUEST else "actor")
        return value if isinstance(value, str) else None

    @property
    def client(self) -> str | None:
        """Where it came from (the client address the gateway saw), if recorded."""
        if self.personal is None:
            return None
        value = self.personal.get("client")
        return value if isinstance(value, str) else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of the fields."""
        return {
            "seq": self.seq,
            "id": self.id,
            "ts": self.ts,
            "kind": self.kind,
            "level": self.level,
            "data": dict(self.data),
            "personal": None if self.personal is None else dict(self.personal),
            "erased": self.erased,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def _when(ts: float | None) -> str:
    if ts is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f" ({ts:.3f})"


@attrs.frozen(kw_only=True)
class ChainBreak:
    """The first place the chain does not hold: the record at ``seq`` (its
    ``id`` and ``ts``; ``None`` when the record itself is missing), what is
    wrong, and the value expected there against the one found."""

    seq: int
    id: str | None
    ts: float | None
    problem: str
    expected: str
    found: str

    def describe(self) -> str:
        """One line naming the record and the mismatch."""
        who = f"record {self.id} (seq {self.seq}, ts {_when(self.ts)})" if self.id else f"record seq {self.seq}"
        return f"{who}: {self.problem}; expected {self.expected}, found {self.found}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of the fields (and ``message``: :meth:`describe`)."""
        return {**attrs.asdict(self), "message": self.describe()}


@attrs.frozen(kw_only=True)
class VerifyReport:
    """What :meth:`AuditLog.verify` found.

    ``ok`` -- the whole chain holds; ``checked`` -- records checked (up to
    the first break); ``first_seq``/``last_seq`` -- the range of records
    present; ``anchor_seq``/``anchor_hash`` -- where verification started
    (after a retention purge; ``None``: from the start); ``head_hash`` --
    the hash of the last record (keep it somewhere else to detect a rewrite
    of the whole tail); ``erased`` -- records whose personal fields were
    erased (``compliance forget``); ``broken`` -- the first break.
    """

    path: str
    ok: bool
    checked: int
    first_seq: int | None
    last_seq: int | None
    anchor_seq: int | None
    anchor_hash: str | None
    head_hash: str
    erased: int
    broken: ChainBreak | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of the fields."""
        data = attrs.asdict(self, recurse=False)
        data["broken"] = None if self.broken is None else self.broken.to_dict()
        return data
