"""reliability-optimized: its order on a constructed scenario, and recent
failures weighing more than old ones in live traffic."""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate import CompletionRequest, ProviderManager, RequestContext, ServerError, SwarmgateError, Target
from swarmgate.testing.scripted import ScriptedProvider
from swarmgate_predict import Predictor
from swarmgate_reliability import ReliabilityOptimizedStrategy

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}
CHEAP, MID, PRICEY = Target("cheap", "m"), Target("mid", "m"), Target("pricey", "m")
A, B = Target("a", "m"), Target("b", "m")


class Clock:
    """A manual clock (seconds)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def scenario() -> dict[str, Any]:
    """Three providers: cheap but slow and flaky, mid-priced and reliable,
    pricey but fast (priors only; output 256 tokens expected)."""
    return {
        "providers": {
            "cheap": {"type": "scripted", "models": {"m": {"costPerToken": 1e-6}}},
            "mid": {"type": "scripted", "models": {"m": {"costPerToken": 5e-6}}},
            "pricey": {"type": "scripted", "models": {"m": {"costPerToken": 2e-5}}},
        },
        "routing": {
            "strategy": "reliability-optimized",
            "mlConfig": {
                "priors": {
                    "cheap": {"expectedTokensPerSecond": 10, "expectedReliability": 0.85},
                    "mid": {"expectedTokensPerSecond": 20, "expectedReliability": 0.99},
                    "pricey": {"expectedTokensPerSecond": 200, "expectedReliability": 0.95},
                }
            },
        },
    }


def rank(manager: ProviderManager, *candidates: Target) -> list[list[Target]]:
    return manager.strategy().rank(CompletionRequest.create("hello"), list(candidates), RequestContext("t", manager, 0))


async def test_most_reliable_first_on_the_scenario() -> None:
    async with ProviderManager(scenario(), drivers=DRIVERS) as manager:
        assert isinstance(manager.strategy(), ReliabilityOptimizedStrategy)
        assert rank(manager, CHEAP, MID, PRICEY) == [[MID], [PRICEY], [CHEAP]]
        assert (await manager.complete(prompt="hello", model="m")).provider == "mid"


def twins() -> dict[str, Any]:
    return {
        "providers": {
            "a": {"type": "scripted", "models": {"m": {}}},
            "b": {"type": "scripted", "models": {"m": {}}},
        },
        "routing": {"strategy": "reliability-optimized", "mlConfig": {"reliabilityHalfLife": 600_000}},
    }


async def serve(manager: ProviderManager, name: str, ok: bool) -> None:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    if ok:
        provider.push("fine")
        await manager.complete(prompt="hello", model=f"{name}/m")
    else:
        provider.push(ServerError("boom"))
        with pytest.raises(SwarmgateError):
            await manager.complete(prompt="hello", model=f"{name}/m")


@pytest.mark.parametrize("gap_s", [0.0, 2 * 3600.0])
async def test_recent_failures_weigh_more_than_old_ones(gap_s: float) -> None:
    async with ProviderManager(twins(), drivers=DRIVERS) as manager:
        predictor = manager.extensions["predict"]
        assert isinstance(predictor, Predictor)
        clock = Clock()
        predictor.clock = clock
        for _ in range(5):  # a had a bad spell, b was fine
            await serve(manager, "a", ok=False)
            await serve(manager, "b", ok=True)
        clock.now += gap_s
        for _ in range(5):  # now it is the other way round
            await serve(manager, "a", ok=True)
            await serve(manager, "b", ok=False)
        tiers = rank(manager, B, A)
        figures = predictor.snapshot()
    if gap_s:
        # twelve half-lives later, a's failures hardly count and b's all do
        assert figures["a/m"]["reliability"] > 0.99
        assert figures["b/m"]["reliability"] < 0.7
        assert tiers == [[A], [B]]
    else:
        # at the same moment the same record counts the same: near-equals share a tier
        assert figures["a/m"]["reliability"] == pytest.approx(figures["b/m"]["reliability"])
        assert tiers == [[B, A]]
