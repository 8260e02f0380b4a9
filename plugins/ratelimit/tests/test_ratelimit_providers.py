"""Per-provider limits: routing avoids a provider at its limit, an attempt
it would refuse fails over, every provider at its limit is a rate-limit
error with the shortest wait, and limits follow provider changes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from swarmgate import (
    MemoryStateStore,
    NoProviderAvailableError,
    OverloadedError,
    ProviderManager,
    RateLimitedError,
    Target,
    hookimpl,
)
from swarmgate.testing import Outcome, ScriptedProvider
from swarmgate_ratelimit import ProviderRateLimitExceededError, RateLimitPlugin, RateLimitService

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config(a: Any = None, b: Any = None, limiting: Any = None, a_model: Any = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "providers": {
            "a": {"type": "scripted", "priority": 1, "models": {"m": a_model or {}}},
            "b": {"type": "scripted", "priority": 2, "models": {"m": {}}},
        }
    }
    if a is not None:
        data["providers"]["a"]["rateLimit"] = a
    if b is not None:
        data["providers"]["b"]["rateLimit"] = b
    if limiting is not None:
        data["optimization"] = {"rateLimiting": limiting}
    return data


@asynccontextmanager
async def gateway(
    cfg: dict[str, Any],
    clock: Callable[[], float] = time.monotonic,
    *extra: object,
    store: MemoryStateStore | None = None,
) -> AsyncIterator[tuple[ProviderManager, RateLimitService]]:
    store = store or MemoryStateStore(clock=clock)
    drivers: dict[str, Any] = {
        "swarmgate.providers": {"scripted": ScriptedProvider},
        "swarmgate.state": {"memory": lambda options: store},
    }
    async with ProviderManager(cfg, drivers=drivers, plugins=(*extra, RateLimitPlugin(clock=clock))) as manager:
        service = manager.extensions["ratelimit"]
        assert isinstance(service, RateLimitService)
        yield manager, service


def calls(manager: ProviderManager, name: str) -> int:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return len(provider.calls)


async def test_routing_avoids_a_provider_at_its_limit() -> None:
    clock = Clock()
    shared = MemoryStateStore(clock=clock)
    cfg = config(a={"requestsPerMinute": 60, "burstCapacity": 2})
    async with gateway(cfg, clock, store=shared) as (one, service), gateway(cfg, clock, store=shared) as (two, _):
        for _ in range(2):
            assert (await one.complete(prompt="hi")).provider == "a"
        # Instance one saw a's bucket run dry: routing rules a out, no attempt at all.
        response = await one.complete(prompt="hi")
        assert [(x.provider, x.refused) for x in response.attempts] == [("b", False)]
        # Instance two has not seen it yet: its attempt at a is refused, and b answers.
        response = await two.complete(prompt="hi")
        assert response.provider == "b"
        assert [(x.provider, x.refused, x.error_kind) for x in response.attempts] == [
            ("a", True, "rate_limited"),
            ("b", False, None),
        ]
        assert "rate limit 'provider:a' exceeded" in (response.attempts[0].error or "")
        # Now two knows as well.
        assert [x.provider for x in (await two.complete(prompt="hi")).attempts] == ["b"]
        assert calls(one, "a") + calls(two, "a") == 2
        counters = service.snapshot()["counters"]
        assert (counters["provider_refused"], counters["ruled_out"]) == (0, 1)
        clock.now += 1  # a refilled one request
        assert (await one.complete(prompt="hi")).provider == "a"


async def test_every_provider_at_its_limit_is_a_rate_limit_error_with_the_shortest_wait() -> None:
    clock = Clock()
    cfg = config(a={"requestsPerMinute": 60, "burstCapacity": 1}, b={"requestsPerMinute": 20, "burstCapacity": 1})
    async with gateway(cfg, clock) as (manager, _):
        assert (await manager.complete(prompt="hi")).provider == "a"
        assert (await manager.complete(prompt="hi")).provider == "b"
        with pytest.raises(RateLimitedError) as caught:
            await manager.complete(prompt="hi")
        error = caught.value
        assert isinstance(error, ProviderRateLimitExceededError)
        assert error.failover
        assert error.status_code == 429
        assert error.retry_after == pytest.approx(1.0)  # a refills first
        assert [(x.provider, x.refused) for x in error.attempts] == [("a", True), ("b", True)]
        assert str(error) == (
            "[b/m] rate limit 'provider:b' exceeded: 20 requests/min (burst 1); retry after 3.0 s"
            " (another provider of this request in 1.0 s)"
        )
        assert (calls(manager, "a"), calls(manager, "b")) == (1, 1)


async def test_a_forced_provider_at_its_limit_is_refused_with_its_wait() -> None:
    clock = Clock()
    async with gateway(config(a={"requestsPerMinute": 30, "burstCapacity": 1}), clock) as (manager, _):
        await manager.complete(prompt="hi", model="a/m")
        with pytest.raises(ProviderRateLimitExceededError) as caught:
            await manager.complete(prompt="hi", model="a/m")
        assert caught.value.retry_after == pytest.approx(2.0)
        assert caught.value.scope == "provider:a"


async def test_max_wait_waits_for_the_first_provider_to_refill() -> None:
    cfg = config(
        a={"requestsPerMinute": 600, "burstCapacity": 1},
        b={"requestsPerMinute": 300, "burstCapacity": 1},
        limiting={"maxWait": 1000},
    )
    async with gateway(cfg) as (manager, service):
        assert (await manager.complete(prompt="hi")).provider == "a"
        assert (await manager.complete(prompt="hi")).provider == "b"
        started = anyio.current_time()
        response = await manager.complete(prompt="hi")  # both empty: wait ~0.1 s for a
        assert response.provider == "a"
        assert [x.provider for x in response.attempts] == ["a"]
        assert 0.05 <= anyio.current_time() - started < 0.8
        assert service.snapshot()["counters"]["waited"] == 1


async def test_provider_token_limits_reserve_the_models_max_tokens() -> None:
    clock = Clock()
    cfg = config(a={"tokensPerMinute": 500}, a_model={"maxTokens": 400})
    async with gateway(cfg, clock) as (manager, service):
        a = manager.provider("a")
        assert isinstance(a, ScriptedProvider)
        a.push(Outcome("ok", usage=(100, 50)))
        prompt = "x" * 400  # ~100 tokens: 100 + 400 reserved, 150 used
        assert (await manager.complete(prompt=prompt)).provider == "a"
        tokens = service.snapshot()["scopes"]["provider:a"]["tokens"]
        assert tokens == {"per_minute": 500, "capacity": 500, "available": 350.0, "limited": 0}
        # 500 would not fit in the 350 left: routing sends it to b without trying a.
        response = await manager.complete(prompt=prompt)
        assert [x.provider for x in response.attempts] == ["b"]
        # A request asking for fewer tokens fits.
        a.push(Outcome("ok", usage=(100, 100)))
        assert (await manager.complete(prompt=prompt, max_tokens=200)).provider == "a"
        assert service.snapshot()["scopes"]["provider:a"]["tokens"]["available"] == 150.0


async def test_a_provider_request_is_given_back_when_another_plugin_refuses_the_attempt() -> None:
    class Refuser:
        active = True

        @hookimpl
        def before_attempt(self, target: Target) -> None:
            if self.active and target.provider == "a":
                raise OverloadedError("a is reserved for something else")

    refuser = Refuser()
    clock = Clock()
    async with gateway(config(a={"requestsPerMinute": 60, "burstCapacity": 1}), clock, refuser) as (manager, service):
        response = await manager.complete(prompt="hi")
        assert [(x.provider, x.refused) for x in response.attempts] == [("a", True), ("b", False)]
        assert service.snapshot()["scopes"]["provider:a"]["requests"]["available"] == 1
        refuser.active = False
        assert (await manager.complete(prompt="hi")).provider == "a"


async def test_gateway_and_provider_limits_together() -> None:
    clock = Clock()
    cfg = config(
        a={"requestsPerMinute": 60, "burstCapacity": 1}, limiting={"requestsPerMinute": 60, "burstCapacity": 3}
    )
    async with gateway(cfg, clock) as (manager, _):
        assert [(await manager.complete(prompt="hi")).provider for _ in range(3)] == ["a", "b", "b"]
        with pytest.raises(RateLimitedError) as caught:
            await manager.complete(prompt="hi")
        assert "rate limit 'global'" in str(caught.value)


async def test_limits_follow_provider_changes() -> None:
    clock = Clock()
    async with gateway(config(limiting={"enabled": True}), clock) as (manager, service):
        # No provider limits: routing and attempts do not even call the limiter.
        assert not manager.plugins.has_impls("before_attempt")
        assert not manager.plugins.has_impls("filter_targets")
        await manager.update_provider("a", {"rateLimit": {"requestsPerMinute": 60, "burstCapacity": 1}})
        assert manager.plugins.has_impls("before_attempt")
        assert [(await manager.complete(prompt="hi")).provider for _ in range(2)] == ["a", "b"]
        assert service.limits("provider:a") is not None
        await manager.update_provider("a", {"rateLimit": None})
        assert service.limits("provider:a") is None
        assert (await manager.complete(prompt="hi")).provider == "a"
        await manager.add_provider(
            "c", {"type": "scripted", "priority": 0, "models": {"m": {}}, "rateLimit": {"requestsPerMinute": 6}}
        )
        assert service.snapshot()["scopes"]["provider:c"]["requests"]["capacity"] == 6
        await manager.remove_provider("c")
        assert service.limits("provider:c") is None
        assert not manager.plugins.has_impls("before_attempt")


async def test_a_bad_rate_limit_in_a_provider_update_keeps_the_previous_limits() -> None:
    clock = Clock()
    async with gateway(config(a={"requestsPerMinute": 60}), clock) as (manager, service):
        await manager.update_provider("a", {"rateLimit": {"requestsPerMinute": -1}})
        limits = service.limits("provider:a")
        assert limits is not None
        assert limits.requests is not None
        assert limits.requests.per_minute == 60


async def test_a_refusal_and_a_failure_together_are_no_provider_errors() -> None:
    clock = Clock()
    shared = MemoryStateStore(clock=clock)
    cfg = config(a={"requestsPerMinute": 60, "burstCapacity": 1})
    async with gateway(cfg, clock, store=shared) as (one, _), gateway(cfg, clock, store=shared) as (two, _):
        await one.complete(prompt="hi")
        b = two.provider("b")
        assert isinstance(b, ScriptedProvider)
        b.push(OverloadedError("b is busy"))
        # a refused (rate limit) and b failed (overloaded): not the same kind, so the
        # kernel's NoProviderAvailableError lists both.
        with pytest.raises(NoProviderAvailableError) as caught:
            await two.complete(prompt="hi")
        assert "a/m: rate_limited (rate limit 'provider:a' exceeded" in str(caught.value)
        assert "b/m: overloaded (b is busy)" in str(caught.value)
