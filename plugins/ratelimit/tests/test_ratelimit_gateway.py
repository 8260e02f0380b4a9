"""Gateway-wide and per-caller request limits: a concurrent burst, refill
over time, waiting, callers, caller policies, configuration, and limits
shared by two gateway instances through one StateStore."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from swarmgate import (
    CallerPolicy,
    CompletionResponse,
    ConfigError,
    MemoryStateStore,
    ProviderManager,
    RateLimitedError,
    hookimpl,
)
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import Outcome, ScriptedProvider
from swarmgate_ratelimit import RateLimitExceededError, RateLimitPlugin, RateLimitService

pytestmark = pytest.mark.anyio


class Clock:
    """A clock the test moves by hand, shared by the store and the plugin."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Directory:
    """A caller directory, as the gateway's API keys would register."""

    def __init__(self, policies: dict[str, CallerPolicy]) -> None:
        self.policies = policies

    def policy(self, caller: str) -> CallerPolicy | None:
        return self.policies.get(caller)


def config(limiting: Any = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"providers": {"a": {"type": "scripted", "models": {"m": {}}}}, **extra}
    if limiting is not None:
        data["optimization"] = {"rateLimiting": limiting}
    return data


@asynccontextmanager
async def gateway(
    cfg: dict[str, Any],
    *,
    clock: Callable[[], float] | None = None,
    store: MemoryStateStore | None = None,
) -> AsyncIterator[tuple[ProviderManager, RateLimitPlugin]]:
    clock = clock or time.monotonic
    shared = store or MemoryStateStore(clock=clock)
    drivers: dict[str, Any] = {
        "swarmgate.providers": {"scripted": ScriptedProvider},
        "swarmgate.state": {"memory": lambda options: shared},
    }
    plugin = RateLimitPlugin(clock=clock)
    async with ProviderManager(cfg, drivers=drivers, plugins=(plugin,)) as manager:
        yield manager, plugin


def service(manager: ProviderManager) -> RateLimitService:
    found = manager.extensions["ratelimit"]
    assert isinstance(found, RateLimitService)
    return found


async def burst(
    manager: ProviderManager, n: int, **fields: Any
) -> tuple[list[CompletionResponse], list[RateLimitedError]]:
    """Send ``n`` requests at once; the answers and the refusals."""
    answered: list[CompletionResponse] = []
    refused: list[RateLimitedError] = []

    async def one(i: int) -> None:
        try:
            answered.append(await manager.complete(prompt=f"request {i}", **fields))
        except RateLimitedError as exc:
            refused.append(exc)

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return answered, refused


async def test_a_concurrent_burst_admits_exactly_the_burst_capacity() -> None:
    clock = Clock()
    async with gateway(config({"enabled": True, "requestsPerMinute": 60, "burstCapacity": 20}), clock=clock) as (
        manager,
        _,
    ):
        provider = manager.provider("a")
        assert isinstance(provider, ScriptedProvider)
        provider.push(*[Outcome("ok", delay=0.02) for _ in range(50)])  # the admitted ones overlap
        answered, refused = await burst(manager, 50)
        assert len(answered) == 20
        assert len(refused) == 30
        assert len(provider.calls) == 20
        for error in refused:
            assert isinstance(error, RateLimitExceededError)
            assert error.status_code == 429
            assert error.scope == "global"
            assert error.unit == "requests"
            assert error.retry_after == pytest.approx(1.0)  # one request a second; the clock stands still
            assert error.attempts == ()
        assert str(refused[0]) == "rate limit 'global' exceeded: 60 requests/min (burst 20); retry after 1.0 s"
        counters = service(manager).snapshot()["counters"]
        assert counters["admitted"] == 20
        assert counters["limited"] == 30


async def test_the_bucket_refills_over_time_up_to_the_burst() -> None:
    clock = Clock()
    async with gateway(config({"requestsPerMinute": 120, "burstCapacity": 5}), clock=clock) as (manager, _):
        answered, refused = await burst(manager, 6)
        assert (len(answered), len(refused)) == (5, 1)
        assert refused[0].retry_after == pytest.approx(0.5)
        clock.now += 0.25  # half a request refilled
        with pytest.raises(RateLimitedError) as caught:
            await manager.complete(prompt="too soon")
        assert caught.value.retry_after == pytest.approx(0.25)
        assert "retry after 0.2 s" in str(caught.value)
        clock.now += 0.25
        await manager.complete(prompt="one refilled")
        clock.now += 3600  # an hour idle refills the burst, no more
        answered, refused = await burst(manager, 8)
        assert (len(answered), len(refused)) == (5, 3)
        snapshot = service(manager).snapshot()["scopes"]["global"]["requests"]
        assert snapshot["per_minute"] == 120
        assert snapshot["capacity"] == 5
        assert snapshot["available"] == 0
        assert snapshot["limited"] == 5


async def test_burst_capacity_defaults_to_a_minute_of_requests() -> None:
    clock = Clock()
    async with gateway(config({"requestsPerMinute": 3}), clock=clock) as (manager, _):
        answered, refused = await burst(manager, 5)
        assert (len(answered), len(refused)) == (3, 2)
        assert refused[0].retry_after == pytest.approx(20.0)


async def test_waiting_mode_waits_for_a_token_within_max_wait() -> None:
    # Real time: ten requests a second, a burst of one, wait up to 500 ms.
    async with gateway(config({"requestsPerMinute": 600, "burstCapacity": 1, "maxWait": 500})) as (manager, _):
        started = anyio.current_time()
        answered, refused = await burst(manager, 3)
        elapsed = anyio.current_time() - started
        assert (len(answered), len(refused)) == (3, 0)
        assert 0.18 <= elapsed < 1.0  # the 2nd waited ~0.1 s, the 3rd ~0.2 s
        assert service(manager).snapshot()["counters"]["waited"] >= 2


async def test_a_wait_longer_than_max_wait_is_refused_at_once() -> None:
    async with gateway(config({"requestsPerMinute": 60, "burstCapacity": 1, "maxWait": 100})) as (manager, _):
        await manager.complete(prompt="first")
        started = anyio.current_time()
        with pytest.raises(RateLimitedError) as caught:
            await manager.complete(prompt="second")
        assert anyio.current_time() - started < 0.09  # needed ~1 s: no point waiting
        assert 0.9 < (caught.value.retry_after or 0) <= 1.0


async def test_waiting_is_bounded_by_max_wait_when_others_keep_taking() -> None:
    clock = Clock()  # the bucket never refills: every wait ends refused
    async with gateway(config({"requestsPerMinute": 600, "burstCapacity": 1, "maxWait": 150}), clock=clock) as (
        manager,
        _,
    ):
        await manager.complete(prompt="first")
        started = anyio.current_time()
        with pytest.raises(RateLimitedError):
            await manager.complete(prompt="second")
        assert 0.09 <= anyio.current_time() - started < 0.5  # one 0.1 s sleep, then no time left


async def test_each_caller_has_its_own_bucket() -> None:
    clock = Clock()
    limiting = {"perCaller": {"requestsPerMinute": 60, "burstCapacity": 2}}
    async with gateway(config(limiting), clock=clock) as (manager, _):
        answered, refused = await burst(manager, 3, caller="alice")
        assert (len(answered), len(refused)) == (2, 1)
        error = refused[0]
        assert isinstance(error, RateLimitExceededError)
        assert error.scope == "caller:alice"
        assert str(error) == "rate limit 'caller:alice' exceeded: 60 requests/min (burst 2); retry after 1.0 s"
        answered, refused = await burst(manager, 3, caller="bob")
        assert (len(answered), len(refused)) == (2, 1)
        answered, refused = await burst(manager, 10)  # no caller: no per-caller limit
        assert (len(answered), len(refused)) == (10, 0)
        scopes = service(manager).snapshot()["scopes"]
        assert scopes["caller:alice"]["requests"]["available"] == 0
        assert scopes["caller:bob"]["requests"]["limited"] == 1


async def test_named_callers_override_the_per_caller_default() -> None:
    clock = Clock()
    limiting = {
        "perCaller": {"requestsPerMinute": 60, "burstCapacity": 1},
        "callers": {"vip": {"requestsPerMinute": 600, "burstCapacity": 5}, "batch": {}},
    }
    async with gateway(config(limiting), clock=clock) as (manager, _):
        assert [len(x) for x in await burst(manager, 6, caller="vip")] == [5, 1]
        assert [len(x) for x in await burst(manager, 20, caller="batch")] == [20, 0]  # {}: unlimited
        assert [len(x) for x in await burst(manager, 2, caller="someone")] == [1, 1]
        scopes = service(manager).snapshot()["scopes"]
        assert scopes["caller:vip"]["requests"]["capacity"] == 5
        assert "caller:batch" not in scopes


async def test_a_caller_policy_overrides_the_configured_limits() -> None:
    clock = Clock()
    limiting = {"perCaller": {"requestsPerMinute": 60, "burstCapacity": 10}, "callers": {"alice": {}}}
    async with gateway(config(limiting), clock=clock) as (manager, _):
        directory = Directory({"alice": CallerPolicy(requests_per_minute=30, burst_capacity=2)})
        manager.add_caller_directory(directory)
        answered, refused = await burst(manager, 4, caller="alice")
        assert (len(answered), len(refused)) == (2, 2)
        assert str(refused[0]) == "rate limit 'caller:alice' exceeded: 30 requests/min (burst 2); retry after 2.0 s"
        # A policy without rates (only allowed models, say) leaves the configured limits.
        directory.policies["carol"] = CallerPolicy(allowed_models=("a/m",))
        assert [len(x) for x in await burst(manager, 11, caller="carol")] == [10, 1]
        # A changed policy applies to the next request.
        directory.policies["alice"] = CallerPolicy(requests_per_minute=60, burst_capacity=3)
        clock.now += 60
        assert [len(x) for x in await burst(manager, 4, caller="alice")] == [3, 1]


async def test_a_caller_over_its_limit_does_not_drain_the_gateway() -> None:
    clock = Clock()
    limiting = {"requestsPerMinute": 60, "burstCapacity": 3, "perCaller": {"requestsPerMinute": 60, "burstCapacity": 1}}
    async with gateway(config(limiting), clock=clock) as (manager, _):
        assert [len(x) for x in await burst(manager, 6, caller="alice")] == [1, 5]  # the caller's limit
        await manager.complete(prompt="hi", caller="bob")
        await manager.complete(prompt="hi", caller="carol")
        with pytest.raises(RateLimitExceededError) as caught:
            await manager.complete(prompt="hi", caller="dave")
        assert caught.value.scope == "global"
        # The gateway refused dave: the request dave's own bucket gave is back.
        scopes = service(manager).snapshot()["scopes"]
        assert scopes["caller:dave"]["requests"]["available"] == 1
        assert scopes["global"]["requests"]["available"] == 0


async def test_two_gateway_instances_share_the_buckets() -> None:
    clock = Clock()
    shared = MemoryStateStore(clock=clock)
    cfg = config({"requestsPerMinute": 60, "burstCapacity": 4})
    async with gateway(cfg, clock=clock, store=shared) as (one, _), gateway(cfg, clock=clock, store=shared) as (two, _):
        assert [len(x) for x in await burst(one, 2)] == [2, 0]
        assert [len(x) for x in await burst(two, 3)] == [2, 1]
        with pytest.raises(RateLimitedError):
            await one.complete(prompt="hi")
        # Instance one saw its last take fail: its view is exact. Instance two's
        # view is too here, but a view can lag: refresh() reads the store.
        clock.now += 2
        await two.complete(prompt="hi")
        assert service(one).snapshot()["scopes"]["global"]["requests"]["available"] == 2
        await service(one).refresh()
        assert service(one).snapshot()["scopes"]["global"]["requests"]["available"] == 1


async def test_streams_are_limited_like_plain_requests() -> None:
    clock = Clock()
    async with gateway(config({"requestsPerMinute": 60, "burstCapacity": 1}), clock=clock) as (manager, _):
        events = [event async for event in manager.stream(prompt="hi")]
        assert events
        with pytest.raises(RateLimitedError):
            _ = [event async for event in manager.stream(prompt="again")]


async def test_no_limits_configured_leaves_the_plugin_inert() -> None:
    for cfg in (
        config(),
        config({"enabled": False, "requestsPerMinute": 1}),
        {
            "providers": {"a": {"type": "scripted", "models": {"m": {}}, "rateLimit": {"requestsPerMinute": 1}}},
            "optimization": {"rateLimiting": {"enabled": False}},
        },
    ):
        async with gateway(cfg) as (manager, _plugin):
            assert "ratelimit" not in manager.extensions
            assert not manager.plugins.has_impls("before_request")  # unregistered: no hook costs
            assert not manager.plugins.has_impls("before_attempt")
            answered, refused = await burst(manager, 5)
            assert (len(answered), len(refused)) == (5, 0)


async def test_an_enabled_section_without_limits_still_enforces_caller_policies() -> None:
    clock = Clock()
    async with gateway(config({"enabled": True}), clock=clock) as (manager, _):
        manager.add_caller_directory(Directory({"k1": CallerPolicy(requests_per_minute=60, burst_capacity=1)}))
        assert [len(x) for x in await burst(manager, 2, caller="k1")] == [1, 1]
        assert [len(x) for x in await burst(manager, 5, caller="k2")] == [5, 0]
        assert [len(x) for x in await burst(manager, 5)] == [5, 0]


async def test_every_bad_value_is_reported_at_once_with_its_path() -> None:
    cfg = config(
        {
            "perCaller": {"burstCapacity": 5},
            "callers": {"x": {"tokensPerMinute": "many"}},
            "burst": 3,
        }
    )
    cfg["providers"]["a"]["rateLimit"] = {"requestsPerMinute": 10, "burstCapacity": 0.5}
    with pytest.raises(ConfigError) as caught:
        async with gateway(cfg):
            pass
    assert dict(caught.value.problems) == {
        "optimization.rateLimiting.perCaller.burstCapacity": "needs requestsPerMinute (the rate the burst refills at)",
        "optimization.rateLimiting.callers.x.tokensPerMinute": 'expected a number, got "many"',
        "optimization.rateLimiting.burst": (
            "unknown key (expected one of: burstCapacity, callers, defaultMaxTokens, enabled, maxWait, "
            "perCaller, requestsPerMinute, tokensPerMinute)"
        ),
        "providers.a.rateLimit.burstCapacity": "must be a number of requests of at least 1, got 0.5",
    }


@pytest.mark.parametrize(
    ("section", "path", "words"),
    [
        ({"requestsPerMinute": 0}, "optimization.rateLimiting.requestsPerMinute", "positive number, got 0"),
        ({"tokensPerMinute": -1}, "optimization.rateLimiting.tokensPerMinute", "positive number, got -1"),
        ({"callers": {"": {}}}, "optimization.rateLimiting.callers", "must not be empty"),
        ({"maxWait": -5}, "optimization.rateLimiting.maxWait", "non-negative"),
        ({"defaultMaxTokens": 0}, "optimization.rateLimiting.defaultMaxTokens", "at least 1"),
        ({"perCaller": {"burstCapacity": 5}}, "optimization.rateLimiting.perCaller.burstCapacity", "needs"),
        (
            {"callers": {"x": {"tokensPerMinute": "many"}}},
            "optimization.rateLimiting.callers.x.tokensPerMinute",
            "number",
        ),
        ({"requestsPerMinute": "100"}, "optimization.rateLimiting.requestsPerMinute", "number"),
    ],
)
async def test_each_bad_value_is_named(section: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        async with gateway(config(section)):
            pass
    assert [p for p, _ in caught.value.problems] == [path]
    assert words in caught.value.problems[0][1]


async def test_the_entry_point_loads_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,ratelimit")
    drivers: dict[str, Any] = {"swarmgate.providers": {"scripted": ScriptedProvider}}
    async with ProviderManager(config({"requestsPerMinute": 60, "burstCapacity": 1}), drivers=drivers) as manager:
        assert isinstance(manager.extensions["ratelimit"], RateLimitService)
        assert [info.name for info in manager.plugins.plugins() if info.name == "ratelimit"] == ["ratelimit"]
        await manager.complete(prompt="hi")
        with pytest.raises(RateLimitExceededError):
            await manager.complete(prompt="hi")


async def test_caller_keys_with_rates_activate_the_plugin_on_their_own() -> None:
    clock = Clock()
    keys = [{"key": "sk-one-0123456789", "name": "k1", "requestsPerMinute": 60, "burstCapacity": 1}]
    async with gateway(config(server={"apiKeys": keys}), clock=clock) as (manager, _):
        # The server plugin registers the keys as a caller directory; here the test does.
        manager.add_caller_directory(Directory({"k1": CallerPolicy(requests_per_minute=60, burst_capacity=1)}))
        assert [len(x) for x in await burst(manager, 2, caller="k1")] == [1, 1]
    async with gateway(config(server={"apiKeys": [{"key": "sk-two-0123456789", "name": "k2"}]})) as (manager, _):
        assert "ratelimit" not in manager.extensions


class DirectoryPlugin:
    """A plugin registering a caller directory in its setup, as the
    caller-key store (swarmgate-keys) does for ``security.callerKeys``."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    @hookimpl
    def plugin_setup(self, manager: ProviderManager) -> None:
        manager.add_caller_directory(self.directory)


async def test_a_caller_directory_registered_by_a_plugin_activates_the_plugin() -> None:
    # No rateLimiting section: the limits come only from the directory. The
    # directory's plugin is registered first, so its setup would run after
    # the limiter's were the limiter's not trylast.
    clock = Clock()
    directory = Directory({"k1": CallerPolicy(requests_per_minute=60, burst_capacity=1)})
    drivers: dict[str, Any] = {
        "swarmgate.providers": {"scripted": ScriptedProvider},
        "swarmgate.state": {"memory": lambda options: MemoryStateStore(clock=clock)},
    }
    plugins = (DirectoryPlugin(directory), RateLimitPlugin(clock=clock))
    async with ProviderManager(config(), drivers=drivers, plugins=plugins) as manager:
        assert isinstance(manager.extensions["ratelimit"], RateLimitService)
        assert [len(x) for x in await burst(manager, 2, caller="k1")] == [1, 1]
        assert [len(x) for x in await burst(manager, 2, caller="someone-else")] == [2, 0]
    # Without a directory (nor a section) the plugin stays out of the way.
    async with ProviderManager(config(), drivers=drivers, plugins=(RateLimitPlugin(clock=clock),)) as manager:
        assert "ratelimit" not in manager.extensions
        assert not manager.plugins.has_impls("before_request")
    # enabled: false still wins over a directory.
    plugins = (DirectoryPlugin(directory), RateLimitPlugin(clock=clock))
    async with ProviderManager(config({"enabled": False}), drivers=drivers, plugins=plugins) as manager:
        assert "ratelimit" not in manager.extensions


async def test_a_caller_policy_with_unusable_rates_is_ignored() -> None:
    clock = Clock()
    async with gateway(config({"perCaller": {"requestsPerMinute": 60, "burstCapacity": 2}}), clock=clock) as (
        manager,
        _,
    ):
        manager.add_caller_directory(
            Directory({"odd": CallerPolicy(requests_per_minute=0.0, tokens_per_minute=float("nan"))})
        )
        assert [len(x) for x in await burst(manager, 3, caller="odd")] == [2, 1]
