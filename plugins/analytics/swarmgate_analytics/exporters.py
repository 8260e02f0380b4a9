"""The ``json`` and ``csv`` metrics exporters (entry points in
``swarmgate.exporters``; ``manager.export_metrics("json")``).

An exporter has ``content_type`` and ``async render(manager) -> str``
(what the kernel calls: it renders ``manager.extensions["analytics"]``),
and ``async render_source(source) -> str`` rendering any
:class:`~swarmgate_analytics.service.MetricsSource` (the CLI passes a
recorded usage log's). Both cover the process lifetime (or the whole log).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from swarmgate_analytics.service import MetricsSource, analytics_source

if TYPE_CHECKING:
    from swarmgate import ProviderManager

#: The CSV columns, in order: one row per provider/model.
CSV_COLUMNS: Final = (
    "name",
    "provider",
    "model",
    "totalRequests",
    "successes",
    "failures",
    "refused",
    "cancelled",
    "successRate",
    "avgLatency",
    "p50Latency",
    "p95Latency",
    "p99Latency",
    "avgTtft",
    "p95Ttft",
    "avgCost",
    "totalCost",
    "inputTokens",
    "outputTokens",
    "uptime",
    "inflight",
    "healthy",
    "breaker",
    "errorsByKind",
)

#: Provider facts copied onto each of its model rows.
_PROVIDER_COLUMNS: Final = ("uptime", "inflight", "healthy")


def _cell(value: Any) -> str:
    """A CSV cell: empty for ``None``, ``kind=count;...`` for a mapping,
    ``true``/``false`` for booleans, ``repr`` precision for floats."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return ";".join(f"{k}={v}" for k, v in value.items())
    return str(value)


class JsonExporter:
    """``format="json"``: ``{"analytics": <since start>, "metrics": <raw counters>}``."""

    content_type = "application/json"

    async def render(self, manager: ProviderManager) -> str:
        """Render the manager's live analytics."""
        return await self.render_source(analytics_source(manager))

    async def render_source(self, source: MetricsSource) -> str:
        """Render ``source``."""
        document = {"analytics": await source.analytics(None), "metrics": await source.metrics()}
        return json.dumps(document, indent=2, allow_nan=False)


class CsvExporter:
    """``format="csv"``: a header row, then one row per provider/model with
    the analytics columns (:data:`CSV_COLUMNS`) since start."""

    content_type = "text/csv; charset=utf-8"

    async def render(self, manager: ProviderManager) -> str:
        """Render the manager's live analytics."""
        return await self.render_source(analytics_source(manager))

    async def render_source(self, source: MetricsSource) -> str:
        """Render ``source``."""
        report = await source.analytics(None)
        providers = {row["name"]: row for row in report["providers"]}
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in report["models"]:
            provider = providers.get(row["provider"], {})
            values = {**row, **{key: provider.get(key) for key in _PROVIDER_COLUMNS}}
            writer.writerow([_cell(values.get(column)) for column in CSV_COLUMNS])
        return out.getvalue()
