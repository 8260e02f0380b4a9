"""``AnalyticsPlugin``: live analytics of every request (entry point
``analytics`` in the ``swarmgate`` group).

Hooks: ``after_response`` and ``request_failed`` count each finished
request and each of its attempts (``context.attempts``) into the live
tallies (plain synchronous functions: a few dictionary updates per attempt,
no I/O, no await); ``plugin_setup`` publishes the
:class:`~swarmgate_analytics.service.AnalyticsService` as
``manager.extensions["analytics"]`` (what ``manager.get_analytics()``,
``get_metrics()``, ``get_optimization_recommendations()`` and the
exporters use) and subscribes to the provider health alerts for uptime;
``register_commands`` adds ``analytics ...`` and ``export metrics``.

Disabled (``monitoring.analytics: false``), the plugin unregisters itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import click

from swarmgate import (
    Alert,
    CompletionResponse,
    ProviderConfig,
    ProviderManager,
    RequestContext,
    SwarmgateError,
    hookimpl,
)
from swarmgate.alerts import PROVIDER_DOWN, PROVIDER_RECOVERED
from swarmgate_analytics.aggregate import LiveAggregate
from swarmgate_analytics.service import AnalyticsService
from swarmgate_analytics.settings import AnalyticsSettings
from swarmgate_analytics.uptime import UptimeTracker


class AnalyticsPlugin:
    """See the module docstring. ``clock`` returns wall-clock seconds
    (``time.time``); the windows and uptime run on it."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock if clock is not None else time.time
        self.aggregate = LiveAggregate()
        self.uptime = UptimeTracker()
        self.service: AnalyticsService | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @hookimpl
    def plugin_setup(self, manager: ProviderManager) -> None:
        """Read ``monitoring.analytics``; publish the service and follow
        provider health, or unregister when disabled."""
        settings = AnalyticsSettings.from_config(manager.config)
        if not settings.enabled:
            manager.plugins.discard(self)
            return
        now = self._clock()
        for name in manager.providers():
            handle = manager.handle(name)
            self.uptime.start(name, True if handle is None else handle.healthy, now)
        self.service = AnalyticsService(manager, self.aggregate, self.uptime, clock=self._clock, started=now)
        manager.extensions["analytics"] = self.service
        self._unsubscribe = manager.on_alert(self._on_alert)

    def _on_alert(self, alert: Alert) -> None:
        if alert.provider is not None and alert.type in (PROVIDER_DOWN, PROVIDER_RECOVERED):
            self.uptime.note(alert.provider, alert.type == PROVIDER_RECOVERED, self._clock())

    @hookimpl
    def plugin_shutdown(self, manager: ProviderManager) -> None:
        """Stop following health alerts."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    @hookimpl
    def provider_changed(
        self, manager: ProviderManager, name: str, old: ProviderConfig | None, new: ProviderConfig | None
    ) -> None:
        """An added provider's uptime counts from now."""
        if old is None and new is not None:
            handle = manager.handle(name)
            self.uptime.start(name, True if handle is None else handle.healthy, self._clock())

    @hookimpl
    def after_response(self, response: CompletionResponse, context: RequestContext) -> None:
        """Count an answered request (a cache hit too) and its attempts."""
        cached = response.cached
        self.aggregate.request_done(
            self._clock(),
            context.attempts,
            True,
            None,
            cached,
            float(response.metadata.get("cost_saved", 0.0)) if cached else 0.0,
            response.latency,
            response.ttft,
        )

    @hookimpl
    def request_failed(self, error: SwarmgateError, context: RequestContext) -> None:
        """Count a request that ended without an answer (cancelled ones
        apart) and its attempts (refused ones apart)."""
        self.aggregate.request_done(
            self._clock(),
            context.attempts,
            False,
            error.kind.value,
            False,
            0.0,
            context.elapsed_ms(),
            None,
        )

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        """Add ``analytics providers|costs|load-balancing`` and ``export metrics``."""
        from swarmgate_analytics.cli import add_commands

        add_commands(cli)
