"""before_attempt, request_failed, cancellation records, alerts and caller policies."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from swarmgate import (
    Alert,
    BudgetExceededError,
    CacheControl,
    CallerPolicy,
    CompletionRequest,
    CompletionResponse,
    InvalidRequestError,
    NoProviderAvailableError,
    ProviderManager,
    RateLimitedError,
    RequestCancelledError,
    ServerError,
    SwarmgateError,
    Target,
    TextDelta,
    TokenUsage,
    hookimpl,
)
from swarmgate.manager import RequestContext
from swarmgate.requests import build_request
from swarmgate.testing.scripted import Outcome, ScriptedProvider

from .test_pipeline import config, make, scripted

pytestmark = pytest.mark.anyio


class Recorder:
    """Records what the observer hooks see."""

    def __init__(self) -> None:
        self.answered: list[CompletionResponse] = []
        self.failed: list[tuple[SwarmgateError, list[Any]]] = []
        self.admitted: list[Target] = []
        self.refuse: dict[str, SwarmgateError] = {}

    @hookimpl
    def before_attempt(self, target: Target) -> None:
        self.admitted.append(target)
        error = self.refuse.get(target.provider)
        if error is not None:
            raise error

    @hookimpl
    def after_response(self, response: CompletionResponse) -> None:
        self.answered.append(response)

    @hookimpl
    async def request_failed(self, error: SwarmgateError, context: RequestContext) -> None:
        await anyio.lowlevel.checkpoint()  # runs shielded even when the request was cancelled
        self.failed.append((error, list(context.attempts)))


class ProviderRefusal(BudgetExceededError):
    failover = True


async def test_before_attempt_refusal_fails_over_without_calling_the_provider() -> None:
    recorder = Recorder()
    recorder.refuse["cheap"] = ProviderRefusal("budget 'provider:cheap' exhausted")
    async with await make(plugins=(recorder,)) as manager:
        response = await manager.complete(prompt="hi", model="auto")
        assert response.provider != "cheap"
        assert scripted(manager, "cheap").calls == []
    first = response.attempts[0]
    assert (first.provider, first.refused, first.error_kind, first.latency) == ("cheap", True, "budget_exceeded", 0.0)
    assert recorder.answered == [response]
    assert recorder.failed == []


async def test_a_refusal_that_does_not_fail_over_aborts_with_that_error() -> None:
    recorder = Recorder()
    recorder.refuse["cheap"] = BudgetExceededError("budget 'global:daily' of 1.00 reached; resets 2026-11-26T00:00Z")
    async with await make(plugins=(recorder,)) as manager:
        with pytest.raises(BudgetExceededError, match="global:daily") as info:
            await manager.complete(prompt="hi")
    assert [a.refused for a in info.value.attempts] == [True]
    assert [type(e) for e, _ in recorder.failed] == [BudgetExceededError]


async def test_every_target_refused_the_same_way_raises_the_refusal_not_503() -> None:
    recorder = Recorder()
    for name in ("cheap", "fast", "spare"):
        recorder.refuse[name] = type("Limited", (RateLimitedError,), {"failover": True})(
            f"{name} at its limit", retry_after=2.0
        )
    async with await make(plugins=(recorder,)) as manager:
        with pytest.raises(RateLimitedError) as info:
            await manager.complete(prompt="hi")
    assert info.value.retry_after == 2.0
    assert len(info.value.attempts) == 3
    assert all(a.refused for a in info.value.attempts)


async def test_request_failed_runs_once_for_refusals_and_exhaustion() -> None:
    class Refuse:
        @hookimpl
        def before_request(self, request: CompletionRequest) -> None:
            if request.prompt_text() == "no":
                raise RateLimitedError("slow down", retry_after=1.0)

    recorder = Recorder()
    cfg = config()
    for provider in cfg["providers"].values():
        provider["fail"] = "server_error"
    async with await make(cfg, plugins=(recorder, Refuse())) as manager:
        with pytest.raises(RateLimitedError):
            await manager.complete(prompt="no")
        with pytest.raises(NoProviderAvailableError):
            await manager.complete(prompt="hi", model="auto")
        with pytest.raises(NoProviderAvailableError):
            async for _ in manager.stream(prompt="hi", model="auto"):
                pass
    kinds = [type(error) for error, _ in recorder.failed]
    assert kinds == [RateLimitedError, NoProviderAvailableError, NoProviderAvailableError]
    assert recorder.answered == []


async def test_a_stream_closed_early_records_the_partial_usage_and_reports_cancelled() -> None:
    recorder = Recorder()
    async with await make(plugins=(recorder,)) as manager:
        scripted(manager, "cheap").push(Outcome(chunks=("one ", "two ", "three ", "four"), usage=None))
        async with aclosing(manager.stream(prompt="count", provider="cheap")) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    break  # the caller goes away after the first chunk
    [(error, attempts)] = recorder.failed
    assert isinstance(error, RequestCancelledError)
    assert error.status_code == 499
    [attempt] = attempts
    assert (attempt.ok, attempt.error_kind) == (False, "cancelled")
    assert attempt.tokens.output >= 1  # "one " was delivered and is paid for
    assert attempt.cost == pytest.approx(attempt.tokens.total * 0.001)
    assert recorder.answered == []


async def test_a_cancelled_complete_records_a_cancelled_attempt() -> None:
    recorder = Recorder()
    async with await make(plugins=(recorder,)) as manager:
        scripted(manager, "cheap").push(Outcome("late", delay=5.0))
        with anyio.move_on_after(0.05):
            await manager.complete(prompt="hi", provider="cheap")
    [(error, attempts)] = recorder.failed
    assert isinstance(error, RequestCancelledError)
    assert [(a.provider, a.error_kind) for a in attempts] == [("cheap", "cancelled")]


async def test_a_bug_in_a_hook_is_reported_as_an_internal_error() -> None:
    class Buggy:
        @hookimpl
        def before_request(self) -> None:
            raise KeyError("oops")

    recorder = Recorder()
    async with await make(plugins=(recorder, Buggy())) as manager:
        with pytest.raises(KeyError):
            await manager.complete(prompt="hi")
    [(error, _)] = recorder.failed
    assert isinstance(error, ServerError)
    assert "KeyError" in error.message


async def test_a_cache_hit_reaches_after_response_in_streams_too() -> None:
    cached = CompletionResponse("from cache", "cheap", "small", 0.0, 0.1, TokenUsage(3, 2), "stop", cached=True)

    class Cache:
        @hookimpl
        def before_request(self) -> CompletionResponse:
            return cached

    recorder = Recorder()
    async with await make(plugins=(recorder, Cache())) as manager:
        text = [e.text async for e in manager.stream(prompt="hi") if isinstance(e, TextDelta)]
    assert text == ["from cache"]
    assert recorder.answered == [cached]
    assert recorder.admitted == []


async def test_alerts_reach_callbacks_and_the_deliver_hook_off_the_request_path() -> None:
    delivered: list[Alert] = []
    seen: list[str] = []

    class Deliver:
        @hookimpl
        async def deliver_alert(self, alert: Alert) -> None:
            delivered.append(alert)

    manager = ProviderManager(
        config(), drivers={"swarmgate.providers": {"scripted": ScriptedProvider}}, plugins=(Deliver(),)
    )
    unsubscribe_early = manager.on_alert(lambda alert: seen.append("early:" + alert.type))
    async with manager:

        async def later(alert: Alert) -> None:
            seen.append("async:" + alert.type)

        manager.on_alert(later)
        manager.set_health("cheap", False, "probe failed", source="test")
        manager.set_health("cheap", False, "still failing", source="test")  # no second alert
        manager.set_health("cheap", True, source="test")
        assert manager.alerts is not None
        with anyio.fail_after(5):
            await manager.alerts.drain()  # delivery is asynchronous: callbacks present at delivery count
        unsubscribe_early()
        manager.emit_alert(Alert("custom", "hello"))
        assert manager.alerts is not None
        with anyio.fail_after(5):
            await manager.alerts.drain()
    assert [a.type for a in delivered] == ["provider_down", "provider_recovered", "custom"]
    assert delivered[0].provider == "cheap"
    assert "probe failed" in delivered[0].message
    assert seen == [
        "early:provider_down",
        "async:provider_down",
        "early:provider_recovered",
        "async:provider_recovered",
        "async:custom",
    ]


async def test_caller_policies_come_from_the_first_directory_that_knows_the_caller() -> None:
    class Directory:
        def __init__(self, known: dict[str, CallerPolicy]) -> None:
            self.known = known

        def policy(self, caller: str) -> CallerPolicy | None:
            return self.known.get(caller)

    async with await make() as manager:
        assert manager.caller_directories == ()
        first = Directory({"team-a": CallerPolicy(daily_budget=5.0)})
        second = Directory({"team-a": CallerPolicy(daily_budget=9.0), "team-b": CallerPolicy()})
        manager.add_caller_directory(first)
        manager.add_caller_directory(second)
        assert manager.caller_directories == (first, second)
        assert manager.caller_policy("team-a").daily_budget == 5.0
        assert manager.caller_policy("team-b") == CallerPolicy()
        assert manager.caller_policy("nobody") == CallerPolicy()
        assert manager.caller_policy(None) == CallerPolicy()


async def test_analytics_facade_names_the_missing_distribution() -> None:
    from swarmgate import PluginError

    async with await make() as manager:
        manager.extensions.pop("analytics", None)
        with pytest.raises(PluginError, match="swarmgate-analytics"):
            await manager.get_analytics()


def test_caller_and_cache_control_parse_from_mappings() -> None:
    request = build_request({"prompt": "hi", "caller": "team-a", "cache": {"noCache": True, "ttl": 30}}, {})
    assert request.caller == "team-a"
    assert request.cache == CacheControl(bypass=True, ttl=30)
    with pytest.raises(InvalidRequestError, match="unknown key"):
        build_request({"prompt": "hi", "cache": {"forever": True}}, {})
    with pytest.raises(InvalidRequestError, match=r"cache\.ttl"):
        build_request({"prompt": "hi", "cache": {"ttl": -1}}, {})
    with pytest.raises(InvalidRequestError, match="caller"):
        build_request({"prompt": "hi", "caller": ""}, {})


async def test_a_capability_switched_on_without_its_plugin_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarmgate import ConfigError

    monkeypatch.setenv("SWARMGATE_DISABLE_PLUGINS", "encryption,cache")
    cfg = config(security={"encryption": {"enabled": True}}, optimization={"caching": {"enabled": False}})
    with pytest.raises(ConfigError, match="swarmgate-encryption") as info:
        await make(cfg)
    assert [path for path, _ in info.value.problems] == ["security.encryption"]  # caching is switched off
