"""swarmgate-prometheus: the ``prometheus`` metrics exporter.

* :class:`PrometheusExporter` -- the driver (entry point ``prometheus`` in
  ``swarmgate.exporters``): ``manager.export_metrics("prometheus")`` and
  ``qwen-swarm-enhanced export metrics --format prometheus``;
* :class:`AnalyticsCollector` -- the ``prometheus_client`` collector over
  one snapshot of the analytics metrics; :func:`render_metrics` -- the
  exposition text of such a snapshot.

The public API is exactly ``__all__``.
"""

from swarmgate_prometheus.exporter import CIRCUIT_STATES, AnalyticsCollector, PrometheusExporter, render_metrics

__all__ = ["CIRCUIT_STATES", "AnalyticsCollector", "PrometheusExporter", "render_metrics"]
