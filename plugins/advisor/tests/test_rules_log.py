"""The rules that depend on timing, on a usage log written with the usage
plugin's own ``UsageLog`` from records with chosen timestamps and
latencies: latency SLAs, budget burn, and the route/default-model forms of
the cheaper-target rule."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from advisor_helpers import ALLOWED, CHEAP, PRICEY, attempt, by_type, offline, request, write_log

from swarmgate import ProviderManager
from swarmgate.plugins import ALLOW_ENV
from swarmgate_advisor import AdvisorPlugin
from swarmgate_usage import UsageRecord, open_log

pytestmark = pytest.mark.anyio

#: 2026-03-10 06:00 UTC: a quarter of the day gone.
SIX_AM = datetime(2026, 3, 10, 6, 0, tzinfo=UTC).timestamp()


def base(db: Path, **advisor: Any) -> dict[str, Any]:
    return {
        "providers": {
            "pricey": {"type": "scripted", "priority": 1, "models": {"m": dict(PRICEY)}},
            "cheap": {"type": "scripted", "priority": 1, "models": {"m": dict(CHEAP)}},
        },
        "monitoring": {"usageLog": {"path": str(db)}, "advisor": {"minSamples": 10, **advisor}},
    }


async def recommendations(cfg: dict[str, Any], db: Path, records: list[UsageRecord], now: float) -> list[Any]:
    await write_log(db, records)
    usage = open_log(db)
    try:
        return await offline(cfg, usage, clock=lambda: now).recommendations()
    finally:
        await usage.aclose()


# -- 2. latency SLA ---------------------------------------------------------------------


def slow_records(now: float, latencies: list[float], *, stream: bool = False) -> list[UsageRecord]:
    return [
        request(
            f"r{i}",
            now - 600 + i,
            [attempt("pricey", latency=ms, cost=0.2, ttft=ms / 2 if stream else None)],
            stream=stream,
        )
        for i, ms in enumerate(latencies)
    ]


async def test_a_provider_over_its_latency_sla(db: Path) -> None:
    now = SIX_AM
    latencies = [100.0] * 14 + [900.0] * 6  # p95 900 ms; 6 answers over 500 ms
    found = by_type(
        await recommendations(base(db, latencySla={"pricey": 500}), db, slow_records(now, latencies), now),
        "latency-sla",
    )
    assert len(found) == 1
    rec = found[0]
    assert rec["evidence"]["p95LatencyMs"] == 900.0
    assert rec["evidence"]["slaMs"] == 500.0
    assert rec["impact"]["requestsAffected"] == 6
    assert rec["impact"]["percent"] == 30.0
    # Weight 1 x 500/900; not streamed: no first-token timeout.
    assert rec["action"] == [
        {"path": "routing.loadBalancing.algorithm", "value": "weighted-round-robin"},
        {"path": "routing.loadBalancing.weights.pricey", "value": 0.556},
    ]


async def test_streamed_traffic_over_the_sla_also_gets_a_first_token_timeout(db: Path) -> None:
    now = SIX_AM
    latencies = [100.0] * 14 + [900.0] * 6
    cfg = base(db, latencySla=500)
    cfg["routing"] = {"sla": {"maxLatency": 2000}}  # latencySla wins over routing.sla
    cfg["routing"]["loadBalancing"] = {"algorithm": "weighted-round-robin", "weights": {"pricey": 2.0, "cheap": 1.0}}
    found = by_type(await recommendations(cfg, db, slow_records(now, latencies, stream=True), now), "latency-sla")
    assert len(found) == 1
    assert found[0]["action"] == [
        {"path": "routing.loadBalancing.weights.pricey", "value": 1.111},
        {"path": "providers.pricey.timeouts.firstToken", "value": 500.0},
    ]


async def test_routing_sla_applies_when_the_advisor_sets_none(db: Path) -> None:
    now = SIX_AM
    cfg = base(db)
    cfg["routing"] = {"sla": {"maxLatency": 800}}
    found = await recommendations(cfg, db, slow_records(now, [100.0] * 14 + [900.0] * 6), now)
    assert [r["evidence"]["slaMs"] for r in by_type(found, "latency-sla")] == [800.0]


async def test_within_the_sla_or_without_one_nothing_fires(db: Path) -> None:
    now = SIX_AM
    records = slow_records(now, [100.0] * 19 + [900.0])  # p95 100 ms
    assert by_type(await recommendations(base(db, latencySla=500), db, records, now), "latency-sla") == []
    other = db.with_name("other.db")
    slow = slow_records(now, [900.0] * 20)
    assert by_type(await recommendations(base(other), other, slow, now), "latency-sla") == []


# -- 4. budget burn ---------------------------------------------------------------------


def spend_records(now: float, amount: float, count: int = 10) -> list[UsageRecord]:
    """``count`` requests at pricey since midnight, ``amount`` in all."""
    return [request(f"s{i}", now - 3600 * 5 + i * 60, [attempt("pricey", cost=amount / count)]) for i in range(count)]


async def test_a_budget_that_runs_out_before_midnight_raises_its_limit(db: Path) -> None:
    cfg = base(db)
    cfg["providers"]["cheap"]["enabled"] = False  # nothing cheaper to switch to
    cfg["routing"] = {"budgetLimits": {"daily": 10.0}}
    found = by_type(await recommendations(cfg, db, spend_records(SIX_AM, 5.0), SIX_AM), "budget-burn")
    assert len(found) == 1
    rec = found[0]
    # 5 spent in 6 hours: 20 by midnight, 10 over; the limit is reached at noon.
    assert rec["impact"]["projectedSpend"] == pytest.approx(20.0)
    assert rec["impact"]["projectedOverrun"] == pytest.approx(10.0)
    assert rec["impact"]["exhaustsAt"] == "2026-03-10T12:00:00Z"
    assert rec["action"] == {"path": "routing.budgetLimits.daily", "value": 20.0}
    assert rec["evidence"]["burnRatePerHour"] == pytest.approx(5.0 / 6)


async def test_a_budget_burn_switches_to_cost_optimized_when_the_replay_says_it_fits(db: Path) -> None:
    cfg = base(db, minSamples=2)
    cfg["routing"] = {"budgetLimits": {"daily": 10.0}}
    records = spend_records(SIX_AM, 5.0) + [
        request(f"c{i}", SIX_AM - 3000 + i, [attempt("cheap", cost=0.02)]) for i in range(10)
    ]
    found = by_type(await recommendations(cfg, db, records, SIX_AM), "budget-burn")
    assert len(found) == 1
    rec = found[0]
    assert rec["action"] == {"path": "routing.strategy", "value": "cost-optimized"}
    assert rec["alternatives"] == [{"path": "routing.budgetLimits.daily", "value": 20.8}]
    ratio = rec["evidence"]["costOptimizedRatio"]
    assert ratio == pytest.approx(0.4 / 5.2)  # everything at 0.02 instead of 5.2 for 20 requests
    assert rec["evidence"]["projectedWithCostOptimized"] <= 10.0


async def test_a_provider_budget_on_track_is_left_alone(db: Path) -> None:
    cfg = base(db)
    cfg["providers"]["pricey"]["budget"] = {"daily": 10.0}
    # 1 spent by 06:00: 4 by midnight.
    assert by_type(await recommendations(cfg, db, spend_records(SIX_AM, 1.0), SIX_AM), "budget-burn") == []


async def test_a_provider_budget_burning_fast_names_its_path(db: Path) -> None:
    cfg = base(db)
    cfg["providers"]["pricey"]["budget"] = {"daily": 4.0}
    cfg["providers"]["cheap"]["enabled"] = False
    found = by_type(await recommendations(cfg, db, spend_records(SIX_AM, 2.0), SIX_AM), "budget-burn")
    assert [r["action"] for r in found] == [{"path": "providers.pricey.budget.daily", "value": 8.0}]
    assert found[0]["evidence"]["budget"] == "provider:pricey:daily"


class FakeBudgets:
    """A budget service in the shape of swarmgate-budget's ``status()``."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    async def status(self) -> list[dict[str, Any]]:
        return self.rows


async def test_budget_status_comes_from_the_budget_plugin_when_it_runs(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The advisor comes in code (with a clock), not from its entry point.
    monkeypatch.setenv(ALLOW_ENV, ALLOWED.replace(",swarmgate-advisor", ""))
    cfg = base(db)
    cfg["providers"]["cheap"]["enabled"] = False
    row = {
        "name": "caller:team-a:monthly",
        "scope": "caller",
        "subject": "team-a",
        "period": "monthly",
        "limit": 300.0,
        "spent": 150.0,
        "period_start": "2026-03-01T00:00:00Z",
        "resets_at": "2026-04-01T00:00:00Z",
    }
    manager = ProviderManager(
        cfg, drivers={"swarmgate.providers": {"scripted": _scripted()}}, plugins=[AdvisorPlugin(clock=lambda: SIX_AM)]
    )
    manager.extensions["budget"] = FakeBudgets([row])
    async with manager:
        found = by_type(await manager.extensions["advisor"].recommendations(), "budget-burn")
    # 150 in 9.25 days of 31: the limit goes at 18.5 days, 502.7 by the end.
    assert len(found) == 1
    assert found[0]["action"]["path"] == "routing.budgetLimits.callers.team-a.monthly"
    assert found[0]["impact"]["projectedSpend"] == pytest.approx(150 * 31 / 9.25)
    assert found[0]["impact"]["exhaustsAt"] == "2026-03-19T12:00:00Z"


def _scripted() -> Any:
    from swarmgate.testing import ScriptedProvider

    return ScriptedProvider


# -- 1. cheaper target: routes and default models -----------------------------------------


def pair_records(now: float, first: str, second: str, *, requested: str, route: str | None = None) -> list[UsageRecord]:
    """20 requests answered by ``first`` (0.2 each) and 20 by ``second`` (0.02 each)."""
    out = []
    for i in range(20):
        a_provider, a_model = first.split("/")
        b_provider, b_model = second.split("/")
        out.append(
            request(f"a{i}", now - 900 + i, [attempt(a_provider, a_model, cost=0.2)], requested=requested, route=route)
        )
        out.append(
            request(f"b{i}", now - 800 + i, [attempt(b_provider, b_model, cost=0.02)], requested=requested, route=route)
        )
    return out


async def test_an_ordered_route_puts_the_cheaper_target_first(db: Path) -> None:
    cfg = base(db)
    cfg["routes"] = {"chat": {"targets": ["pricey/m", "cheap/m"], "ordered": True}}
    records = pair_records(SIX_AM, "pricey/m", "cheap/m", requested="chat", route="chat")
    found = by_type(await recommendations(cfg, db, records, SIX_AM), "cheaper-target")
    assert [r["action"] for r in found] == [{"path": "routes.chat.targets", "value": ["cheap/m", "pricey/m"]}]
    assert found[0]["impact"]["costSaved"] == pytest.approx(20 * 0.18)


async def test_auto_traffic_shares_a_priority_tier_and_shifts_weight(db: Path) -> None:
    cfg = base(db)
    cfg["providers"] = {
        "one": {"type": "scripted", "priority": 1, "defaultModel": "big", "models": {"big": dict(PRICEY)}},
        "two": {"type": "scripted", "priority": 2, "models": {"small": dict(CHEAP)}},
    }
    records = pair_records(SIX_AM, "one/big", "two/small", requested="auto")
    found = by_type(await recommendations(cfg, db, records, SIX_AM), "cheaper-target")
    assert len(found) == 1
    assert found[0]["action"] == [
        {"path": "routing.loadBalancing.algorithm", "value": "weighted-round-robin"},
        {"path": "routing.loadBalancing.weights.two", "value": 1.6},
        {"path": "routing.loadBalancing.weights.one", "value": 0.4},
        {"path": "providers.two.priority", "value": 1},
    ]
    assert found[0]["impact"]["costSaved"] == pytest.approx(12 * 0.18)


async def test_two_models_of_one_provider_in_an_unordered_route_get_no_weight_advice(db: Path) -> None:
    cfg = base(db)
    cfg["providers"] = {"one": {"type": "scripted", "models": {"big": dict(PRICEY), "small": dict(CHEAP)}}}
    cfg["routes"] = {"chat": ["one/big", "one/small"]}
    records = pair_records(SIX_AM, "one/big", "one/small", requested="chat", route="chat")
    assert by_type(await recommendations(cfg, db, records, SIX_AM), "cheaper-target") == []


async def test_with_the_real_budget_plugin(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """swarmgate-budget settles the spend of real traffic; its ``status()``
    feeds the rule. Both plugins see 01:00 UTC today: an hour of the day
    gone, so 0.6 spent projects to 14.4 against a limit of 1."""
    from advisor_helpers import DRIVERS, answers

    from swarmgate_budget import BudgetPlugin

    monkeypatch.setenv(ALLOW_ENV, ALLOWED.replace(",swarmgate-advisor", ""))
    day = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0).timestamp()
    cfg = base(db)
    cfg["providers"]["cheap"]["enabled"] = False
    cfg["routing"] = {"budgetLimits": {"daily": 1.0}}
    plugins = [BudgetPlugin(clock=lambda: day), AdvisorPlugin(clock=lambda: day)]
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=plugins) as manager:
        answers(manager, "pricey", 3)
        for _ in range(3):
            await manager.complete(prompt="hi", model="m", max_tokens=50)
        found = by_type(await manager.extensions["advisor"].recommendations(), "budget-burn")
    assert len(found) == 1
    rec = found[0]
    assert rec["evidence"]["budget"] == "global:daily"
    assert rec["evidence"]["spent"] == pytest.approx(0.6)
    assert rec["impact"]["projectedSpend"] == pytest.approx(14.4)
    assert rec["action"] == {"path": "routing.budgetLimits.daily", "value": 14.4}


def test_the_breaker_replay_opens_on_the_rate_and_probes_when_half_open() -> None:
    from swarmgate_advisor.rules import BreakerModel, BreakerReplay, simulate_breaker

    model = BreakerModel()  # 5 in a row, or 50% of >= 10 in 60 s; open 60 s; 2 successes close
    alternating = [(float(t), t % 2 == 1, None if t % 2 else "server_error") for t in range(20)]
    # Never 5 in a row, but at t=9 half of the last 10 failed: open until 69; t=10..19 never reach it.
    assert simulate_breaker(alternating, model) == BreakerReplay(opened=1, avoided_failures=5, diverted_successes=5)
    probes = [(float(t), False, "timeout") for t in range(5)]  # opens at t=4 until 64
    probes += [(70.0, False, "timeout"), (140.0, True, None), (141.0, True, None), (142.0, False, "timeout")]
    # The probe at 70 fails: open again until 130; two successes close it; one failure does not reopen it.
    assert simulate_breaker(probes, model) == BreakerReplay(opened=2, avoided_failures=0, diverted_successes=0)
    # A request-side error is not counted and neither trips nor resets the streak.
    mixed = [(float(t), False, "timeout" if t != 2 else "invalid_request") for t in range(6)]
    assert simulate_breaker(mixed, model).opened == 1
