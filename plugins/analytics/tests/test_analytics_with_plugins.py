"""Analytics next to the real cache, budget, rate-limit and usage plugins:
their figures appear in the document, a real cache hit is counted with the
cost it saved, and the usage log agrees."""

from __future__ import annotations

from pathlib import Path

import pytest
from analytics_helpers import DRIVERS, config, cost_a, row, scripted

from swarmgate import ProviderManager
from swarmgate.testing import Outcome
from swarmgate_analytics import AnalyticsPlugin, RecordsSource
from swarmgate_budget import BudgetPlugin
from swarmgate_cache import CachePlugin
from swarmgate_ratelimit import RateLimitPlugin
from swarmgate_usage import UsagePlugin, open_log

pytestmark = pytest.mark.anyio


async def test_cache_budget_and_rate_limit_figures(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    cfg = config(
        db=db,
        optimization={"caching": {"enabled": True, "ttl": 60_000}, "rateLimiting": {"requestsPerMinute": 1000}},
        routing={"budgetLimits": {"daily": 10.0}},
    )
    plugins = (UsagePlugin(), CachePlugin(), BudgetPlugin(), RateLimitPlugin(), AnalyticsPlugin())
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=plugins) as manager:
        scripted(manager, "a").push(Outcome("the answer", usage=(100, 50)))
        first = await manager.complete(prompt="same question", model="a/m1", temperature=0)
        second = await manager.complete(prompt="same question", model="a/m1", temperature=0)
        assert second.cached
        report = await manager.get_analytics()
        windowed = await manager.get_analytics("1h")
    saved = cost_a(100, 50)
    assert first.cost == pytest.approx(saved)
    assert report["cache"]["source"] == "cache"
    assert (report["cache"]["hits"], report["cache"]["misses"]) == (1, 1)
    assert report["cache"]["costSaved"] == pytest.approx(saved)
    assert report["totals"]["cacheHits"] == 1
    assert report["totals"]["costSaved"] == pytest.approx(saved)
    assert report["totals"]["totalCost"] == pytest.approx(saved)  # the hit cost nothing
    assert row(report, "providers", "a")["totalRequests"] == 1  # the hit never reached a
    daily = next(b for b in report["budgets"] if b["scope"] == "global" and b["period"] == "daily")
    assert daily["limit"] == 10.0
    assert daily["spent"] == pytest.approx(saved)
    assert report["rateLimits"]["scopes"]["global"]["requests"]["per_minute"] == 1000
    assert windowed["source"] == "usage-log"  # a young process: the log answers
    assert windowed["cache"] == {
        "hits": 1,
        "misses": 1,
        "hitRatio": 0.5,
        "costSaved": pytest.approx(saved),
        "source": "requests",
    }
    usage = open_log(db)
    try:
        offline = await RecordsSource(usage).analytics()
    finally:
        usage.close()
    assert offline["totals"]["cacheHits"] == 1
    assert offline["totals"]["costSaved"] == pytest.approx(saved)
