"""swarmgate-analytics: live analytics, raw metrics and the json/csv exporters.

* :class:`AnalyticsPlugin` -- the hook plugin (entry point ``analytics`` in
  the ``swarmgate`` group), configured by ``monitoring.analytics``: counts
  every request and attempt into live sliding windows (1 s buckets for the
  last minute, 1 min buckets for the last day, log-spaced latency bins),
  adds ``analytics ...`` and ``export metrics`` to the CLI;
* :class:`AnalyticsService` -- what it publishes as
  ``manager.extensions["analytics"]``: ``analytics(window)``, ``metrics()``,
  ``recommendations()`` (behind ``manager.get_analytics()`` and friends);
* :class:`RecordsSource` -- the same documents from a recorded usage log;
  :class:`MetricsSource` -- what both are to an exporter;
* :class:`JsonExporter`, :class:`CsvExporter` -- the ``json`` and ``csv``
  exporters (entry points in ``swarmgate.exporters``);
* :class:`Tally`, :class:`RecordsAggregate` -- the aggregation shared by the
  live and offline paths; :mod:`~swarmgate_analytics.histogram` -- the bins;
* :func:`parse_window`, :func:`analytics_source`, :class:`AnalyticsSettings`.

The public API is exactly ``__all__``.
"""

from swarmgate_analytics import histogram
from swarmgate_analytics.aggregate import LiveAggregate, RecordsAggregate
from swarmgate_analytics.exporters import CSV_COLUMNS, CsvExporter, JsonExporter
from swarmgate_analytics.plugin import AnalyticsPlugin
from swarmgate_analytics.service import AnalyticsService, MetricsSource, RecordsSource, aggregate_log, analytics_source
from swarmgate_analytics.settings import AnalyticsSettings
from swarmgate_analytics.tally import Tally
from swarmgate_analytics.windows import parse_window

__all__ = [
    "CSV_COLUMNS",
    "AnalyticsPlugin",
    "AnalyticsService",
    "AnalyticsSettings",
    "CsvExporter",
    "JsonExporter",
    "LiveAggregate",
    "MetricsSource",
    "RecordsAggregate",
    "RecordsSource",
    "Tally",
    "aggregate_log",
    "analytics_source",
    "histogram",
    "parse_window",
]
