"""Live analytics after real traffic through a manager: counts, success
rates, costs and tokens per provider and model, refused and cancelled
attempts, cache hits, request totals and percentiles within one bin."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from analytics_helpers import DRIVERS, Clock, FakeCache, Refuser, config, cost_a, cost_b, nearest_rank, row, scripted

from swarmgate import (
    CompletionResponse,
    NoProviderAvailableError,
    ProviderManager,
    ProviderTimeoutError,
    ServerError,
    SwarmgateError,
    hookimpl,
)
from swarmgate.testing import Outcome
from swarmgate_analytics import AnalyticsPlugin, AnalyticsService, histogram

pytestmark = pytest.mark.anyio


async def traffic(manager: ProviderManager) -> dict[str, Any]:
    """Eight requests covering every outcome; returns what the test needs to know."""
    a, b = scripted(manager, "a"), scripted(manager, "b")
    a.push(Outcome("one", usage=(10, 5)))
    await manager.complete(prompt="1", model="a/m1")  # a answers
    a.push(ServerError("a broke"))
    b.push(Outcome("two", usage=(20, 10)))
    await manager.complete(prompt="2", model="a/m1")  # a fails, b answers
    a.push(Outcome("three", usage=(4, 2)))
    await manager.complete(prompt="3", model="a/m1")  # a answers
    a.push(ProviderTimeoutError("a too slow"))
    b.push(ServerError("b broke"))
    with pytest.raises(NoProviderAvailableError) as failed:
        await manager.complete(prompt="4", model="a/m1")  # both fail
    b.push(Outcome("five", usage=(6, 3)))
    await manager.complete(prompt="5", model="b/m2")  # b directly
    b.push(Outcome("six", usage=(1, 1)))
    await manager.complete(prompt="6", model="a/m1", tags=("refuse",))  # a refused locally, b answers
    await manager.complete(prompt="7", model="a/m1", tags=("cached",))  # a cache hit
    a.push(Outcome("never", delay=5.0))
    with anyio.move_on_after(0.05):
        await manager.complete(prompt="8", model="a/m1")  # the caller gives up
    return {"failed_kind": failed.value.kind.value}


async def test_figures_per_provider_model_and_request_match_what_was_sent() -> None:
    async with ProviderManager(
        config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(), Refuser(), FakeCache(saved=0.5))
    ) as manager:
        facts = await traffic(manager)
        report = await manager.get_analytics()
    assert report["window"] is None
    assert report["source"] == "live"
    assert [p["name"] for p in report["providers"]] == ["a", "b"]
    assert [m["name"] for m in report["models"]] == ["a/m1", "b/m2"]

    a = row(report, "providers", "a")
    assert (a["successes"], a["failures"], a["refused"], a["cancelled"]) == (2, 2, 1, 1)
    assert a["totalRequests"] == 4
    assert a["successRate"] == pytest.approx(0.5)
    assert a["totalCost"] == pytest.approx(cost_a(10, 5) + cost_a(4, 2))
    assert a["avgCost"] == pytest.approx(a["totalCost"] / 4)
    assert (a["inputTokens"], a["outputTokens"]) == (14, 7)
    assert a["errorsByKind"] == {"server_error": 1, "timeout": 1}
    assert a["refusedByKind"] == {"rate_limited": 1}
    assert a["inflight"] == 0
    assert a["healthy"] is True
    assert a["uptime"] == 1.0
    assert a["breaker"] is None  # no breaker plugin

    b = row(report, "providers", "b")
    assert (b["successes"], b["failures"], b["refused"], b["cancelled"]) == (3, 1, 0, 0)
    assert b["successRate"] == pytest.approx(0.75)
    assert b["totalCost"] == pytest.approx(cost_b(20, 10) + cost_b(6, 3) + cost_b(1, 1))
    assert (b["inputTokens"], b["outputTokens"]) == (27, 14)
    assert b["errorsByKind"] == {"server_error": 1}
    m2 = row(report, "models", "b/m2")
    assert (m2["provider"], m2["model"]) == ("b", "m2")
    assert m2["totalCost"] == pytest.approx(b["totalCost"])

    totals = report["totals"]
    assert totals["requests"] == 8
    assert (totals["successes"], totals["failures"], totals["cancelled"], totals["rejected"]) == (6, 1, 1, 0)
    assert totals["cacheHits"] == 1
    assert totals["successRate"] == pytest.approx(6 / 7)
    assert totals["errorsByKind"] == {facts["failed_kind"]: 1}
    assert totals["totalCost"] == pytest.approx(a["totalCost"] + b["totalCost"])
    assert totals["costSaved"] == pytest.approx(0.5)
    assert (totals["inputTokens"], totals["outputTokens"]) == (41, 21)
    assert totals["attempts"] == 10
    assert report["cache"] == {
        "hits": 1,
        "misses": 6,
        "hitRatio": pytest.approx(1 / 7),
        "costSaved": 0.5,
        "source": "requests",
    }
    assert report["budgets"] is None
    assert report["rateLimits"] is None


async def test_a_request_refused_everywhere_is_rejected_and_no_provider_failure() -> None:
    cfg = {"providers": {"a": {"type": "scripted", "models": {"m1": {}}}}}
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(AnalyticsPlugin(), Refuser())) as manager:
        with pytest.raises(SwarmgateError):
            await manager.complete(prompt="x", model="a/m1", tags=("refuse",))
        report = await manager.get_analytics("1m")
    a = row(report, "providers", "a")
    assert (a["totalRequests"], a["failures"], a["refused"], a["successRate"]) == (0, 0, 1, None)
    assert report["totals"]["rejected"] == 1
    assert report["totals"]["failures"] == 1


async def test_streams_report_time_to_first_token() -> None:
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(),)) as manager:
        responses = []
        for i in range(5):
            scripted(manager, "a").push(Outcome("a streamed answer", delay=0.002 * i, usage=(2, 3)))
            async for event in manager.stream(prompt="s", model="a/m1"):
                response = getattr(event, "response", None)
                if isinstance(response, CompletionResponse):
                    responses.append(response)
        report = await manager.get_analytics("1h")
    m1 = row(report, "models", "a/m1")
    ttfts = [r.ttft for r in responses if r.ttft is not None]
    assert len(ttfts) == 5
    assert m1["avgTtft"] == pytest.approx(sum(ttfts) / 5)
    assert histogram.bin_of(m1["p95Ttft"]) == histogram.bin_of(nearest_rank(ttfts, 0.95))
    assert report["totals"]["avgTtft"] == pytest.approx(sum(ttfts) / 5)


async def test_latency_percentiles_are_within_one_bin_of_the_measured_latencies() -> None:
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(),)) as manager:
        a = scripted(manager, "a")
        responses: list[CompletionResponse] = []

        async def one() -> None:
            responses.append(await manager.complete(prompt="p", model="a/m1"))

        for i in range(24):
            a.push(Outcome("x", delay=0.001 * (i % 12)))
        async with anyio.create_task_group() as group:
            for _ in range(24):
                group.start_soon(one)
        report = await manager.get_analytics("1m")
    attempts = [r.attempts[-1].latency for r in responses]
    m1 = row(report, "models", "a/m1")
    for q, key in ((0.5, "p50Latency"), (0.95, "p95Latency"), (0.99, "p99Latency")):
        assert histogram.bin_of(m1[key]) == histogram.bin_of(nearest_rank(attempts, q)), key
    assert m1["avgLatency"] == pytest.approx(sum(attempts) / len(attempts))
    ends = [r.latency for r in responses]
    assert histogram.bin_of(report["totals"]["p95Latency"]) == histogram.bin_of(nearest_rank(ends, 0.95))


class Started:
    """Sets ``event`` when an attempt starts (the kernel counts it in flight
    before the provider's first await)."""

    def __init__(self) -> None:
        self.event = anyio.Event()

    @hookimpl
    def before_attempt(self) -> None:
        self.event.set()


async def test_in_flight_requests_are_counted() -> None:
    started = Started()
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(), started)) as manager:
        scripted(manager, "a").push(Outcome("slow", delay=0.2))
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: manager.complete(prompt="x", model="a/m1"))
            await started.event.wait()
            report = await manager.get_analytics()
            assert row(report, "providers", "a")["inflight"] == 1
            assert row(report, "providers", "b")["inflight"] == 0
        metrics = await manager.get_metrics()
    assert [(p["name"], p["inflight"]) for p in metrics["providers"]] == [("a", 0), ("b", 0)]


async def test_metrics_hold_the_raw_counters_and_histograms() -> None:
    clock = Clock()
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(clock=clock),)) as manager:
        a = scripted(manager, "a")
        a.push(Outcome("x", usage=(3, 4)), ServerError("no"))
        scripted(manager, "b").push(Outcome("y", usage=(1, 2)))
        await manager.complete(prompt="x", model="a/m1")
        await manager.complete(prompt="x", model="a/m1")
        metrics = await manager.get_metrics()
    assert metrics["source"] == "live"
    assert metrics["since"] == clock.now
    assert metrics["latencyBoundsMs"] == list(histogram.BOUNDS)
    target = next(t for t in metrics["targets"] if (t["provider"], t["model"]) == ("a", "m1"))
    assert (target["successes"], target["failures"], target["errorsByKind"]) == (1, 1, {"server_error": 1})
    assert target["cost"] == pytest.approx(cost_a(3, 4))
    assert target["latency"]["count"] == 1
    assert sum(count for _, count in target["latency"]["buckets"]) == 1
    assert metrics["requests"]["successes"] == 2
    assert metrics["requests"]["attempts"] == 3
    assert metrics["cache"]["source"] == "requests"


async def test_the_service_is_published_and_the_facade_uses_it() -> None:
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(AnalyticsPlugin(),)) as manager:
        assert isinstance(manager.extensions["analytics"], AnalyticsService)
        assert await manager.get_optimization_recommendations() == []
        assert (await manager.get_analytics("30s"))["window"] == "30s"
