"""swarmgate-alerts: alerts raised from the traffic itself.

* :class:`AlertsPlugin` -- the hook plugin (entry point ``alerts`` in the
  ``swarmgate`` group), configured by ``monitoring.alerts``: per-provider
  watchers of the p95 latency against an SLA (``latency_sla_breached``)
  and of the error rate (``error_rate_spike``), with a cooldown shared
  through the StateStore and optional ``*_resolved`` alerts;
* :class:`AlertsService` -- what it publishes as ``manager.extensions["alerts"]``
  (``recent()``, ``counters()``, ``by_type()``, ``status()``);
* :class:`AlertsSettings`, :class:`ErrorRateSettings` -- the configuration.

The public API is exactly ``__all__``.
"""

from swarmgate_alerts.plugin import (
    ERROR_RATE_RESOLVED,
    LATENCY_SLA_RESOLVED,
    NOT_COUNTED,
    AlertCounters,
    AlertsPlugin,
    AlertsService,
)
from swarmgate_alerts.settings import AlertsSettings, ErrorRateSettings

__all__ = [
    "ERROR_RATE_RESOLVED",
    "LATENCY_SLA_RESOLVED",
    "NOT_COUNTED",
    "AlertCounters",
    "AlertsPlugin",
    "AlertsService",
    "AlertsSettings",
    "ErrorRateSettings",
]
