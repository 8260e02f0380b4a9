"""The retry budget: an outage does not become a retry storm."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

from swarmgate import MemoryStateStore, NoProviderAvailableError, ProviderManager
from swarmgate.testing import ScriptedProvider
from swarmgate_retry import RetryBudget, RetryPlugin
from swarmgate_retry.settings import RetryBudgetSection

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}
REQUESTS = 40


def outage(budget: dict[str, Any]) -> dict[str, Any]:
    """One provider that is down; up to 4 retries per request without a budget."""
    return {
        "providers": {"down": {"type": "scripted", "models": {"m": {}}, "fail": "server_error"}},
        "optimization": {"retry": {"maxAttempts": 5, "initialDelay": 1, "maxDelay": 4, "retryBudget": budget}},
    }


async def storm(budget: dict[str, Any]) -> tuple[int, dict[str, int]]:
    """``REQUESTS`` concurrent requests into the outage; returns the calls
    that reached the provider and the plugin's counters."""
    async with ProviderManager(outage(budget), drivers=DRIVERS, plugins=(RetryPlugin(rng=random.Random(5)),)) as m:
        failures: list[NoProviderAvailableError] = []

        async def one() -> None:
            try:
                await m.complete(prompt="hi", model="m")
            except NoProviderAvailableError as error:
                failures.append(error)

        async with anyio.create_task_group() as group:
            for _ in range(REQUESTS):
                group.start_soon(one)
        assert len(failures) == REQUESTS
        provider = m.provider("down")
        assert isinstance(provider, ScriptedProvider)
        return len(provider.calls), m.extensions["retry"].counters()


async def test_the_budget_caps_retries_to_a_fraction_of_live_traffic() -> None:
    calls, counters = await storm({"ratio": 0.1, "minPerSecond": 0, "window": 10_000})
    retries = calls - REQUESTS
    assert retries == counters["retries"]
    assert 1 <= retries <= 0.1 * REQUESTS
    assert counters["budget_denied"] >= REQUESTS - retries


async def test_min_per_second_allows_a_floor_of_retries() -> None:
    calls, _ = await storm({"ratio": 0.0, "minPerSecond": 0.5, "window": 10_000})
    assert calls - REQUESTS == 5  # 0.5/s over a 10 s window, whatever the traffic


async def test_without_the_budget_every_request_retries_fully() -> None:
    calls, counters = await storm({"enabled": False})
    assert calls == REQUESTS * 5
    assert counters["budget_denied"] == 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_deposits_are_batched_and_the_window_slides() -> None:
    clock = Clock()
    store = MemoryStateStore(clock=clock)
    budget = RetryBudget(RetryBudgetSection(ratio=0.5, min_per_second=0.0, window=10_000.0), clock)
    for _ in range(4):
        if budget.deposit():
            await budget.flush(store)
    # The first deposit flushed at once; the other three wait for the batch interval.
    assert await store.window_total(RetryBudget.REQUESTS_KEY, 10.0) == 1.0
    assert await budget.withdraw(store)  # flushes first: 4 requests allow 2 retries
    assert await budget.withdraw(store)
    assert not await budget.withdraw(store)
    assert (await budget.snapshot(store))["retries"] == 2.0  # the refused retry was taken back
    clock.now += 11.0  # the window slides past all of it
    assert (await budget.snapshot(store)) == {"requests": 0.0, "retries": 0.0, "allowance": 0.0, "window_s": 10.0}
    assert not await budget.withdraw(store)


class RacingStore(MemoryStateStore):
    """A memory store where another instance records a retry just before each of ours."""

    async def window_add(self, key: str, amount: float, window: float) -> float:
        if key == RetryBudget.RETRIES_KEY and amount > 0:
            await super().window_add(key, 1.0, window)
        return await super().window_add(key, amount, window)


async def test_a_withdrawal_that_loses_a_race_gives_its_retry_back() -> None:
    clock = Clock()
    store = RacingStore(clock=clock)
    budget = RetryBudget(RetryBudgetSection(ratio=0.0, min_per_second=0.1, window=10_000.0), clock)
    assert not await budget.withdraw(store)  # the other instance took the only retry first
    assert await store.window_total(RetryBudget.RETRIES_KEY, 10.0) == 1.0
