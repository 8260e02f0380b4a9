"""The prediction model: priors, blending, normalisation, decay, cost."""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate import CompletionRequest, ConfigError, ProviderManager, Target
from swarmgate.testing.scripted import ScriptedProvider
from swarmgate_predict import Predictor

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}
A = Target("a", "m")
B = Target("b", "m")


class Clock:
    """A manual clock (seconds)."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def config(ml: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "providers": {
            "a": {
                "type": "scripted",
                "models": {"m": {"inputCostPerToken": 1e-6, "outputCostPerToken": 2e-6, "maxTokens": 1000}},
            },
            "b": {"type": "scripted", "models": {"m": {"costPerToken": 1e-5}, "n": {}}},
        },
        "routing": {"mlConfig": ml if ml is not None else {}},
    }


async def predictor_for(ml: dict[str, Any] | None = None) -> tuple[ProviderManager, Predictor, Clock]:
    manager = ProviderManager(config(ml), drivers=DRIVERS)
    await manager.initialize()
    predictor = manager.extensions["predict"]
    assert isinstance(predictor, Predictor)
    clock = Clock()
    predictor.clock = clock
    return manager, predictor, clock


def request(prompt_tokens: int = 100, max_tokens: int | None = None) -> CompletionRequest:
    return CompletionRequest.create("x" * (4 * prompt_tokens), max_tokens=max_tokens)


async def test_cold_start_predicts_from_the_layered_priors() -> None:
    ml = {
        "expectedTtftMs": 400,
        "expectedTokensPerSecond": 40,
        "promptTokensPerSecond": 10_000,
        "expectedReliability": 0.9,
        "p95Factor": 3,
        "priors": {"b": {"expectedTtftMs": 100, "expectedReliability": 0.99}, "b/m": {"expectedTokensPerSecond": 200}},
    }
    manager, predictor, _ = await predictor_for(ml)
    async with manager:
        req = request(prompt_tokens=1000, max_tokens=100)
        a, b = predictor.predict_many([A, B], req)
        n = predictor.predict(Target("b", "n"), req)
    # a: the mlConfig defaults; reading 1000 prompt tokens at 10k/s adds 100 ms
    assert a.samples == 0
    assert a.ttft_ms == pytest.approx(400 + 100)
    assert a.ttft_p95_ms == pytest.approx(400 * 3 + 100)
    assert a.ms_per_token == pytest.approx(1000 / 40)
    assert a.output_tokens == 100  # max_tokens caps the expected answer length (256)
    assert a.latency_ms == pytest.approx(500 + 25 * 100)
    assert a.latency_p95_ms == pytest.approx(1300 + 75 * 100)
    assert a.reliability == pytest.approx(0.9)
    # b/m: the model's prior over the provider's over the defaults, key by key
    assert b.ttft_ms == pytest.approx(100 + 100)
    assert b.ms_per_token == pytest.approx(1000 / 200)
    assert b.reliability == pytest.approx(0.99)
    # b/n: only the provider's prior applies
    assert n.ms_per_token == pytest.approx(1000 / 40)
    assert n.ttft_ms == pytest.approx(200)


async def test_cost_is_expected_and_worst_case_at_the_targets_prices() -> None:
    manager, predictor, _ = await predictor_for({"expectedOutputTokens": 300})
    async with manager:
        req = request(prompt_tokens=100)
        a = predictor.predict(A, req)
        b = predictor.predict(B, req)
        assert a.cost_max == pytest.approx(manager.estimate_cost(A, req))
        assert b.cost_max == pytest.approx(manager.estimate_cost(B, req))
    assert a.output_tokens == 300
    assert a.cost == pytest.approx(100 * 1e-6 + 300 * 2e-6)
    assert a.cost_max == pytest.approx(100 * 1e-6 + 1000 * 2e-6)  # the model's maxTokens
    assert b.cost == pytest.approx(400 * 1e-5)
    assert b.cost_max == pytest.approx((100 + 1024) * 1e-5)  # no maxTokens anywhere: 1024


async def test_observations_blend_in_by_their_number() -> None:
    manager, predictor, _ = await predictor_for({"priorWeight": 10, "expectedTokensPerSecond": 50})
    async with manager:
        for _ in range(10):
            predictor.observe_success(A, latency_ms=1100, ttft_ms=100, input_tokens=0, output_tokens=100)
        half = predictor.predict(A, request(0))
        for _ in range(90):
            predictor.observe_success(A, latency_ms=1100, ttft_ms=100, input_tokens=0, output_tokens=100)
        mostly = predictor.predict(A, request(0))
    # prior 20 ms/token, observed 10: ten samples weigh as much as the prior
    assert half.samples == 10
    assert half.ms_per_token == pytest.approx(15.0)
    assert half.ttft_ms == pytest.approx((10 * 500 + 10 * 100) / 20)
    assert mostly.samples == 64  # the window holds windowSize samples
    assert mostly.ms_per_token == pytest.approx((10 * 20 + 64 * 10) / 74)


@pytest.mark.parametrize("streamed", [True, False])
async def test_a_long_answer_does_not_make_a_target_look_slow_per_token(streamed: bool) -> None:
    manager, predictor, _ = await predictor_for({"priorWeight": 1})
    async with manager:
        for _ in range(5):
            # a: 1000 tokens at 10 ms each -- a long wait, but a fast writer
            predictor.observe_success(
                A, latency_ms=200 + 1000 * 10, ttft_ms=200 if streamed else None, input_tokens=0, output_tokens=1000
            )
            # b: 10 tokens at 30 ms each -- a short wait, but a slow writer
            predictor.observe_success(
                B, latency_ms=200 + 10 * 30, ttft_ms=200 if streamed else None, input_tokens=0, output_tokens=10
            )
        a, b = predictor.predict_many([A, B], request(10, max_tokens=500))
    assert a.ms_per_token < b.ms_per_token
    assert a.latency_ms < b.latency_ms  # for the same expected answer length
    if streamed:
        assert a.ms_per_token == pytest.approx((20 + 5 * 10) / 6)
        assert b.ms_per_token == pytest.approx((20 + 5 * 30) / 6)


async def test_a_long_prompt_does_not_make_a_target_look_slow_to_start() -> None:
    manager, predictor, _ = await predictor_for({"priorWeight": 0, "promptTokensPerSecond": 5000})
    async with manager:
        for _ in range(5):
            # a reads 20k-token prompts: 4 s of reading on top of a 300 ms start
            predictor.observe_success(A, latency_ms=5000, ttft_ms=300 + 4000, input_tokens=20_000, output_tokens=50)
            predictor.observe_success(B, latency_ms=1000, ttft_ms=400, input_tokens=10, output_tokens=50)
        a, b = predictor.predict_many([A, B], request(10))
    assert a.ttft_ms == pytest.approx(300 + 10 * 0.2)
    assert b.ttft_ms == pytest.approx(400 - 10 * 0.2 + 10 * 0.2)
    assert a.ttft_ms < b.ttft_ms


async def test_a_non_streamed_answer_is_split_by_the_predicted_proportion() -> None:
    manager, predictor, _ = await predictor_for({"priorWeight": 0, "expectedTtftMs": 500})
    async with manager:
        # prior: 500 ms to start + 100 tokens at 20 ms = 2500 ms; observed 1250 ms: both halve
        predictor.observe_success(A, latency_ms=1250, ttft_ms=None, input_tokens=0, output_tokens=100)
        snapshot = predictor.snapshot([A])["a/m"]
    assert snapshot["ttft_p50_ms"] == pytest.approx(250)
    assert snapshot["ms_per_token_p50"] == pytest.approx(10)


async def test_old_failures_matter_less_than_recent_ones() -> None:
    manager, predictor, clock = await predictor_for({"reliabilityHalfLife": 600_000, "expectedReliability": 0.99})
    async with manager:
        for _ in range(5):
            predictor.observe_failure(A, "server_error")
            predictor.observe_success(B, latency_ms=100, ttft_ms=50, input_tokens=1, output_tokens=5)
        clock.advance(2 * 3600)  # twelve half-lives later
        for _ in range(5):
            predictor.observe_success(A, latency_ms=100, ttft_ms=50, input_tokens=1, output_tokens=5)
            predictor.observe_failure(B, "timeout")
        a, b = predictor.predict_many([A, B], request())
        assert a.reliability == pytest.approx((10 * 0.99 + 5) / 15, abs=1e-3)
        assert b.reliability == pytest.approx(10 * 0.99 / 15, abs=1e-3)
        # within one half-life the same failures count half as much
        clock.advance(600)
        later = predictor.predict(B, request())
        assert later.reliability == pytest.approx((9.9 + 0) / (10 + 2.5), abs=1e-3)
        # after a long quiet spell the prior is back
        clock.advance(24 * 3600)
        assert predictor.predict(B, request()).reliability == pytest.approx(0.99, abs=1e-3)


async def test_errors_of_the_request_do_not_count_against_reliability() -> None:
    manager, predictor, _ = await predictor_for()
    async with manager:
        for kind in ("invalid_request", "content_filtered", "context_length_exceeded", "budget_exceeded"):
            assert not predictor.observe_failure(A, kind)
        assert predictor.observe_failure(A, "rate_limited")
        snapshot = predictor.snapshot([A])["a/m"]
    assert snapshot["failures"] == 1


async def test_samples_expire_after_the_prediction_window() -> None:
    manager, predictor, clock = await predictor_for({"predictionWindow": 60_000, "priorWeight": 1})
    async with manager:
        for _ in range(9):
            predictor.observe_success(A, latency_ms=10_100, ttft_ms=100, input_tokens=0, output_tokens=100)
        slow = predictor.predict(A, request(0))
        clock.advance(61)
        back = predictor.predict(A, request(0))
    assert slow.samples == 9
    assert slow.ms_per_token == pytest.approx((20 + 9 * 100) / 10)
    assert back.samples == 0
    assert back.ms_per_token == pytest.approx(20)


async def test_the_expected_answer_length_follows_observed_answers() -> None:
    manager, predictor, _ = await predictor_for({"expectedOutputTokens": 100, "windowSize": 9})
    async with manager:
        predictor.observe_success(A, latency_ms=100, ttft_ms=10, input_tokens=5, output_tokens=600)
        assert predictor.expected_output_tokens == pytest.approx(100 + 0.2 * 500)
        assert predictor.predict(A, request()).output_tokens == pytest.approx(200)
        assert predictor.predict(A, request(max_tokens=50)).output_tokens == 50


async def test_forget_returns_a_provider_to_its_prior() -> None:
    manager, predictor, _ = await predictor_for()
    async with manager:
        predictor.observe_success(A, latency_ms=100, ttft_ms=10, input_tokens=5, output_tokens=6)
        predictor.observe_success(B, latency_ms=100, ttft_ms=10, input_tokens=5, output_tokens=6)
        predictor.forget("a")
        assert predictor.predict(A, request()).samples == 0
        assert predictor.predict(B, request()).samples == 1
        predictor.forget()
        assert predictor.predict(B, request()).samples == 0


@pytest.mark.parametrize(
    ("ml", "problem"),
    [
        ({"windowSize": 1}, "routing.mlConfig.windowSize: must be an integer between 2 and 10000, got 1"),
        ({"expectedReliability": 1.5}, "routing.mlConfig.expectedReliability: must be a probability"),
        ({"predictionWindow": 0}, "routing.mlConfig.predictionWindow: must be a positive number"),
        ({"priors": {"a": {"p95Factor": 0.5}}}, "routing.mlConfig.priors.a.p95Factor: must be a number >= 1"),
        ({"priors": {"nope": {}}}, "routing.mlConfig.priors.nope: unknown provider 'nope'"),
        ({"priors": {"a/x": {}}}, "routing.mlConfig.priors.a/x: provider 'a' has no model 'x'"),
        ({"modelTrainin": True}, "routing.mlConfig.modelTrainin: unknown key"),
        ({"priorWeight": "10"}, "routing.mlConfig.priorWeight: expected a number"),
    ],
)
async def test_bad_ml_config_names_the_path(ml: dict[str, Any], problem: str) -> None:
    manager = ProviderManager(config(ml), drivers=DRIVERS)
    with pytest.raises(ConfigError) as info:
        await manager.initialize()
    assert problem in str(info.value)


async def test_the_guides_ml_config_is_accepted() -> None:
    manager, predictor, _ = await predictor_for(
        {"modelTraining": True, "predictionWindow": 300000, "retrainInterval": 3600000}
    )
    async with manager:
        assert predictor.learning
        assert predictor.config.prediction_window == 300_000


async def test_a_full_window_still_expires_on_time() -> None:
    manager, predictor, clock = await predictor_for({"predictionWindow": 60_000, "windowSize": 4, "priorWeight": 0})
    async with manager:
        for step in range(10):  # evicts by size six times
            clock.advance(10)
            predictor.observe_success(A, latency_ms=100 + step, ttft_ms=100, input_tokens=0, output_tokens=1)
        assert predictor.predict(A, request(0)).samples == 4
        clock.advance(45)  # the two oldest of the last four are now over a minute old
        assert predictor.predict(A, request(0)).samples == 2
        assert predictor.predict(A, request(0)).ms_per_token == pytest.approx(8.5)
        clock.advance(60)
        assert predictor.predict(A, request(0)).samples == 0
