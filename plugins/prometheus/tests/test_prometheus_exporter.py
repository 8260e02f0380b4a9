"""The ``prometheus`` exporter: live metrics after real traffic, parsed back
with ``prometheus_client.parser``; the same on a recorded usage log through
the CLI; naming and types."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from swarmgate import PluginError, ProviderManager, ServerError
from swarmgate.cli import build_cli
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import Outcome, ScriptedProvider
from swarmgate_analytics import AnalyticsPlugin
from swarmgate_analytics.histogram import EXPORT_BOUNDS
from swarmgate_breaker import BreakerPlugin
from swarmgate_prometheus import PrometheusExporter
from swarmgate_usage import UsagePlugin

pytestmark = pytest.mark.anyio

DRIVERS: dict[str, dict[str, Any]] = {
    "swarmgate.providers": {"scripted": ScriptedProvider},
    "swarmgate.exporters": {"prometheus": PrometheusExporter},
}


def config(db: Path | None = None) -> dict[str, Any]:
    return {
        "providers": {
            "a": {
                "type": "scripted",
                "priority": 1,
                "models": {"m1": {"inputCostPerToken": 0.001, "outputCostPerToken": 0.002}},
            },
            "b": {"type": "scripted", "priority": 2, "models": {"m2": {}}},
        },
        "routing": {"fallbackChains": [["a", "b"]], "circuitBreaker": {"failureThreshold": 5}},
        "monitoring": {"usageLog": {"path": str(db)} if db is not None else {"enabled": False}},
    }


async def traffic(manager: ProviderManager) -> list[float]:
    """Five answers from a (two streamed), one failure of a answered by b; a's latencies."""
    a = manager.provider("a")
    b = manager.provider("b")
    assert isinstance(a, ScriptedProvider)
    assert isinstance(b, ScriptedProvider)
    latencies = []
    for i in range(3):
        a.push(Outcome("answer", delay=0.002 * i, usage=(10, 20)))
        response = await manager.complete(prompt="x", model="a/m1")
        latencies.append(response.attempts[-1].latency)
    for _ in range(2):
        a.push(Outcome("streamed answer", usage=(1, 2)))
        async for _event in manager.stream(prompt="x", model="a/m1"):
            pass
    a.push(ServerError("broken"))
    b.push(Outcome("b", usage=(5, 5)))
    await manager.complete(prompt="x", model="a/m1")
    return latencies


def samples(text: str) -> dict[str, list[Sample]]:
    """Samples by family name, parsed with prometheus_client's own parser."""
    return {family.name: list(family.samples) for family in text_string_to_metric_families(text)}


def value(found: dict[str, list[Sample]], family: str, sample: str, **labels: str) -> float:
    matches = [
        s.value for s in found[family] if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matches) == 1, (family, sample, labels, matches)
    return float(matches[0])


async def test_live_metrics_parse_and_match_the_traffic() -> None:
    plugins = (AnalyticsPlugin(), BreakerPlugin())
    async with ProviderManager(config(), drivers=DRIVERS, plugins=plugins) as manager:
        await traffic(manager)
        text = await manager.export_metrics("prometheus")
        metrics = await manager.get_metrics()
    found = samples(text)
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert types["swarmgate_requests"] == "counter"
    assert types["swarmgate_request_duration_seconds"] == "histogram"
    assert types["swarmgate_inflight_requests"] == types["swarmgate_provider_up"] == "gauge"

    a = {"provider": "a", "model": "m1"}
    assert value(found, "swarmgate_requests", "swarmgate_requests_total", outcome="success", **a) == 5
    assert value(found, "swarmgate_requests", "swarmgate_requests_total", outcome="failure", **a) == 1
    assert (
        value(found, "swarmgate_requests", "swarmgate_requests_total", outcome="success", provider="b", model="m2") == 1
    )
    assert value(found, "swarmgate_errors", "swarmgate_errors_total", kind="server_error", **a) == 1
    assert value(found, "swarmgate_cost", "swarmgate_cost_total", **a) == pytest.approx(3 * 0.05 + 2 * 0.005)
    assert value(found, "swarmgate_tokens", "swarmgate_tokens_total", direction="input", **a) == 32
    assert value(found, "swarmgate_tokens", "swarmgate_tokens_total", direction="output", **a) == 64
    assert value(found, "swarmgate_gateway_requests", "swarmgate_gateway_requests_total", outcome="success") == 6
    assert value(found, "swarmgate_inflight_requests", "swarmgate_inflight_requests", provider="a") == 0
    assert value(found, "swarmgate_provider_up", "swarmgate_provider_up", provider="b") == 1
    assert value(found, "swarmgate_circuit_state", "swarmgate_circuit_state", state="closed", **a) == 1
    assert value(found, "swarmgate_circuit_state", "swarmgate_circuit_state", state="open", **a) == 0
    assert value(found, "swarmgate_cache_hits", "swarmgate_cache_hits_total") == 0

    # The latency histogram: cumulative buckets at the exported bounds, +Inf = count, sum in seconds.
    target = next(t for t in metrics["targets"] if t["provider"] == "a")
    buckets = [
        s
        for s in found["swarmgate_request_duration_seconds"]
        if s.name.endswith("_bucket") and s.labels["provider"] == "a"
    ]
    bounds = [float(s.labels["le"]) for s in buckets]
    assert bounds == [b / 1000.0 for b in EXPORT_BOUNDS] + [math.inf]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts)
    assert counts[-1] == 5
    histogram_count = value(
        found, "swarmgate_request_duration_seconds", "swarmgate_request_duration_seconds_count", **a
    )
    assert histogram_count == 5
    total = value(found, "swarmgate_request_duration_seconds", "swarmgate_request_duration_seconds_sum", **a)
    assert total == pytest.approx(target["latency"]["sum"] / 1000.0)
    for bound, count in zip(bounds[:-1], counts[:-1], strict=True):
        expected = sum(
            n for upper, n in target["latency"]["buckets"] if upper is not None and upper <= bound * 1000.0 + 1e-9
        )
        assert count == expected
    ttft_count = value(
        found, "swarmgate_time_to_first_token_seconds", "swarmgate_time_to_first_token_seconds_count", **a
    )
    assert ttft_count == 2  # the two streams


async def test_content_type_and_a_missing_analytics_service() -> None:
    assert PrometheusExporter.content_type.startswith("text/plain; version=")
    cfg = config() | {"monitoring": {"analytics": False, "usageLog": {"enabled": False}}}
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(AnalyticsPlugin(),)) as manager:
        with pytest.raises(PluginError, match="swarmgate-analytics"):
            await manager.export_metrics("prometheus")


def test_the_cli_exports_a_recorded_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "usage.db"

    async def serve() -> None:
        async with ProviderManager(config(db), drivers=DRIVERS, plugins=(UsagePlugin(), AnalyticsPlugin())) as manager:
            await traffic(manager)

    anyio.run(serve)
    cfg_path = tmp_path / "providers.json"
    cfg_path.write_text(json.dumps(config(db)))
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-analytics,swarmgate-usage,swarmgate-prometheus")
    out = tmp_path / "metrics.prom"
    result = CliRunner().invoke(
        build_cli(),
        ["export", "metrics", "--format", "prometheus", "--config", str(cfg_path), "--output", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    found = samples(out.read_text())
    assert (
        value(found, "swarmgate_requests", "swarmgate_requests_total", outcome="success", provider="a", model="m1") == 5
    )
    assert value(found, "swarmgate_gateway_requests", "swarmgate_gateway_requests_total", outcome="success") == 6
    assert "swarmgate_provider_up" not in found  # no live facts in a recorded log
    assert "swarmgate_inflight_requests" not in found
