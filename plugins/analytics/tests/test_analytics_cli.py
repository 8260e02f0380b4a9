"""``analytics providers|costs|load-balancing`` and ``export metrics`` through
click's CliRunner, on a usage log recorded by the real usage plugin."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from analytics_helpers import DRIVERS, FakeCache, Refuser, config, scripted
from click.testing import CliRunner, Result

from swarmgate import ProviderManager, ServerError
from swarmgate.cli import build_cli
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import Outcome
from swarmgate_analytics import CSV_COLUMNS, AnalyticsPlugin
from swarmgate_usage import UsagePlugin


@pytest.fixture(autouse=True)
def _admit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-analytics,swarmgate-usage")
    monkeypatch.delenv("SWARMGATE_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "240")  # rich tables as wide as they want


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A usage log of some traffic, the config file that produced it, and
    the live analytics of that traffic."""
    tmp = tmp_path_factory.mktemp("recorded")
    db = tmp / "usage.db"
    cfg = config(db=db, routing={"loadBalancing": {"algorithm": "weighted-round-robin"}})

    async def serve() -> dict[str, Any]:
        plugins = (UsagePlugin(), AnalyticsPlugin(), Refuser(), FakeCache(saved=0.1))
        async with ProviderManager(cfg, drivers=DRIVERS, plugins=plugins) as manager:
            a, b = scripted(manager, "a"), scripted(manager, "b")
            for i in range(6):
                a.push(Outcome("a", delay=0.001 * i, usage=(10, 20)))
                await manager.complete(prompt="x", model="a/m1")
            a.push(ServerError("a broke"))
            b.push(Outcome("b", usage=(30, 30)))
            await manager.complete(prompt="x", model="a/m1")
            b.push(Outcome("b", usage=(5, 5)))
            await manager.complete(prompt="x", model="a/m1", tags=("refuse",))
            await manager.complete(prompt="x", model="a/m1", tags=("cached",))
            return dict(await manager.get_analytics())

    with pytest.MonkeyPatch.context() as patch:  # module scope: the function-scoped allow-list is not set yet
        patch.setenv(ALLOW_ENV, "swarmgate,swarmgate-wrr")
        live = anyio.run(serve)
    path = tmp / "providers.json"
    path.write_text(json.dumps(cfg))
    return {"db": str(db), "config": str(path), "live": live}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(build_cli(), list(args), catch_exceptions=False)


def test_providers_json_gives_the_live_figures(recorded: dict[str, Any]) -> None:
    result = invoke("analytics", "providers", "--json", "--log", recorded["db"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    live = recorded["live"]
    assert report["source"] == "usage-log"
    for offline, online in zip(report["providers"], live["providers"], strict=True):
        for key in ("name", "totalRequests", "successes", "failures", "refused", "errorsByKind", "inputTokens"):
            assert offline[key] == online[key], key
        for key in ("totalCost", "avgLatency", "p95Latency", "successRate"):
            assert offline[key] == pytest.approx(online[key]), key
    assert report["totals"]["cacheHits"] == 1
    assert report["cache"]["costSaved"] == pytest.approx(0.1)


def test_providers_table_and_detailed(recorded: dict[str, Any]) -> None:
    plain = invoke("analytics", "providers", "--log", recorded["db"], "--window", "1h")
    assert plain.exit_code == 0, plain.output
    assert "providers (last 1h)" in plain.output
    for text in ("a", "b", "avg ms", "p95 ms", "85.7%", "9 requests"):
        assert text in plain.output, text
    detailed = invoke("analytics", "providers", "--detailed", "--log", recorded["db"], "--config", recorded["config"])
    assert detailed.exit_code == 0, detailed.output
    for text in (
        "models (whole log)",
        "a/m1",
        "b/m2",
        "latency p99 (ms)",
        "tokens in",
        "server_error 1",
        "rate_limited 1",
    ):
        assert text in detailed.output, text


def test_costs_by_provider_and_by_model(recorded: dict[str, Any]) -> None:
    result = invoke("analytics", "costs", "--by-provider", "--json", "--log", recorded["db"])
    assert result.exit_code == 0, result.output
    costs = json.loads(result.output)
    assert costs["groupBy"] == "provider"
    a_cost = 6 * (10 * 0.001 + 20 * 0.002)
    b_cost = (30 * 0.0005 + 30 * 0.001) + (5 * 0.0005 + 5 * 0.001)
    assert [(r["name"], pytest.approx(r["totalCost"])) for r in costs["rows"]] == [("a", a_cost), ("b", b_cost)]
    assert sum(r["share"] for r in costs["rows"]) == pytest.approx(1.0)
    assert costs["totalCost"] == pytest.approx(a_cost + b_cost)
    assert costs["costSaved"] == pytest.approx(0.1)
    assert costs["rows"][0]["costPer1kTokens"] == pytest.approx(a_cost * 1000 / (6 * 30))
    table = invoke("analytics", "costs", "--log", recorded["db"])
    assert table.exit_code == 0, table.output
    assert "costs by model" in table.output
    assert "a/m1" in table.output
    assert "saved by the cache" in table.output


def test_load_balancing_against_the_configured_weights(recorded: dict[str, Any]) -> None:
    result = invoke("analytics", "load-balancing", "--json", "--log", recorded["db"], "--config", recorded["config"])
    assert result.exit_code == 0, result.output
    balance = json.loads(result.output)
    assert balance["algorithm"] == "weighted-round-robin"
    rows = {r["name"]: r for r in balance["rows"]}
    assert balance["requests"] == 9  # a: 6 answers + 1 failure; b: 2 answers
    assert rows["a"]["share"] == pytest.approx(7 / 9)
    assert rows["a"]["weightShare"] == pytest.approx(0.75)
    assert rows["b"]["share"] == pytest.approx(2 / 9)
    assert rows["b"]["weightShare"] == pytest.approx(0.25)
    assert rows["a"]["deviation"] == pytest.approx(7 / 9 - 0.75)
    table = invoke("analytics", "load-balancing", "--log", recorded["db"])
    assert table.exit_code == 0, table.output
    assert "unknown: no --config" in table.output


def test_export_metrics_in_each_format(recorded: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "metrics.csv"
    result = invoke("export", "metrics", "--format", "csv", "--output", str(out), "--log", recorded["db"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r[0] for r in rows[1:]] == ["a/m1", "b/m2"]
    document = json.loads(invoke("export", "metrics", "--log", recorded["db"]).output)
    assert document["metrics"]["requests"]["successes"] == 9


def test_user_errors_exit_2_with_one_line(recorded: dict[str, Any], tmp_path: Path) -> None:
    bad_window = invoke("analytics", "providers", "--window", "soon", "--log", recorded["db"])
    assert bad_window.exit_code == 2
    assert "window must be" in bad_window.output
    missing = invoke("analytics", "costs", "--log", str(tmp_path / "nothing.db"))
    assert missing.exit_code == 2
    assert "error:" in missing.output
    unknown = invoke("export", "metrics", "--format", "yaml", "--log", recorded["db"])
    assert unknown.exit_code == 2
    assert "swarmgate-yaml" in unknown.output
