"""swarmgate-breaker: a circuit breaker per provider and model.

* :class:`BreakerPlugin` -- the hook plugin (entry point ``breaker`` in the
  ``swarmgate`` group), configured by ``routing.circuitBreaker``: opens a
  target's circuit on consecutive failures or on the failure rate, rules it
  out while open, probes it when half-open, closes it after successes;
  state shared through the StateStore;
* :class:`BreakerService` -- what it publishes as ``manager.extensions["breaker"]``
  (``state(target)``, ``open_until(target)``, ``snapshot()``, ``counters()``);
* :class:`BreakerSettings` -- the configuration section.

The public API is exactly ``__all__``.
"""

from swarmgate_breaker.plugin import BreakerCounters, BreakerPlugin, BreakerService, CircuitState
from swarmgate_breaker.settings import COUNTABLE_KINDS, DEFAULT_COUNTED, BreakerSettings

__all__ = [
    "COUNTABLE_KINDS",
    "DEFAULT_COUNTED",
    "BreakerCounters",
    "BreakerPlugin",
    "BreakerService",
    "BreakerSettings",
    "CircuitState",
]
