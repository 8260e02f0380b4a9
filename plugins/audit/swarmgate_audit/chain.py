"""The hash chain: canonical JSON, record hashes, personal-data digests.

A record's *hashed form* is the mapping::

    {"seq": n, "id": ..., "ts": ..., "kind": "request"|"admin", "level": ...,
     "data": {...public fields...}, "personal": <digest or null>}

and ``hash = sha256(prev_hash || canonical_json(hashed form))`` (both as
UTF-8 bytes, the hash as 64 lowercase hex digits). The first record after
an empty log chains to :data:`GENESIS`; after a retention purge, the first
remaining record chains to the anchor (the hash of the last purged one).

Personal fields (caller, client address, bodies, an admin action's actor,
target and details) are not in the hashed form themselves but through
``personal = sha256(canonical_json(personal fields))``. They carry a random
``salt``, so the digest that stays after they are erased cannot be
reversed by trying likely callers or addresses.

Canonical JSON: keys sorted, no whitespace, ASCII only (``\\uXXXX``
escapes, so any string encodes), no NaN or infinities (callers store
non-finite numbers as ``null``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

#: The ``prev_hash`` of the first record of a log.
GENESIS: Final = "0" * 64


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON (see the module docstring). Raises
    ValueError for NaN or infinities and TypeError for values JSON cannot hold."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def hashed_form(
    seq: int, record_id: str, ts: float, kind: str, level: str, data: Mapping[str, Any], personal: str | None
) -> dict[str, Any]:
    """The mapping a record's hash covers."""
    return {"seq": seq, "id": record_id, "ts": ts, "kind": kind, "level": level, "data": data, "personal": personal}


def record_hash(prev_hash: str, form: Mapping[str, Any]) -> str:
    """``sha256(prev_hash || canonical_json(form))`` as hex."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical_json(form).encode("ascii"))
    return digest.hexdigest()


def record_hash_encoded(
    prev_hash: str,
    seq: int,
    record_id: str,
    ts: float,
    kind: str,
    level: str,
    data_json: str,
    personal: str | None,
) -> str:
    """:func:`record_hash` of :func:`hashed_form`, given the record's data
    already as canonical JSON (``data_json``, which the log stores anyway):
    the hashed form is assembled around it, not encoded again. The same
    bytes as ``canonical_json(hashed_form(...))``: keys in sorted order,
    each value encoded by :func:`canonical_json` (tests check the two agree)."""
    form = (
        '{"data":'
        + data_json
        + ',"id":'
        + canonical_json(record_id)
        + ',"kind":'
        + canonical_json(kind)
        + ',"level":'
        + canonical_json(level)
        + ',"personal":'
        + canonical_json(personal)
        + ',"seq":'
        + canonical_json(seq)
        + ',"ts":'
        + canonical_json(ts)
        + "}"
    )
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(form.encode("ascii"))
    return digest.hexdigest()


def personal_digest(canonical: str) -> str:
    """The digest of a record's personal fields, given as canonical JSON."""
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
