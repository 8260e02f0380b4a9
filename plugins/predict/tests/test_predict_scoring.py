"""The scoring and tiering every predictive strategy shares (WeightedStrategy)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from swarmgate import CompletionRequest, ConfigError, ProviderManager, RequestContext, Target
from swarmgate.testing.scripted import ScriptedProvider
from swarmgate_predict import Prediction, WeightedStrategy, Weights

pytestmark = pytest.mark.anyio


class Cheapest(WeightedStrategy):
    name: ClassVar[str] = "cheapest"
    default_weights: ClassVar[Weights] = Weights(1.0, 0.0, 0.0)


class CheapestButNotA(Cheapest):
    name: ClassVar[str] = "cheapest-but-not-a"

    def demoted(self, prediction: Prediction) -> bool:
        return prediction.target.provider == "a"


DRIVERS: dict[str, dict[str, Any]] = {
    "swarmgate.providers": {"scripted": ScriptedProvider},
    "swarmgate.strategies": {"cheapest": Cheapest, "cheapest-but-not-a": CheapestButNotA},
}
A, B, C = Target("a", "m"), Target("b", "m"), Target("c", "m")


def config(prices: tuple[float, float, float], routing: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "providers": {
            name: {"type": "scripted", "models": {"m": {"costPerToken": price}}}
            for name, price in zip("abc", prices, strict=True)
        },
        "routing": {"strategy": "cheapest", **(routing or {})},
    }


async def ranked(cfg: dict[str, Any], strategy: str | None = None) -> list[list[Target]]:
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        context = RequestContext("t", manager, 0.0)
        return manager.strategy(strategy).rank(CompletionRequest.create("hello"), [A, B, C], context)


async def test_near_equal_scores_share_a_tier() -> None:
    # scores 1 - cost / max cost: a 0.905, b 0.048, c 0 -> b and c are within 0.05
    assert await ranked(config((1e-6, 1e-5, 1.05e-5))) == [[A], [B, C]]
    # with a tighter tolerance they split
    assert await ranked(config((1e-6, 1e-5, 1.05e-5), {"parameters": {"tolerance": 0.01}})) == [[A], [B], [C]]


async def test_a_tier_is_measured_from_its_best_member() -> None:
    # scores a 0.09, b 0.045, c 0: c is within 0.05 of b but not of a, the tier's best
    assert await ranked(config((0.91e-6, 0.955e-6, 1e-6))) == [[A, B], [C]]


async def test_equal_scores_keep_the_candidate_order() -> None:
    assert await ranked(config((1e-6, 1e-6, 1e-6))) == [[A, B, C]]


async def test_demoted_targets_come_after_all_others() -> None:
    assert await ranked(config((1e-6, 1e-5, 1.05e-5)), "cheapest-but-not-a") == [[B, C], [A]]


async def test_single_and_empty_candidate_lists() -> None:
    async with ProviderManager(config((1e-6, 1e-5, 1e-5)), drivers=DRIVERS) as manager:
        context = RequestContext("t", manager, 0.0)
        strategy = manager.strategy()
        assert strategy.rank(CompletionRequest.create("x"), [B], context) == [[B]]
        assert strategy.rank(CompletionRequest.create("x"), [], context) == []


async def test_parameters_apply_to_the_configured_strategy_only() -> None:
    cfg = config((1e-6, 1e-5, 1e-5), {"parameters": {"performanceWeight": 1, "reliabilityWeight": 2}})
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        configured = manager.strategy()
        per_request = manager.strategy("cheapest-but-not-a")
    assert isinstance(configured, WeightedStrategy)
    assert isinstance(per_request, WeightedStrategy)
    assert configured.weights == Weights(0.25, 0.25, 0.5)
    assert per_request.weights == Weights(1.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("parameters", "problem"),
    [
        ({"costWeight": -1}, "routing.parameters.costWeight: must not be negative"),
        ({"costWeight": 0}, "routing.parameters: at least one of costWeight, performanceWeight, reliabilityWeight"),
        ({"tolerance": 1}, "routing.parameters.tolerance: must be a score distance in [0, 1)"),
        ({"speedWeight": 1}, "routing.parameters.speedWeight: unknown key"),
    ],
)
async def test_bad_parameters_name_the_path(parameters: dict[str, Any], problem: str) -> None:
    manager = ProviderManager(config((1e-6, 1e-5, 1e-5), {"parameters": parameters}), drivers=DRIVERS)
    with pytest.raises(ConfigError) as info:
        await manager.initialize()
    assert problem in str(info.value)
