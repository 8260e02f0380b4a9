"""Restart against the real durable usage log (swarmgate-usage, SQLite): a
second gateway process with an empty in-memory StateStore resumes the
budgets from what the first one recorded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from budget_testkit import config, drivers, provider

from swarmgate import ProviderManager, TextDelta
from swarmgate_budget import BudgetExhaustedError, BudgetPlugin, period_of
from swarmgate_usage import UsagePlugin

pytestmark = pytest.mark.anyio


async def test_a_restart_resumes_from_the_recorded_usage(tmp_path: Path) -> None:
    cfg = config({"daily": 12.0, "monthly": 500.0}, a=provider(1, budget={"daily": 7.0}), b=provider(2))
    cfg["routing"]["fallbackChains"] = [["a", "b"]]
    cfg["monitoring"] = {"usageLog": {"path": str(tmp_path / "usage.db"), "commitInterval": 0}}
    first = ProviderManager(cfg, drivers=drivers(), plugins=(UsagePlugin(), BudgetPlugin()))
    async with first:
        for _ in range(2):
            await first.complete(prompt="hi", model="a/m", max_tokens=1)  # 2 each at a
        stream = first.stream(prompt="hi", model="b/m", max_tokens=1)  # cancelled after its first chunk
        async for event in stream:
            if isinstance(event, TextDelta):
                break
        await stream.aclose()
        before = {row["name"]: row["spent"] for row in await first.extensions["budget"].status()}
    assert before["provider:a:daily"] == 4.0
    partial = before["global:daily"] - 4.0
    assert partial > 0

    second = ProviderManager(cfg, drivers=drivers(), plugins=(UsagePlugin(), BudgetPlugin()))
    async with second:
        usage = second.extensions["usage"]
        since = period_of("daily", time.time()).start
        assert await usage.spend(since=since) == pytest.approx(4.0 + partial)
        after = {row["name"]: row["spent"] for row in await second.extensions["budget"].status()}
        assert after == pytest.approx(before)
        # provider a: 4 spent + 2 worst case fits 7; then 6 + 2 does not
        await second.complete(prompt="hi", model="a/m", max_tokens=1)
        response = await second.complete(prompt="hi", model="a/m", max_tokens=1)
        assert response.provider == "b"  # routed around a's exhausted budget
        remaining = 12.0 - (8.0 + partial)  # 4 before, 2 at a, 2 at b
        for _ in range(int(remaining // 2)):
            await second.complete(prompt="hi", model="b/m", max_tokens=1)
        with pytest.raises(BudgetExhaustedError) as info:
            await second.complete(prompt="hi", model="b/m", max_tokens=1)
        assert info.value.budget == "global:daily"
