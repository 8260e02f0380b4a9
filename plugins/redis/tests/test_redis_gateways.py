"""Two gateway instances (two ProviderManagers, each with its own store and
connections) on one Redis share their circuits, rate limits, budgets and
cache, through the plugins loaded from their entry points."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from swarmgate import BudgetExceededError, ProviderManager, RateLimitedError, ServerError, Target
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import ScriptedProvider, expect_failure
from swarmgate_redis import RedisStateStore

pytestmark = pytest.mark.anyio

DRIVERS: dict[str, Any] = {"swarmgate.providers": {"scripted": ScriptedProvider}}


def config(url: str, prefix: str, **sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "providers": {
            "primary": {"type": "scripted", "priority": 1, "models": {"p": {"costPerToken": 1.0}}},
            "spare": {"type": "scripted", "priority": 2, "models": {"s": {"costPerToken": 1.0}}},
        },
        "routing": {"fallbackChains": [["primary", "spare"]]},
        "state": {"backend": "redis", "options": {"url": url, "prefix": prefix}},
    }
    for name, section in sections.items():
        data.setdefault(name, {}).update(section)
    return data


@asynccontextmanager
async def two_gateways(
    monkeypatch: pytest.MonkeyPatch, plugin: str, cfg: dict[str, Any]
) -> AsyncIterator[tuple[ProviderManager, ProviderManager]]:
    """Two managers with ``plugin`` (a distribution) loaded from its entry point."""
    monkeypatch.setenv(ALLOW_ENV, f"swarmgate,swarmgate-redis,{plugin}")
    async with ProviderManager(cfg, drivers=DRIVERS) as one, ProviderManager(cfg, drivers=DRIVERS) as two:
        assert isinstance(one.state, RedisStateStore)
        assert one.state is not two.state
        yield one, two


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


async def test_a_circuit_opened_by_one_gateway_is_open_in_the_other(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, prefix: str
) -> None:
    breaker = {"failureThreshold": 2, "timeout": 60_000, "successThreshold": 1, "syncInterval": 0}
    cfg = config(redis_url, prefix, routing={"circuitBreaker": breaker})
    async with two_gateways(monkeypatch, "swarmgate-breaker", cfg) as (one, two):
        assert (await two.complete(prompt="hi", model="primary/p")).provider == "primary"
        scripted(one, "primary").push(ServerError("down"), ServerError("down"))
        for _ in range(2):
            assert (await one.complete(prompt="hi", model="primary/p")).provider == "spare"
        assert one.extensions["breaker"].state(Target("primary", "p")) == "open"
        # The other gateway never saw primary fail; it reads the shared circuit and skips it.
        assert (await two.complete(prompt="hi", model="primary/p")).provider == "spare"
        assert len(scripted(two, "primary").calls) == 1
        assert two.extensions["breaker"].state(Target("primary", "p")) == "open"


async def test_a_rate_limit_is_shared_exactly(monkeypatch: pytest.MonkeyPatch, redis_url: str, prefix: str) -> None:
    limits = {"rateLimiting": {"requestsPerMinute": 1, "burstCapacity": 5}}
    cfg = config(redis_url, prefix, optimization=limits)
    async with two_gateways(monkeypatch, "swarmgate-ratelimit", cfg) as (one, two):
        outcomes: list[str] = []

        async def send(manager: ProviderManager) -> None:
            try:
                await manager.complete(prompt="hi", model="primary/p")
                outcomes.append("ok")
            except RateLimitedError:
                outcomes.append("limited")

        async with anyio.create_task_group() as tg:
            for i in range(16):
                tg.start_soon(send, one if i % 2 else two)
        assert outcomes.count("ok") == 5
        assert outcomes.count("limited") == 11
        served = len(scripted(one, "primary").calls) + len(scripted(two, "primary").calls)
        assert served == 5


async def test_a_budget_is_shared(monkeypatch: pytest.MonkeyPatch, redis_url: str, prefix: str) -> None:
    cfg = config(redis_url, prefix, routing={"budgetLimits": {"daily": 10.0, "routeAround": False}})
    async with two_gateways(monkeypatch, "swarmgate-budget", cfg) as (one, two):
        spent_by_one = 0
        for _ in range(20):
            try:
                await one.complete(prompt="hi", model="primary/p", max_tokens=1)
            except Exception:  # noqa: BLE001 - the refusal ends the loop; it is checked below
                break
            spent_by_one += 1
        assert 1 <= spent_by_one < 20
        error = await expect_failure(two, model="primary/p", max_tokens=1)
        assert isinstance(error, BudgetExceededError)
        assert scripted(two, "primary").calls == []
        daily = [
            [b for b in await manager.extensions["budget"].status() if (b["scope"], b["period"]) == ("global", "daily")]
            for manager in (one, two)
        ]
        assert len(daily[0]) == len(daily[1]) == 1
        assert daily[0][0]["spent"] == daily[1][0]["spent"] > 8.0
        assert daily[0][0]["remaining"] == daily[1][0]["remaining"] < 2.0


async def test_a_cached_answer_is_served_by_the_other_gateway(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, prefix: str
) -> None:
    cfg = config(redis_url, prefix, optimization={"caching": {"enabled": True, "statsInterval": 0}})
    async with two_gateways(monkeypatch, "swarmgate-cache", cfg) as (one, two):
        scripted(one, "primary").push("the answer from one")
        first = await one.complete(prompt="what is the answer?", model="primary/p", temperature=0)
        assert not first.cached
        second = await two.complete(prompt="what is the answer?", model="primary/p", temperature=0)
        assert second.cached
        assert second.content == "the answer from one"
        assert scripted(two, "primary").calls == []
        stats = await two.extensions["cache"].stats()
        assert stats["entries"] == 1
