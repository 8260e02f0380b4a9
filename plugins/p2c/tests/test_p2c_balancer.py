"""The p2c-ewma balancer: scores, decay, in-flight penalty, the power of two
choices, and end to end through ProviderManager with its observer plugin."""

from __future__ import annotations

import functools
import math
import random
from collections import Counter
from typing import Any

import pytest

from swarmgate import (
    CompletionRequest,
    ConfigError,
    PluginError,
    ProviderManager,
    RequestContext,
    ServerError,
    Target,
    load_config,
)
from swarmgate.testing.scripted import Outcome, ScriptedProvider
from swarmgate_p2c import PENALTY_MS, P2CEwmaBalancer, P2CObserver, P2CSettings, load_settings

pytestmark = pytest.mark.anyio

PROVIDERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}
REQUEST = CompletionRequest.create("hi")


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def config(
    names: tuple[str, ...] = ("a", "b", "c"), *, algorithm: str = "p2c-ewma", settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    providers = {name: {"type": "scripted", "content": name, "models": {"m": {}}} for name in names}
    data: dict[str, Any] = {"providers": providers, "routing": {"loadBalancing": {"algorithm": algorithm}}}
    if settings is not None:
        data["plugins"] = {"p2c": settings}
    return data


def manager_with(cfg: dict[str, Any], clock: Clock | None = None, seed: int = 7) -> ProviderManager:
    """A manager whose p2c-ewma balancer runs on ``clock`` with a seeded RNG."""
    balancer = functools.partial(P2CEwmaBalancer, clock=clock or Clock(), rng=random.Random(seed))
    return ProviderManager(cfg, drivers={**PROVIDERS, "swarmgate.balancers": {"p2c-ewma": balancer}})


def t(name: str) -> Target:
    return Target(name, "m")


def order(manager: ProviderManager, names: tuple[str, ...] = ("a", "b", "c")) -> list[str]:
    result = manager.balancer.order(REQUEST, [t(n) for n in names], RequestContext("t", manager, 0.0))
    assert sorted(x.provider for x in result) == sorted(names)
    return [x.provider for x in result]


def balancer_of(manager: ProviderManager) -> P2CEwmaBalancer:
    balancer = manager.balancer
    assert isinstance(balancer, P2CEwmaBalancer)
    return balancer


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


async def test_it_prefers_the_faster_target_after_traffic() -> None:
    async with ProviderManager(config(("fast", "slow"), settings={"seed": 1}), drivers=PROVIDERS) as manager:
        assert balancer_of(manager).observed  # the observer plugin attached itself
        scripted(manager, "slow").push(*[Outcome("slow", delay=0.02)] * 40)
        picks = [(await manager.complete(prompt="hi")).provider for _ in range(30)]
        latency = balancer_of(manager).latency
        assert latency(t("fast")) is not None
        assert latency(t("slow")) is not None
    # Both unknown (score 0) at first; once each has a sample, fast wins every time.
    assert picks.count("slow") <= 2
    assert picks[-25:] == ["fast"] * 25


async def test_swapping_the_balancer_is_a_config_edit() -> None:
    counts = {}
    for algorithm in ("round-robin", "p2c-ewma"):
        cfg = config(("fast", "slow"), algorithm=algorithm, settings={"seed": 3})
        async with ProviderManager(cfg, drivers=PROVIDERS) as manager:
            scripted(manager, "slow").push(*[Outcome("slow", delay=0.02)] * 20)
            counts[algorithm] = Counter([(await manager.complete(prompt="hi")).provider for _ in range(20)])
    assert counts["round-robin"] == {"fast": 10, "slow": 10}
    assert counts["p2c-ewma"]["slow"] <= 2


async def test_in_flight_requests_penalise_a_fast_target() -> None:
    clock = Clock()
    async with manager_with(config(("a", "b")), clock) as manager:
        balancer = balancer_of(manager)
        balancer.observe(t("a"), 100.0)
        balancer.observe(t("b"), 250.0)
        assert order(manager, ("a", "b")) == ["a", "b"]  # 100 < 250
        manager.stats(t("a")).inflight = 2  # 100 x 3 = 300 > 250
        assert balancer.score(t("a")) == pytest.approx(300.0)
        assert order(manager, ("a", "b")) == ["b", "a"]
        manager.stats(t("a")).inflight = 0


async def test_a_busy_target_without_samples_is_not_piled_onto() -> None:
    async with manager_with(config(("a", "b")), Clock()) as manager:
        balancer = balancer_of(manager)
        assert balancer.score(t("a")) == 0.0  # unknown and idle: probe it
        manager.stats(t("a")).inflight = 2
        assert balancer.score(t("a")) == PENALTY_MS + 2
        balancer.observe(t("b"), 30_000.0)
        manager.stats(t("b")).inflight = 5
        assert order(manager, ("a", "b")) == ["b", "a"]
        manager.stats(t("a")).inflight = manager.stats(t("b")).inflight = 0


async def test_peaks_show_at_once_and_the_average_decays_with_time() -> None:
    clock = Clock()
    async with manager_with(config(settings={"decay": 10.0}), clock) as manager:
        balancer = balancer_of(manager)
        balancer.observe(t("a"), 100.0)
        balancer.observe(t("a"), 900.0)  # a spike above the average replaces it
        assert balancer.latency(t("a")) == pytest.approx(900.0)
        clock.now += 10.0  # one time constant
        assert balancer.latency(t("a")) == pytest.approx(900.0 / math.e)
        balancer.observe(t("a"), 100.0)  # a lower sample blends in by elapsed time
        assert balancer.latency(t("a")) == pytest.approx(900.0 / math.e + 100.0 * (1 - 1 / math.e))
        balancer.observe(t("b"), 200.0)
        clock.now += 100.0  # idle for ten time constants: a is worth probing again
        latency_a = balancer.latency(t("a"))
        assert latency_a is not None
        assert latency_a < 0.05
        assert balancer.score(t("a")) < balancer.score(t("c")) + 0.05  # c was never tried: 0


async def test_an_idle_slow_target_gets_traffic_again_after_decaying() -> None:
    clock = Clock()
    async with manager_with(config(("a", "b")), clock) as manager:
        balancer = balancer_of(manager)
        balancer.observe(t("a"), 2000.0)
        balancer.observe(t("b"), 100.0)
        assert order(manager, ("a", "b"))[0] == "b"
        clock.now += 40.0  # a decays to 2000/e^4 ~ 37 ms; b's last sample decays too, but from 100
        balancer.observe(t("b"), 100.0)
        assert order(manager, ("a", "b"))[0] == "a"


async def test_failures_count_as_the_penalty_and_fail_over() -> None:
    clock = Clock()
    async with manager_with(config(("a", "b"), settings={"failurePenalty": 3000}), clock) as manager:
        balancer = balancer_of(manager)
        balancer.observe(t("a"), 10.0)
        balancer.observe(t("b"), 50.0)
        scripted(manager, "a").push(ServerError("boom"))
        response = await manager.complete(prompt="hi")
        assert [x.provider for x in response.attempts] == ["a", "b"]
        latency_a = balancer.latency(t("a"))
        assert latency_a is not None
        assert latency_a >= 3000.0
        assert (await manager.complete(prompt="hi")).provider == "b"


async def test_a_zero_failure_penalty_ignores_failures() -> None:
    async with manager_with(config(("a", "b"), settings={"failurePenalty": 0}), Clock()) as manager:
        balancer = balancer_of(manager)
        balancer.observe(t("a"), 10.0, failed=True)
        assert balancer.latency(t("a")) is None


async def test_two_random_choices_never_put_the_worst_first() -> None:
    async with manager_with(config(("a", "b", "c", "d")), Clock(), seed=11) as manager:
        balancer = balancer_of(manager)
        for name, latency in (("a", 10.0), ("b", 20.0), ("c", 30.0), ("d", 40.0)):
            balancer.observe(t(name), latency)
        orders = [order(manager, ("a", "b", "c", "d")) for _ in range(600)]
    firsts = Counter(o[0] for o in orders)
    assert "d" not in firsts  # the worst loses every pairing
    # The best is first only when drawn (1/2 of the pairs of four), so load is not herded onto it.
    assert 250 <= firsts["a"] <= 350
    assert firsts["b"] > firsts["c"] > 0
    # After the chosen one, the rest by score.
    for o in orders:
        rest = o[1:]
        assert rest == sorted(rest)


async def test_the_seed_makes_the_draws_reproducible() -> None:
    async def run(seed: int) -> list[list[str]]:
        async with ProviderManager(config(settings={"seed": seed}), drivers=PROVIDERS) as manager:
            return [order(manager) for _ in range(30)]

    assert await run(5) == await run(5)
    assert await run(5) != await run(6)


async def test_without_the_observer_it_reads_the_kernels_averages() -> None:
    async with ProviderManager(config(algorithm="round-robin"), drivers=PROVIDERS) as manager:
        balancer = P2CEwmaBalancer(manager, clock=Clock(), rng=random.Random(1))
        assert not balancer.observed
        manager.stats(t("a")).record(True, 500.0)
        manager.stats(t("b")).record(True, 50.0)
        manager.stats(t("c")).record(True, 80.0)
        assert balancer.latency(t("b")) == 50.0
        context = RequestContext("t", manager, 0.0)
        firsts = Counter(balancer.order(REQUEST, [t("a"), t("b"), t("c")], context)[0].provider for _ in range(60))
    assert "a" not in firsts
    assert firsts["b"] > firsts["c"]


async def test_the_observer_leaves_when_another_balancer_is_configured() -> None:
    async with ProviderManager(config(algorithm="p2c-ewma"), drivers=PROVIDERS) as manager:
        assert isinstance(manager.plugins.get("p2c-ewma"), P2CObserver)
    async with ProviderManager(config(algorithm="round-robin"), drivers=PROVIDERS) as manager:
        assert manager.plugins.get("p2c-ewma") is None  # unregistered: no per-request cost
        assert not manager.plugins.has_impls("after_response")
        scripted(manager, "a").push(ServerError("boom"))
        assert (await manager.complete(prompt="hi")).provider == "b"


async def test_single_target_tiers_pass_through() -> None:
    async with manager_with(config(), Clock()) as manager:
        one = [t("a")]
        assert manager.balancer.order(REQUEST, one, RequestContext("t", manager, 0.0)) is one


def test_settings_errors_name_the_path() -> None:
    def problems(settings: Any) -> list[tuple[str, str]]:
        with pytest.raises(ConfigError) as info:
            load_settings(load_config(config(settings=settings)))
        return list(info.value.problems)

    assert problems({"decay": 0}) == [("plugins.p2c.decay", "must be a positive number of seconds, got 0")]
    assert problems({"failurePenalty": -1}) == [
        ("plugins.p2c.failurePenalty", "must be a non-negative number of milliseconds, got -1")
    ]
    assert problems({"seed": 1.5}) == [("plugins.p2c.seed", "expected an integer, got 1.5")]
    assert problems({"tau": 1})[0][0] == "plugins.p2c.tau"
    assert load_settings(load_config(config())) == P2CSettings()


async def test_a_bad_setting_fails_start_up() -> None:
    manager = ProviderManager(config(settings={"decay": -5}), drivers=PROVIDERS)
    with pytest.raises(ConfigError, match=r"plugins\.p2c\.decay: must be a positive"):
        await manager.initialize()


async def test_a_blocked_plugin_is_a_start_up_error_naming_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMGATE_DISABLE_PLUGINS", "swarmgate-p2c")
    manager = ProviderManager(config(), drivers=PROVIDERS)
    with pytest.raises(PluginError, match=r"'p2c-ewma' \(from swarmgate-p2c\) is blocked"):
        await manager.initialize()


async def test_the_averages_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("swarmgate_p2c.MAX_TARGETS", 3)
    async with manager_with(config(), Clock()) as manager:
        balancer = balancer_of(manager)
        for name in ("a", "b", "c"):
            balancer.observe(t(name), 10.0)
        balancer.observe(Target("a", "any-model-name"), 10.0)
        assert balancer.latency(t("a")) is None  # dropped, relearned from the next sample
        assert balancer.latency(Target("a", "any-model-name")) == 10.0


async def test_streamed_answers_are_observed_too() -> None:
    async with manager_with(config(("a", "b")), Clock()) as manager:
        events = [event async for event in manager.stream(prompt="hi there")]
        answered = events[0].provider  # type: ignore[union-attr]
        balancer = balancer_of(manager)
        assert balancer.latency(t(answered)) is not None
        assert balancer.latency(t("b" if answered == "a" else "a")) is None
