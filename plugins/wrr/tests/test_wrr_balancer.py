"""The weighted-round-robin balancer, end to end through ProviderManager."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from swarmgate import PluginError, ProviderManager, RequestContext, ServerError, Target
from swarmgate.testing.scripted import ScriptedProvider
from swarmgate_wrr import WeightedRoundRobinBalancer, provider_weight

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}


def config(
    names: tuple[str, ...] = ("a", "b", "c"),
    *,
    weights: dict[str, float] | None = None,
    provider_weights: dict[str, float] | None = None,
    algorithm: str = "weighted-round-robin",
) -> dict[str, Any]:
    providers: dict[str, Any] = {}
    for name in names:
        provider: dict[str, Any] = {"type": "scripted", "content": name, "models": {"m": {}, "n": {}}}
        if provider_weights and name in provider_weights:
            provider["weight"] = provider_weights[name]
        providers[name] = provider
    balancing: dict[str, Any] = {"algorithm": algorithm}
    if weights is not None:
        balancing["weights"] = weights
    return {"providers": providers, "routing": {"loadBalancing": balancing}}


async def answers(manager: ProviderManager, count: int, **fields: Any) -> list[str]:
    return [(await manager.complete(prompt="hi", **fields)).provider for _ in range(count)]


async def test_distribution_matches_the_guides_weights_exactly() -> None:
    weights = {"qwen": 0.5, "openai": 0.3, "claude": 0.2}
    async with ProviderManager(config(("qwen", "openai", "claude"), weights=weights), drivers=DRIVERS) as manager:
        assert isinstance(manager.balancer, WeightedRoundRobinBalancer)
        picks = await answers(manager, 100)
    assert Counter(picks) == {"qwen": 50, "openai": 30, "claude": 20}
    # Smooth: every window of one full cycle (10 requests) already has the exact shares.
    for start in range(0, 100, 10):
        assert Counter(picks[start : start + 10]) == {"qwen": 5, "openai": 3, "claude": 2}


async def test_picks_interleave_instead_of_bursting() -> None:
    async with ProviderManager(config(weights={"a": 5, "b": 1, "c": 1}), drivers=DRIVERS) as manager:
        picks = await answers(manager, 14)
    assert picks == ["a", "a", "b", "a", "c", "a", "a"] * 2  # nginx's documented sequence for 5:1:1


async def test_provider_weight_is_the_fallback_for_unlisted_providers() -> None:
    cfg = config(provider_weights={"a": 2.0, "c": 3.0}, weights={"b": 1.0})
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        assert [provider_weight(manager.config, n) for n in ("a", "b", "c", "unknown")] == [2.0, 1.0, 3.0, 1.0]
        picks = await answers(manager, 60)
    assert Counter(picks) == {"a": 20, "b": 10, "c": 30}


async def test_zero_weight_is_only_a_fallback() -> None:
    async with ProviderManager(config(weights={"a": 1, "b": 1, "c": 0}), drivers=DRIVERS) as manager:
        assert Counter(await answers(manager, 20)) == {"a": 10, "b": 10}
        a, b = manager.provider("a"), manager.provider("b")
        assert isinstance(a, ScriptedProvider)
        assert isinstance(b, ScriptedProvider)
        a.push(ServerError("down"))
        b.push(ServerError("down"))
        response = await manager.complete(prompt="hi")
    assert response.provider == "c"
    assert [x.provider for x in response.attempts] == ["a", "b", "c"]


async def test_all_zero_weights_balance_evenly() -> None:
    async with ProviderManager(config(weights={"a": 0, "b": 0, "c": 0}), drivers=DRIVERS) as manager:
        assert await answers(manager, 6) == ["a", "b", "c"] * 2


async def test_each_tier_keeps_its_own_credits() -> None:
    async with ProviderManager(config(weights={"a": 2, "b": 1, "c": 1}), drivers=DRIVERS) as manager:
        balancer = manager.balancer
        context = RequestContext("t", manager, 0.0)
        request = None  # the balancer does not look at the request
        ab = [Target("a", "m"), Target("b", "m")]
        ac = [Target("a", "n"), Target("c", "n")]
        firsts_ab, firsts_ac = [], []
        for _ in range(3):
            firsts_ab.append(balancer.order(request, ab, context)[0].provider)  # type: ignore[arg-type]
            # Interleaving another tier must not disturb the first one's sequence.
            firsts_ac.append(balancer.order(request, ac, context)[0].provider)  # type: ignore[arg-type]
    assert firsts_ab == ["a", "b", "a"]
    assert firsts_ac == ["a", "c", "a"]


async def test_every_target_is_returned_once_the_rest_by_credit() -> None:
    async with ProviderManager(config(weights={"a": 1, "b": 2, "c": 3}), drivers=DRIVERS) as manager:
        tier = [Target("a", "m"), Target("b", "m"), Target("c", "m")]
        context = RequestContext("t", manager, 0.0)
        orders = [manager.balancer.order(None, tier, context) for _ in range(6)]  # type: ignore[arg-type]
    for order in orders:
        assert sorted(order, key=str) == tier
    # Credits after the first turn: a +1, b +2, c 3-6=-3 -> c first, then b, a.
    assert [t.provider for t in orders[0]] == ["c", "b", "a"]
    assert Counter(o[0].provider for o in orders) == {"a": 1, "b": 2, "c": 3}


async def test_single_target_tiers_pass_through() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        tier = [Target("a", "m")]
        assert manager.balancer.order(None, tier, RequestContext("t", manager, 0.0)) is tier  # type: ignore[arg-type]


async def test_a_provider_update_takes_effect_at_once() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        assert Counter(await answers(manager, 6, model="m")) == {"a": 2, "b": 2, "c": 2}
        await manager.update_provider("a", {"weight": 3.0})
        counts = Counter(await answers(manager, 10, model="m"))
        await manager.remove_provider("c")
        after_removal = Counter(await answers(manager, 8, model="m"))
    assert counts == {"a": 6, "b": 2, "c": 2}
    assert after_removal == {"a": 6, "b": 2}


async def test_swapping_the_balancer_is_a_config_edit() -> None:
    plain = config(weights={"a": 4, "b": 1, "c": 1}, algorithm="round-robin")
    async with ProviderManager(plain, drivers=DRIVERS) as manager:
        assert type(manager.balancer).__name__ == "RoundRobinBalancer"
        assert Counter(await answers(manager, 12)) == {"a": 4, "b": 4, "c": 4}
    weighted = {
        **plain,
        "routing": {"loadBalancing": {**plain["routing"]["loadBalancing"], "algorithm": "weighted-round-robin"}},
    }
    async with ProviderManager(weighted, drivers=DRIVERS) as manager:
        assert isinstance(manager.balancer, WeightedRoundRobinBalancer)
        assert Counter(await answers(manager, 12)) == {"a": 8, "b": 2, "c": 2}
    # The guide's short form names the algorithm only: every provider's own weight (1.0) applies.
    short = {**plain, "routing": {"loadBalancing": "weighted-round-robin"}}
    async with ProviderManager(short, drivers=DRIVERS) as manager:
        assert await answers(manager, 3) == ["a", "b", "c"]


async def test_a_blocked_plugin_is_a_start_up_error_naming_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMGATE_DISABLE_PLUGINS", "swarmgate-wrr")
    manager = ProviderManager(config(), drivers=DRIVERS)
    with pytest.raises(
        PluginError,
        match=r"routing\.loadBalancing\.algorithm: .*'weighted-round-robin' \(from swarmgate-wrr\) is blocked",
    ):
        await manager.initialize()
