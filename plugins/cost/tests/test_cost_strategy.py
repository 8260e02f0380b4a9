"""cost-optimized: its order on a constructed scenario, and the budget guard."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from swarmgate import (
    BudgetExceededError,
    CompletionRequest,
    ConfigError,
    NoProviderAvailableError,
    ProviderManager,
    RequestContext,
    ServerError,
    Target,
    hookimpl,
)
from swarmgate.testing.scripted import ScriptedProvider
from swarmgate_cost import CostOptimizedStrategy, CostPlugin, spend_key

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}
CHEAP, MID, PRICEY = Target("cheap", "m"), Target("mid", "m"), Target("pricey", "m")
NOW = datetime(2025, 3, 31, 22, 0, tzinfo=UTC).timestamp()


def scenario(routing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Three providers: cheap but slow and flaky, mid-priced and reliable,
    pricey but fast (priors only; output 256 tokens expected)."""
    return {
        "providers": {
            "cheap": {"type": "scripted", "models": {"m": {"costPerToken": 1e-6, "maxTokens": 1000}}},
            "mid": {"type": "scripted", "models": {"m": {"costPerToken": 5e-6, "maxTokens": 1000}}},
            "pricey": {"type": "scripted", "models": {"m": {"costPerToken": 2e-5, "maxTokens": 1000}}},
        },
        "routing": {
            "strategy": "cost-optimized",
            "mlConfig": {
                "priors": {
                    "cheap": {"expectedTokensPerSecond": 10, "expectedReliability": 0.85},
                    "mid": {"expectedTokensPerSecond": 20, "expectedReliability": 0.99},
                    "pricey": {"expectedTokensPerSecond": 200, "expectedReliability": 0.95},
                }
            },
            **(routing or {}),
        },
    }


class Budget:
    """Stands in for a budget plugin: announces the spend counters."""

    @hookimpl
    def plugin_setup(self, manager: ProviderManager) -> None:
        manager.extensions["budget"] = self


async def make(cfg: dict[str, Any], *, budget: bool = True) -> ProviderManager:
    manager = ProviderManager(cfg, drivers=DRIVERS, plugins=(Budget(),) if budget else ())
    await manager.initialize()
    guard = manager.plugins.get("cost")
    if manager.config.routing.budget_limits is None:
        assert guard is None  # no limits: the guard unregisters itself
        return manager
    assert isinstance(guard, CostPlugin)
    guard.clock = lambda: NOW
    return manager


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


async def test_cheapest_first_on_the_scenario() -> None:
    async with await make(scenario()) as manager:
        strategy = manager.strategy()
        assert isinstance(strategy, CostOptimizedStrategy)
        tiers = strategy.rank(CompletionRequest.create("hello"), [PRICEY, MID, CHEAP], RequestContext("t", manager, 0))
        response = await manager.complete(prompt="hello", model="m")
    assert tiers == [[CHEAP], [MID], [PRICEY]]
    assert response.provider == "cheap"


async def test_a_big_price_gap_outweighs_speed_but_a_small_one_does_not() -> None:
    cfg = scenario()
    cfg["providers"]["mid"]["models"]["m"]["costPerToken"] = 1.1e-6  # barely dearer, much faster
    cfg["routing"]["mlConfig"]["priors"]["mid"]["expectedTokensPerSecond"] = 200
    async with await make(cfg) as manager:
        tiers = manager.strategy().rank(
            CompletionRequest.create("hello"), [CHEAP, MID], RequestContext("t", manager, 0)
        )
    assert tiers == [[MID], [CHEAP]]


async def test_a_nearly_spent_budget_rules_out_what_it_cannot_pay() -> None:
    cfg = scenario({"budgetLimits": {"daily": 10.0, "monthly": 300.0}})
    async with await make(cfg) as manager:
        # worst cases (prompt + 1000 output tokens): cheap ~0.001, mid ~0.005, pricey ~0.02
        await manager.state.incr(spend_key("daily", NOW), 9.99)
        await manager.state.incr(spend_key("monthly", NOW), 100.0)
        scripted(manager, "cheap").push(ServerError("boom"))
        scripted(manager, "mid").push("from mid")
        response = await manager.complete(prompt="hello", model="m")
        assert response.provider == "mid"  # cheap failed over to mid; pricey was never a candidate
        scripted(manager, "cheap").push(ServerError("boom"))
        scripted(manager, "mid").push(ServerError("bang"))
        with pytest.raises(NoProviderAvailableError) as info:
            await manager.complete(prompt="hello", model="m")
        assert scripted(manager, "pricey").calls == []
    assert [a.provider for a in info.value.attempts] == ["cheap", "mid"]


async def test_the_tighter_budget_binds() -> None:
    cfg = scenario({"budgetLimits": {"daily": 10.0, "monthly": 300.0}})
    async with await make(cfg) as manager:
        await manager.state.incr(spend_key("monthly", NOW), 299.998)  # 0.002 left this month
        guard = manager.plugins.get("cost")
        assert isinstance(guard, CostPlugin)
        left, period, limit, spent = await guard.remaining(manager) or (0.0, "daily", 0.0, 0.0)
        assert (period, limit, spent) == ("monthly", 300.0, 299.998)
        assert left == pytest.approx(0.002)
        scripted(manager, "cheap").push(ServerError("boom"))
        with pytest.raises(NoProviderAvailableError):
            await manager.complete(prompt="hello", model="m")  # no failover: nothing else is affordable
        tried = [t for t in (CHEAP, MID, PRICEY) if scripted(manager, t.provider).calls]
    assert tried == [CHEAP]


async def test_a_spent_budget_is_a_budget_error_naming_the_reset() -> None:
    cfg = scenario({"budgetLimits": {"daily": 10.0}})
    async with await make(cfg) as manager:
        await manager.state.incr(spend_key("daily", NOW), 10.0)
        with pytest.raises(BudgetExceededError) as info:
            await manager.complete(prompt="hello", model="m")
    message = str(info.value)
    assert "daily budget 10 has 0.000000 left (10.000000 spent)" in message
    assert "cheapest: cheap/m up to 0.001" in message
    assert "resets at 2025-04-01T00:00:00Z" in message
    assert info.value.retry_after == pytest.approx(2 * 3600)


async def test_a_free_target_still_serves_when_the_budget_is_spent() -> None:
    cfg = scenario({"budgetLimits": {"daily": 1.0}})
    cfg["providers"]["local"] = {"type": "scripted", "models": {"m": {}}}
    async with await make(cfg) as manager:
        await manager.state.incr(spend_key("daily", NOW), 5.0)
        response = await manager.complete(prompt="hello", model="m")
    assert response.provider == "local"


async def test_the_guard_needs_a_budget_plugin_and_cost_optimized_routing() -> None:
    cfg = scenario({"budgetLimits": {"daily": 1.0}})
    async with await make(cfg, budget=False) as manager:
        await manager.state.incr(spend_key("daily", NOW), 5.0)  # nobody keeps these: ignored
        assert (await manager.complete(prompt="hello", model="m")).provider == "cheap"
    async with await make(cfg) as manager:
        await manager.state.incr(spend_key("daily", NOW), 5.0)
        # another strategy for this request: the guard stays out of it
        assert (await manager.complete(prompt="hello", model="m", strategy="priority")).provider == "cheap"
        with pytest.raises(BudgetExceededError):
            await manager.complete(prompt="hello", model="m")


async def test_the_single_candidate_of_a_forced_target_is_checked_too() -> None:
    cfg = scenario({"budgetLimits": {"daily": 10.0}})
    async with await make(cfg) as manager:
        await manager.state.incr(spend_key("daily", NOW), 9.99)
        with pytest.raises(BudgetExceededError, match="pricey/m"):
            await manager.complete(prompt="hello", model="pricey/m")


def test_spend_keys_are_utc_days_and_months() -> None:
    assert spend_key("daily", NOW) == "budget:spend:daily:2025-03-31"
    assert spend_key("monthly", NOW) == "budget:spend:monthly:2025-03"


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        ({"daily": -1}, "routing.budgetLimits.daily: must be a non-negative amount"),
        ({"monthly": "300"}, "routing.budgetLimits.monthly: expected a number"),
    ],
)
async def test_bad_budget_limits_name_the_path(limits: dict[str, Any], problem: str) -> None:
    manager = ProviderManager(scenario({"budgetLimits": limits}), drivers=DRIVERS)
    with pytest.raises(ConfigError) as info:
        await manager.initialize()
    assert problem in str(info.value)


async def test_keys_of_the_budget_plugin_are_left_to_it() -> None:
    cfg = scenario({"budgetLimits": {"daily": 10.0, "alertThreshold": 0.8}})
    async with await make(cfg) as manager:
        guard = manager.plugins.get("cost")
        assert isinstance(guard, CostPlugin)
        assert guard.limits is not None
        assert guard.limits.daily == 10.0
