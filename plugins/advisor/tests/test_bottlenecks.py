"""Bottleneck findings on a recorded log: the slowest targets by p95 and by
time to first token, failure hot spots by error kind, local refusals, and
failover amplification; queue depth when live."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from advisor_helpers import DRIVERS, PRICEY, advisor_of, attempt, config, offline, request, write_log

from swarmgate import ProviderManager
from swarmgate_usage import open_log

pytestmark = pytest.mark.anyio


def cfg(db: Path) -> dict[str, Any]:
    return {
        "providers": {name: {"type": "scripted", "models": {"m": dict(PRICEY)}} for name in ("fast", "slow", "stream")},
        "monitoring": {"usageLog": {"path": str(db)}, "advisor": {"minSamples": 5}},
    }


async def test_findings_name_the_slow_the_failing_and_the_amplified(db: Path) -> None:
    now = time.time()
    records = []
    for i in range(10):
        records.append(request(f"f{i}", now - 500 + i, [attempt("fast", latency=100.0 + i)]))
        records.append(request(f"s{i}", now - 400 + i, [attempt("slow", latency=1000.0 + 100 * i)]))
        records.append(
            request(f"t{i}", now - 300 + i, [attempt("stream", latency=500.0, ttft=200.0 + 10 * i)], stream=True)
        )
    # Six requests failed over from slow (timeouts) to fast; two were refused at slow by a budget.
    for i in range(6):
        records.append(
            request(
                f"o{i}",
                now - 200 + i,
                [attempt("slow", ok=False, kind="timeout", latency=2000.0), attempt("fast", latency=100.0)],
            )
        )
    for i in range(2):
        records.append(
            request(
                f"r{i}",
                now - 100 + i,
                [attempt("slow", ok=False, kind="budget_exceeded", latency=0.0, refused=True), attempt("fast")],
            )
        )
    await write_log(db, records)
    usage = open_log(db)
    try:
        report = await offline(cfg(db), usage).bottlenecks()
    finally:
        await usage.aclose()
    assert report["requests"] == 38
    findings = report["findings"]
    kinds = [f["type"] for f in findings]
    assert "queue-depth" not in kinds  # offline: nothing is in flight

    slow = [f for f in findings if f["type"] == "slow-target"]
    assert [f["figures"]["target"] for f in slow] == ["slow/m", "stream/m", "fast/m"]
    assert slow[0]["figures"]["p95LatencyMs"] == 1900.0
    assert slow[0]["sentence"].startswith("slow/m is the slowest target: p95 1900 ms")

    ttft = [f for f in findings if f["type"] == "slow-first-token"]
    assert [f["figures"]["target"] for f in ttft] == ["stream/m"]
    assert ttft[0]["figures"]["p95TtftMs"] == 290.0

    hotspots = [f for f in findings if f["type"] == "failure-hotspot"]
    assert hotspots[0]["figures"] == {
        "target": "slow/m",
        "errorKind": "timeout",
        "failures": 6,
        "attempts": 16,
        "shareOfTarget": 0.375,
        "shareOfAllFailures": 1.0,
    }

    refusals = [f for f in findings if f["type"] == "refusals"]
    assert refusals[0]["figures"] == {"refused": 2, "byTarget": {"slow/m": 2}}

    amplification = [f for f in findings if f["type"] == "amplification"]
    overall = amplification[0]["figures"]
    assert overall["requests"] == 38
    assert overall["attempts"] == 44  # 30 + 6 x 2 + 2 (refused attempts are not tried)
    assert overall["failovers"] == 6
    assert overall["extraLatencyMsPerFailover"] == 2000.0


async def test_live_bottlenecks_include_the_queue_depth(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS) as manager:
        await manager.complete(prompt="hi", model="m")
        report = await advisor_of(manager).bottlenecks()
    queue = [f for f in report["findings"] if f["type"] == "queue-depth"]
    assert queue == [
        {
            "type": "queue-depth",
            "sentence": "no request is in flight now",
            "figures": {"inflight": {"cheap": 0, "pricey": 0}},
        }
    ]
