"""Token buckets as the rate limiter sees them: what each one limits, its
StateStore keys, and how it is described in errors and snapshots.

A bucket refills ``per_minute / 60`` units per second up to ``capacity``
and starts full. Request buckets hold ``burstCapacity`` requests (default:
one minute's worth); token buckets hold one minute's worth of tokens.
"""

from __future__ import annotations

from typing import Literal

import attrs

from swarmgate_ratelimit.settings import LimitSettings

Unit = Literal["requests", "tokens"]

#: Every StateStore key the plugin writes starts with this.
KEY_PREFIX = "ratelimit:"
GLOBAL_SCOPE = "global"


def caller_scope(caller: str) -> str:
    """The scope name of a caller's own limits (``caller:<id>``)."""
    return f"caller:{caller}"


def provider_scope(provider: str) -> str:
    """The scope name of a provider's limits (``provider:<name>``)."""
    return f"provider:{provider}"


def seconds(value: float) -> str:
    """A wait for a message: ``0.6 s``, ``0.004 s``, ``12.0 s``."""
    return f"{value:.1f} s" if value >= 0.1 else f"{value:.3f} s"


@attrs.frozen
class Bucket:
    """One token bucket. ``key`` is its StateStore key; ``rate`` is units
    per second. Debt (tokens used beyond what a token bucket held) is kept
    in the bucket by the StateStore; ``debt_key`` is where a state backend
    without the batch operations keeps it instead (a counter,
    :func:`swarmgate.state.batch_ops`)."""

    scope: str
    unit: Unit
    per_minute: float
    capacity: float
    rate: float
    key: str
    debt_key: str

    @classmethod
    def of(cls, scope: str, unit: Unit, per_minute: float, capacity: float | None = None) -> Bucket:
        """A bucket refilling ``per_minute`` units a minute; ``capacity``
        defaults to one minute's worth (at least one unit)."""
        size = max(capacity if capacity is not None else per_minute, 1.0)
        key = f"{KEY_PREFIX}{unit}:{scope}"
        return cls(scope, unit, per_minute, size, per_minute / 60.0, key, key + ":debt")

    def describe(self) -> str:
        """``100 requests/min (burst 20)`` or ``10000 tokens/min``."""
        if self.unit == "requests":
            return f"{self.per_minute:g} requests/min (burst {self.capacity:g})"
        return f"{self.per_minute:g} tokens/min"


@attrs.frozen
class Limits:
    """The limits of one scope (the gateway, a caller, a provider): a
    request bucket, a token bucket, or both."""

    scope: str
    requests: Bucket | None
    tokens: Bucket | None

    @classmethod
    def build(
        cls, scope: str, requests_per_minute: float | None, tokens_per_minute: float | None, burst: float | None
    ) -> Limits | None:
        """The limits of ``scope``, or ``None`` when neither rate is set.
        ``burst`` only applies with a request rate."""
        if requests_per_minute is None and tokens_per_minute is None:
            return None
        requests = None if requests_per_minute is None else Bucket.of(scope, "requests", requests_per_minute, burst)
        tokens = None if tokens_per_minute is None else Bucket.of(scope, "tokens", tokens_per_minute)
        return cls(scope, requests, tokens)

    @classmethod
    def of(cls, scope: str, settings: LimitSettings) -> Limits | None:
        """:meth:`build` from configured settings."""
        return cls.build(scope, settings.requests_per_minute, settings.tokens_per_minute, settings.burst_capacity)
