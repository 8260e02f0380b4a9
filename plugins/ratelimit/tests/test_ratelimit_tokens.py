"""Tokens per minute: worst-case reservations before the request,
settlement with the real usage after it, and debt when a request used more
than the bucket held."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from swarmgate import (
    CallerPolicy,
    CompletionRequest,
    CompletionResponse,
    MemoryStateStore,
    NoProviderAvailableError,
    ProviderManager,
    RateLimitedError,
    RequestContext,
    ServerError,
    TokenUsage,
    hookimpl,
)
from swarmgate.testing import Outcome, ScriptedProvider
from swarmgate_ratelimit import RateLimitExceededError, RateLimitPlugin, RateLimitService

pytestmark = pytest.mark.anyio

#: 400 characters: an estimated 100 prompt tokens.
PROMPT = "x" * 400


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CacheHit:
    """Answers every request tagged ``cached`` itself, like a cache plugin."""

    @hookimpl
    def before_request(self, request: CompletionRequest, context: RequestContext) -> CompletionResponse | None:
        if "cached" not in request.tags:
            return None
        return CompletionResponse(
            content="from cache",
            provider="a",
            model="m",
            cost=0.0,
            latency=0.1,
            tokens=TokenUsage.of(100, 5),
            finish_reason="stop",
            cached=True,
        )


class Directory:
    def __init__(self, policies: dict[str, CallerPolicy]) -> None:
        self.policies = policies

    def policy(self, caller: str) -> CallerPolicy | None:
        return self.policies.get(caller)


@asynccontextmanager
async def gateway(
    limiting: dict[str, Any], clock: Clock, *extra: object
) -> AsyncIterator[tuple[ProviderManager, ScriptedProvider, RateLimitService]]:
    store = MemoryStateStore(clock=clock)
    drivers: dict[str, Any] = {
        "swarmgate.providers": {"scripted": ScriptedProvider},
        "swarmgate.state": {"memory": lambda options: store},
    }
    cfg = {
        "providers": {"a": {"type": "scripted", "models": {"m": {}}}},
        "optimization": {"rateLimiting": limiting},
    }
    # Plugins registered later run first: the limiter reserves before the cache answers.
    async with ProviderManager(cfg, drivers=drivers, plugins=(*extra, RateLimitPlugin(clock=clock))) as manager:
        provider = manager.provider("a")
        assert isinstance(provider, ScriptedProvider)
        service = manager.extensions["ratelimit"]
        assert isinstance(service, RateLimitService)
        yield manager, provider, service


def tokens_left(service: RateLimitService, scope: str = "global") -> float:
    return float(service.snapshot()["scopes"][scope]["tokens"]["available"])


async def test_a_request_reserves_its_worst_case_and_settles_to_its_usage() -> None:
    clock = Clock()
    async with gateway({"tokensPerMinute": 1000, "defaultMaxTokens": 100}, clock) as (manager, provider, service):
        seen: list[float] = []

        class Peek:
            @hookimpl
            def before_attempt(self) -> None:
                seen.append(tokens_left(service))

        manager.plugins.register(Peek())
        provider.push(Outcome("ok", usage=(100, 20)))
        response = await manager.complete(prompt=PROMPT)
        assert response.tokens == TokenUsage.of(100, 20)
        assert seen == [800.0]  # 100 prompt + 100 default answer reserved while in flight
        assert tokens_left(service) == 880.0  # settled: 120 used
        provider.push(Outcome("ok", usage=(100, 250)))
        await manager.complete(prompt=PROMPT, max_tokens=300)
        assert seen[-1] == 880.0 - 400.0  # max_tokens decides the reservation
        assert tokens_left(service) == 880.0 - 350.0


async def test_the_token_limit_refuses_with_the_time_the_reservation_needs() -> None:
    clock = Clock()
    async with gateway({"tokensPerMinute": 1000, "defaultMaxTokens": 100}, clock) as (manager, provider, _):
        provider.push(*[Outcome("ok", usage=(100, 100)) for _ in range(5)])
        for _ in range(5):
            await manager.complete(prompt=PROMPT)
        with pytest.raises(RateLimitExceededError) as caught:
            await manager.complete(prompt=PROMPT)
        error = caught.value
        assert (error.scope, error.unit) == ("global", "tokens")
        assert error.retry_after == pytest.approx(200 / (1000 / 60))
        assert str(error) == (
            "rate limit 'global' exceeded: 1000 tokens/min (this request needs 200); retry after 12.0 s"
        )
        assert len(provider.calls) == 5
        clock.now += 6  # 100 tokens back: a smaller request fits
        await manager.complete(prompt="x" * 40, max_tokens=50)


async def test_requests_and_tokens_limits_apply_together() -> None:
    clock = Clock()
    limiting = {"requestsPerMinute": 60, "burstCapacity": 10, "tokensPerMinute": 500, "defaultMaxTokens": 100}
    async with gateway(limiting, clock) as (manager, provider, service):
        provider.push(*[Outcome("ok", usage=(100, 100)) for _ in range(3)])
        for _ in range(2):
            await manager.complete(prompt=PROMPT)
        with pytest.raises(RateLimitExceededError) as caught:
            await manager.complete(prompt=PROMPT)  # 200 needed, 100 left
        assert caught.value.unit == "tokens"
        # The request the refused one took from the request bucket is given back.
        assert service.snapshot()["scopes"]["global"]["requests"]["available"] == 8


async def test_unused_reservations_come_back_for_failures_and_cached_answers() -> None:
    clock = Clock()
    async with gateway({"tokensPerMinute": 1000, "defaultMaxTokens": 100}, clock, CacheHit()) as (
        manager,
        provider,
        service,
    ):
        provider.push(ServerError("upstream down"))
        with pytest.raises(NoProviderAvailableError):
            await manager.complete(prompt=PROMPT)
        assert tokens_left(service) == 1000.0
        response = await manager.complete(prompt=PROMPT, tags=["cached"])
        assert response.cached
        assert tokens_left(service) == 1000.0


async def test_a_broken_stream_pays_for_what_it_used() -> None:
    clock = Clock()
    async with gateway({"tokensPerMinute": 1000, "defaultMaxTokens": 100}, clock) as (manager, provider, service):
        provider.push(Outcome("one two three four", usage=(100, 40)))
        _ = [event async for event in manager.stream(prompt=PROMPT)]
        assert tokens_left(service) == 860.0
        provider.push(Outcome("one two three four", error=ServerError("cut"), fail_after=2))
        with pytest.raises(ServerError):
            _ = [event async for event in manager.stream(prompt=PROMPT)]
        used = 1000.0 - 140.0 - tokens_left(service)
        assert 100 <= used < 200  # the partial attempt's estimated usage, not the reservation


async def test_usage_beyond_the_bucket_becomes_debt_paid_before_the_next_request() -> None:
    clock = Clock()
    async with gateway({"tokensPerMinute": 1000, "defaultMaxTokens": 100}, clock) as (manager, provider, service):
        provider.push(Outcome("long", usage=(100, 1900)))  # reserved 110, used 2000
        await manager.complete(prompt=PROMPT, max_tokens=10)
        assert tokens_left(service) == 0.0  # drained; 1000 owed
        clock.now += 30  # 500 back, but 1000 owed + 200 for the next request
        with pytest.raises(RateLimitedError) as caught:
            await manager.complete(prompt=PROMPT)
        assert caught.value.retry_after == pytest.approx(30.0)  # until the whole bucket (1000) is there
        clock.now += 30
        provider.push(Outcome("ok", usage=(100, 100)))
        await manager.complete(prompt=PROMPT)  # takes the whole bucket, owes the other 200
        assert tokens_left(service) == 0.0
        with pytest.raises(RateLimitedError):
            await manager.complete(prompt=PROMPT)
        # Over two minutes 2200 tokens were used against 1000 + 2 x 1000 of budget; the
        # limiter never let a request start while the bucket was in debt.
        assert len(provider.calls) == 2


async def test_debt_is_forgiven_once_the_bucket_would_have_refilled() -> None:
    clock = Clock()
    async with gateway({"tokensPerMinute": 600, "defaultMaxTokens": 100}, clock) as (manager, provider, service):
        provider.push(Outcome("long", usage=(100, 800)))  # reserved 200, used 900: owes 300
        await manager.complete(prompt=PROMPT)
        assert tokens_left(service) == 0.0
        clock.now += 91  # (600 + 300) / 10 per second: a negative bucket would be full again
        provider.push(Outcome("ok", usage=(100, 100)))
        await manager.complete(prompt=PROMPT)
        assert tokens_left(service) == 400.0


async def test_a_request_larger_than_the_bucket_is_slowed_not_refused_forever() -> None:
    clock = Clock()
    async with gateway({"tokensPerMinute": 300, "defaultMaxTokens": 100}, clock) as (manager, provider, service):
        provider.push(Outcome("ok", usage=(100, 400)), Outcome("ok", usage=(10, 10)))
        await manager.complete(prompt=PROMPT, max_tokens=400)  # needs 500 > 300: takes 300, owes 200
        assert tokens_left(service) == 0.0
        with pytest.raises(RateLimitedError):
            await manager.complete(prompt="hi", max_tokens=10)
        clock.now += 60  # 300 back: pays the 200 owed and its own 11
        await manager.complete(prompt="hi", max_tokens=10)
        assert tokens_left(service) == pytest.approx(300 - 200 - 20)


async def test_callers_have_their_own_token_buckets_and_policies() -> None:
    clock = Clock()
    limiting = {"defaultMaxTokens": 100, "perCaller": {"tokensPerMinute": 400}}
    async with gateway(limiting, clock) as (manager, provider, service):
        manager.add_caller_directory(Directory({"big": CallerPolicy(tokens_per_minute=10_000)}))
        provider.push(*[Outcome("ok", usage=(100, 100)) for _ in range(10)])
        for _ in range(2):
            await manager.complete(prompt=PROMPT, caller="alice")
        with pytest.raises(RateLimitExceededError) as caught:
            await manager.complete(prompt=PROMPT, caller="alice")
        assert (caught.value.scope, caught.value.unit) == ("caller:alice", "tokens")
        await manager.complete(prompt=PROMPT, caller="bob")
        for _ in range(5):
            await manager.complete(prompt=PROMPT, caller="big")
        assert tokens_left(service, "caller:big") == 9000.0
        assert "requests" not in service.snapshot()["scopes"]["caller:big"]


async def test_the_state_store_gives_tokens_back_as_the_limiter_relies_on() -> None:
    """The StateStore contract the settlement uses: a negative take is always
    allowed and adds tokens, capped at the capacity by the next call; a take
    of zero reads the refilled level."""
    clock = Clock()
    store = MemoryStateStore(clock=clock)
    take = store.take_tokens
    assert (await take("k", rate=1.0, capacity=10.0, tokens=8.0)).remaining == 2.0
    back = await take("k", rate=1.0, capacity=10.0, tokens=-5.0)
    assert back.allowed
    assert back.remaining == 7.0
    await take("k", rate=1.0, capacity=10.0, tokens=-50.0)
    assert (await take("k", rate=1.0, capacity=10.0, tokens=0.0)).remaining == 10.0
    refused = await take("k", rate=1.0, capacity=10.0, tokens=11.0)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(1.0)
