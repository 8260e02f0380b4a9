"""performance-optimized: its order on a constructed scenario, learning from
live traffic, and the SLA."""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate import CompletionRequest, ConfigError, ProviderManager, RequestContext, Target
from swarmgate.testing.scripted import Outcome, ScriptedProvider
from swarmgate_performance import PerformanceOptimizedStrategy
from swarmgate_predict import Predictor

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}
CHEAP, MID, PRICEY = Target("cheap", "m"), Target("mid", "m"), Target("pricey", "m")
A, B = Target("a", "m"), Target("b", "m")


def scenario(routing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Three providers: cheap but slow and flaky, mid-priced and reliable,
    pricey but fast (priors only; output 256 tokens expected)."""
    return {
        "providers": {
            "cheap": {"type": "scripted", "models": {"m": {"costPerToken": 1e-6}}},
            "mid": {"type": "scripted", "models": {"m": {"costPerToken": 5e-6}}},
            "pricey": {"type": "scripted", "models": {"m": {"costPerToken": 2e-5}}},
        },
        "routing": {
            "strategy": "performance-optimized",
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


def rank(manager: ProviderManager, *candidates: Target, prompt: str = "hello") -> list[list[Target]]:
    return manager.strategy().rank(CompletionRequest.create(prompt), list(candidates), RequestContext("t", manager, 0))


async def test_fastest_first_on_the_scenario() -> None:
    async with ProviderManager(scenario(), drivers=DRIVERS) as manager:
        assert isinstance(manager.strategy(), PerformanceOptimizedStrategy)
        assert rank(manager, CHEAP, MID, PRICEY) == [[PRICEY], [MID], [CHEAP]]
        assert (await manager.complete(prompt="hello", model="m")).provider == "pricey"


async def test_targets_predicted_to_miss_the_sla_come_last() -> None:
    # p95 latencies: cheap ~52 s, mid ~27 s, pricey ~3.6 s; reliabilities 0.85, 0.99, 0.95:
    # cheap misses maxLatency, pricey misses minAvailability, only mid meets both
    sla = {"sla": {"maxLatency": 30_000, "minAvailability": 0.96}}
    async with ProviderManager(scenario(sla), drivers=DRIVERS) as manager:
        assert rank(manager, CHEAP, MID, PRICEY) == [[MID], [PRICEY], [CHEAP]]
    sla = {"sla": {"maxLatency": 3000}}
    async with ProviderManager(scenario(sla), drivers=DRIVERS) as manager:
        # nobody meets it: the order is the plain one
        assert rank(manager, CHEAP, MID, PRICEY) == [[PRICEY], [MID], [CHEAP]]


@pytest.mark.parametrize(
    ("sla", "problem"),
    [
        ({"maxLatency": 0}, "routing.sla.maxLatency: must be a positive number of milliseconds"),
        ({"minAvailability": 2}, "routing.sla.minAvailability: must be a probability between 0 and 1"),
        ({"maxLatencyMs": 10}, "routing.sla.maxLatencyMs: unknown key"),
    ],
)
async def test_bad_sla_names_the_path(sla: dict[str, Any], problem: str) -> None:
    manager = ProviderManager(scenario({"sla": sla}), drivers=DRIVERS)
    with pytest.raises(ConfigError) as info:
        await manager.initialize()
    assert problem in str(info.value)


def racing(ml: dict[str, Any]) -> dict[str, Any]:
    return {
        "providers": {
            "a": {"type": "scripted", "models": {"m": {"costPerToken": 1e-6}}},
            "b": {"type": "scripted", "models": {"m": {"costPerToken": 1e-6}}},
        },
        "routing": {"strategy": "performance-optimized", "mlConfig": ml},
    }


async def test_traffic_teaches_which_provider_is_faster() -> None:
    # The priors say b writes twice as fast as a; in fact a answers 100 tokens
    # in about 2 ms and b takes 30 ms.
    ml = {
        "priorWeight": 10,
        "expectedTtftMs": 5,
        "priors": {"a": {"expectedTokensPerSecond": 2000}, "b": {"expectedTokensPerSecond": 4000}},
    }
    async with ProviderManager(racing(ml), drivers=DRIVERS) as manager:
        assert rank(manager, A, B) == [[B], [A]]  # before any traffic the priors decide
        a = manager.provider("a")
        b = manager.provider("b")
        assert isinstance(a, ScriptedProvider)
        assert isinstance(b, ScriptedProvider)
        for _ in range(20):
            a.push(Outcome("x", delay=0.002, usage=(5, 100)))
            b.push(Outcome("x", delay=0.030, usage=(5, 100)))
            await manager.complete(prompt="hello", model="a/m")
            await manager.complete(prompt="hello", model="b/m")
        assert rank(manager, A, B) == [[A], [B]]
        assert rank(manager, B, A) == [[A], [B]]
        response = await manager.complete(prompt="hello", model="m")
        predictor = manager.extensions["predict"]
        assert isinstance(predictor, Predictor)
        figures = predictor.snapshot()
    assert response.provider == "a"
    assert figures["a/m"]["samples"] == 21
    assert figures["a/m"]["ms_per_token_p50"] < figures["b/m"]["ms_per_token_p50"]
