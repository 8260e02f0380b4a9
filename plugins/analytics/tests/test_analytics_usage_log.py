"""Analytics from the durable usage log (the real ``swarmgate-usage``
plugin on a real SQLite file): the offline figures equal the live ones,
long windows and a young process read the log, pages are read whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from analytics_helpers import DRIVERS, FakeCache, Refuser, config, scripted

from swarmgate import NoProviderAvailableError, ProviderManager, ProviderTimeoutError, ServerError
from swarmgate.testing import Outcome
from swarmgate_analytics import AnalyticsPlugin, RecordsSource, aggregate_log, service
from swarmgate_usage import AttemptRecord, UsagePlugin, UsageRecord, open_log

pytestmark = pytest.mark.anyio

#: Figures that depend on nothing but what was recorded (latencies are
#: measured once and logged as measured, so they agree too).
COMPARED = (
    "totalRequests",
    "successes",
    "failures",
    "refused",
    "cancelled",
    "successRate",
    "totalCost",
    "avgCost",
    "inputTokens",
    "outputTokens",
    "errorsByKind",
    "refusedByKind",
    "avgLatency",
    "p50Latency",
    "p95Latency",
    "p99Latency",
    "avgTtft",
    "p95Ttft",
)


async def mixed_traffic(manager: ProviderManager) -> None:
    a, b = scripted(manager, "a"), scripted(manager, "b")
    for i in range(6):
        a.push(Outcome(f"answer {i}", delay=0.001 * i, usage=(10 + i, 5 + i)))
        await manager.complete(prompt=f"q{i}", model="a/m1")
    a.push(ServerError("a broke"))
    b.push(Outcome("b answers", usage=(7, 7)))
    await manager.complete(prompt="failover", model="a/m1")
    a.push(ProviderTimeoutError("slow"))
    b.push(ServerError("b broke"))
    with pytest.raises(NoProviderAvailableError):
        await manager.complete(prompt="both fail", model="a/m1")
    b.push(Outcome("refused at a", usage=(2, 2)))
    await manager.complete(prompt="r", model="a/m1", tags=("refuse",))
    await manager.complete(prompt="c", model="a/m1", tags=("cached",))
    a.push(Outcome("streamed answer here", usage=(3, 9)))
    async for _ in manager.stream(prompt="s", model="a/m1"):
        pass
    a.push(Outcome("never", delay=5.0))
    with anyio.move_on_after(0.05):
        await manager.complete(prompt="gone", model="a/m1")


def plugins() -> tuple[Any, ...]:
    return (UsagePlugin(), AnalyticsPlugin(), Refuser(), FakeCache(saved=0.25))


def compared(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: {k: pytest.approx(r[k]) if isinstance(r[k], float) else r[k] for k in COMPARED} for r in rows}


async def test_the_usage_log_gives_the_live_figures(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    async with ProviderManager(config(db=db), drivers=DRIVERS, plugins=plugins()) as manager:
        await mixed_traffic(manager)
        live = await manager.get_analytics()
        live_metrics = await manager.get_metrics()
        from_log = await manager.get_analytics("1h")  # the process is younger than an hour: the log answers
        assert from_log["source"] == "usage-log"
    assert live["source"] == "live"
    usage = open_log(db)
    try:
        offline = await RecordsSource(usage, manager.config).analytics()
        offline_metrics = await RecordsSource(usage, manager.config).metrics()
    finally:
        usage.close()
    for report in (offline, from_log):
        assert compared(report["providers"]) == compared(live["providers"])
        assert compared(report["models"]) == compared(live["models"])
        for key in (
            "requests",
            "successes",
            "failures",
            "cancelled",
            "rejected",
            "cacheHits",
            "attempts",
            "errorsByKind",
        ):
            assert report["totals"][key] == live["totals"][key], key
        for key in ("totalCost", "costSaved", "avgLatency", "p95Latency", "avgTtft"):
            assert report["totals"][key] == pytest.approx(live["totals"][key]), key
        assert report["cache"] == live["cache"]
    assert live["totals"]["requests"] == 12
    assert live["totals"]["cacheHits"] == 1
    assert live["totals"]["cancelled"] == 1
    assert offline["providers"][0]["uptime"] is None  # no live facts offline
    for live_target, offline_target in zip(live_metrics["targets"], offline_metrics["targets"], strict=True):
        assert live_target["latency"]["buckets"] == offline_target["latency"]["buckets"]
        assert live_target["ttft"]["buckets"] == offline_target["ttft"]["buckets"]
        assert live_target["cost"] == pytest.approx(offline_target["cost"])


async def test_a_new_process_reads_earlier_traffic_from_the_log(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    async with ProviderManager(config(db=db), drivers=DRIVERS, plugins=plugins()) as first:
        for _ in range(3):
            await first.complete(prompt="x", model="a/m1")
    async with ProviderManager(config(db=db), drivers=DRIVERS, plugins=plugins()) as second:
        await second.complete(prompt="y", model="b/m2")
        lifetime = await second.get_analytics()
        day = await second.get_analytics("1d")
        week = await second.get_analytics("7d")
    assert lifetime["totals"]["requests"] == 1  # this process
    assert day["source"] == week["source"] == "usage-log"
    assert day["totals"]["requests"] == week["totals"]["requests"] == 4
    assert [(p["name"], p["totalRequests"]) for p in week["providers"]] == [("a", 3), ("b", 1)]
    assert week["providers"][0]["healthy"] is True  # live facts still come from the manager


def record(i: int, ts: float) -> UsageRecord:
    attempt = AttemptRecord(provider="p", model="m", ok=True, cost=1.0, latency_ms=float(i + 1), input_tokens=1)
    return UsageRecord(
        id=f"r{i}",
        ts=ts,
        provider="p",
        model="m",
        cost=1.0,
        input_tokens=1,
        latency_ms=float(i + 1),
        attempts=(attempt,),
    )


class Reader:
    """An in-memory usage log with the interface's paging semantics
    (``[since, until)``, oldest first, ``limit`` oldest)."""

    def __init__(self, records: list[UsageRecord]) -> None:
        self.rows = sorted(records, key=lambda r: r.ts)
        self.calls = 0

    async def records(
        self, *, since: float | None = None, until: float | None = None, limit: int | None = None
    ) -> list[UsageRecord]:
        self.calls += 1
        rows = [r for r in self.rows if (since is None or r.ts >= since) and (until is None or r.ts < until)]
        return rows[:limit] if limit is not None else rows


async def test_paging_counts_each_record_once_even_with_equal_timestamps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "PAGE", 3)
    stamps = [100.0] * 7 + [101.0, 101.0, 102.0] + [103.0 + i for i in range(5)]
    reader = Reader([record(i, ts) for i, ts in enumerate(stamps)])
    aggregate = await aggregate_log(reader, None, None)
    assert aggregate.requests.successes == len(stamps)
    assert aggregate.targets[("p", "m")].cost == pytest.approx(len(stamps))
    assert reader.calls > 3
    since = await aggregate_log(reader, 101.0, 104.0)
    assert since.requests.successes == 4  # 101, 101, 102, 103
