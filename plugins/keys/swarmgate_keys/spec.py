"""What a caller key carries: :class:`KeySpec` (what ``create`` is given),
:class:`CallerKey` (a stored key as shown: never the key, never its digest),
:class:`IssuedKey` (the answer of ``create``: the one time the key is seen),
and expiry parsing (``30d``, ``12h``, an ISO 8601 date or time).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

import attrs
import orjson

from swarmgate import CallerPolicy, ConfigError, parse_section
from swarmgate.config import InvalidValue

#: A key's name: what ``request.caller`` is set to, so what rate limits,
#: budgets, usage and the audit log know the caller by.
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
#: Names that would pass for something else: the gateway's admin caller,
#: a key id or a fingerprint (``keys revoke`` takes any of those).
RESERVED_NAMES: Final = frozenset({"admin"})
RESERVED_NAME_PREFIXES: Final = ("ck_", "sg-", "key:")
#: Largest ``metadata``, encoded as JSON.
MAX_METADATA_BYTES: Final = 4096

KeyStatus = Literal["active", "expired", "revoked"]

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
_UNIT_SECONDS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}


def _limit(key: str, value: float | None, *, zero: bool) -> None:
    if value is None:
        return
    ok = value >= 0 if zero else value > 0
    if not (ok and math.isfinite(value)):
        kind = "non-negative" if zero else "positive"
        raise InvalidValue(key, f"must be a {kind} number, got {value}")


def check_name(name: str) -> None:
    """Raise InvalidValue (key ``name``) unless ``name`` is a usable key name."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidValue(
            "name",
            f"must be 1-100 characters of letters, digits and . _ @ + - (starting with a letter or digit), got {name!r}",
        )
    if name in RESERVED_NAMES or name.startswith(RESERVED_NAME_PREFIXES):
        raise InvalidValue(
            "name",
            f"{name!r} is reserved ('admin' is the admin key's caller; ck_, sg- and key: start ids, keys and fingerprints)",
        )


@attrs.frozen
class KeySpec:
    """A key to create.

    ``name``: the caller's name (unique among keys not revoked).
    ``models``: the models, ``provider/model`` targets or route names it may
    ask for, ``*``/``?`` wildcards allowed (``None``: any). Rate limit:
    ``requestsPerMinute``, ``tokensPerMinute``, ``burstCapacity`` (enforced
    by swarmgate-ratelimit). Budget: ``dailyBudget``, ``monthlyBudget``
    (UTC day and month, enforced by swarmgate-budget). ``expiresAt``: unix
    time after which it is refused (``None``: never). ``metadata``: a JSON
    object stored with it (at most 4 KiB; no secrets: it is shown by list).
    """

    name: str
    models: tuple[str, ...] | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    burst_capacity: float | None = None
    daily_budget: float | None = None
    monthly_budget: float | None = None
    expires_at: float | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        check_name(self.name)
        if self.models is not None:
            for i, model in enumerate(self.models):
                if not model or not model.strip():
                    raise InvalidValue(f"models[{i}]", "must be a non-empty string")
        _limit("requestsPerMinute", self.requests_per_minute, zero=False)
        _limit("tokensPerMinute", self.tokens_per_minute, zero=False)
        _limit("burstCapacity", self.burst_capacity, zero=False)
        _limit("dailyBudget", self.daily_budget, zero=True)
        _limit("monthlyBudget", self.monthly_budget, zero=True)
        if self.burst_capacity is not None and self.requests_per_minute is None:
            raise InvalidValue("burstCapacity", "needs requestsPerMinute (the rate the burst refills at)")
        if self.expires_at is not None and not math.isfinite(self.expires_at):
            raise InvalidValue("expiresAt", f"must be a unix time, got {self.expires_at}")
        try:
            encoded = orjson.dumps(self.metadata)
        except TypeError as exc:
            raise InvalidValue("metadata", f"must be JSON-ready: {exc}") from None
        if len(encoded) > MAX_METADATA_BYTES:
            raise InvalidValue("metadata", f"must be at most {MAX_METADATA_BYTES} bytes as JSON, got {len(encoded)}")

    def policy(self) -> CallerPolicy:
        """The limits as a :class:`~swarmgate.CallerPolicy`."""
        return CallerPolicy(
            allowed_models=self.models,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            burst_capacity=self.burst_capacity,
            daily_budget=self.daily_budget,
            monthly_budget=self.monthly_budget,
        )


def parse_expiry(text: str, *, now: float | None = None) -> float | None:
    """The unix time ``text`` names: a duration from now (``90s``, ``30m``,
    ``12h``, ``30d``, ``2w``), an ISO 8601 date (midnight UTC) or date-time
    (UTC unless it says otherwise), or ``never``/``none`` (``None``). Raises
    ValueError for anything else or a time not in the future."""
    stamp = time.time() if now is None else now
    cleaned = text.strip()
    if cleaned.lower() in ("never", "none"):
        return None
    match = _DURATION.fullmatch(cleaned)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if seconds <= 0:
            raise ValueError(f"{text!r}: a duration must be positive")
        return stamp + seconds
    try:
        when = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (90s, 30m, 12h, 30d, 2w), an ISO 8601 date or time, nor 'never'"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    at = when.timestamp()
    if at <= stamp:
        raise ValueError(f"{text!r} is not in the future")
    return at


def spec_from_json(data: Any, *, now: float | None = None) -> KeySpec:
    """A :class:`KeySpec` from the admin API's camelCase JSON. ``expires``
    (a string :func:`parse_expiry` reads) may stand for ``expiresAt``.
    Raises ConfigError naming every bad key."""
    if not isinstance(data, Mapping):
        raise ConfigError([("", "the body must be a JSON object")])
    fields = dict(data)
    if "expires" in fields:
        expires = fields.pop("expires")
        if "expiresAt" in fields:
            raise ConfigError([("expires", "give expires or expiresAt, not both")])
        if expires is not None:
            if not isinstance(expires, str):
                raise ConfigError([("expires", "must be a string such as '30d' or an ISO 8601 date")])
            try:
                fields["expiresAt"] = parse_expiry(expires, now=now)
            except ValueError as exc:
                raise ConfigError([("expires", str(exc))]) from None
    spec = parse_section(KeySpec, fields, "")
    stamp = time.time() if now is None else now
    if spec.expires_at is not None and spec.expires_at <= stamp:
        raise ConfigError([("expiresAt", "is not in the future")])
    return spec


@attrs.frozen
class CallerKey:
    """A stored caller key as anyone may see it: never the key, never its
    digest. ``fingerprint`` is ``key:`` and 8 hex digits of the key's
    SHA-256 (what the rest of swarmgate shows for a key)."""

    id: str
    name: str
    fingerprint: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    models: tuple[str, ...] | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    burst_capacity: float | None = None
    daily_budget: float | None = None
    monthly_budget: float | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)

    def status(self, now: float | None = None) -> KeyStatus:
        """``revoked``, ``expired`` or ``active`` at ``now`` (default: the time now)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at:
            return "expired"
        return "active"

    def usable(self, now: float) -> bool:
        """Whether the key authenticates at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def policy(self) -> CallerPolicy:
        """Its limits as a :class:`~swarmgate.CallerPolicy`."""
        return CallerPolicy(
            allowed_models=self.models,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            burst_capacity=self.burst_capacity,
            daily_budget=self.daily_budget,
            monthly_budget=self.monthly_budget,
        )

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        """camelCase JSON (times are unix seconds), with its ``status``."""
        return {
            "id": self.id,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "status": self.status(now),
            "createdAt": self.created_at,
            "expiresAt": self.expires_at,
            "revokedAt": self.revoked_at,
            "models": list(self.models) if self.models is not None else None,
            "requestsPerMinute": self.requests_per_minute,
            "tokensPerMinute": self.tokens_per_minute,
            "burstCapacity": self.burst_capacity,
            "dailyBudget": self.daily_budget,
            "monthlyBudget": self.monthly_budget,
            "metadata": dict(self.metadata),
        }


@attrs.frozen
class IssuedKey:
    """A key just created: ``key`` in clear (shown once, never stored) and
    its ``record``."""

    key: str = attrs.field(repr=False)
    record: CallerKey
