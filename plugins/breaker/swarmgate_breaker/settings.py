"""The circuit breaker's configuration (``routing.circuitBreaker``).

The guide's keys are ``enabled``, ``failureThreshold`` (consecutive
failures) and ``timeout`` (ms the circuit stays open); the rest extend it.
``routing.fallback.circuitBreaker: true`` (the guide's reliability-strategy
shape) turns the breaker on with the defaults when ``routing.circuitBreaker``
is absent. Durations are milliseconds.
"""

from __future__ import annotations

import math

import attrs

from swarmgate.config import InvalidValue
from swarmgate.errors import ErrorKind

#: The kinds that may count as a provider's fault. The others (invalid
#: request, context length, content filtered, budget, no provider) are the
#: request's or the gateway's business and never count.
COUNTABLE_KINDS = frozenset(
    {
        ErrorKind.TIMEOUT,
        ErrorKind.RATE_LIMITED,
        ErrorKind.OVERLOADED,
        ErrorKind.SERVER_ERROR,
        ErrorKind.CONNECTION_ERROR,
        ErrorKind.AUTHENTICATION,
        ErrorKind.PERMISSION,
        ErrorKind.NOT_FOUND,
    }
)

#: Counted by default: the kernel's retryable kinds (the provider is down,
#: slow or shedding load). Credential and not-found errors are configuration
#: faults: the retry plugin refreshes keys, and an open circuit would only
#: delay recovery after a key rotation; add them to ``countedErrors`` to count them.
DEFAULT_COUNTED = ("timeout", "rate_limited", "overloaded", "server_error", "connection_error")


def _at_least_one(key: str, value: int) -> None:
    if value < 1:
        raise InvalidValue(key, f"must be at least 1, got {value}")


def _positive_ms(key: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise InvalidValue(key, f"must be a positive number of milliseconds, got {value}")


@attrs.frozen
class BreakerSettings:
    """``routing.circuitBreaker``.

    A target (provider + model) opens after ``failureThreshold`` consecutive
    counted failures, or when at least ``minimumRequests`` attempts in the
    last ``window`` ms failed at ``failureRateThreshold`` or more (a
    fraction; unset: no rate trigger). It stays open ``timeout`` ms, then
    lets up to ``halfOpenMaxRequests`` probes through at a time;
    ``successThreshold`` successes close it, a failure reopens it.
    ``countedErrors`` are the error kinds that count as failures.
    ``syncInterval`` is how often (ms) an instance re-reads a closed
    circuit's shared state and writes its batched successes.
    ``markUnhealthy`` marks a provider unhealthy while every model of it is open.
    """

    enabled: bool = True
    failure_threshold: int = 5
    timeout: float = 60_000.0
    failure_rate_threshold: float | None = None
    minimum_requests: int = 10
    window: float = 60_000.0
    half_open_max_requests: int = 1
    success_threshold: int = 2
    counted_errors: tuple[str, ...] = DEFAULT_COUNTED
    sync_interval: float = 1000.0
    mark_unhealthy: bool = True

    def __attrs_post_init__(self) -> None:
        _at_least_one("failureThreshold", self.failure_threshold)
        _at_least_one("minimumRequests", self.minimum_requests)
        _at_least_one("halfOpenMaxRequests", self.half_open_max_requests)
        _at_least_one("successThreshold", self.success_threshold)
        _positive_ms("timeout", self.timeout)
        _positive_ms("window", self.window)
        if not (self.sync_interval >= 0 and math.isfinite(self.sync_interval)):
            raise InvalidValue(
                "syncInterval", f"must be a non-negative number of milliseconds, got {self.sync_interval}"
            )
        rate = self.failure_rate_threshold
        if rate is not None and not 0 < rate <= 1:
            raise InvalidValue("failureRateThreshold", f"must be a fraction in (0, 1], e.g. 0.5, got {rate}")
        countable = sorted(k.value for k in COUNTABLE_KINDS)
        for i, name in enumerate(self.counted_errors):
            try:
                kind = ErrorKind(name)
            except ValueError:
                raise InvalidValue(
                    f"countedErrors[{i}]", f"unknown error kind {name!r} (countable: {countable})"
                ) from None
            if kind not in COUNTABLE_KINDS:
                raise InvalidValue(
                    f"countedErrors[{i}]",
                    f"{name!r} is not the provider's fault and never counts (countable: {countable})",
                )

    def counted_kinds(self) -> frozenset[ErrorKind]:
        """``countedErrors`` as kernel kinds."""
        return frozenset(ErrorKind(name) for name in self.counted_errors)
