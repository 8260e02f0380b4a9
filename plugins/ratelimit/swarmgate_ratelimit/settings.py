"""The rate limiter's configuration.

``optimization.rateLimiting`` (the guide's keys are ``enabled``,
``requestsPerMinute`` and ``burstCapacity``; the rest extend it) and each
provider's ``providers.<name>.rateLimit``. Rates are per minute, ``maxWait``
is milliseconds.
"""

from __future__ import annotations

import math

import attrs

from swarmgate.config import InvalidValue

#: Tokens reserved for the answer of a request that sets no ``max_tokens``
#: (and, at a provider, whose model config sets none either).
DEFAULT_MAX_TOKENS = 1024


def _positive(key: str, value: float | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise InvalidValue(key, f"must be a positive number, got {value:g}")


@attrs.frozen
class LimitSettings:
    """One set of limits: ``requestsPerMinute`` with a bucket of
    ``burstCapacity`` requests (default: one minute's worth), and
    ``tokensPerMinute`` (prompt + completion tokens; the bucket holds one
    minute's worth). An absent rate is no limit of that kind; an empty
    object is no limit at all."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    burst_capacity: float | None = None

    def __attrs_post_init__(self) -> None:
        _positive("requestsPerMinute", self.requests_per_minute)
        _positive("tokensPerMinute", self.tokens_per_minute)
        if self.burst_capacity is not None:
            if not (self.burst_capacity >= 1 and math.isfinite(self.burst_capacity)):
                raise InvalidValue(
                    "burstCapacity", f"must be a number of requests of at least 1, got {self.burst_capacity:g}"
                )
            if self.requests_per_minute is None:
                raise InvalidValue("burstCapacity", "needs requestsPerMinute (the rate the burst refills at)")

    @property
    def empty(self) -> bool:
        """Whether these settings limit nothing."""
        return self.requests_per_minute is None and self.tokens_per_minute is None


@attrs.frozen
class RateLimitSettings:
    """``optimization.rateLimiting``.

    ``requestsPerMinute`` / ``burstCapacity`` / ``tokensPerMinute`` limit the
    whole gateway. ``perCaller`` are the limits every distinct caller
    (``CompletionRequest.caller``) gets on its own; ``callers`` override
    them for named callers (``{}``: unlimited). A caller policy from a caller
    directory (the gateway's API keys) that sets a rate overrides both.
    ``maxWait`` is how long (ms) a request refused by the gateway or caller
    limits may wait for its bucket to refill before it is refused (0: refuse
    at once); when every provider of a request is at its own limit it may
    wait for the first to refill too. ``defaultMaxTokens`` is the answer
    size reserved for a request that sets no ``max_tokens``.
    ``enabled: false`` turns every limit off, the providers' too.
    """

    enabled: bool = True
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    burst_capacity: float | None = None
    max_wait: float = 0.0
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    per_caller: LimitSettings | None = None
    callers: dict[str, LimitSettings] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        # The same checks as LimitSettings, naming this section's keys.
        LimitSettings(self.requests_per_minute, self.tokens_per_minute, self.burst_capacity)
        if not (self.max_wait >= 0 and math.isfinite(self.max_wait)):
            raise InvalidValue("maxWait", f"must be a non-negative number of milliseconds, got {self.max_wait:g}")
        if self.default_max_tokens < 1:
            raise InvalidValue("defaultMaxTokens", f"must be at least 1, got {self.default_max_tokens}")
        for name in self.callers:
            if not name:
                raise InvalidValue("callers", "a caller id must not be empty")

    @property
    def global_limits(self) -> LimitSettings:
        """The gateway-wide limits."""
        return LimitSettings(self.requests_per_minute, self.tokens_per_minute, self.burst_capacity)
