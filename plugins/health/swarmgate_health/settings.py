"""The health monitor's configuration: ``routing.healthCheck``,
``routing.healthCheckInterval`` and each provider's ``healthCheck``.

Durations in the config are milliseconds (the guide's convention); the
resolved :class:`Check` and :class:`HealthSettings` hold seconds.

``routing.healthCheck`` takes the guide's routing shape (``enabled``,
``interval``, ``timeout``, ``failureThreshold``, ``successThreshold``) and
its health-monitoring shape (``checks``, ``alerts``) alike; both spellings of
a threshold (``failureThreshold`` / ``alerts.failureThreshold``,
``successThreshold`` / ``alerts.recoveryThreshold``) mean the same and may
not disagree. ``providers.<name>.healthCheck`` overrides ``enabled``,
``interval``, ``timeout``, both thresholds and ``checks`` for one provider;
its other keys belong to the provider type (the ``http`` type's probe
request: ``method``, ``path``, ``expectedStatus``) and are ignored here.

Activation: the monitor runs for a provider when its ``healthCheck.enabled``
says so, else when ``routing.healthCheck.enabled`` says so, else when
``routing.healthCheck`` or ``routing.healthCheckInterval`` is present at all.
With neither, the plugin stays inert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from swarmgate import ConfigError, ErrorKind, ProviderConfig, SwarmgateConfig, parse_section
from swarmgate.config import InvalidValue

PING: Final = "ping"
REQUEST: Final = "request"
CHECK_TYPES: Final = (PING, REQUEST)

DEFAULT_INTERVAL_MS: Final = 30_000.0
DEFAULT_TIMEOUT_MS: Final = 5_000.0
DEFAULT_FAILURE_THRESHOLD: Final = 3
DEFAULT_SUCCESS_THRESHOLD: Final = 2
DEFAULT_PASSIVE_THRESHOLD: Final = 5
DEFAULT_JITTER: Final = 0.1
DEFAULT_UPTIME_WINDOW_MS: Final = 3_600_000.0
DEFAULT_TEST_PROMPT: Final = "Hello"
DEFAULT_EXPECTED_LENGTH: Final = 1
DEFAULT_MAX_TOKENS: Final = 16

#: Error kinds that say the provider itself is in trouble (counted by passive
#: monitoring by default). Rate limits, bad requests, content filters and
#: budgets say nothing about liveness.
DEFAULT_PASSIVE_KINDS: Final = (
    ErrorKind.TIMEOUT.value,
    ErrorKind.SERVER_ERROR.value,
    ErrorKind.CONNECTION_ERROR.value,
    ErrorKind.OVERLOADED.value,
)

#: The keys of ``providers.<name>.healthCheck`` this plugin reads.
PROVIDER_KEYS: Final = frozenset({"enabled", "interval", "timeout", "failureThreshold", "successThreshold", "checks"})

_KINDS: Final = frozenset(k.value for k in ErrorKind)


def _positive(key: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise InvalidValue(key, f"must be a positive number of milliseconds, got {value:g}")


def _at_least_one(key: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise InvalidValue(key, f"must be an integer of at least 1, got {value}")


def _check_list(key: str, checks: tuple[CheckConfig, ...] | None) -> None:
    if checks is not None and not checks:
        raise InvalidValue(key, "needs at least one check (or leave it out for a ping check)")


@attrs.frozen
class CheckConfig:
    """One entry of ``checks``: ``{"type": "ping" | "request", ...}``.

    ``interval`` and ``timeout`` (ms) default to the provider's, then the
    global ones. ``testPrompt``, ``expectedResponseLength`` (minimum number
    of characters in the answer), ``maxTokens`` and ``model`` (default: the
    provider's default model) apply to ``request`` checks only.
    """

    type: str
    interval: float | None = None
    timeout: float | None = None
    test_prompt: str | None = None
    expected_response_length: int | None = None
    max_tokens: int | None = None
    model: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.type not in CHECK_TYPES:
            raise InvalidValue("type", f"unknown check type {self.type!r} (expected 'ping' or 'request')")
        _positive("interval", self.interval)
        _positive("timeout", self.timeout)
        if self.type == PING:
            for key, value in (
                ("testPrompt", self.test_prompt),
                ("expectedResponseLength", self.expected_response_length),
                ("maxTokens", self.max_tokens),
                ("model", self.model),
            ):
                if value is not None:
                    raise InvalidValue(key, "applies to 'request' checks only")
        if self.expected_response_length is not None and self.expected_response_length < 0:
            raise InvalidValue("expectedResponseLength", f"must not be negative, got {self.expected_response_length}")
        _at_least_one("maxTokens", self.max_tokens)


@attrs.frozen
class AlertsConfig:
    """``alerts``: the guide's spelling of the thresholds, plus
    ``notifications`` (channel names passed along in every transition for
    notifier plugins; this plugin itself logs and calls callbacks)."""

    failure_threshold: int | None = None
    recovery_threshold: int | None = None
    notifications: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        _at_least_one("failureThreshold", self.failure_threshold)
        _at_least_one("recoveryThreshold", self.recovery_threshold)


@attrs.frozen
class PassiveConfig:
    """``passive``: health from live traffic. ``failureThreshold`` live
    failures in a row, of one of ``kinds``, mark a provider unhealthy."""

    enabled: bool = True
    failure_threshold: int = DEFAULT_PASSIVE_THRESHOLD
    kinds: tuple[str, ...] = DEFAULT_PASSIVE_KINDS

    def __attrs_post_init__(self) -> None:
        _at_least_one("failureThreshold", self.failure_threshold)
        for kind in self.kinds:
            if kind not in _KINDS:
                raise InvalidValue("kinds", f"unknown error kind {kind!r} (kinds: {sorted(_KINDS)})")


def _same(key: str, alias: str, a: int | None, b: int | None) -> int | None:
    if a is not None and b is not None and a != b:
        raise InvalidValue(key, f"{a} disagrees with {alias} {b}; give one of them")
    return a if a is not None else b


@attrs.frozen
class HealthCheckConfig:
    """``routing.healthCheck`` as written (ms; ``None``: not given)."""

    enabled: bool | None = None
    interval: float | None = None
    timeout: float | None = None
    failure_threshold: int | None = None
    success_threshold: int | None = None
    jitter: float = DEFAULT_JITTER
    uptime_window: float = DEFAULT_UPTIME_WINDOW_MS
    checks: tuple[CheckConfig, ...] | None = None
    alerts: AlertsConfig = attrs.field(factory=AlertsConfig)
    passive: PassiveConfig = attrs.field(factory=PassiveConfig)

    def __attrs_post_init__(self) -> None:
        _positive("interval", self.interval)
        _positive("timeout", self.timeout)
        _positive("uptimeWindow", self.uptime_window)
        _at_least_one("failureThreshold", self.failure_threshold)
        _at_least_one("successThreshold", self.success_threshold)
        if not 0.0 <= self.jitter < 1.0:
            raise InvalidValue("jitter", f"must be a fraction in [0, 1), got {self.jitter:g}")
        _check_list("checks", self.checks)
        _same("failureThreshold", "alerts.failureThreshold", self.failure_threshold, self.alerts.failure_threshold)
        _same("successThreshold", "alerts.recoveryThreshold", self.success_threshold, self.alerts.recovery_threshold)

    @property
    def failures(self) -> int:
        """The failure threshold, from either spelling, or the default."""
        value = self.failure_threshold if self.failure_threshold is not None else self.alerts.failure_threshold
        return value if value is not None else DEFAULT_FAILURE_THRESHOLD

    @property
    def successes(self) -> int:
        """The success (recovery) threshold, from either spelling, or the default."""
        value = self.success_threshold if self.success_threshold is not None else self.alerts.recovery_threshold
        return value if value is not None else DEFAULT_SUCCESS_THRESHOLD


@attrs.frozen
class ProviderHealthConfig:
    """The keys of ``providers.<name>.healthCheck`` this plugin owns."""

    enabled: bool | None = None
    interval: float | None = None
    timeout: float | None = None
    failure_threshold: int | None = None
    success_threshold: int | None = None
    checks: tuple[CheckConfig, ...] | None = None

    def __attrs_post_init__(self) -> None:
        _positive("interval", self.interval)
        _positive("timeout", self.timeout)
        _at_least_one("failureThreshold", self.failure_threshold)
        _at_least_one("successThreshold", self.success_threshold)
        _check_list("checks", self.checks)


@attrs.frozen
class Check:
    """One resolved check of one provider. Durations in seconds."""

    type: str
    interval: float
    timeout: float
    test_prompt: str = DEFAULT_TEST_PROMPT
    expected_response_length: int = DEFAULT_EXPECTED_LENGTH
    max_tokens: int = DEFAULT_MAX_TOKENS
    model: str | None = None


@attrs.frozen
class ProviderPlan:
    """What the monitor does for one provider: whether it is ``monitored``,
    its ``checks`` and the thresholds."""

    name: str
    monitored: bool
    checks: tuple[Check, ...]
    failure_threshold: int
    success_threshold: int


@attrs.frozen
class HealthSettings:
    """The resolved configuration: global knobs (seconds) and a plan per
    live provider. ``active`` is true when at least one provider is
    monitored."""

    config: HealthCheckConfig
    enabled: bool
    interval_ms: float
    plans: dict[str, ProviderPlan]

    @property
    def active(self) -> bool:
        """Whether any provider is monitored."""
        return any(plan.monitored for plan in self.plans.values())

    @property
    def jitter(self) -> float:
        """Fraction by which each interval is randomly stretched or shrunk."""
        return self.config.jitter

    @property
    def uptime_window(self) -> float:
        """Seconds of the sliding uptime window."""
        return self.config.uptime_window / 1000.0

    @property
    def passive(self) -> PassiveConfig:
        """Passive-monitoring settings."""
        return self.config.passive

    @property
    def notifications(self) -> tuple[str, ...]:
        """``alerts.notifications``, passed along in every transition."""
        return self.config.alerts.notifications

    def plan_for(self, name: str, provider: ProviderConfig) -> ProviderPlan:
        """The plan of provider ``name`` (a ``ConfigError`` names a bad
        ``providers.<name>.healthCheck`` key)."""
        return _plan(self, name, provider)

    def diagnosis(self) -> HealthSettings:
        """These settings for a one-shot diagnosis (``debug providers
        --health``): every provider monitored, one result decides."""
        plans = {
            name: attrs.evolve(plan, monitored=True, failure_threshold=1, success_threshold=1)
            for name, plan in self.plans.items()
        }
        return attrs.evolve(self, plans=plans)


def _own_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in raw.items() if key in PROVIDER_KEYS}


def _resolve_check(check: CheckConfig, interval_ms: float, timeout_ms: float) -> Check:
    return Check(
        type=check.type,
        interval=(check.interval if check.interval is not None else interval_ms) / 1000.0,
        timeout=(check.timeout if check.timeout is not None else timeout_ms) / 1000.0,
        test_prompt=check.test_prompt if check.test_prompt is not None else DEFAULT_TEST_PROMPT,
        expected_response_length=(
            check.expected_response_length if check.expected_response_length is not None else DEFAULT_EXPECTED_LENGTH
        ),
        max_tokens=check.max_tokens if check.max_tokens is not None else DEFAULT_MAX_TOKENS,
        model=check.model,
    )


def _plan(settings: HealthSettings, name: str, provider: ProviderConfig) -> ProviderPlan:
    glob = settings.config
    raw = provider.health_check or {}
    own = parse_section(ProviderHealthConfig, _own_keys(raw), f"providers.{name}.healthCheck")
    interval_ms = own.interval if own.interval is not None else settings.interval_ms
    timeout_ms = own.timeout if own.timeout is not None else (glob.timeout or DEFAULT_TIMEOUT_MS)
    configs = own.checks if own.checks is not None else glob.checks
    checks = (
        tuple(_resolve_check(c, interval_ms, timeout_ms) for c in configs)
        if configs is not None
        else (Check(PING, interval_ms / 1000.0, timeout_ms / 1000.0),)
    )
    return ProviderPlan(
        name=name,
        monitored=own.enabled if own.enabled is not None else settings.enabled,
        checks=checks,
        failure_threshold=own.failure_threshold if own.failure_threshold is not None else glob.failures,
        success_threshold=own.success_threshold if own.success_threshold is not None else glob.successes,
    )


def load_settings(config: SwarmgateConfig, providers: list[str] | None = None) -> HealthSettings:
    """Resolve the health settings of ``config`` for the live ``providers``
    (default: every enabled provider). Raises ``ConfigError`` naming every
    bad key by its path."""
    routing = config.routing
    raw = routing.health_check
    glob = parse_section(HealthCheckConfig, raw, "routing.healthCheck")
    legacy = routing.health_check_interval
    if legacy is not None and legacy <= 0:
        raise ConfigError(
            [("routing.healthCheckInterval", f"must be a positive number of milliseconds, got {legacy:g}")]
        )
    # Explicit ``enabled`` wins; otherwise either section being present activates.
    enabled = glob.enabled if glob.enabled is not None else (raw is not None or legacy is not None)
    interval_ms = glob.interval if glob.interval is not None else (legacy or DEFAULT_INTERVAL_MS)
    settings = HealthSettings(glob, enabled, interval_ms, {})
    names = providers if providers is not None else [n for n, p in config.providers.items() if p.enabled]
    plans: dict[str, ProviderPlan] = {}
    problems: list[tuple[str, str]] = []
    for name in names:
        provider = config.providers.get(name)
        if provider is None:
            continue
        try:
            plans[name] = _plan(settings, name, provider)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems, source=config.source)
    return attrs.evolve(settings, plans=plans)
