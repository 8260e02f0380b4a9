"""Redis round trips per request of the rate limiter and the budgets: each
takes or reserves in one batch per hook (``take_many``, ``incr_many``,
``get_many``), so a request answered at its first target costs three round
trips per plugin, whatever the number of scopes and budgets. (Before the
batches: twelve for the limiter with three scopes -- nine bucket operations
and three debt reads -- and fourteen for four budgets.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from swarmgate import ProviderManager
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import Outcome, ScriptedProvider
from swarmgate_redis import RedisStateStore

pytestmark = pytest.mark.anyio

DRIVERS: dict[str, Any] = {"swarmgate.providers": {"scripted": ScriptedProvider}}
LIMITS = {"requestsPerMinute": 600000, "tokensPerMinute": 60000000}
BUDGET = {"daily": 1000.0}


def config(url: str, prefix: str, *, ratelimit: bool, budget: bool) -> dict[str, Any]:
    providers: dict[str, Any] = {}
    for name, priority in (("primary", 1), ("spare", 2)):
        provider: dict[str, Any] = {"type": "scripted", "priority": priority, "models": {"m": {"costPerToken": 1e-6}}}
        if ratelimit:
            provider["rateLimit"] = dict(LIMITS)
        if budget:
            provider["budget"] = dict(BUDGET)
        providers[name] = provider
    data: dict[str, Any] = {
        "providers": providers,
        "routing": {"fallbackChains": [["primary", "spare"]]},
        "state": {"backend": "redis", "options": {"url": url, "prefix": prefix}},
    }
    if ratelimit:
        data["optimization"] = {"rateLimiting": {**LIMITS, "perCaller": dict(LIMITS)}}
    if budget:
        data["routing"]["budgetLimits"] = {"daily": 1000.0, "monthly": 10000.0, "perCaller": {"daily": 100.0}}
    return data


async def round_trips(manager: ProviderManager) -> int:
    """Redis commands one answered request sends (after a warm-up request)."""
    provider = manager.provider("primary")
    assert isinstance(provider, ScriptedProvider)
    provider.push(Outcome("warm"), Outcome("counted"))
    await manager.complete(prompt="warm up", caller="alice")
    store = manager.state
    assert isinstance(store, RedisStateStore)
    transport: Any = store._transport
    assert transport is not None
    sent: list[tuple[Any, ...]] = []
    execute: Callable[..., Awaitable[Any]] = transport.execute

    async def counting(*args: Any) -> Any:
        sent.append(args)
        return await execute(*args)

    transport.execute = counting
    await manager.complete(prompt="counted", caller="alice")
    return len(sent)


@pytest.mark.parametrize(
    ("ratelimit", "budget", "expected"),
    [(True, False, 3), (False, True, 3), (True, True, 6)],
    ids=["ratelimit", "budget", "both"],
)
async def test_three_round_trips_per_plugin_and_request(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, prefix: str, ratelimit: bool, budget: bool, expected: int
) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-redis,swarmgate-ratelimit,swarmgate-budget")
    cfg = config(redis_url, prefix, ratelimit=ratelimit, budget=budget)
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        assert await round_trips(manager) == expected
