"""swarmgate-dashboard: a live dashboard served by the gateway at ``/dashboard``.

* :class:`DashboardPlugin` -- the hook plugin (entry point ``dashboard`` in
  the ``swarmgate`` group): samples the analytics counters in the
  background and gives the gateway the page, its assets and its JSON feed
  (``gateway_routes``);
* :class:`DashboardService` -- what it publishes as
  ``manager.extensions["dashboard"]``: ``summary(window, since)`` (the
  feed), ``providers()``, ``sample()``, the ``history`` and ``events``;
* :class:`History` -- the charts' points, from differences of cumulative
  counters; :class:`EventLog` -- recent failovers and errors from the usage
  log, with the alert hub's alerts;
* :class:`DashboardSettings`, :func:`load_settings` -- ``server.dashboard``.

The public API is exactly ``__all__``.
"""

from swarmgate_dashboard.events import EventLog, record_event
from swarmgate_dashboard.history import History
from swarmgate_dashboard.plugin import DashboardPlugin
from swarmgate_dashboard.service import DashboardService, provider_status
from swarmgate_dashboard.settings import DashboardSettings, load_settings

__all__ = [
    "DashboardPlugin",
    "DashboardService",
    "DashboardSettings",
    "EventLog",
    "History",
    "load_settings",
    "provider_status",
    "record_event",
]
