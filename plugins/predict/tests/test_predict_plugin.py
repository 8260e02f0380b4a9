"""The predict plugin: publishing the predictor, learning from live traffic
through the hooks, staying inert, and the standalone fallback."""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import pytest

from swarmgate import (
    CompletionRequest,
    ConfigError,
    FailureDecision,
    ProviderManager,
    RequestContext,
    ServerError,
    SwarmgateError,
    Target,
    TextDelta,
    hookimpl,
)
from swarmgate.plugins import BLOCK_ENV
from swarmgate.testing.scripted import Outcome, ScriptedProvider
from swarmgate_predict import Predictor, WeightedStrategy, Weights, acquire

pytestmark = pytest.mark.anyio

A = Target("a", "m")
B = Target("b", "m")


class Cheapest(WeightedStrategy):
    """A strategy for these tests: cost only."""

    name: ClassVar[str] = "cheapest"
    default_weights: ClassVar[Weights] = Weights(1.0, 0.0, 0.0)


DRIVERS: dict[str, dict[str, Any]] = {
    "swarmgate.providers": {"scripted": ScriptedProvider},
    "swarmgate.strategies": {"cheapest": Cheapest},
}


def config(strategy: str = "priority", ml: dict[str, Any] | None = None) -> dict[str, Any]:
    routing: dict[str, Any] = {"strategy": strategy}
    if ml is not None:
        routing["mlConfig"] = ml
    return {
        "providers": {
            "a": {"type": "scripted", "priority": 1, "models": {"m": {"costPerToken": 1e-6}}},
            "b": {"type": "scripted", "priority": 2, "models": {"m": {"costPerToken": 1e-5}}},
        },
        "routing": routing,
    }


async def make(cfg: dict[str, Any], plugins: tuple[object, ...] = ()) -> ProviderManager:
    manager = ProviderManager(cfg, drivers=DRIVERS, plugins=plugins)
    await manager.initialize()
    return manager


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


def predictor_of(manager: ProviderManager) -> Predictor:
    predictor = manager.extensions["predict"]
    assert isinstance(predictor, Predictor)
    return predictor


async def test_the_predictor_is_published_and_learns_from_answers() -> None:
    async with await make(config("cheapest")) as manager:
        predictor = predictor_of(manager)
        assert predictor.learning
        scripted(manager, "a").push(Outcome("one two three", usage=(7, 30)))
        await manager.complete(prompt="hi", model="m")
        scripted(manager, "a").push(Outcome(chunks=("x", "y", "z"), usage=(7, 3)))
        text = [e.text async for e in manager.stream(prompt="hi", model="m") if isinstance(e, TextDelta)]
        assert text == ["x", "y", "z"]
        snapshot = predictor.snapshot()
    assert set(snapshot) == {"a/m"}
    assert snapshot["a/m"]["samples"] == 2
    assert snapshot["a/m"]["failures"] == 0
    assert predictor.expected_output_tokens < 256  # pulled towards the short answers


class Decider:
    """Decides every failure before the predict plugin would see it."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(tryfirst=True)
    def on_failure(self, error: SwarmgateError) -> FailureDecision:
        self.calls += 1
        return FailureDecision.failover()


@pytest.mark.parametrize("decider", [False, True])
async def test_every_failed_attempt_is_learned_once(decider: bool) -> None:
    plugins: tuple[object, ...] = (Decider(),) if decider else ()
    async with await make(config("priority", ml={}), plugins) as manager:
        scripted(manager, "a").push(ServerError("boom"))
        scripted(manager, "b").push("fine")
        response = await manager.complete(prompt="hi", model="m")
        snapshot = predictor_of(manager).snapshot()
    assert response.provider == "b"
    assert snapshot["a/m"]["failures"] == 1
    assert snapshot["a/m"]["outcomes"] == pytest.approx(1.0)
    assert snapshot["b/m"]["samples"] == 1
    assert snapshot["b/m"]["outcomes"] == pytest.approx(1.0)


async def test_a_request_that_fails_everywhere_is_learned_through_on_failure() -> None:
    async with await make(config("priority", ml={})) as manager:
        scripted(manager, "a").push(ServerError("boom"))
        scripted(manager, "b").push(ServerError("bang"))
        with pytest.raises(SwarmgateError):
            await manager.complete(prompt="hi", model="m")
        snapshot = predictor_of(manager).snapshot()
    assert snapshot["a/m"]["failures"] == 1
    assert snapshot["b/m"]["failures"] == 1


async def test_inert_until_a_strategy_uses_the_predictions() -> None:
    async with await make(config("priority")) as manager:
        predictor = predictor_of(manager)
        assert not predictor.learning
        await manager.complete(prompt="hi", model="m")
        assert predictor.snapshot() == {}
        # a request routed by a predictive strategy switches learning on
        await manager.complete(prompt="hi", model="m", strategy="cheapest")
        assert predictor.learning
        assert predictor.snapshot()["a/m"]["samples"] == 1


async def test_model_training_off_never_learns() -> None:
    async with await make(config("cheapest", ml={"modelTraining": False})) as manager:
        predictor = predictor_of(manager)
        assert acquire(manager) is predictor
        assert predictor.active
        assert not predictor.learning
        await manager.complete(prompt="hi", model="m")
        assert predictor.snapshot() == {}


async def test_a_provider_pointed_elsewhere_is_forgotten() -> None:
    async with await make(config("cheapest")) as manager:
        predictor = predictor_of(manager)
        await manager.complete(prompt="hi", model="a/m")
        await manager.complete(prompt="hi", model="b/m")
        await manager.update_provider("a", {"models": {"m": {"costPerToken": 2e-6}}})
        assert set(predictor.snapshot()) == {"a/m", "b/m"}  # a price change keeps what was learned
        await manager.update_provider("a", {"endpoint": "http://elsewhere.invalid"})
        assert set(predictor.snapshot()) == {"b/m"}
        await manager.remove_provider("b")
        assert predictor.snapshot() == {}


async def test_with_the_hooks_blocked_a_strategy_predicts_from_the_priors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BLOCK_ENV, "predict")
    cfg = config("cheapest", ml={"priors": {"a": {"expectedReliability": 0.5}}})
    async with await make(cfg) as manager:
        predictor = predictor_of(manager)  # published by the strategy at start-up
        assert predictor.standalone
        assert not predictor.learning
        response = await manager.complete(prompt="hi", model="m")
        assert response.provider == "a"  # the cheaper one
        prediction = predictor.predict(A, CompletionRequest.create("hi"))
        assert prediction.samples == 0
        assert prediction.reliability == 0.5


async def test_with_the_hooks_blocked_a_bad_ml_config_still_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BLOCK_ENV, "swarmgate-predict")
    manager = ProviderManager(config("cheapest", ml={"windowSize": 0}), drivers=DRIVERS)
    with pytest.raises(ConfigError, match=r"routing\.mlConfig\.windowSize"):
        await manager.initialize()


async def test_two_managers_learn_separately() -> None:
    async with await make(config("cheapest")) as one, await make(config("cheapest")) as two:
        await one.complete(prompt="hi", model="m")
        assert predictor_of(one) is not predictor_of(two)
        assert predictor_of(two).snapshot() == {}


async def test_on_failure_decides_nothing() -> None:
    async with await make(config("cheapest")) as manager:
        plugin = manager.plugins.get("predict")
        assert plugin is not None
        context = RequestContext("x", manager, 0.0)
        error = ServerError("boom")
        assert plugin.on_failure(CompletionRequest.create("hi"), A, error, context) is None  # type: ignore[attr-defined]


async def test_hedge_delay_is_the_predicted_p95_latency() -> None:
    async with await make(config("cheapest", ml={"priorWeight": 0})) as manager:
        predictor = predictor_of(manager)
        assert predictor.hedge_delay(A) is None  # nothing observed: the kernel uses its own figures
        predictor.observe_success(A, latency_ms=300, ttft_ms=100, input_tokens=0, output_tokens=100)
        predictor.observe_success(A, latency_ms=500, ttft_ms=100, input_tokens=0, output_tokens=100)
        expected = predictor.expected_output_tokens
        snapshot = predictor.snapshot([A])["a/m"]
        assert predictor.hedge_delay(A) == pytest.approx(
            snapshot["ttft_p95_ms"] + snapshot["ms_per_token_p95"] * expected
        )
        req = CompletionRequest.create("x" * 4000, max_tokens=10)
        assert predictor.hedge_delay(A, req) == pytest.approx(predictor.predict(A, req).latency_p95_ms)


def hedging(ml: dict[str, Any]) -> dict[str, Any]:
    cfg = config("cheapest", ml=ml)
    cfg["routing"]["hedging"] = {"enabled": True, "maxRatio": 1.0}
    return cfg


async def test_the_kernel_hedges_after_the_predicted_p95() -> None:
    async with await make(hedging({"priorWeight": 0})) as manager:
        predictor = predictor_of(manager)
        predictor.observe_success(A, latency_ms=20, ttft_ms=10, input_tokens=0, output_tokens=10)
        scripted(manager, "a").push(Outcome("late", delay=5.0))
        scripted(manager, "b").push("hedged")
        with anyio.fail_after(2):
            response = await manager.complete(prompt="hi", model="m")
        snapshot = predictor.snapshot()
    assert response.content == "hedged"
    assert [(a.provider, a.error_kind) for a in response.attempts] == [("b", None), ("a", "cancelled")]
    assert snapshot["a/m"]["failures"] == 0  # losing a hedge race is not a failure


async def test_a_hedged_pair_that_fails_is_learned_once_each() -> None:
    async with await make(hedging({"priorWeight": 0})) as manager:
        predictor = predictor_of(manager)
        predictor.observe_success(A, latency_ms=2, ttft_ms=1, input_tokens=0, output_tokens=1)
        scripted(manager, "a").push(Outcome(error=ServerError("slow boom"), delay=0.2))
        scripted(manager, "b").push(ServerError("quick bang"))
        with pytest.raises(SwarmgateError):
            await manager.complete(prompt="hi", model="m")
        snapshot = predictor.snapshot()
    assert snapshot["a/m"]["failures"] == 1
    assert snapshot["b/m"]["failures"] == 1
