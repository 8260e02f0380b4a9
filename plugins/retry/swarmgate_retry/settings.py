"""The retry plugin's configuration: the sections it reads, their
validation, and the resolved per-provider :class:`Policy`.

Sections (each optional; the plugin is inert when none is present):

* ``optimization.retry`` -- the guide's location (``maxAttempts``,
  ``backoffMultiplier``, ``initialDelay``);
* ``routing.retry`` -- the same keys; where both are given, ``routing.retry``
  wins key by key;
* ``providers.<name>.retry`` -- the same keys for one provider, overriding
  the global ones key by key (``retryBudget`` is global only).

Each section also accepts the guide's error-recovery shape: a
``retryPolicy`` object holding the backoff keys, ``errorClassification``
(``retryable`` / ``nonRetryable`` lists of error names) and
``recoveryActions`` (error name -> action). Durations are milliseconds.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Mapping
from typing import Any

import attrs

from swarmgate.config import InvalidValue
from swarmgate.errors import ERROR_CLASSES, ErrorKind

# ---------------------------------------------------------------------------
# Error names and actions

#: The guide's error names, mapped to the kernel's kinds. Every kernel kind
#: (``rate_limited``, ``overloaded``, ...) is accepted under its own name too.
GUIDE_NAMES: Mapping[str, tuple[ErrorKind, ...]] = {
    "timeout": (ErrorKind.TIMEOUT,),
    "rate_limit": (ErrorKind.RATE_LIMITED,),
    "temporary_error": (ErrorKind.OVERLOADED, ErrorKind.SERVER_ERROR, ErrorKind.CONNECTION_ERROR),
    "authentication": (ErrorKind.AUTHENTICATION,),
    "invalid_request": (ErrorKind.INVALID_REQUEST,),
    "forbidden": (ErrorKind.PERMISSION,),
}

#: The per-attempt error kinds the plugin decides on (the others are never
#: raised by an attempt: budget and no-provider errors come from the pipeline).
ATTEMPT_KINDS: tuple[ErrorKind, ...] = tuple(
    k for k in ErrorKind if k not in (ErrorKind.BUDGET_EXCEEDED, ErrorKind.NO_PROVIDER_AVAILABLE)
)

#: Kinds that retrying the same target may cure (the kernel's ``retryable``).
RETRYABLE_KINDS = frozenset(k for k in ATTEMPT_KINDS if ERROR_CLASSES[k].retryable)
#: Kinds another target may cure (the kernel's ``failover``).
FAILOVER_KINDS = frozenset(k for k in ATTEMPT_KINDS if ERROR_CLASSES[k].failover)
#: Kinds that are never retried nor failed over: the caller gets the error.
FINAL_KINDS = frozenset({ErrorKind.CONTENT_FILTERED, ErrorKind.INVALID_REQUEST})


def _known_names() -> list[str]:
    return sorted(set(GUIDE_NAMES) | {k.value for k in ATTEMPT_KINDS})


def kinds_of(name: str) -> tuple[ErrorKind, ...] | None:
    """The kernel kinds an error name stands for (``None``: unknown name)."""
    kinds = GUIDE_NAMES.get(name)
    if kinds is not None:
        return kinds
    try:
        kind = ErrorKind(name)
    except ValueError:
        return None
    return (kind,) if kind in ATTEMPT_KINDS else None


class Action(enum.Enum):
    """What the plugin does after a failed attempt of a given kind."""

    #: Retry the same target after an exponential, jittered backoff.
    RETRY = "retry"
    #: Fail over to the next target at once.
    SWITCH_PROVIDER = "switch_provider"
    #: Switch to a model with a larger context window (context length errors).
    SWITCH_MODEL = "switch_model"
    #: Re-read the provider's key; retry once if it changed, else fail over.
    REFRESH_CREDENTIALS = "refresh_credentials"
    #: The guide's action for timeouts. The kernel has no per-attempt timeout
    #: override yet, so it fails over like ``switch_provider``.
    INCREASE_TIMEOUT = "increase_timeout"
    #: Stop: the caller gets this attempt's error.
    ABORT = "abort"


def _allowed_actions(kind: ErrorKind) -> frozenset[Action]:
    """The actions that make sense for ``kind``."""
    if kind in FINAL_KINDS:
        return frozenset({Action.ABORT})
    allowed = {Action.ABORT, Action.SWITCH_PROVIDER}
    if kind in RETRYABLE_KINDS:
        allowed.add(Action.RETRY)
    if kind is ErrorKind.TIMEOUT:
        allowed.add(Action.INCREASE_TIMEOUT)
    if kind in (ErrorKind.AUTHENTICATION, ErrorKind.PERMISSION):
        allowed.add(Action.REFRESH_CREDENTIALS)
    if kind is ErrorKind.CONTEXT_LENGTH_EXCEEDED:
        allowed.add(Action.SWITCH_MODEL)
    return frozenset(allowed)


# ---------------------------------------------------------------------------
# Validators


def _positive_int(key: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise InvalidValue(key, f"must be at least 1, got {value}")


def _non_negative(key: str, value: float | None) -> None:
    if value is not None and not (value >= 0 and math.isfinite(value)):
        raise InvalidValue(key, f"must be a non-negative number of milliseconds, got {value}")


_JITTERS = ("full", "equal", "none")


def _check_backoff(obj: Any) -> None:
    _positive_int("maxAttempts", obj.max_attempts)
    if obj.backoff_multiplier is not None and not (1.0 <= obj.backoff_multiplier <= 100.0):
        raise InvalidValue("backoffMultiplier", f"must be between 1 and 100, got {obj.backoff_multiplier}")
    _non_negative("initialDelay", obj.initial_delay)
    _non_negative("maxDelay", obj.max_delay)
    if obj.jitter is not None and obj.jitter not in _JITTERS:
        raise InvalidValue("jitter", f"expected one of {', '.join(map(repr, _JITTERS))}, got {obj.jitter!r}")


# ---------------------------------------------------------------------------
# The sections as written


@attrs.frozen
class RetryPolicySection:
    """The guide's ``retryPolicy`` object: the backoff keys (milliseconds)."""

    max_attempts: int | None = None
    backoff_multiplier: float | None = None
    initial_delay: float | None = None
    max_delay: float | None = None
    jitter: str | None = None

    def __attrs_post_init__(self) -> None:
        _check_backoff(self)


def _not_retryable(name: str, kind: ErrorKind) -> str:
    kinds = ", ".join(sorted(k.value for k in RETRYABLE_KINDS))
    hint = ""
    if kind in (ErrorKind.AUTHENTICATION, ErrorKind.PERMISSION):
        hint = "; credentials are refreshed by recoveryActions: 'refresh_credentials'"
    return f"{name!r} cannot be retried on the same target (retryable kinds: {kinds}{hint})"


@attrs.frozen
class ErrorClassification:
    """The guide's ``errorClassification``: error names retried on the same
    target (``retryable``; default: the kernel's retryable kinds) and names
    never retried (``nonRetryable``)."""

    retryable: tuple[str, ...] | None = None
    non_retryable: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        for key, names in (("retryable", self.retryable or ()), ("nonRetryable", self.non_retryable)):
            for i, name in enumerate(names):
                kinds = kinds_of(name)
                if kinds is None:
                    raise InvalidValue(
                        f"{key}[{i}]", f"unknown error name {name!r} (known: {', '.join(_known_names())})"
                    )
                if key == "retryable":
                    for kind in kinds:
                        if kind not in RETRYABLE_KINDS:
                            raise InvalidValue(f"{key}[{i}]", _not_retryable(name, kind))
        both = self.retryable_kinds() & self.non_retryable_kinds()
        if self.retryable is not None and both:
            raise InvalidValue(
                "nonRetryable", f"lists kinds also listed as retryable: {', '.join(sorted(k.value for k in both))}"
            )

    def retryable_kinds(self) -> frozenset[ErrorKind]:
        """The kinds ``retryable`` names (the default set when absent)."""
        if self.retryable is None:
            return RETRYABLE_KINDS
        return frozenset(k for name in self.retryable for k in kinds_of(name) or ())

    def non_retryable_kinds(self) -> frozenset[ErrorKind]:
        """The kinds ``nonRetryable`` names."""
        return frozenset(k for name in self.non_retryable for k in kinds_of(name) or ())


@attrs.frozen
class RetryBudgetSection:
    """Finagle-style retry budget, shared through the StateStore: within the
    last ``window`` ms, retries may not exceed ``ratio`` x requests plus
    ``minPerSecond`` x the window's seconds."""

    enabled: bool = True
    ratio: float = attrs.field(default=0.2)
    min_per_second: float = attrs.field(default=1.0)
    window: float = attrs.field(default=10_000.0)

    @ratio.validator
    def _check_ratio(self, _attribute: object, value: float) -> None:
        if not 0.0 <= value <= 10.0:
            raise InvalidValue("ratio", f"must be between 0 and 10 (retries per request), got {value}")

    @min_per_second.validator
    def _check_min(self, _attribute: object, value: float) -> None:
        if not (value >= 0 and math.isfinite(value)):
            raise InvalidValue("minPerSecond", f"must be a non-negative number, got {value}")

    @window.validator
    def _check_window(self, _attribute: object, value: float) -> None:
        if not (value > 0 and math.isfinite(value)):
            raise InvalidValue("window", f"must be a positive number of milliseconds, got {value}")


@attrs.frozen
class RetrySection:
    """One retry section as written (every key optional, so that sections
    can be layered: ``optimization.retry`` < ``routing.retry`` <
    ``providers.<name>.retry``). Durations in milliseconds."""

    enabled: bool | None = None
    max_attempts: int | None = None
    backoff_multiplier: float | None = None
    initial_delay: float | None = None
    max_delay: float | None = None
    max_retry_after: float | None = None
    jitter: str | None = None
    retry_policy: RetryPolicySection | None = None
    error_classification: ErrorClassification | None = None
    recovery_actions: dict[str, str] | None = None
    retry_budget: RetryBudgetSection | None = None

    def __attrs_post_init__(self) -> None:
        _check_backoff(self)
        _non_negative("maxRetryAfter", self.max_retry_after)
        if self.retry_policy is not None:
            for field in attrs.fields(RetryPolicySection):
                if getattr(self, field.name) is not None and getattr(self.retry_policy, field.name) is not None:
                    key = _camel(field.name)
                    raise InvalidValue(f"retryPolicy.{key}", f"also given as '{key}' at the top of the section")
        actions = self.recovery_actions or {}
        for name, action_name in actions.items():
            kinds = kinds_of(name)
            if kinds is None:
                raise InvalidValue(
                    f"recoveryActions.{name}", f"unknown error name (known: {', '.join(_known_names())})"
                )
            try:
                action = Action(action_name)
            except ValueError:
                raise InvalidValue(
                    f"recoveryActions.{name}",
                    f"unknown action {action_name!r} (actions: {', '.join(a.value for a in Action)})",
                ) from None
            for kind in kinds:
                allowed = _allowed_actions(kind)
                if action not in allowed:
                    raise InvalidValue(
                        f"recoveryActions.{name}",
                        f"{action.value!r} does not apply to {kind.value!r} "
                        f"(allowed: {', '.join(sorted(a.value for a in allowed))})",
                    )
            if (
                action is Action.RETRY
                and self.error_classification is not None
                and set(kinds) & self.error_classification.non_retryable_kinds()
            ):
                raise InvalidValue(f"recoveryActions.{name}", "'retry' contradicts errorClassification.nonRetryable")

    def flat(self) -> dict[str, Any]:
        """The given keys as ``{attribute: value}``, ``retryPolicy`` folded in."""
        out = {f.name: getattr(self, f.name) for f in attrs.fields(RetrySection) if getattr(self, f.name) is not None}
        policy = out.pop("retry_policy", None)
        if policy is not None:
            out.update(
                {
                    f.name: getattr(policy, f.name)
                    for f in attrs.fields(RetryPolicySection)
                    if getattr(policy, f.name) is not None
                }
            )
        return out


def _camel(name: str) -> str:
    head, *tail = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in tail)


# ---------------------------------------------------------------------------
# Resolved


DEFAULTS: Mapping[str, Any] = {
    "enabled": True,
    "max_attempts": 3,
    "backoff_multiplier": 2.0,
    "initial_delay": 1000.0,
    "max_delay": 10_000.0,
    "max_retry_after": 60_000.0,
    "jitter": "full",
}


@attrs.frozen
class Policy:
    """The resolved retry behaviour for one provider. Delays in seconds.

    ``actions`` holds an :class:`Action` for every per-attempt error kind.
    """

    enabled: bool
    max_attempts: int
    backoff_multiplier: float
    initial_delay: float
    max_delay: float
    max_retry_after: float
    jitter: str
    actions: Mapping[ErrorKind, Action]

    def cap(self, retry: int) -> float:
        """The backoff ceiling before retry number ``retry`` (0 for the
        first): ``min(maxDelay, initialDelay x multiplier^retry)``."""
        if self.initial_delay <= 0:
            return 0.0
        # The exponent is bounded so that a long streak cannot overflow a float.
        growth = self.backoff_multiplier ** min(retry, 64)
        return min(self.max_delay, self.initial_delay * growth)

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The delay before retry number ``retry`` (0 for the first), in
        seconds. ``full`` jitter: uniform in ``[0, cap]``; ``equal``: uniform
        in ``[cap/2, cap]``; ``none``: ``cap``."""
        cap = self.cap(retry)
        if self.jitter == "full":
            return rng.random() * cap
        if self.jitter == "equal":
            return cap / 2 + rng.random() * cap / 2
        return cap


def resolve(layers: list[RetrySection]) -> Policy:
    """The policy that ``layers`` (lowest precedence first) describe.

    Backoff keys and ``recoveryActions`` entries override key by key; a
    later ``errorClassification`` replaces an earlier one as a whole.
    """
    values = dict(DEFAULTS)
    classification = ErrorClassification()
    explicit: dict[ErrorKind, Action] = {}
    for layer in layers:
        flat = layer.flat()
        flat.pop("retry_budget", None)
        classification = flat.pop("error_classification", classification)
        for name, action in (flat.pop("recovery_actions", None) or {}).items():
            for kind in kinds_of(name) or ():
                explicit[kind] = Action(action)
        values.update(flat)
    retryable = classification.retryable_kinds() - classification.non_retryable_kinds()
    actions: dict[ErrorKind, Action] = {}
    for kind in ATTEMPT_KINDS:
        if kind in FINAL_KINDS:
            actions[kind] = Action.ABORT
        elif kind in explicit:
            actions[kind] = explicit[kind]
        elif kind is ErrorKind.CONTEXT_LENGTH_EXCEEDED:
            actions[kind] = Action.SWITCH_MODEL
        elif kind is ErrorKind.AUTHENTICATION:
            actions[kind] = Action.REFRESH_CREDENTIALS
        elif kind in retryable:
            actions[kind] = Action.RETRY
        elif kind in FAILOVER_KINDS:
            actions[kind] = Action.SWITCH_PROVIDER
        else:
            actions[kind] = Action.ABORT
    return Policy(
        enabled=bool(values["enabled"]),
        max_attempts=int(values["max_attempts"]),
        backoff_multiplier=float(values["backoff_multiplier"]),
        initial_delay=float(values["initial_delay"]) / 1000.0,
        max_delay=float(values["max_delay"]) / 1000.0,
        max_retry_after=float(values["max_retry_after"]) / 1000.0,
        jitter=str(values["jitter"]),
        actions=actions,
    )
