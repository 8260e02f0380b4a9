"""The routing replay on a small log whose figures are checked by hand.

Providers ``a`` (priority 1, 0.2 per request of 100 + 50 tokens) and ``b``
(priority 2, a tenth of that) both serve model ``m``. The log: ``a``
answered four requests in 100, 200, 300 and 400 ms; ``b`` answered two in
50 and 150 ms and failed a third after 30 ms (no failover). So ``a``
succeeds always (p50 200 ms); ``b`` two times in three (p50 50 ms), and
its failures take 30 ms.

Actual: cost 4 x 0.2 + 2 x 0.02 = 0.84; 6 of 7 answered; answered latency
[50, 100, 150, 200, 300, 400]: mean 200, p95 (rank ceil(5.7) = 6) 400.

``current`` (priority, a then b): every request goes to ``a`` and succeeds:
cost 7 x 0.2 = 1.4, p95 400 (the mixture of a's four latencies), mean 250.

``cost-optimized`` (cost 0.8, latency 0.2): score a = 1 - 0.8 - 0.2 = 0,
score b = 1 - 0.8 x 0.1 - 0.2 x 50/200 = 0.87: b first, then a. Per
request: b answers 2/3 at 0.02; a answers the other 1/3 at 0.2 after b's
30 ms failure: cost 2/3 x 0.02 + 1/3 x 0.2 = 0.08, so 0.56 in all; attempts
1 + 1/3. Latency: 2/3 of b's {50, 150} and 1/3 of a's {100..400} + 30:
mean 2/3 x 100 + 1/3 x 280 = 160; the cumulative mass reaches 0.95 only at
430, the p95.

``reliability-optimized`` (latency 0.2, failure 0.8): a scores 0.8, b
0.15: the same order as ``current``.

``flat-weighted-cost``: weights by inverse price, 1 : 10 -> shares 0.091 and
0.909, scaled to the current total weight 2 -> a 0.182, b 1.818, both at
priority 1 under weighted round robin: a first 9.1% of the time: cost per
request 0.091 x 0.2 + 0.909 x 0.08 = 0.09092.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from advisor_helpers import CHEAP, PRICEY, attempt, offline, request, write_log

from swarmgate_usage import open_log

pytestmark = pytest.mark.anyio


def cfg(db: Path) -> dict[str, Any]:
    return {
        "providers": {
            "a": {"type": "scripted", "priority": 1, "models": {"m": dict(PRICEY)}},
            "b": {"type": "scripted", "priority": 2, "models": {"m": dict(CHEAP)}},
        },
        "monitoring": {"usageLog": {"path": str(db)}, "advisor": {"minSamples": 2}},
    }


async def hand_log(db: Path) -> None:
    now = time.time()
    records = [
        request(f"a{i}", now - 100 + i, [attempt("a", latency=ms, cost=0.2)])
        for i, ms in enumerate((100.0, 200.0, 300.0, 400.0))
    ]
    records += [
        request("b1", now - 50, [attempt("b", latency=50.0, cost=0.02)]),
        request("b2", now - 40, [attempt("b", latency=150.0, cost=0.02)]),
        request("b3", now - 30, [attempt("b", ok=False, latency=30.0)]),
    ]
    await write_log(db, records)


def candidate(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["candidates"] if c["name"] == name)


async def test_replay_numbers_match_the_hand_computation(db: Path) -> None:
    await hand_log(db)
    usage = open_log(db)
    try:
        report = (await offline(cfg(db), usage).replay("cost")).to_dict()
    finally:
        await usage.aclose()
    assert report["requests"] == 7
    assert report["excluded"] == 0
    actual = report["actual"]
    assert actual["cost"] == pytest.approx(0.84)
    assert actual["successRate"] == pytest.approx(6 / 7)
    assert actual["meanLatencyMs"] == pytest.approx(200.0)
    assert actual["p95LatencyMs"] == pytest.approx(400.0)
    assert actual["attemptsPerRequest"] == pytest.approx(1.0)

    current = candidate(report, "current")
    assert current["cost"] == pytest.approx(1.4)
    assert current["successRate"] == pytest.approx(1.0)
    assert current["meanLatencyMs"] == pytest.approx(250.0)
    assert current["p95LatencyMs"] == pytest.approx(400.0)
    assert current["changes"] == []

    cheapest = candidate(report, "cost-optimized")
    assert cheapest["cost"] == pytest.approx(0.56)
    assert cheapest["costChangePercent"] == pytest.approx((0.56 - 0.84) / 0.84 * 100)
    assert cheapest["successRate"] == pytest.approx(1.0)
    assert cheapest["attemptsPerRequest"] == pytest.approx(4 / 3)
    assert cheapest["meanLatencyMs"] == pytest.approx(160.0)
    assert cheapest["p95LatencyMs"] == pytest.approx(430.0)
    assert cheapest["changes"] == [{"path": "routing.strategy", "value": "cost-optimized"}]

    assert candidate(report, "reliability-optimized")["cost"] == pytest.approx(1.4)
    flat = candidate(report, "flat-weighted-cost")
    assert flat["cost"] == pytest.approx(7 * (0.091 * 0.2 + 0.909 * 0.08))
    assert {"path": "routing.loadBalancing.weights.a", "value": 0.182} in flat["changes"]
    assert {"path": "routing.loadBalancing.weights.b", "value": 1.818} in flat["changes"]
    assert {"path": "providers.b.priority", "value": 1} in flat["changes"]
    assert {"path": "routing.loadBalancing.algorithm", "value": "weighted-round-robin"} in flat["changes"]

    # Ties (performance-optimized and intelligent order b before a too) go to the first listed.
    assert report["best"] == "cost-optimized"
    assert report["changes"] == [{"path": "routing.strategy", "value": "cost-optimized"}]
    assert [c["name"] for c in report["candidates"] if c["best"]] == ["cost-optimized"]


async def test_for_performance_the_current_config_is_best_and_needs_no_change(db: Path) -> None:
    await hand_log(db)
    usage = open_log(db)
    try:
        report = (await offline(cfg(db), usage).replay("performance")).to_dict()
    finally:
        await usage.aclose()
    # current: p95 400 ms; b-first orders pay b's failures: p95 430 ms.
    assert candidate(report, "cost-optimized")["p95LatencyMs"] == pytest.approx(430.0)
    assert report["best"] == "current"
    assert report["changes"] == []


async def test_a_replay_is_deterministic(db: Path) -> None:
    await hand_log(db)
    usage = open_log(db)
    try:
        now = time.time()
        advisor = offline(cfg(db), usage, clock=lambda: now)
        first = (await advisor.replay("reliability")).to_dict()
        second = (await advisor.replay("reliability")).to_dict()
    finally:
        await usage.aclose()
    assert first == second


async def test_cache_hits_and_unobserved_targets_are_left_out(db: Path) -> None:
    now = time.time()
    await write_log(
        db,
        [
            request("x1", now - 10, [attempt("a", latency=100.0, cost=0.2)]),
            request("x2", now - 9, [], cache_hit=True, cost_saved=0.2),
        ],
    )
    usage = open_log(db)
    try:
        report = (await offline(cfg(db), usage).replay("cost")).to_dict()
    finally:
        await usage.aclose()
    assert report["requests"] == 1
    assert report["excluded"] == 1
    assert any("b/m" in note for note in report["notes"])  # never tried: not projected
    assert candidate(report, "current")["cost"] == pytest.approx(0.2)


async def test_an_unknown_target_is_refused(db: Path) -> None:
    await hand_log(db)
    usage = open_log(db)
    try:
        with pytest.raises(ValueError, match="unknown replay target 'speed'"):
            await offline(cfg(db), usage).replay("speed")
    finally:
        await usage.aclose()
