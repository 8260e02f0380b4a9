"""swarmgate-health: active and passive health monitoring of providers.

* :class:`HealthPlugin` -- the hooks (entry point ``health`` in ``swarmgate``):
  reads ``routing.healthCheck``, runs the checks in the background, watches
  live traffic, adds ``debug providers --health`` to the CLI;
* :class:`HealthMonitor` -- the per-manager state, published as
  ``manager.extensions["health"]``: ``snapshot()``, ``on_transition()``,
  ``check_now()``, ``probe_round()``;
* :class:`Transition`, :class:`CheckResult`, :class:`RoundResult` -- what it reports;
* :class:`HealthSettings` and :func:`load_settings` -- the resolved configuration.

The public API is exactly ``__all__``.
"""

from swarmgate_health.monitor import PROBE_METADATA, CheckResult, HealthMonitor, RoundResult, Transition
from swarmgate_health.plugin import HealthPlugin
from swarmgate_health.settings import Check, HealthSettings, ProviderPlan, load_settings

__all__ = [
    "PROBE_METADATA",
    "Check",
    "CheckResult",
    "HealthMonitor",
    "HealthPlugin",
    "HealthSettings",
    "ProviderPlan",
    "RoundResult",
    "Transition",
    "load_settings",
]
