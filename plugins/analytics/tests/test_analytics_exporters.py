"""The json and csv exporters, live (``manager.export_metrics``) and on a
recorded usage log, read back with the json and csv modules."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from analytics_helpers import DRIVERS, config, cost_a, row, scripted

from swarmgate import ProviderManager, ServerError
from swarmgate.testing import Outcome
from swarmgate_analytics import CSV_COLUMNS, AnalyticsPlugin, CsvExporter, JsonExporter, RecordsSource
from swarmgate_usage import UsagePlugin, open_log

pytestmark = pytest.mark.anyio


async def traffic(manager: ProviderManager) -> None:
    a = scripted(manager, "a")
    a.push(Outcome("x", usage=(10, 10)), Outcome("y", usage=(2, 1)), ServerError("boom"))
    scripted(manager, "b").push(Outcome("z", usage=(4, 4)))
    for _ in range(3):
        await manager.complete(prompt="p", model="a/m1")


async def test_csv_has_a_header_and_one_row_per_model() -> None:
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(),)) as manager:
        await traffic(manager)
        text = await manager.export_metrics("csv")
        report = await manager.get_analytics()
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r[0] for r in rows[1:]] == ["a/m1", "b/m2"]
    records = {r["name"]: r for r in csv.DictReader(io.StringIO(text))}
    a = records["a/m1"]
    assert (a["provider"], a["model"], a["totalRequests"], a["successes"], a["failures"]) == ("a", "m1", "3", "2", "1")
    assert float(a["totalCost"]) == pytest.approx(cost_a(10, 10) + cost_a(2, 1))
    assert float(a["successRate"]) == pytest.approx(2 / 3)
    assert float(a["p95Latency"]) == pytest.approx(row(report, "models", "a/m1")["p95Latency"])
    assert a["errorsByKind"] == "server_error=1"
    assert (a["healthy"], a["inflight"], a["uptime"]) == ("true", "0", "1.0")
    assert a["avgTtft"] == ""  # no streams: no time to first token
    assert CsvExporter.content_type.startswith("text/csv")


async def test_json_holds_the_analytics_and_the_metrics() -> None:
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(),)) as manager:
        await traffic(manager)
        document = json.loads(await manager.export_metrics("json"))
        assert document["analytics"]["providers"] == (await manager.get_analytics())["providers"]
    assert document["metrics"]["requests"]["successes"] == 3
    assert [t["provider"] for t in document["metrics"]["targets"]] == ["a", "b"]
    assert JsonExporter.content_type == "application/json"


async def test_exporters_render_a_recorded_usage_log(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    async with ProviderManager(config(db=db), drivers=DRIVERS, plugins=(UsagePlugin(), AnalyticsPlugin())) as manager:
        await traffic(manager)
        live_csv = list(csv.DictReader(io.StringIO(await manager.export_metrics("csv"))))
    usage = open_log(db)
    try:
        source = RecordsSource(usage, manager.config)
        offline_csv = list(csv.DictReader(io.StringIO(await CsvExporter().render_source(source))))
        document = json.loads(await JsonExporter().render_source(source))
    finally:
        usage.close()
    for live, offline in zip(live_csv, offline_csv, strict=True):
        for column in ("name", "totalRequests", "successes", "failures", "errorsByKind", "inputTokens"):
            assert live[column] == offline[column]
        assert float(live["totalCost"]) == pytest.approx(float(offline["totalCost"]))
        assert offline["healthy"] == offline["uptime"] == ""  # no live facts in a log
    assert document["analytics"]["source"] == document["metrics"]["source"] == "usage-log"
