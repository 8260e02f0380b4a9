"""The retry plugin in the request pipeline, against scripted in-process
providers: backoff spacing, Retry-After, fail-over after maxAttempts,
context-window switching, content filters, credential refresh, the
guide's classification and recovery actions."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

from swarmgate import (
    AuthenticationError,
    CompletionRequest,
    ContentFilteredError,
    ContextLengthExceededError,
    NoProviderAvailableError,
    ProviderManager,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    StreamStart,
    Target,
    TextDelta,
    hookimpl,
)
from swarmgate.models import ProviderReply
from swarmgate.provider import ProviderCall
from swarmgate.testing import ScriptedProvider
from swarmgate_retry import RequestRetries, RetryPlugin

pytestmark = pytest.mark.anyio


class Timed(ScriptedProvider):
    """A scripted provider that notes when each call arrived (anyio clock)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.times: list[float] = []

    async def complete(self, call: ProviderCall) -> ProviderReply:
        self.times.append(anyio.current_time())
        return await super().complete(call)


DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider, "timed": Timed}}


class Spy:
    """Keeps what the retry plugin noted for each answered request."""

    def __init__(self) -> None:
        self.seen: list[RequestRetries | None] = []

    @hookimpl
    def after_response(self, context: Any) -> None:
        self.seen.append(context.state.get("retry"))

    @property
    def delays(self) -> list[float]:
        last = self.seen[-1]
        return [] if last is None else last.delays


def config(retry: dict[str, Any] | None = None, **providers: dict[str, Any]) -> dict[str, Any]:
    """``primary`` (priority 1) with ``spare`` as its fallback; fast delays by default."""
    all_providers: dict[str, Any] = {
        "primary": {"type": "timed", "priority": 1, "models": {"p-model": {}}},
        "spare": {"type": "scripted", "priority": 2, "models": {"s-model": {}}},
    }
    for name, extra in providers.items():
        all_providers.setdefault(name, {}).update(extra)
    return {
        "providers": all_providers,
        "routing": {"fallbackChains": [["primary", "spare"]]},
        "optimization": {"retry": {"initialDelay": 1, "maxDelay": 50, **(retry or {})}},
    }


def scripted(manager: ProviderManager, name: str) -> Any:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


def trail(response: Any) -> list[tuple[str, str, bool]]:
    return [(a.provider, a.model, a.ok) for a in response.attempts]


async def test_retries_are_spaced_by_exponential_backoff_with_full_jitter() -> None:
    spy = Spy()
    retry = RetryPlugin(rng=random.Random(11))
    cfg = config({"maxAttempts": 4, "initialDelay": 20, "backoffMultiplier": 2, "maxDelay": 1000})
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(retry, spy)) as manager:
        primary = scripted(manager, "primary")
        primary.push(ServerError("boom"), ServerError("boom"), ServerError("boom"), "finally")
        response = await manager.complete(prompt="hi", model="primary/p-model")
    assert response.content == "finally"
    assert trail(response) == [("primary", "p-model", False)] * 3 + [("primary", "p-model", True)]
    draws = random.Random(11)
    expected = [draws.random() * cap for cap in (0.02, 0.04, 0.08)]
    assert spy.delays == pytest.approx(expected)
    for delay, cap in zip(spy.delays, (0.02, 0.04, 0.08), strict=True):
        assert 0.0 <= delay <= cap
    gaps = [b - a for a, b in zip(primary.times, primary.times[1:], strict=False)]
    for gap, delay in zip(gaps, expected, strict=True):
        assert gap >= delay - 0.002  # the kernel slept at least the returned delay
    assert manager.extensions["retry"].counters()["retries"] == 3


async def test_retry_after_is_waited_at_least() -> None:
    spy = Spy()
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(RetryPlugin(rng=random.Random(1)), spy)) as manager:
        primary = scripted(manager, "primary")
        primary.push(RateLimitedError("slow down", retry_after=0.04), "ok")
        response = await manager.complete(prompt="hi", model="primary/p-model")
    assert response.provider == "primary"
    assert spy.delays == [0.04]  # the backoff (at most 1 ms) is below Retry-After
    assert primary.times[1] - primary.times[0] >= 0.038


async def test_retry_after_beyond_max_delay_fails_over_at_once() -> None:
    spy = Spy()
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(RetryPlugin(), spy)) as manager:
        scripted(manager, "primary").push(RateLimitedError("quota", retry_after=30.0))
        started = anyio.current_time()
        response = await manager.complete(prompt="hi", model="primary/p-model")
    assert anyio.current_time() - started < 1.0
    assert trail(response) == [("primary", "p-model", False), ("spare", "s-model", True)]
    assert spy.seen == [None]  # no retry was scheduled


async def test_retry_after_with_no_other_target() -> None:
    spy = Spy()
    cfg = config({"maxDelay": 10, "maxRetryAfter": 5000})
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(RetryPlugin(), spy)) as manager:
        primary = scripted(manager, "primary")
        # Above maxDelay but within maxRetryAfter: with nowhere else to go, wait.
        primary.push(RateLimitedError("slow down", retry_after=0.03), "waited")
        response = await manager.complete(prompt="hi", provider="primary")
        assert response.content == "waited"
        assert spy.delays == [0.03]
        # Beyond maxRetryAfter: give up; the caller learns when to come back.
        primary.push(RateLimitedError("come back later", retry_after=120.0))
        with pytest.raises(NoProviderAvailableError) as info:
            await manager.complete(prompt="hi", provider="primary")
    assert info.value.retry_after == 120.0
    assert len(info.value.attempts) == 1


async def test_max_attempts_then_failover_to_the_fallback_model() -> None:
    cfg = config({"maxAttempts": 3}, primary={"fail": "server_error"})
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(RetryPlugin(),)) as manager:
        response = await manager.complete(prompt="hi", model="primary/p-model")
        counters = manager.extensions["retry"].counters()
    assert (response.provider, response.model) == ("spare", "s-model")
    assert trail(response) == [("primary", "p-model", False)] * 3 + [("spare", "s-model", True)]
    assert counters["retries"] == 2
    assert counters["failovers"] == 1


async def test_a_stream_failing_before_its_first_token_is_retried() -> None:
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(RetryPlugin(),)) as manager:
        scripted(manager, "primary").push(ServerError("boom"), "streamed answer")
        events = [e async for e in manager.stream(prompt="hi", model="primary/p-model")]
    assert isinstance(events[0], StreamStart)
    assert events[0].provider == "primary"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "streamed answer"
    assert [a.ok for a in events[-1].response.attempts] == [False, True]


async def test_the_total_deadline_stops_a_long_backoff() -> None:
    cfg = config({"initialDelay": 5000, "maxDelay": 5000, "jitter": "none"})
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(RetryPlugin(),)) as manager:
        scripted(manager, "primary").push(ServerError("boom"))
        started = anyio.current_time()
        response = await manager.complete(prompt="hi", model="primary/p-model", timeouts={"total": 1000})
    assert anyio.current_time() - started < 0.5
    assert response.provider == "spare"


# ---------------------------------------------------------------------------
# Context length

WINDOWS = {
    "small": {"type": "scripted", "priority": 1, "models": {"s": {"contextWindow": 4096}}},
    "mid": {"type": "scripted", "priority": 2, "models": {"m": {"contextWindow": 8192}}},
    "big": {"type": "scripted", "priority": 3, "models": {"b": {"contextWindow": 131072}}},
    "huge": {"type": "scripted", "priority": 4, "models": {"h": {"contextWindow": 1_000_000}}},
    "plain": {"type": "scripted", "priority": 5, "models": {"p": {}}},
}


async def test_context_length_switches_to_a_larger_context_window() -> None:
    cfg = {"providers": WINDOWS, "optimization": {"retry": {"initialDelay": 1}}}
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(RetryPlugin(),)) as manager:
        too_long = ContextLengthExceededError("maximum context length is 4096 tokens")
        # ~10,000 prompt tokens + 500: the smallest window that fits is big's.
        scripted(manager, "small").push(too_long)
        response = await manager.complete(prompt="word " * 8000, model="small/s", max_tokens=500)
        assert (response.provider, response.model) == ("big", "b")
        assert trail(response) == [("small", "s", False), ("big", "b", True)]
        # A short prompt goes to the next larger window, then larger again.
        scripted(manager, "small").push(too_long)
        scripted(manager, "mid").push(ContextLengthExceededError("still too long"))
        response = await manager.complete(prompt="hi", model="small/s")
        assert trail(response) == [("small", "s", False), ("mid", "m", False), ("big", "b", True)]
        # An unknown window: the smallest configured window that fits.
        scripted(manager, "plain").push(too_long)
        response = await manager.complete(prompt="word " * 8000, model="plain/p")
        assert (response.provider, response.model) == ("big", "b")
        assert manager.extensions["retry"].counters()["model_switches"] == 4


async def test_context_length_with_no_larger_window_fails_over() -> None:
    cfg = {
        "providers": WINDOWS,
        "routing": {"fallbackChains": [["huge", "plain"]]},
        "optimization": {"retry": {"initialDelay": 1}},
    }
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(RetryPlugin(),)) as manager:
        scripted(manager, "huge").push(ContextLengthExceededError("even this is too long"))
        response = await manager.complete(prompt="hi", model="huge/h")
        assert trail(response) == [("huge", "h", False), ("plain", "p", True)]
        # A forced provider stays on that provider: nothing larger there.
        scripted(manager, "small").push(ContextLengthExceededError("too long"))
        with pytest.raises(NoProviderAvailableError):
            await manager.complete(prompt="hi", provider="small", model="s")
        assert len(scripted(manager, "mid").calls) == 0


# ---------------------------------------------------------------------------
# Content filter


async def test_a_content_filter_rejection_is_not_retried_and_its_reason_reaches_the_caller() -> None:
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(RetryPlugin(),)) as manager:
        scripted(manager, "primary").push(ContentFilteredError("refused: the prompt violates the violence policy"))
        with pytest.raises(ContentFilteredError, match="violates the violence policy") as info:
            await manager.complete(prompt="hi", model="primary/p-model")
        assert len(scripted(manager, "primary").calls) == 1
        assert len(scripted(manager, "spare").calls) == 0
        assert manager.extensions["retry"].counters()["aborts"] == 1
    assert [a.error_kind for a in info.value.attempts] == ["content_filtered"]


# ---------------------------------------------------------------------------
# Credentials


def keyed_drivers(pause: float = 0.0) -> tuple[dict[str, Any], list[str | None]]:
    """A provider type that accepts only the key ``good-key`` and logs the key of every call."""
    used: list[str | None] = []

    class Keyed(ScriptedProvider):
        async def complete(self, call: ProviderCall) -> ProviderReply:
            used.append(self.config.api_key)
            if pause:
                await anyio.sleep(pause)
            if self.config.api_key != "good-key":
                raise AuthenticationError("invalid api key", provider=self.name)
            return await super().complete(call)

    return {"swarmgate.providers": {"scripted": ScriptedProvider, "timed": Keyed}}, used


def keyed_config(**retry: Any) -> dict[str, Any]:
    cfg = config(retry)
    cfg["providers"]["primary"]["apiKey"] = "${PRIMARY_KEY}"
    return cfg


def count_refreshes(manager: ProviderManager) -> list[str]:
    calls: list[str] = []
    original = manager.refresh_credentials

    async def counting(name: str) -> bool:
        calls.append(name)
        return await original(name)

    manager.refresh_credentials = counting  # type: ignore[method-assign]
    return calls


async def test_an_authentication_error_refreshes_the_key_and_retries() -> None:
    drivers, used = keyed_drivers()
    env = {"PRIMARY_KEY": "old-key"}
    async with ProviderManager(keyed_config(), drivers=drivers, plugins=(RetryPlugin(),), env=env) as manager:
        refreshes = count_refreshes(manager)
        env["PRIMARY_KEY"] = "good-key"  # rotated in the environment after start-up
        response = await manager.complete(prompt="hi", model="primary/p-model")
        assert (response.provider, response.content) == ("primary", "ok")
        assert used == ["old-key", "good-key"]
        assert refreshes == ["primary"]
        assert manager.config.providers["primary"].api_key == "good-key"


async def test_an_unchanged_key_fails_over_after_one_refresh() -> None:
    drivers, used = keyed_drivers()
    env = {"PRIMARY_KEY": "old-key"}
    async with ProviderManager(keyed_config(), drivers=drivers, plugins=(RetryPlugin(),), env=env) as manager:
        refreshes = count_refreshes(manager)
        response = await manager.complete(prompt="hi", model="primary/p-model")
        assert response.provider == "spare"
        assert used == ["old-key"]
        assert refreshes == ["primary"]
        # A new key that is still wrong: one refresh and one retry per request, then fail over.
        env["PRIMARY_KEY"] = "another-bad-key"
        response = await manager.complete(prompt="hi", model="primary/p-model")
        assert trail(response) == [("primary", "p-model", False)] * 2 + [("spare", "s-model", True)]
        assert used == ["old-key", "old-key", "another-bad-key"]
        assert refreshes == ["primary", "primary"]


async def test_concurrent_authentication_errors_all_pick_up_one_refresh() -> None:
    drivers, used = keyed_drivers(pause=0.03)
    env = {"PRIMARY_KEY": "old-key"}
    async with ProviderManager(keyed_config(), drivers=drivers, plugins=(RetryPlugin(),), env=env) as manager:
        responses: list[Any] = []

        async def one() -> None:
            responses.append(await manager.complete(prompt="hi", model="primary/p-model"))

        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(one)
            await anyio.sleep(0.01)
            env["PRIMARY_KEY"] = "good-key"
    # One refresh changed the key; the others see it changed while their attempt ran.
    assert [r.provider for r in responses] == ["primary"] * 3
    assert sorted(used) == ["good-key"] * 3 + ["old-key"] * 3


async def test_recovery_action_switch_provider_skips_the_refresh() -> None:
    drivers, used = keyed_drivers()
    env = {"PRIMARY_KEY": "old-key"}
    cfg = keyed_config(recoveryActions={"authentication": "switch_provider"})
    async with ProviderManager(cfg, drivers=drivers, plugins=(RetryPlugin(),), env=env) as manager:
        refreshes = count_refreshes(manager)
        env["PRIMARY_KEY"] = "good-key"
        response = await manager.complete(prompt="hi", model="primary/p-model")
    assert response.provider == "spare"
    assert refreshes == []
    assert used == ["old-key"]


# ---------------------------------------------------------------------------
# The guide's errorClassification and recoveryActions


async def test_error_classification_decides_what_is_retried() -> None:
    retry = {"errorClassification": {"retryable": ["timeout", "rate_limit"], "nonRetryable": ["temporary_error"]}}
    async with ProviderManager(config(retry), drivers=DRIVERS, plugins=(RetryPlugin(),)) as manager:
        primary = scripted(manager, "primary")
        primary.push(ServerError("a temporary error: not retried"))
        response = await manager.complete(prompt="hi", model="primary/p-model")
        assert trail(response) == [("primary", "p-model", False), ("spare", "s-model", True)]
        primary.push(RateLimitedError("a rate limit: retried"), "ok")
        response = await manager.complete(prompt="hi", model="primary/p-model")
        assert trail(response) == [("primary", "p-model", False), ("primary", "p-model", True)]


async def test_recovery_actions() -> None:
    retry = {
        "recoveryActions": {"rate_limit": "switch_provider", "timeout": "increase_timeout", "server_error": "abort"}
    }
    async with ProviderManager(config(retry), drivers=DRIVERS, plugins=(RetryPlugin(),)) as manager:
        primary = scripted(manager, "primary")
        primary.push(RateLimitedError("switch at once", retry_after=0.001))
        assert trail(await manager.complete(prompt="hi", model="primary/p-model"))[-1][0] == "spare"
        primary.push(ProviderTimeoutError("slow"))  # increase_timeout: fails over (no per-attempt timeout yet)
        assert trail(await manager.complete(prompt="hi", model="primary/p-model"))[-1][0] == "spare"
        primary.push(ServerError("give up"))
        with pytest.raises(ServerError, match="give up"):
            await manager.complete(prompt="hi", model="primary/p-model")
        assert len(primary.calls) == 3


async def test_a_provider_section_overrides_the_global_one() -> None:
    cfg = config(
        {"maxAttempts": 3},
        primary={"retry": {"maxAttempts": 1}},
        spare={"fail": "overloaded", "retry": {"enabled": False}},
    )
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(RetryPlugin(),)) as manager:
        scripted(manager, "primary").push(ServerError("once"))
        with pytest.raises(NoProviderAvailableError) as info:
            await manager.complete(prompt="hi", model="primary/p-model")
    # primary: one attempt (maxAttempts 1); spare: retry disabled, the kernel fails over (nothing left).
    assert [(a.provider, a.ok) for a in info.value.attempts] == [("primary", False), ("spare", False)]


async def test_a_provider_section_alone_activates_retries_for_that_provider_only() -> None:
    cfg = config(primary={"retry": {"initialDelay": 1, "maxAttempts": 2}}, spare={"fail": "overloaded"})
    del cfg["optimization"]
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(RetryPlugin(),)) as manager:
        scripted(manager, "primary").push(ServerError("boom"), ServerError("boom"))
        with pytest.raises(NoProviderAvailableError) as info:
            await manager.complete(prompt="hi", model="primary/p-model")
    assert [a.provider for a in info.value.attempts] == ["primary", "primary", "spare"]


async def test_no_retry_into_an_open_circuit() -> None:
    class FakeBreaker:
        @hookimpl
        def plugin_setup(self, manager: ProviderManager) -> None:
            manager.extensions["breaker"] = self

        def state(self, target: Target) -> str:
            return "open" if target.provider == "primary" else "closed"

    async with ProviderManager(config(), drivers=DRIVERS, plugins=(RetryPlugin(), FakeBreaker())) as manager:
        scripted(manager, "primary").push(ServerError("boom"), "not reached")
        response = await manager.complete(prompt="hi", model="primary/p-model")
    assert trail(response) == [("primary", "p-model", False), ("spare", "s-model", True)]


async def test_requests_built_in_code_work_too() -> None:
    async with ProviderManager(config(), drivers=DRIVERS, plugins=(RetryPlugin(),)) as manager:
        scripted(manager, "primary").push(ServerError("boom"), "ok")
        request = CompletionRequest.create("hi", model="primary/p-model")
        assert (await manager.complete(request)).provider == "primary"
