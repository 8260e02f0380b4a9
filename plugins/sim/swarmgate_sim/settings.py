"""The settings of a simulated provider: the ``sim`` keys of a provider config.

The kernel structures the provider-type keys (camelCase, at the top level of
the provider's config) into :class:`SimSettings` with its converter, so a
wrong type or an unknown key is already a ``ConfigError`` naming the path.
What types cannot express (rates in [0, 1], known failure kinds, ordered
ranges) is checked by :func:`problems`, which :class:`~swarmgate_sim.SimProvider`
runs when it is built.

Durations are *simulated* time: every wait is multiplied by ``timeScale``
(``0`` means no waiting at all). Outage windows are simulated seconds since
the provider started, i.e. real seconds divided by ``timeScale`` (real
seconds when ``timeScale`` is ``0``).
"""

from __future__ import annotations

import attrs

from swarmgate import (
    AuthenticationError,
    ContentFilteredError,
    ContextLengthExceededError,
    ErrorKind,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    SwarmgateError,
)

#: The error a simulated failure of each kind raises, with the HTTP status a
#: real upstream would have answered. ``budget_exceeded`` and
#: ``no_provider_available`` are gateway decisions, never a provider's, so
#: they cannot be simulated.
FAILURE_CLASSES: dict[str, tuple[type[SwarmgateError], int | None]] = {
    ErrorKind.RATE_LIMITED.value: (RateLimitedError, 429),
    ErrorKind.OVERLOADED.value: (OverloadedError, 529),
    ErrorKind.SERVER_ERROR.value: (ServerError, 500),
    ErrorKind.TIMEOUT.value: (ProviderTimeoutError, None),
    ErrorKind.CONNECTION_ERROR.value: (ProviderConnectionError, None),
    ErrorKind.AUTHENTICATION.value: (AuthenticationError, 401),
    ErrorKind.PERMISSION.value: (PermissionDeniedError, 403),
    ErrorKind.NOT_FOUND.value: (NotFoundError, 404),
    ErrorKind.INVALID_REQUEST.value: (InvalidRequestError, 400),
    ErrorKind.CONTEXT_LENGTH_EXCEEDED.value: (ContextLengthExceededError, 400),
    ErrorKind.CONTENT_FILTERED.value: (ContentFilteredError, 400),
}

#: Failure kinds a simulated provider can produce, sorted.
FAILURE_KINDS: tuple[str, ...] = tuple(sorted(FAILURE_CLASSES))

#: The longest output a simulated model writes (bounds the filler text).
MAX_OUTPUT_TOKENS = 4096


@attrs.frozen
class Outage:
    """A window during which every call fails with ``kind``.

    ``startS`` simulated seconds after the provider started, lasting
    ``durationS``; with ``everyS`` it repeats with that period (a window
    opens at ``startS``, ``startS + everyS``, ...).
    """

    start_s: float
    duration_s: float
    every_s: float | None = None
    kind: str = ErrorKind.CONNECTION_ERROR.value

    def active(self, elapsed: float) -> bool:
        """Whether this outage covers ``elapsed`` simulated seconds since start."""
        offset = elapsed - self.start_s
        if offset < 0:
            return False
        if self.every_s is not None:
            offset %= self.every_s
        return offset < self.duration_s

    def ends(self, elapsed: float) -> float:
        """When (simulated seconds since start) the window covering ``elapsed`` closes."""
        offset = elapsed - self.start_s
        if self.every_s is not None:
            return elapsed - offset % self.every_s + self.duration_s
        return self.start_s + self.duration_s


def _default_kinds() -> dict[str, float]:
    return {"rate_limited": 0.4, "overloaded": 0.25, "server_error": 0.25, "timeout": 0.1}


@attrs.frozen
class SimSettings:
    """A simulated provider's profile (config keys in camelCase).

    * ``ttftMs``/``ttftJitter``: time to first token, lognormal with that
      median (ms) and that sigma (``0``: always exactly ``ttftMs``).
    * ``tokensPerSecond``: output pace after the first token.
    * ``timeScale``: multiplies every wait; ``0`` never sleeps (benchmarks),
      ``0.1`` runs ten times faster (demos).
    * ``outputTokens``: ``[min, max]`` output length, uniform; ``null``
      derives it from the call's ``max_tokens`` (a quarter to a half of it,
      256 when unset). Output beyond ``max_tokens`` is cut (finish ``length``).
    * ``failureRate``: probability in [0, 1] that a call fails; the kind is
      drawn from ``failureKinds`` (weights; see :data:`FAILURE_KINDS`).
      ``rate_limited`` failures carry ``retryAfterS``; ``timeout`` failures
      take the provider's whole ``timeout`` (scaled); others come back after
      about ``errorLatencyMs``.
    * ``midStreamFailureRate``: probability in [0, 1] that a stream breaks
      (connection error) after some tokens.
    * ``outages``: windows of total failure, see :class:`Outage`.
    * ``seed``: seeds this provider's random draws (mixed with its name, so
      providers sharing a seed still differ); ``null`` draws a fresh seed.
    """

    ttft_ms: float = 300.0
    ttft_jitter: float = 0.35
    tokens_per_second: float = 80.0
    time_scale: float = 1.0
    output_tokens: tuple[int, int] | None = (20, 300)
    failure_rate: float = 0.0
    failure_kinds: dict[str, float] = attrs.field(factory=_default_kinds)
    mid_stream_failure_rate: float = 0.0
    retry_after_s: float = 1.0
    error_latency_ms: float = 100.0
    outages: tuple[Outage, ...] = ()
    seed: int | None = None


def _rate(problems: list[tuple[str, str]], path: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        problems.append((path, f"must be a probability between 0 and 1, got {value:g}"))


def _non_negative(problems: list[tuple[str, str]], path: str, value: float) -> None:
    if value < 0:
        problems.append((path, f"must not be negative, got {value:g}"))


def _kind(problems: list[tuple[str, str]], path: str, kind: str) -> None:
    if kind not in FAILURE_CLASSES:
        problems.append((path, f"unknown failure kind {kind!r} (valid kinds: {', '.join(FAILURE_KINDS)})"))


def problems(settings: SimSettings) -> list[tuple[str, str]]:
    """Every value of ``settings`` the types allow but the simulation cannot
    use, as ``(camelCase path relative to the provider, message)`` pairs."""
    out: list[tuple[str, str]] = []
    _non_negative(out, "ttftMs", settings.ttft_ms)
    _non_negative(out, "ttftJitter", settings.ttft_jitter)
    if settings.tokens_per_second <= 0:
        out.append(("tokensPerSecond", f"must be a positive number, got {settings.tokens_per_second:g}"))
    _non_negative(out, "timeScale", settings.time_scale)
    if settings.output_tokens is not None:
        low, high = settings.output_tokens
        if not 1 <= low <= high <= MAX_OUTPUT_TOKENS:
            out.append(
                ("outputTokens", f"must be [min, max] with 1 <= min <= max <= {MAX_OUTPUT_TOKENS}, got [{low}, {high}]")
            )
    _rate(out, "failureRate", settings.failure_rate)
    _rate(out, "midStreamFailureRate", settings.mid_stream_failure_rate)
    for kind, weight in settings.failure_kinds.items():
        _kind(out, f"failureKinds.{kind}", kind)
        _non_negative(out, f"failureKinds.{kind}", weight)
    if settings.failure_rate > 0 and sum(w for w in settings.failure_kinds.values() if w > 0) <= 0:
        out.append(("failureKinds", "needs at least one kind with a positive weight when failureRate > 0"))
    _non_negative(out, "retryAfterS", settings.retry_after_s)
    _non_negative(out, "errorLatencyMs", settings.error_latency_ms)
    for i, outage in enumerate(settings.outages):
        base = f"outages[{i}]"
        _non_negative(out, f"{base}.startS", outage.start_s)
        if outage.duration_s <= 0:
            out.append((f"{base}.durationS", f"must be a positive number of seconds, got {outage.duration_s:g}"))
        if outage.every_s is not None and outage.every_s <= outage.duration_s:
            out.append(
                (f"{base}.everyS", f"must be longer than durationS ({outage.duration_s:g}), got {outage.every_s:g}")
            )
        _kind(out, f"{base}.kind", outage.kind)
    return out
