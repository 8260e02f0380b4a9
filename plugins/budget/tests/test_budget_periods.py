"""Threshold alerts, period rollover, restart from the usage log, status,
configuration errors and the inactive plugin."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from budget_testkit import NOW, Clock, FakeUsage, Spend, config, counter, open_manager, provider

from swarmgate import Alert, CallerPolicy, ConfigError, MemoryStateStore, ProviderManager, hookimpl
from swarmgate.alerts import BUDGET_THRESHOLD
from swarmgate_budget import BUDGET_EXHAUSTED, BudgetExhaustedError, BudgetPlugin, period_of

pytestmark = pytest.mark.anyio

HOUR = 3600.0


async def spend(manager: ProviderManager, n: int, **fields: Any) -> int:
    """Send ``n`` requests costing 2 each (worst case 2); how many were served."""
    served = 0
    for _ in range(n):
        try:
            await manager.complete(prompt="hi", model="a/m", max_tokens=1, **fields)
            served += 1
        except BudgetExhaustedError:
            pass
    return served


async def alerts_of(manager: ProviderManager, seen: list[Alert]) -> list[tuple[str, str, float | None]]:
    hub = manager.alerts
    assert hub is not None
    await hub.drain()
    return [(a.type, a.data["budget"], a.data.get("threshold")) for a in seen]


async def test_thresholds_alert_once_each_per_period() -> None:
    clock = Clock()
    manager, _ = await open_manager(config({"daily": 10.0, "monthly": 1000.0}), clock)
    seen: list[Alert] = []
    manager.on_alert(seen.append)
    async with manager:
        assert await spend(manager, 2) == 2  # 4 of 10: below every threshold
        assert await alerts_of(manager, seen) == []
        assert await spend(manager, 1) == 1  # 6: 50% crossed
        assert await spend(manager, 2) == 2  # 8, 10: 80% and 100% crossed
        assert await spend(manager, 5) == 0  # refused: exhausted, once
        assert await alerts_of(manager, seen) == [
            (BUDGET_THRESHOLD, "global:daily", 0.5),
            (BUDGET_THRESHOLD, "global:daily", 0.8),
            (BUDGET_THRESHOLD, "global:daily", 1.0),
            (BUDGET_EXHAUSTED, "global:daily", None),
        ]
        first = seen[0]
        assert first.severity == "info"
        assert first.message == "global daily budget: 50% reached (6 of 10 spent); resets at 2026-11-26T00:00:00Z"
        assert dict(first.data) == {
            "budget": "global:daily",
            "scope": "global",
            "subject": None,
            "period": "daily",
            "limit": 10.0,
            "resets_at": "2026-11-26T00:00:00Z",
            "spent": 6.0,
            "threshold": 0.5,
        }
        assert [a.severity for a in seen[1:]] == ["warning", "critical", "critical"]
        # The next day: the daily budget starts over and alerts again.
        seen.clear()
        clock.advance(24 * HOUR)
        assert await spend(manager, 5) == 5
        assert await alerts_of(manager, seen) == [
            (BUDGET_THRESHOLD, "global:daily", 0.5),
            (BUDGET_THRESHOLD, "global:daily", 0.8),
            (BUDGET_THRESHOLD, "global:daily", 1.0),
        ]
        assert seen[0].data["resets_at"] == "2026-11-27T00:00:00Z"


async def test_provider_threshold_alert_names_the_provider() -> None:
    manager, _ = await open_manager(
        config({"alertThresholds": [0.25]}, a=provider(budget={"monthly": 8.0})),
    )
    seen: list[Alert] = []
    manager.on_alert(seen.append)
    async with manager:
        await spend(manager, 1)
        assert await alerts_of(manager, seen) == [(BUDGET_THRESHOLD, "provider:a:monthly", 0.25)]
    assert seen[0].provider == "a"
    assert seen[0].message.startswith("monthly budget of provider 'a': 25% reached (2 of 8 spent)")


async def test_period_rollover_resets_days_and_months() -> None:
    clock = Clock()
    manager, _ = await open_manager(config({"daily": 10.0, "monthly": 15.0}), clock)
    async with manager:
        assert await spend(manager, 6) == 5
        clock.advance(12 * HOUR)  # 2026-11-26T00:00:00Z: a new day, the same month
        assert await spend(manager, 1) == 1
        assert await spend(manager, 1) == 1
        with pytest.raises(BudgetExhaustedError) as info:
            await manager.complete(prompt="hi", model="a/m", max_tokens=1)
        assert info.value.budget == "global:monthly"
        assert info.value.spent == 14.0
        assert info.value.resets_at == "2026-12-01T00:00:00Z"
        assert info.value.retry_after == pytest.approx(5 * 24 * HOUR)
        clock.advance(5 * 24 * HOUR)  # 2026-12-01: both start over
        assert await spend(manager, 5) == 5
        assert await counter(manager, "budget:spend:daily:2026-11-25") == 10.0
        assert await counter(manager, "budget:spend:daily:2026-11-26") == 4.0
        assert await counter(manager, "budget:spend:monthly:2026-11") == 14.0
        assert await counter(manager, "budget:spend:monthly:2026-12") == 10.0


def test_periods_are_utc_calendar_days_and_months() -> None:
    day = period_of("daily", NOW)
    assert (day.label, day.resets_at, day.hours) == ("day:2026-11-25", "2026-11-26T00:00:00Z", 24.0)
    month = period_of("monthly", NOW)
    assert (month.label, month.resets_at) == ("month:2026-11", "2026-12-01T00:00:00Z")
    december = period_of("monthly", NOW + 10 * 24 * HOUR)
    assert (december.label, december.resets_at, december.hours) == ("month:2026-12", "2027-01-01T00:00:00Z", 744.0)
    assert period_of("daily", day.end - 0.001).label == "day:2026-11-25"
    assert period_of("daily", day.end).label == "day:2026-11-26"


async def test_restart_resumes_from_the_usage_log() -> None:
    """A fresh process (empty memory store) seeds each budget's period from
    the usage log: spend before the period start does not count."""
    usage = FakeUsage(
        [
            Spend(NOW - 30 * 24 * HOUR, 500.0, "a", "bob"),  # last month
            Spend(NOW - 13 * HOUR, 40.0, "a", "bob"),  # yesterday, this month
            Spend(NOW - 2 * HOUR, 86.0, "a", "bob"),  # today
            Spend(NOW - 1 * HOUR, 2.0, "b", None),  # today, another provider
        ]
    )
    limits = {"daily": 100.0, "monthly": 1000.0, "perCaller": {"daily": 90.0}}
    cfg = config(limits, a=provider(1, budget={"daily": 95.0}), b=provider(2))
    manager, _ = await open_manager(cfg, extra=(usage,))
    async with manager:
        rows = {row["name"]: row for row in await manager.extensions["budget"].status()}
        assert rows["global:daily"]["spent"] == 88.0
        assert rows["global:monthly"]["spent"] == 128.0
        assert rows["provider:a:daily"]["spent"] == 86.0
        assert "caller:bob:daily" not in rows  # no counter yet: found once bob asks
        # bob's own budget: 86 spent + up to 10 > 90
        with pytest.raises(BudgetExhaustedError) as info:
            await manager.complete(prompt="hi", model="a/m", max_tokens=9, caller="bob")
        assert (info.value.budget, info.value.spent) == ("caller:bob:daily", 86.0)
        # provider a's own budget: 86 spent + up to 10 > 95
        with pytest.raises(BudgetExhaustedError) as info:
            await manager.complete(prompt="hi", model="a/m", max_tokens=9, caller="eve")
        assert (info.value.budget, info.value.spent) == ("provider:a:daily", 86.0)
        # someone else at b: the global daily budget has 12 left (2 per answer, 10 reserved each)
        await manager.complete(prompt="hi", model="b/m", max_tokens=9, caller="eve")
        await manager.complete(prompt="hi", model="b/m", max_tokens=9, caller="eve")
        with pytest.raises(BudgetExhaustedError) as info:
            await manager.complete(prompt="hi", model="b/m", max_tokens=9, caller="eve")
        assert (info.value.budget, info.value.spent) == ("global:daily", 92.0)
        day_start = period_of("daily", NOW).start
        assert (day_start, None, "bob") in usage.queries
        assert (day_start, "a", None) in usage.queries
        assert (period_of("monthly", NOW).start, None, None) in usage.queries


async def test_a_store_that_has_the_counters_is_not_seeded_again() -> None:
    """A shared store (Redis) outlives a gateway restart: its counters are
    the truth, the usage log is not added on top."""
    store = MemoryStateStore()
    cfg = config({"daily": 100.0})
    first, _ = await open_manager(cfg, store=store, extra=(FakeUsage([Spend(NOW - HOUR, 30.0)]),))
    await spend(first, 2)
    second, _ = await open_manager(cfg, store=store, extra=(FakeUsage([Spend(NOW - HOUR, 34.0)]),))
    rows = await second.extensions["budget"].status()
    assert rows[0]["name"] == "global:daily"
    assert rows[0]["spent"] == 34.0  # 30 seeded by the first instance, plus its 2 requests
    await first.aclose()
    await second.aclose()


async def test_without_a_usage_log_it_says_so_and_starts_from_the_store() -> None:
    manager, _ = await open_manager(config({"daily": 10.0}))
    async with manager:
        with structlog.testing.capture_logs() as logs:
            await spend(manager, 2)
        assert await counter(manager, "budget:spend:daily:2026-11-25") == 4.0
    events = [entry for entry in logs if entry["event"] == "budget_usage_log_absent"]
    assert len(events) == 1
    assert "swarmgate-usage" in events[0]["detail"]


async def test_status_reports_spend_reservations_and_burn_rate() -> None:
    clock = Clock()
    manager, _ = await open_manager(config({"daily": 48.0}, a=provider(budget={"monthly": 1000.0})), clock)
    async with manager:
        await spend(manager, 6)  # 12 spent by noon: 1 per hour
        rows = await manager.extensions["budget"].status()
    assert [row["name"] for row in rows] == ["global:daily", "provider:a:monthly"]
    daily = rows[0]
    assert daily == {
        "name": "global:daily",
        "config_path": "routing.budgetLimits.daily",
        "scope": "global",
        "subject": None,
        "period": "daily",
        "limit": 48.0,
        "spent": 12.0,
        "reserved": 0.0,
        "remaining": 36.0,
        "used": 0.25,
        "period_start": "2026-11-25T00:00:00Z",
        "resets_at": "2026-11-26T00:00:00Z",
        "period_start_ts": NOW - 12 * HOUR,
        "resets_at_ts": NOW + 12 * HOUR,
        "burn_rate_per_hour": 1.0,
        "projected_spend": 24.0,
        "exhausts_at": None,  # 36 more hours at 1/h: after the reset
    }
    monthly = rows[1]
    assert monthly["burn_rate_per_hour"] == pytest.approx(12.0 / (24 * 24 + 12))
    assert monthly["exhausts_at"] is None
    assert monthly["config_path"] == "providers.a.budget.monthly"
    assert manager.extensions["budget"].budgets()[0].name == "global:daily"


async def test_status_projects_exhaustion_before_the_reset() -> None:
    manager, _ = await open_manager(config({"daily": 30.0}))
    async with manager:
        await spend(manager, 12)  # 24 by noon: 2 per hour, 6 left: 3 more hours
        (row,) = await manager.extensions["budget"].status()
        assert row["exhausts_at"] == "2026-11-25T15:00:00Z"
        await spend(manager, 3)
        (row,) = await manager.extensions["budget"].status()
        assert row["spent"] == 30.0
        assert row["exhausts_at"] == "2026-11-25T12:00:00Z"  # already


@pytest.mark.parametrize(
    ("cfg", "problems"),
    [
        (config({"daily": "ten"}), [("routing.budgetLimits.daily", 'expected a number, got "ten"')]),
        (
            config({"alertThresholds": [0.5, 0]}),
            [("routing.budgetLimits.alertThresholds[1]", "must be a positive fraction of the limit, got 0.0")],
        ),
        (config({"alertThresholds": 0.5}), [("routing.budgetLimits.alertThresholds", "expected a list, got 0.5")]),
        (config([10]), [("routing.budgetLimits", "expected an object or null, got list")]),
        (
            config({"weekly": 5}),
            [
                (
                    "routing.budgetLimits.weekly",
                    "unknown key (expected one of: alertThresholds, callers, daily, enabled, monthly, perCaller, "
                    "routeAround)",
                )
            ],
        ),
        (
            config({"callers": {"x": {"daily": -1}}}, a=provider(budget={"monthly": "lots"})),
            [
                ("routing.budgetLimits.callers.x.daily", "must be a non-negative amount, got -1.0"),
                ("providers.a.budget.monthly", 'expected a number, got "lots"'),
            ],
        ),
    ],
)
async def test_config_errors_name_the_path(cfg: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    with pytest.raises(ConfigError) as info:
        await open_manager(cfg)
    assert list(info.value.problems) == problems


@pytest.mark.parametrize(
    "cfg",
    [config(), config({"daily": 5.0, "enabled": False}, a=provider(budget={"daily": 1.0}))],
)
async def test_inactive_without_budgets(cfg: dict[str, Any]) -> None:
    manager, plugin = await open_manager(cfg)
    async with manager:
        assert not plugin.active
        assert "budget" not in manager.extensions
        assert not manager.plugins.has_impls("before_attempt")
        assert not manager.plugins.has_impls("filter_targets")


async def test_active_for_caller_keys_with_budgets_alone() -> None:
    """A gateway key with a dailyBudget (server.apiKeys) activates the plugin."""
    cfg = config()
    cfg["server"] = {"apiKeys": [{"key": "k", "name": "alice", "dailyBudget": 3.0}]}
    manager, plugin = await open_manager(cfg)
    async with manager:
        assert plugin.active


class DirectoryPlugin:
    """A plugin registering a caller directory in its setup, as the
    caller-key store (swarmgate-keys) does for ``security.callerKeys``."""

    def __init__(self, policies: dict[str, CallerPolicy]) -> None:
        self.policies = policies

    def policy(self, caller: str) -> CallerPolicy | None:
        return self.policies.get(caller)

    @hookimpl
    def plugin_setup(self, manager: ProviderManager) -> None:
        manager.add_caller_directory(self)


async def test_active_for_a_caller_directory_registered_by_a_plugin() -> None:
    """Caller budgets from a directory a plugin registers (a key store) need
    no routing.budgetLimits; the directory's plugin is registered before the
    budget plugin, whose setup runs trylast to see it."""
    directory = DirectoryPlugin({"alice": CallerPolicy(daily_budget=2.5)})
    manager, plugin = await open_manager(config(), extra=(directory,))
    async with manager:
        assert plugin.active
        await manager.complete(prompt="hi", caller="alice", max_tokens=1)  # reserves 2 of 2.5
        with pytest.raises(BudgetExhaustedError):
            await manager.complete(prompt="hi", caller="alice", max_tokens=1)
        await manager.complete(prompt="hi", caller="bob", max_tokens=1)  # no budget of its own
    manager, plugin = await open_manager(config({"enabled": False}), extra=(DirectoryPlugin({}),))
    async with manager:
        assert not plugin.active


async def test_provider_added_later_gets_its_budget() -> None:
    manager, plugin = await open_manager(config({}))
    async with manager:
        await manager.add_provider("c", provider(budget={"daily": 2.0}))
        assert [b.name for b in plugin.budgets_for("c", None)] == ["provider:c:daily"]
        await manager.complete(prompt="hi", model="c/m", max_tokens=1)
        with pytest.raises(BudgetExhaustedError):
            await manager.complete(prompt="hi", model="c/m", max_tokens=1)
        await manager.remove_provider("c")
        assert plugin.budgets_for("c", None) == ()


def test_plugin_is_the_entry_point() -> None:
    from importlib.metadata import entry_points

    (ep,) = [ep for ep in entry_points(group="swarmgate") if ep.name == "budget"]
    assert ep.load() is BudgetPlugin
