"""intelligent: its order on a constructed scenario, weights from config,
spreading load inside a tier, and swapping strategies by a config edit and
per request."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from swarmgate import CompletionRequest, InvalidRequestError, ProviderManager, RequestContext, Target
from swarmgate.testing.scripted import ScriptedProvider
from swarmgate_intelligent import IntelligentStrategy
from swarmgate_predict import Weights

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}
CHEAP, MID, PRICEY = Target("cheap", "m"), Target("mid", "m"), Target("pricey", "m")

SCENARIO: dict[str, Any] = {
    # cheap but slow and flaky, mid-priced and reliable, pricey but fast
    # (priors only; output 256 tokens expected)
    "providers": {
        "cheap": {"type": "scripted", "priority": 3, "models": {"m": {"costPerToken": 1e-6}}},
        "mid": {"type": "scripted", "priority": 2, "models": {"m": {"costPerToken": 5e-6}}},
        "pricey": {"type": "scripted", "priority": 1, "models": {"m": {"costPerToken": 2e-5}}},
    },
    "routing": {
        "strategy": "intelligent",
        "mlConfig": {
            "priors": {
                "cheap": {"expectedTokensPerSecond": 10, "expectedReliability": 0.85},
                "mid": {"expectedTokensPerSecond": 20, "expectedReliability": 0.99},
                "pricey": {"expectedTokensPerSecond": 200, "expectedReliability": 0.95},
            }
        },
    },
}


def scenario(**routing: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(SCENARIO)
    cfg["routing"].update(routing)
    return cfg


def rank(manager: ProviderManager, strategy: str | None = None) -> list[list[Target]]:
    return manager.strategy(strategy).rank(
        CompletionRequest.create("hello"), [CHEAP, MID, PRICEY], RequestContext("t", manager, 0)
    )


async def test_a_balance_of_all_three_on_the_scenario() -> None:
    async with ProviderManager(scenario(), drivers=DRIVERS) as manager:
        strategy = manager.strategy()
        assert isinstance(strategy, IntelligentStrategy)
        assert strategy.weights == Weights(0.4, 0.3, 0.3)
        # scores: mid 0.73, pricey 0.48, cheap 0.38
        assert rank(manager) == [[MID], [PRICEY], [CHEAP]]
        assert (await manager.complete(prompt="hello", model="m")).provider == "mid"


@pytest.mark.parametrize(
    ("parameters", "first"),
    [
        ({}, MID),
        ({"costWeight": 0.9, "performanceWeight": 0.05, "reliabilityWeight": 0.05}, CHEAP),
        ({"costWeight": 0.05, "performanceWeight": 0.9, "reliabilityWeight": 0.05}, PRICEY),
        ({"costWeight": 0, "performanceWeight": 0, "reliabilityWeight": 1}, MID),
        ({"costWeight": 0}, PRICEY),  # the missing weights keep their defaults (0.3 / 0.3)
    ],
)
async def test_weights_from_config_change_the_choice(parameters: dict[str, float], first: Target) -> None:
    async with ProviderManager(scenario(parameters=parameters), drivers=DRIVERS) as manager:
        assert rank(manager)[0] == [first]
        assert (await manager.complete(prompt="hello", model="m")).provider == first.provider


async def test_near_equals_share_a_tier_and_the_balancer_spreads_the_load() -> None:
    cfg = {
        "providers": {
            name: {"type": "scripted", "models": {"m": {"costPerToken": 1e-6}}} for name in ("one", "two", "three")
        },
        "routing": {"strategy": "intelligent", "mlConfig": {"priors": {"three": {"expectedReliability": 0.5}}}},
    }
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        answered = [(await manager.complete(prompt="hello", model="m")).provider for _ in range(4)]
    assert sorted(answered) == ["one", "one", "two", "two"]


EXPECTED_FIRST = {
    "cost-optimized": "cheap",
    "performance-optimized": "pricey",
    "reliability-optimized": "mid",
    "intelligent": "mid",
    "priority": "pricey",
}


@pytest.mark.parametrize("strategy", sorted(EXPECTED_FIRST))
async def test_a_config_edit_swaps_the_strategy(strategy: str) -> None:
    async with ProviderManager(scenario(strategy=strategy), drivers=DRIVERS) as manager:
        response = await manager.complete(prompt="hello", model="m")
    assert response.provider == EXPECTED_FIRST[strategy]


async def test_a_request_picks_its_own_strategy() -> None:
    tilted = {"costWeight": 1, "performanceWeight": 0, "reliabilityWeight": 0}
    async with ProviderManager(scenario(parameters=tilted), drivers=DRIVERS) as manager:
        answered = {
            name: (await manager.complete(prompt="hello", model="m", strategy=name)).provider for name in EXPECTED_FIRST
        }
        configured = (await manager.complete(prompt="hello", model="m")).provider
        with pytest.raises(InvalidRequestError, match="unknown routing strategy 'fastest'"):
            await manager.complete(prompt="hello", model="m", strategy="fastest")
    # routing.parameters belong to the configured strategy (intelligent, here tilted to cost);
    # a strategy picked per request keeps its own defaults
    assert configured == "cheap"
    assert answered == {**EXPECTED_FIRST, "intelligent": "cheap"}


async def test_the_guides_intelligent_config_loads() -> None:
    guide = scenario(
        parameters={"costWeight": 0.4, "performanceWeight": 0.3, "reliabilityWeight": 0.3},
        mlConfig={"modelTraining": True, "predictionWindow": 300000, "retrainInterval": 3600000},
    )
    async with ProviderManager(guide, drivers=DRIVERS) as manager:
        assert (await manager.complete(prompt="hello", model="m")).provider in {"cheap", "mid", "pricey"}
