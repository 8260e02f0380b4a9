"""The rules on traffic recorded by the real usage plugin: requests through
a ProviderManager (scripted in-process providers), logged by swarmgate-usage,
read back by the advisor published as ``extensions["advisor"]``. Each rule
fires when the traffic supports it, and not otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from advisor_helpers import DRIVERS, TOKENS, advisor_of, answers, by_type, config, scripted

from swarmgate import ProviderManager, ServerError
from swarmgate.testing import Outcome

pytestmark = pytest.mark.anyio


# -- 1. a cheaper target -------------------------------------------------------------


async def test_a_cheaper_equally_good_target_gets_the_weight(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS) as manager:
        answers(manager, "pricey", 20)
        answers(manager, "cheap", 20)
        for _ in range(40):
            await manager.complete(prompt="hi", model="m")
        found = by_type(await advisor_of(manager).recommendations(), "cheaper-target")
    assert len(found) == 1
    rec = found[0]
    assert rec["evidence"]["from"] == "pricey/m"
    assert rec["evidence"]["to"] == "cheap/m"
    assert rec["evidence"]["answered"] == {"pricey/m": 20, "cheap/m": 20}
    assert rec["evidence"]["costPerRequest"] == {"pricey/m": pytest.approx(0.2), "cheap/m": pytest.approx(0.02)}
    # cheap takes 80% of the 40: 12 of pricey's 20 move, each 0.18 cheaper.
    assert rec["impact"]["costSaved"] == pytest.approx(12 * 0.18)
    assert rec["impact"]["percent"] == pytest.approx(round(100 * 2.16 / 4.4, 1))
    assert rec["impact"]["costSavedPerDay"] > 0
    assert "summary" in rec["impact"]
    assert rec["action"] == [
        {"path": "routing.loadBalancing.algorithm", "value": "weighted-round-robin"},
        {"path": "routing.loadBalancing.weights.cheap", "value": 1.6},
        {"path": "routing.loadBalancing.weights.pricey", "value": 0.4},
    ]
    assert rec["commands"][1] == "qwen-swarm-enhanced config set routing.loadBalancing.weights.cheap 1.6"


async def test_no_cheaper_target_when_the_cheaper_one_fails_more(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS) as manager:
        answers(manager, "pricey", 40)
        # Every third call to cheap fails (the request fails over to pricey).
        cheap = scripted(manager, "cheap")
        for i in range(20):
            cheap.push(Outcome(error=ServerError("boom")) if i % 3 == 0 else Outcome("ok", usage=TOKENS))
        for _ in range(40):
            await manager.complete(prompt="hi", model="m")
        found = await advisor_of(manager).recommendations()
    assert by_type(found, "cheaper-target") == []


async def test_no_cheaper_target_below_min_samples(db: Path) -> None:
    async with ProviderManager(config(db, advisor={"minSamples": 30}), drivers=DRIVERS) as manager:
        answers(manager, "pricey", 20)
        answers(manager, "cheap", 20)
        for _ in range(40):
            await manager.complete(prompt="hi", model="m")
        assert by_type(await advisor_of(manager).recommendations(), "cheaper-target") == []


# -- 3. caching -------------------------------------------------------------------------


async def test_duplicates_recommend_caching_with_the_cost_they_would_have_saved(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS) as manager:
        answers(manager, "pricey", 15)
        answers(manager, "cheap", 15)
        for i in range(30):  # five prompts, six times each: 25 repeats
            await manager.complete(prompt=f"question {i % 5}", model="m", temperature=0)
        found = by_type(await advisor_of(manager).recommendations(), "caching")
        assert advisor_of(manager).duplicates_path == db.with_name("usage.advisor.db")
    assert len(found) == 1
    rec = found[0]
    evidence = rec["evidence"]
    assert evidence["requests"] == 30
    assert evidence["hits"] == 25
    # Round robin alternates: the repeats of prompts 0, 2, 4 land on the other provider every
    # other time; whichever answered, a hit would have saved that request's cost.
    assert evidence["costSaved"] == pytest.approx(sum((0.2 if i % 2 == 0 else 0.02) for i in range(5, 30)))
    assert rec["impact"]["costSaved"] == pytest.approx(evidence["costSaved"])
    assert rec["action"] == {
        "path": "optimization.caching",
        "value": {"enabled": True, "ttl": 3600000, "maxSize": 1000, "strategy": "lru"},
    }
    assert len(evidence["topRepeats"]) == 5
    assert db.with_name("usage.advisor.db").exists()


async def test_unique_prompts_do_not_recommend_caching(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS) as manager:
        answers(manager, "pricey", 15)
        answers(manager, "cheap", 15)
        for i in range(30):
            await manager.complete(prompt=f"question {i}", model="m", temperature=0)
        assert by_type(await advisor_of(manager).recommendations(), "caching") == []


async def test_non_deterministic_repeats_are_not_cacheable(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS) as manager:
        answers(manager, "pricey", 15)
        answers(manager, "cheap", 15)
        for _ in range(30):
            await manager.complete(prompt="same", model="m", temperature=0.7)
        advisor = advisor_of(manager)
        assert by_type(await advisor.recommendations(), "caching") == []
        totals = await advisor.duplicate_totals(0, 2**40)
    assert (totals.requests, totals.cacheable, totals.hits) == (30, 0, 0)


async def test_with_caching_on_there_is_no_fingerprinting_and_no_caching_advice(db: Path) -> None:
    cfg = config(db, optimization={"caching": {"enabled": True, "ttl": 60000}})
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        # The request hooks are gone; the advisor is still published.
        assert manager.plugins.get("advisor") is None
        advisor = advisor_of(manager)
        assert advisor.duplicates is None
        answers(manager, "pricey", 15)
        answers(manager, "cheap", 15)
        for _ in range(30):
            await manager.complete(prompt="same", model="m", temperature=0)
        assert by_type(await advisor.recommendations(), "caching") == []
    assert not db.with_name("usage.advisor.db").exists()


# -- 5. error rate ----------------------------------------------------------------------


def flaky_config(db: Path, **extra: object) -> dict[str, object]:
    """``flaky`` first (priority 1), ``steady`` behind it."""
    cfg = config(db, **extra)
    cfg["providers"] = {
        "flaky": {"type": "scripted", "priority": 1, "models": {"m": {"costPerToken": 0.001}}},
        "steady": {"type": "scripted", "priority": 2, "models": {"m": {"costPerToken": 0.001}}},
    }
    return cfg


async def run_flaky(manager: ProviderManager, failures: int, total: int = 30) -> None:
    flaky = scripted(manager, "flaky")
    flaky.push(*[ServerError("down") for _ in range(failures)])
    flaky.push(*[Outcome("ok", usage=TOKENS)] * (total - failures))
    answers(manager, "steady", total)
    for _ in range(total):
        assert (await manager.complete(prompt="hi", model="m")).content == "ok"


async def test_a_burst_of_failures_recommends_a_breaker_with_the_failures_it_avoids(db: Path) -> None:
    async with ProviderManager(flaky_config(db), drivers=DRIVERS) as manager:
        await run_flaky(manager, failures=10)
        found = by_type(await advisor_of(manager).recommendations(), "error-rate")
    assert len(found) == 1
    rec = found[0]
    assert rec["evidence"]["provider"] == "flaky"
    assert rec["evidence"]["attempts"] == 30
    assert rec["evidence"]["failures"] == 10
    assert rec["evidence"]["byKind"] == {"server_error": 10}
    assert rec["action"]["path"] == "routing.circuitBreaker"
    assert rec["action"]["value"]["failureThreshold"] == 5
    # Open after the fifth failure in a row: the next five failures never reach it.
    assert rec["impact"]["failedAttemptsAvoided"] == 5
    assert rec["impact"]["percent"] == 50.0
    assert rec["evidence"]["breakerReplay"]["flaky/m"]["opened"] == 1


async def test_with_a_breaker_on_the_weight_goes_down_instead(db: Path) -> None:
    cfg = flaky_config(db, routing={"circuitBreaker": {"failureThreshold": 5}})
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        await run_flaky(manager, failures=10)
        found = by_type(await advisor_of(manager).recommendations(), "error-rate")
    assert len(found) == 1
    assert found[0]["action"] == [
        {"path": "routing.loadBalancing.algorithm", "value": "weighted-round-robin"},
        {"path": "routing.loadBalancing.weights.flaky", "value": 0.667},
    ]
    assert found[0]["impact"]["failedAttemptsAvoided"] == pytest.approx(10 * (1 - 0.667), abs=0.05)


async def test_a_low_error_rate_is_left_alone(db: Path) -> None:
    async with ProviderManager(flaky_config(db), drivers=DRIVERS) as manager:
        await run_flaky(manager, failures=1)  # 1 in 30: 3.3% < 5%
        assert by_type(await advisor_of(manager).recommendations(), "error-rate") == []


async def test_the_analytics_facade_returns_the_advisors_recommendations(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from advisor_helpers import ALLOWED

    from swarmgate.plugins import ALLOW_ENV

    monkeypatch.setenv(ALLOW_ENV, ALLOWED + ",swarmgate-analytics")
    async with ProviderManager(flaky_config(db), drivers=DRIVERS) as manager:
        await run_flaky(manager, failures=10)
        found = await manager.get_optimization_recommendations()
        direct = await advisor_of(manager).recommendations()
    assert [r["type"] for r in found] == [r["type"] for r in direct]
    assert "error-rate" in [r["type"] for r in found]
