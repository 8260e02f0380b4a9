"""Reservations, refusals and settlement in the request pipeline: concurrent
requests never overspend, provider budgets fail over, caller budgets,
settlement with the actual cost (streamed and cancelled included)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from budget_testkit import Clock, Gated, YieldingStore, config, counter, open_manager, provider

from swarmgate import (
    CallerPolicy,
    MemoryStateStore,
    ProviderManager,
    ServerError,
    StreamStart,
    TextDelta,
    estimate_tokens,
)
from swarmgate.testing import Outcome, ScriptedProvider
from swarmgate_budget import BudgetExhaustedError, ProviderBudgetExhaustedError

pytestmark = pytest.mark.anyio

DAY = "budget:global:day:2026-11-25"
SPENT_DAY = "budget:spend:daily:2026-11-25"


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    driver = manager.provider(name)
    assert isinstance(driver, ScriptedProvider)
    return driver


@pytest.mark.parametrize("yielding", [False, True], ids=["memory", "yielding-store"])
async def test_concurrent_requests_never_overspend(yielding: bool) -> None:
    """200 requests (worst case 10 each, actual 2..10, about 6 on average)
    against a daily budget of 300 (about 50 requests): what is spent never
    passes the limit, every refusal names the budget, and no reservation is
    left behind; on the in-memory store and on one that yields between calls
    (as Redis does)."""
    store = YieldingStore() if yielding else None
    manager, plugin = await open_manager(config({"daily": 300.0}, a=provider(kind="metered")), store=store)
    assert plugin.shielded is yielding
    served: list[float] = []
    refused: list[BudgetExhaustedError] = []
    peaks = {"committed": 0.0, "spent": 0.0}

    async def one(i: int) -> None:
        await anyio.sleep(i * 0.0002)  # staggered, so answers free budget while others arrive
        try:
            response = await manager.complete(prompt="hi", model="a/m", max_tokens=9)
        except BudgetExhaustedError as error:
            refused.append(error)
        else:
            served.append(response.cost)

    async def watch(done: anyio.Event) -> None:
        while not done.is_set():
            peaks["committed"] = max(peaks["committed"], await counter(manager, DAY))
            peaks["spent"] = max(peaks["spent"], await counter(manager, SPENT_DAY))
            await anyio.sleep(0.0002)

    async with manager:
        done = anyio.Event()
        async with anyio.create_task_group() as watching:
            watching.start_soon(watch, done)
            async with anyio.create_task_group() as group:
                for i in range(200):
                    group.start_soon(one, i)
            done.set()
        spent = await counter(manager, SPENT_DAY)
        committed = await counter(manager, DAY)
    assert len(served) + len(refused) == 200
    assert 30 <= len(served) <= 100
    assert spent == pytest.approx(sum(served))
    assert spent <= 300.0
    if not yielding:
        assert peaks["committed"] <= 300.0  # no other request runs between an incr and its rollback
    # (with a yielding store one may see another's over-limit incr before it is rolled back:
    # a transient that refuses conservatively and is never spent)
    assert peaks["spent"] <= 300.0
    assert committed == pytest.approx(spent)  # every reservation settled
    assert refused
    for error in refused:
        assert type(error) is BudgetExhaustedError  # a global budget: no failover
        assert error.budget == "global:daily"
        assert error.limit == 300.0
        assert error.resets_at == "2026-11-26T00:00:00Z"
        assert "global daily budget exceeded: limit 300" in str(error)
        assert error.retry_after == pytest.approx(12 * 3600.0)


async def test_two_instances_sharing_a_store_never_overspend() -> None:
    """Two gateways sharing one StateStore split one budget between them."""
    store = MemoryStateStore()
    cfg = config({"daily": 60.0}, a=provider(kind="metered"))
    first, _ = await open_manager(cfg, store=store)
    second, _ = await open_manager(cfg, store=store)
    served: list[float] = []

    async def one(manager: ProviderManager, i: int) -> None:
        await anyio.sleep(i * 0.0005)
        try:
            served.append((await manager.complete(prompt="hi", model="a/m", max_tokens=9)).cost)
        except BudgetExhaustedError:
            pass

    async with anyio.create_task_group() as group:
        for i in range(60):
            group.start_soon(one, first, i)
            group.start_soon(one, second, i)
    spent = await counter(first, SPENT_DAY)
    assert spent == pytest.approx(sum(served))
    assert spent <= 60.0
    assert await counter(first, DAY) == pytest.approx(spent)
    await first.aclose()
    await second.aclose()


async def test_refusal_names_budget_spend_reservations_and_reset() -> None:
    manager, _ = await open_manager(config({"daily": 15.0}, a=provider(kind="gated")))
    async with manager:
        gated = manager.provider("a")
        assert isinstance(gated, Gated)
        async with anyio.create_task_group() as group:
            group.start_soon(manager.complete, {"prompt": "hi", "model": "a/m", "max_tokens": 9})
            await gated.entered.wait()
            with pytest.raises(BudgetExhaustedError) as info:
                await manager.complete(prompt="hi", model="a/m", max_tokens=9)
            gated.gate.set()
    error = info.value
    assert error.message == (
        "global daily budget exceeded: limit 15, spent 0, 10 reserved by requests in flight; "
        "this attempt at a/m may cost up to 10; resets at 2026-11-26T00:00:00Z"
    )
    assert (error.spent, error.reserved, error.requested) == (0.0, 10.0, 10.0)
    assert error.status_code == 429
    assert error.to_dict()["budget"]["budget"] == "global:daily"
    assert [(a.provider, a.refused, a.error_kind) for a in error.attempts] == [("a", True, "budget_exceeded")]


async def test_provider_budget_refusal_fails_over() -> None:
    """routeAround off: the exhausted provider is tried, refused (no call
    reaches it) and the request moves on to the next provider."""
    cfg = config(
        {"routeAround": False},
        a=provider(1, budget={"daily": 3.0}),
        b=provider(2),
    )
    cfg["routing"]["fallbackChains"] = [["a", "b"]]
    manager, _ = await open_manager(cfg)
    async with manager:
        first = await manager.complete(prompt="hi", model="a/m", max_tokens=1)
        second = await manager.complete(prompt="hi", model="a/m", max_tokens=1)
        calls = len(scripted(manager, "a").calls)
        spent_a = await counter(manager, "budget:provider:a:day:2026-11-25:spent")
    assert first.provider == "a"
    assert second.provider == "b"
    refusal = second.attempts[0]
    assert (refusal.provider, refusal.refused, refusal.error_kind) == ("a", True, "budget_exceeded")
    assert "daily budget of provider 'a' exceeded: limit 3, spent 2" in (refusal.error or "")
    assert calls == 1
    assert spent_a == 2.0


async def test_route_around_avoids_an_exhausted_provider() -> None:
    """routeAround (the default): routing rules the provider out before any
    attempt; when it is the only candidate, its refusal is the error."""
    cfg = config({}, a=provider(1, budget={"daily": 3.0}), b=provider(2))
    cfg["routing"]["fallbackChains"] = [["a", "b"]]
    manager, _ = await open_manager(cfg)
    async with manager:
        await manager.complete(prompt="hi", model="a/m", max_tokens=1)
        second = await manager.complete(prompt="hi", model="a/m", max_tokens=1)
        with pytest.raises(ProviderBudgetExhaustedError) as info:
            await manager.complete(prompt="hi", provider="a", max_tokens=1)
    assert [(a.provider, a.ok) for a in second.attempts] == [("b", True)]
    error = info.value
    assert error.failover is True
    assert error.budget == "provider:a:daily"
    assert (error.provider, error.model) == ("a", "m")
    assert str(error).startswith("[a/m] daily budget of provider 'a' exceeded")


async def test_every_provider_exhausted_is_a_budget_error() -> None:
    cfg = config(
        {"routeAround": False},
        a=provider(1, budget={"daily": 1.0}),
        b=provider(2, budget={"monthly": 1.0}),
    )
    cfg["routing"]["fallbackChains"] = [["a", "b"]]
    manager, _ = await open_manager(cfg)
    async with manager:
        with pytest.raises(ProviderBudgetExhaustedError) as info:
            await manager.complete(prompt="hi", model="a/m", max_tokens=1)
    assert info.value.budget == "provider:b:monthly"
    assert info.value.resets_at == "2026-12-01T00:00:00Z"
    assert [a.refused for a in info.value.attempts] == [True, True]


async def test_a_failed_attempt_frees_its_reservation_for_the_next() -> None:
    """The first target fails: its worst case is released before the next
    target reserves, so a tight budget still lets the failover through."""
    cfg = config({"daily": 15.0}, a=provider(1), b=provider(2))
    cfg["routing"]["fallbackChains"] = [["a", "b"]]
    manager, _ = await open_manager(cfg)
    async with manager:
        scripted(manager, "a").push(ServerError("boom"))
        response = await manager.complete(prompt="hi", model="a/m", max_tokens=9)
        spent = await counter(manager, SPENT_DAY)
        committed = await counter(manager, DAY)
    assert [(a.provider, a.ok) for a in response.attempts] == [("a", False), ("b", True)]
    assert spent == committed == response.cost == 2.0


class Directory:
    def __init__(self, policies: dict[str, CallerPolicy]) -> None:
        self.policies = policies

    def policy(self, caller: str) -> CallerPolicy | None:
        return self.policies.get(caller)


async def test_caller_budgets_per_caller_named_and_policy() -> None:
    limits: dict[str, Any] = {"perCaller": {"daily": 4.0}, "callers": {"vip": {"daily": 8.0}}}
    manager, _ = await open_manager(config(limits))
    manager.add_caller_directory(Directory({"key-1": CallerPolicy(daily_budget=2.0)}))

    async def served(caller: str | None, n: int) -> int:
        refusals: list[BudgetExhaustedError] = []
        for _ in range(n):
            try:
                await manager.complete(prompt="hi", model="a/m", max_tokens=1, caller=caller)
            except BudgetExhaustedError as error:
                refusals.append(error)
        for error in refusals:
            assert error.budget == f"caller:{caller}:daily"
            assert f"daily budget of caller {caller!r} exceeded" in error.message
            assert error.failover is False
        return n - len(refusals)

    async with manager:
        assert await served("anon", 5) == 2  # perCaller: 4 / 2 each
        assert await served("vip", 6) == 4  # callers.vip: 8
        assert await served("key-1", 3) == 1  # the key's policy: 2
        assert await served(None, 10) == 10  # no caller: no caller budget
        rows = {row["name"]: row for row in await manager.extensions["budget"].status()}
    assert rows["caller:anon:daily"]["spent"] == 4.0
    assert rows["caller:vip:daily"]["spent"] == 8.0
    assert rows["caller:key-1:daily"]["limit"] == 2.0
    assert rows["caller:key-1:daily"]["config_path"] is None  # the key's policy
    assert rows["caller:vip:daily"]["config_path"] == "routing.budgetLimits.callers.vip.daily"
    assert rows["caller:anon:daily"]["config_path"] == "routing.budgetLimits.perCaller.daily"


async def test_settles_streams_with_their_actual_cost() -> None:
    manager, _ = await open_manager(config({"daily": 100.0}))
    async with manager:
        driver = scripted(manager, "a")
        driver.push(Outcome("one two three", usage=(1, 3)))
        events = [e async for e in manager.stream(prompt="hi", model="a/m", max_tokens=9)]
        assert isinstance(events[0], StreamStart)
        assert await counter(manager, SPENT_DAY) == 4.0
        assert await counter(manager, DAY) == 4.0

        # Cancelled by the caller after the first chunk: the partial usage is billed.
        driver.push(Outcome(chunks=("alpha ", "beta ", "gamma ", "delta")))
        stream = manager.stream(prompt="hi", model="a/m", max_tokens=9)
        async for event in stream:
            if isinstance(event, TextDelta):
                break
        await stream.aclose()
        partial = estimate_tokens("hi") + estimate_tokens("alpha ")
        assert await counter(manager, SPENT_DAY) == 4.0 + partial
        assert await counter(manager, DAY) == 4.0 + partial

        # Broken after output started (no stream failover): the partial cost is billed too.
        driver.push(Outcome(chunks=("x ", "y ", "z"), fail_after=2, error=ServerError("cut")))
        with pytest.raises(ServerError):
            await _drain(manager.stream(prompt="hi", model="a/m", max_tokens=9))
        broken = estimate_tokens("hi") + estimate_tokens("x y ")
        assert await counter(manager, SPENT_DAY) == 4.0 + partial + broken
        assert await counter(manager, DAY) == 4.0 + partial + broken


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


@pytest.mark.parametrize("yielding", [False, True], ids=["memory", "yielding-store"])
async def test_cancelled_request_releases_its_reservation(yielding: bool) -> None:
    store = YieldingStore() if yielding else None
    manager, _ = await open_manager(config({"daily": 100.0}, a=provider(kind="gated")), store=store)
    async with manager:
        gated = manager.provider("a")
        assert isinstance(gated, Gated)
        with anyio.move_on_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(manager.complete, {"prompt": "hi", "model": "a/m", "max_tokens": 9})
                await gated.entered.wait()
                assert await counter(manager, DAY) == 10.0  # reserved while in flight
                group.cancel_scope.cancel()
        assert await counter(manager, DAY) == 0.0
        assert await counter(manager, SPENT_DAY) == 0.0


async def test_reported_cost_above_the_estimate_is_counted() -> None:
    """A provider reporting its own cost (beyond the worst case estimated)
    is billed what it reported: the only way spend passes a limit."""
    manager, _ = await open_manager(config({"daily": 12.0}))
    async with manager:
        scripted(manager, "a").push(Outcome("ok", cost=11.0))
        await manager.complete(prompt="hi", model="a/m", max_tokens=9)
        with pytest.raises(BudgetExhaustedError):
            await manager.complete(prompt="hi", model="a/m", max_tokens=9)
        assert await counter(manager, SPENT_DAY) == 11.0
        assert await counter(manager, DAY) == 11.0


async def test_cache_hits_and_unpriced_models_cost_nothing() -> None:
    cfg = config({"daily": 1.0}, a={"type": "scripted", "models": {"free": {}}})
    manager, _ = await open_manager(cfg, Clock())
    async with manager:
        for _ in range(5):
            await manager.complete(prompt="hi", model="a/free", max_tokens=100)
        assert await counter(manager, SPENT_DAY) == 0.0
        assert await counter(manager, DAY) == 0.0


async def test_hedged_attempts_each_reserve_and_settle() -> None:
    """A hedge runs two attempts at once: both reserve, the loser (cancelled,
    nothing billed) gives its reservation back, the winner pays its cost."""
    cfg = config({"daily": 100.0}, a=provider(1), b=provider(2))
    cfg["routing"]["fallbackChains"] = [["a", "b"]]
    cfg["routing"]["hedging"] = {"enabled": True, "delay": 5}
    manager, _ = await open_manager(cfg)
    async with manager:
        scripted(manager, "a").push(Outcome("slow", delay=0.5))
        response = await manager.complete(prompt="hi", model="a/m", max_tokens=9)
        spent = await counter(manager, SPENT_DAY)
        committed = await counter(manager, DAY)
    assert response.provider == "b"
    assert sorted((a.provider, a.ok, a.error_kind) for a in response.attempts) == [
        ("a", False, "cancelled"),
        ("b", True, None),
    ]
    assert spent == committed == response.cost == 2.0
