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

import json
import math
from collections.abc import Mapping
from hashlib import sha256
from json.encoder import encode_basestring_ascii
from typing import Any, Final

#: The ``prev_hash`` of the first record of a log.
GENESIS: Final = "0" * 64


#: The hashed form with its values already encoded, keys in sorted order.
_HASHED_FORM: Final = '{"data":%s,"id":%s,"kind":%s,"level":%s,"personal":%s,"seq":%s,"ts":%s}'
#: One encoder for every call (``json.dumps`` with these options builds a new one each time).
_ENCODER: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
_encode: Final = _ENCODER.encode
_isfinite: Final = math.isfinite


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON (see the module docstring). Raises
    ValueError for NaN or infinities and TypeError for values JSON cannot hold."""
    return _encode(value)


def json_string(value: Any) -> str:
    """:func:`canonical_json` of ``value``, fast for a ``str`` or ``None``."""
    if type(value) is str:
        return encode_basestring_ascii(value)
    return "null" if value is None else _encode(value)


def json_number(value: Any) -> str:
    """:func:`canonical_json` of ``value``, fast for an ``int`` or a ``float``
    (ValueError for NaN or infinities, like :func:`canonical_json`)."""
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and _isfinite(value):
        return float.__repr__(value)
    return _encode(value)


def hashed_form(
    seq: int, record_id: str, ts: float, kind: str, level: str, data: Mapping[str, Any], personal: str | None
) -> dict[str, Any]:
    """The mapping a record's hash covers."""
    return {"seq": seq, "id": record_id, "ts": ts, "kind": kind, "level": level, "data": data, "personal": personal}


def record_hash(prev_hash: str, form: Mapping[str, Any]) -> str:
    """``sha256(prev_hash || canonical_json(form))`` as hex."""
    return sha256((prev_hash + canonical_json(form)).encode("ascii")).hexdigest()


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
    each value encoded as :func:`canonical_json` encodes it (tests check
    the two agree)."""
    form = _HASHED_FORM % (
        data_json,
        json_string(record_id),
        json_string(kind),
        json_string(level),
        json_string(personal),
        json_number(seq),
        json_number(ts),
    )
    return sha256((prev_hash + form).encode("ascii")).hexdigest()


def personal_digest(canonical: str) -> str:
    """The digest of a record's personal fields, given as canonical JSON."""
    return sha256(canonical.encode("ascii")).hexdigest()
