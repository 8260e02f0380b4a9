"""``AlertsPlugin``: alerts raised from the traffic itself (entry point
``alerts`` in the ``swarmgate`` group), configured by ``monitoring.alerts``.

Two watchers, per provider, fed from ``context.attempts`` of every
finished request (``after_response`` and ``request_failed``; cache hits,
refused attempts and attempts that were neither the provider's success
nor its failure -- cancelled, invalid, budget -- are left out):

* **latency SLA**: the p95 of the provider's successful attempts over the
  last ``latencyWindow`` ms (a stream's time to first token, a plain
  request's latency) above ``latencySla`` raises ``latency_sla_breached``;
* **error rate**: at least ``errorRate.minRequests`` attempts in the last
  ``errorRate.window`` ms of which a share of ``errorRate.threshold`` or
  more failed raises ``error_rate_spike``.

A condition raises its alert when it starts and again every ``cooldown``
while it lasts; one that ends and starts again within ``cooldown`` of its
last alert waits for the cooldown. The cooldown is a StateStore counter
per alert type and provider, so instances sharing a backend do not repeat
each other; the windows are per process (in memory, constant work per
attempt: no StateStore call unless a condition changes). When a condition
this instance alerted on ends, it raises ``latency_sla_resolved`` /
``error_rate_resolved`` (``info``) unless ``resolved`` is false.

Whatever the config, the plugin publishes ``manager.extensions["alerts"]``
(:class:`AlertsService`): the hub's recent alerts and counters for the
dashboard. Its request hooks unregister themselves when no watcher is
configured.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from swarmgate import (
    Alert,
    CompletionResponse,
    ConfigError,
    ProviderConfig,
    ProviderManager,
    RequestContext,
    hookimpl,
    parse_section,
)
from swarmgate.alerts import ERROR_RATE_SPIKE, LATENCY_SLA
from swarmgate.errors import ErrorKind
from swarmgate.logs import get_logger
from swarmgate.models import Attempt
from swarmgate_alerts.settings import SECTION, SLA_SECTION, AlertsSettings
from swarmgate_alerts.windows import LatencyWindow, RateWindow

log = get_logger("swarmgate.alerts.watchers")

#: Raised (``info``) when a latency SLA breach this instance alerted on ends.
LATENCY_SLA_RESOLVED = "latency_sla_resolved"
#: Raised (``info``) when an error-rate spike this instance alerted on ends.
ERROR_RATE_RESOLVED = "error_rate_resolved"

#: Failed attempts that are neither the provider's success nor its fault:
#: left out of both watchers.
NOT_COUNTED = frozenset(
    {
        ErrorKind.CANCELLED,
        ErrorKind.INVALID_REQUEST,
        ErrorKind.CONTEXT_LENGTH_EXCEEDED,
        ErrorKind.CONTENT_FILTERED,
        ErrorKind.BUDGET_EXCEEDED,
        ErrorKind.NO_PROVIDER_AVAILABLE,
    }
)

#: The delivery channels configured under ``monitoring.alerts`` and the
#: distributions that deliver them. A delivery plugin declares which one it
#: is with a class attribute ``alert_channel``.
CHANNELS = {"webhook": "swarmgate-webhook", "email": "swarmgate-email"}

#: The percentile the latency watcher compares with the SLA.
PERCENTILE = 0.95


@attrs.define
class _Condition:
    """One watched condition (an alert type) of one provider."""

    breached: bool = False
    alerted: bool = False  # this instance raised it and has not resolved it since
    next_check: float = 0.0  # monotonic time before which no (re)raise is tried


@attrs.define
class _Watch:
    """The windows and conditions of one provider."""

    latency: LatencyWindow | None
    errors: RateWindow | None
    slow: _Condition = attrs.field(factory=_Condition)
    failing: _Condition = attrs.field(factory=_Condition)
    last_error: str | None = None


@attrs.define
class AlertCounters:
    """Per-process counts of what the watchers did."""

    raised: int = 0  # breach alerts raised (first and repeated)
    suppressed: int = 0  # breach alerts held back by the cooldown
    resolved: int = 0  # resolved alerts raised


class AlertsService:
    """What the plugin publishes as ``manager.extensions["alerts"]``.

    Every read is synchronous and cheap (no StateStore call)."""

    def __init__(self, plugin: AlertsPlugin, manager: ProviderManager) -> None:
        self._plugin = plugin
        self._manager = manager

    @property
    def settings(self) -> AlertsSettings:
        """The parsed ``monitoring.alerts`` (defaults when absent)."""
        return self._plugin.settings

    @property
    def active(self) -> bool:
        """Whether the watchers run."""
        return self._plugin.active

    def recent(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The hub's recent alerts (the last 100 emitted, whoever raised
        them), newest first, as JSON-ready dicts; at most ``limit``."""
        hub = self._manager.alerts
        if hub is None:
            return []
        alerts = list(reversed(hub.recent))
        if limit is not None:
            alerts = alerts[: max(limit, 0)]
        return [alert.to_dict() for alert in alerts]

    def counters(self) -> dict[str, int]:
        """``seen`` (alerts delivered to callbacks so far, all types),
        ``delivered`` and ``dropped`` (the hub's), ``raised``,
        ``suppressed`` and ``resolved`` (the watchers')."""
        hub = self._manager.alerts
        plugin = self._plugin
        return {
            "seen": sum(plugin.by_type.values()),
            "delivered": hub.delivered if hub is not None else 0,
            "dropped": hub.dropped if hub is not None else 0,
            **attrs.asdict(plugin.counters),
        }

    def by_type(self) -> dict[str, int]:
        """Alerts seen so far, by type."""
        return dict(self._plugin.by_type)

    def status(self) -> dict[str, dict[str, Any]]:
        """Each watched provider's figures now: ``p95_ms`` and
        ``latency_samples`` (latency watcher), ``requests``, ``failures``
        and ``error_rate`` (error-rate watcher), ``latency_breached``,
        ``error_rate_breached`` and ``last_error``."""
        plugin = self._plugin
        now = plugin.clock()
        out: dict[str, dict[str, Any]] = {}
        for provider, watch in plugin.watches.items():
            row: dict[str, Any] = {}
            if watch.latency is not None:
                watch.latency.expire(now)
                row["p95_ms"] = watch.latency.quantile(PERCENTILE) if len(watch.latency) else None
                row["latency_samples"] = len(watch.latency)
                row["latency_breached"] = watch.slow.breached
            if watch.errors is not None:
                watch.errors.expire(now)
                row["requests"] = watch.errors.total
                row["failures"] = watch.errors.failures
                row["error_rate"] = watch.errors.rate
                row["error_rate_breached"] = watch.failing.breached
            row["last_error"] = watch.last_error
            out[provider] = row
        return out


def _sla_default(manager: ProviderManager) -> float | None:
    """``routing.sla.maxLatency``, validated (the performance strategy owns
    the rest of ``routing.sla``)."""
    sla = manager.config.section(SLA_SECTION)
    if not isinstance(sla, Mapping):
        return None
    value = sla.get("maxLatency")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or value == float("inf"):
        raise ConfigError([(f"{SLA_SECTION}.maxLatency", f"must be a positive number of milliseconds, got {value!r}")])
    return float(value)


def _check_channels(manager: ProviderManager, settings: AlertsSettings) -> None:
    """A configured delivery channel whose plugin is not loaded is a config error."""
    loaded = {getattr(plugin, "alert_channel", None) for plugin in manager.plugins.pm.get_plugins()}
    problems = [
        (f"{SECTION}.{channel}", f"no plugin delivers {channel} alerts: install {dist!r} (pip install {dist})")
        for channel, dist in CHANNELS.items()
        if getattr(settings, channel) is not None and channel not in loaded
    ]
    if problems:
        raise ConfigError(problems)


class AlertsPlugin:
    """The traffic watchers; see the module docstring. ``clock`` returns
    monotonic seconds (``time.monotonic``)."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self.clock = clock if clock is not None else time.monotonic
        self.manager: ProviderManager | None = None
        self.settings = AlertsSettings()
        self.active = False
        self.counters = AlertCounters()
        self.by_type: Counter[str] = Counter()
        self.watches: dict[str, _Watch] = {}
        self._sla: float | None = None
        self._latency_on = False
        self._errors_on = False

    # -- configuration ----------------------------------------------------------

    @hookimpl
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Read ``monitoring.alerts``; publish ``extensions["alerts"]``;
        unregister the request hooks when no watcher is configured. Raises
        ConfigError naming bad values, and for a delivery channel
        (``webhook``, ``email``) configured without its plugin."""
        self.manager = manager
        raw = manager.config.section(SECTION)
        settings = parse_section(AlertsSettings, raw, SECTION)
        sla = settings.latency_sla if settings.latency_sla is not None else _sla_default(manager)
        self.settings = settings
        manager.extensions["alerts"] = AlertsService(self, manager)
        manager.on_alert(self._count)
        if raw is None or not settings.enabled:
            manager.plugins.discard(self)  # inactive: its hooks would cost every request
            return
        _check_channels(manager, settings)
        self._sla = sla
        self._latency_on = sla is not None
        self._errors_on = settings.error_rate.enabled
        if not (self._latency_on or self._errors_on):
            manager.plugins.discard(self)
            return
        self._cooldown = settings.cooldown / 1000.0
        self._latency_window = settings.latency_window / 1000.0
        self._min_samples = settings.latency_min_samples
        self._max_samples = settings.latency_max_samples
        self._rate_window = settings.error_rate.window / 1000.0
        self._threshold = settings.error_rate.threshold
        self._min_requests = settings.error_rate.min_requests
        self.active = True

    def _count(self, alert: Alert) -> None:
        self.by_type[alert.type] += 1

    @hookimpl
    async def provider_changed(
        self, manager: ProviderManager, name: str, old: ProviderConfig | None, new: ProviderConfig | None
    ) -> None:
        """A replaced or removed provider starts with empty windows."""
        self.watches.pop(name, None)

    # -- the request path -------------------------------------------------------

    @hookimpl
    async def after_response(self, response: CompletionResponse, context: RequestContext) -> None:
        """Feed the attempts of an answered request to the watchers (a cache
        hit has none)."""
        if not response.cached:
            await self._observe(context.attempts, context.stream)

    @hookimpl
    async def request_failed(self, context: RequestContext) -> None:
        """Feed the attempts of a failed request to the watchers."""
        await self._observe(context.attempts, context.stream)

    def _watch(self, provider: str) -> _Watch:
        watch = self.watches.get(provider)
        if watch is None:
            watch = self.watches[provider] = _Watch(
                LatencyWindow(self._max_samples, self._latency_window) if self._latency_on else None,
                RateWindow(self._rate_window) if self._errors_on else None,
            )
        return watch

    async def _observe(self, attempts: Iterable[Attempt], stream: bool) -> None:
        if not self.active:
            return
        now = self.clock()
        for attempt in attempts:
            if attempt.refused:
                continue
            if not attempt.ok and attempt.error_kind in NOT_COUNTED:
                continue
            watch = self._watch(attempt.provider)
            if not attempt.ok:
                watch.last_error = f"{attempt.error_kind}: {attempt.error}" if attempt.error else attempt.error_kind
            latency = watch.latency
            if latency is not None and attempt.ok:
                value = attempt.ttft if stream and attempt.ttft is not None else attempt.latency
                latency.add(now, value)
                if len(latency) >= self._min_samples:
                    p95 = latency.quantile(PERCENTILE)
                    assert self._sla is not None
                    breached = p95 > self._sla
                    if self._changes(watch.slow, breached, now):
                        await self._latency(attempt.provider, watch, breached, p95, now)
            errors = watch.errors
            if errors is not None:
                errors.add(now, not attempt.ok)
                if errors.total >= self._min_requests:
                    breached = errors.failures >= self._threshold * errors.total
                    if self._changes(watch.failing, breached, now):
                        await self._error_rate(attempt.provider, watch, breached, now)

    # -- raising ----------------------------------------------------------------

    def _changes(self, condition: _Condition, breached: bool, now: float) -> bool:
        """Whether the condition's new reading asks for an alert: it ends,
        it starts (and its cooldown is over), or it lasts past its
        cooldown (a reminder; never with ``cooldown: 0``)."""
        if not breached:
            return condition.breached
        if now < condition.next_check:
            condition.breached = True
            return False
        return not condition.breached or self._cooldown > 0

    async def _latency(self, provider: str, watch: _Watch, breached: bool, p95: float, now: float) -> None:
        latency = watch.latency
        assert latency is not None
        assert self._sla is not None
        window_s = self._latency_window
        figures = {
            "p95_ms": round(p95, 1),
            "sla_ms": self._sla,
            "samples": len(latency),
            "window_ms": window_s * 1000.0,
        }
        if breached:
            await self._breach(
                watch.slow,
                now,
                Alert(
                    LATENCY_SLA,
                    f"p95 latency of provider {provider!r} is {p95:.0f} ms over the last {window_s:g} s "
                    f"({len(latency)} answers), above its SLA of {self._sla:g} ms",
                    "warning",
                    provider,
                    data=figures,
                ),
            )
        else:
            self._resolve(
                watch.slow,
                Alert(
                    LATENCY_SLA_RESOLVED,
                    f"p95 latency of provider {provider!r} is back within its SLA of {self._sla:g} ms "
                    f"({p95:.0f} ms over the last {window_s:g} s)",
                    "info",
                    provider,
                    data=figures,
                ),
            )

    async def _error_rate(self, provider: str, watch: _Watch, breached: bool, now: float) -> None:
        errors = watch.errors
        assert errors is not None
        window_s = self._rate_window
        figures = {
            "error_rate": round(errors.rate, 4),
            "failures": errors.failures,
            "requests": errors.total,
            "threshold": self._threshold,
            "window_ms": window_s * 1000.0,
            "last_error": watch.last_error,
        }
        if breached:
            await self._breach(
                watch.failing,
                now,
                Alert(
                    ERROR_RATE_SPIKE,
                    f"error rate of provider {provider!r} is {errors.rate:.0%} ({errors.failures} of "
                    f"{errors.total} attempts failed over the last {window_s:g} s), at or above "
                    f"{self._threshold:.0%}; last error: {watch.last_error}",
                    "critical",
                    provider,
                    data=figures,
                ),
            )
        else:
            self._resolve(
                watch.failing,
                Alert(
                    ERROR_RATE_RESOLVED,
                    f"error rate of provider {provider!r} is back below {self._threshold:.0%} "
                    f"({errors.rate:.0%} of {errors.total} attempts over the last {window_s:g} s)",
                    "info",
                    provider,
                    data=figures,
                ),
            )

    async def _breach(self, condition: _Condition, now: float, alert: Alert) -> None:
        """The condition holds and :meth:`_changes` said an alert is due:
        raise ``alert`` unless another instance sharing the StateStore
        raised it within the cooldown."""
        condition.breached = True
        condition.next_check = now + self._cooldown
        manager = self.manager
        assert manager is not None
        if self._cooldown > 0:
            key = f"alerts:cooldown:{alert.type}:{alert.provider}"
            if await manager.state.incr(key, 1.0, ttl=self._cooldown) > 1:
                self.counters.suppressed += 1  # another instance raised it within the cooldown
                return
        condition.alerted = True
        self.counters.raised += 1
        manager.emit_alert(alert)

    def _resolve(self, condition: _Condition, alert: Alert) -> None:
        """The condition ended: raise ``alert`` if this instance alerted on it."""
        condition.breached = False
        if condition.alerted:
            condition.alerted = False
            if self.settings.resolved:
                self.counters.resolved += 1
                assert self.manager is not None
                self.manager.emit_alert(alert)
