"""The request pipeline of ProviderManager, with in-process scripted providers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from swarmgate import (
    CompletionRequest,
    CompletionResponse,
    ErrorEvent,
    FailureDecision,
    FinishEvent,
    InvalidRequestError,
    NoProviderAvailableError,
    ProviderManager,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    StreamStart,
    TextDelta,
    TokenUsage,
    UnknownModelError,
    UsageEvent,
    hookimpl,
)
from swarmgate.testing.scripted import Outcome, ScriptedProvider

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}


def config(**overrides: Any) -> dict[str, Any]:
    providers = {
        "cheap": {
            "type": "scripted",
            "priority": 1,
            "timeout": 500,
            "models": {"small": {"costPerToken": 0.001}, "big": {"costPerToken": 0.01}},
            "defaultModel": "small",
        },
        "fast": {
            "type": "scripted",
            "priority": 2,
            "timeout": 500,
            "models": {"turbo": {"inputCostPerToken": 0.002, "outputCostPerToken": 0.004}},
        },
        "spare": {"type": "scripted", "priority": 3, "timeout": 500, "models": {"small": {"costPerToken": 0.0005}}},
    }
    data: dict[str, Any] = {"providers": providers}
    data.update(overrides)
    return data


async def make(cfg: dict[str, Any] | None = None, plugins: tuple[object, ...] = ()) -> ProviderManager:
    manager = ProviderManager(cfg or config(), drivers=DRIVERS, plugins=plugins)
    await manager.initialize()
    return manager


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


async def test_complete_prices_and_reports_the_answering_target() -> None:
    async with await make() as manager:
        scripted(manager, "cheap").push(Outcome("hello there", usage=(10, 5)))
        response = await manager.complete(prompt="hi")
    assert response.content == "hello there"
    assert (response.provider, response.model) == ("cheap", "small")
    assert response.tokens == TokenUsage(10, 5, 15)
    assert response.cost == pytest.approx(15 * 0.001)
    assert response.latency > 0
    assert response.id.startswith("sg-")
    assert [a.ok for a in response.attempts] == [True]


async def test_separate_input_and_output_prices() -> None:
    async with await make() as manager:
        scripted(manager, "fast").push(Outcome("x", usage=(100, 10)))
        response = await manager.complete(prompt="hi", model="fast/turbo")
    assert response.cost == pytest.approx(100 * 0.002 + 10 * 0.004)


async def test_guide_style_mapping_request() -> None:
    async with await make() as manager:
        response = await manager.complete(
            {"prompt": "Explain swarm intelligence", "model": "auto", "options": {"temperature": 0.7, "maxTokens": 50}}
        )
        call = scripted(manager, "cheap").calls[-1]
    assert response.provider == "cheap"
    assert call.temperature == 0.7
    assert call.max_tokens == 50


async def test_failover_records_every_attempt_and_bills_only_the_answer() -> None:
    async with await make() as manager:
        scripted(manager, "cheap").push(RateLimitedError("slow down", retry_after=3))
        scripted(manager, "spare").push(Outcome("from spare", usage=(4, 4)))
        response = await manager.complete(prompt="hi", model="small")
    assert response.provider == "spare"
    assert [(a.provider, a.ok, a.error_kind) for a in response.attempts] == [
        ("cheap", False, "rate_limited"),
        ("spare", True, None),
    ]
    assert response.cost == pytest.approx(8 * 0.0005)
    assert response.attempts[0].cost == 0


async def test_non_failover_error_aborts_with_attempts() -> None:
    async with await make() as manager:
        scripted(manager, "cheap").push(InvalidRequestError("bad tool schema"))
        with pytest.raises(InvalidRequestError) as info:
            await manager.complete(prompt="hi", model="small")
    assert len(info.value.attempts) == 1
    assert info.value.provider == "cheap"


async def test_all_targets_failing_lists_every_attempt() -> None:
    async with await make() as manager:
        scripted(manager, "cheap").push(ServerError("boom"))
        scripted(manager, "spare").push(RateLimitedError("later", retry_after=7))
        with pytest.raises(NoProviderAvailableError) as info:
            await manager.complete(prompt="hi", model="small")
    error = info.value
    assert [a.provider for a in error.attempts] == ["cheap", "spare"]
    assert "cheap/small: server_error (boom)" in str(error)
    assert isinstance(error.last_error, RateLimitedError)
    assert error.retry_after == 7


async def test_timeout_is_enforced_by_the_kernel() -> None:
    async with await make() as manager:
        scripted(manager, "cheap").push(Outcome("late", delay=5))
        with anyio.fail_after(3):
            response = await manager.complete(prompt="hi", model="small")
    assert response.provider == "spare"
    assert response.attempts[0].error_kind == "timeout"


async def test_driver_bug_becomes_server_error_and_fails_over() -> None:
    class Broken(ScriptedProvider):
        async def complete(self, call: Any) -> Any:
            raise KeyError("oops")

    drivers = {"swarmgate.providers": {"scripted": ScriptedProvider, "broken": Broken}}
    cfg = config()
    cfg["providers"]["cheap"]["type"] = "broken"
    async with ProviderManager(cfg, drivers=drivers) as manager:
        response = await manager.complete(prompt="hi", model="small")
    assert response.provider == "spare"
    assert "KeyError" in (response.attempts[0].error or "")


async def test_unknown_model_names_what_exists() -> None:
    async with await make() as manager:
        with pytest.raises(UnknownModelError, match=r"unknown model 'gpt-9'.*models: \['big', 'small', 'turbo'\]"):
            await manager.complete(prompt="hi", model="gpt-9")
        with pytest.raises(UnknownModelError, match="provider 'fast' has no model 'small'"):
            await manager.complete(prompt="hi", model="fast/small")
        with pytest.raises(UnknownModelError, match="unknown provider 'nope'"):
            await manager.complete(prompt="hi", provider="nope")


async def test_forced_provider_and_model() -> None:
    async with await make() as manager:
        response = await manager.complete(prompt="hi", provider="cheap", model="big")
        assert (response.provider, response.model) == ("cheap", "big")
        scripted(manager, "cheap").push(ServerError("down"))
        with pytest.raises(NoProviderAvailableError):
            await manager.complete(prompt="hi", provider="cheap")


async def test_preferences_exclude_and_prefer() -> None:
    async with await make() as manager:
        response = await manager.complete(prompt="hi", preferences={"exclude": ["cheap"]})
        assert response.provider == "fast"
        response = await manager.complete(prompt="hi", preferences={"providers": ["spare", "fast"]})
        assert response.provider == "spare"


async def test_max_cost_constraint_filters_and_explains() -> None:
    async with await make() as manager:
        response = await manager.complete(prompt="hi", max_tokens=100, preferences={"constraints": {"maxCost": 0.15}})
        assert response.provider == "cheap"
        with pytest.raises(NoProviderAvailableError, match=r"predicted cost .* > maxCost 1e-06"):
            await manager.complete(prompt="hi", max_tokens=100, preferences={"constraints": {"maxCost": 0.000001}})


async def test_min_reliability_uses_observed_outcomes() -> None:
    async with await make() as manager:
        for _ in range(5):
            scripted(manager, "cheap").push(ServerError("flaky"))
            await manager.complete(prompt="hi", model="small")
        response = await manager.complete(
            prompt="hi", model="small", preferences={"constraints": {"minReliability": 0.9}}
        )
    assert response.provider == "spare"
    assert len(response.attempts) == 1


async def test_unhealthy_provider_is_tried_last() -> None:
    async with await make() as manager:
        manager.set_health("cheap", False, "probe failed")
        response = await manager.complete(prompt="hi")
        assert response.provider == "fast"
        manager.set_health("fast", False)
        manager.set_health("spare", False)
        response = await manager.complete(prompt="hi")
        assert response.provider == "cheap"


async def test_round_robin_within_a_priority_tier() -> None:
    cfg = config()
    cfg["providers"]["spare"]["priority"] = 1
    async with await make(cfg) as manager:
        served = [(await manager.complete(prompt="hi", model="small")).provider for _ in range(4)]
    assert served.count("cheap") == 2
    assert served.count("spare") == 2


async def test_routes_ordered_and_unordered() -> None:
    cfg = config(
        routes={
            "quality": {"targets": ["spare/small", "cheap/big"], "ordered": True},
            "any": ["spare/small", "cheap/big"],
        }
    )
    async with await make(cfg) as manager:
        assert (await manager.complete(prompt="hi", model="quality")).provider == "spare"
        assert (await manager.complete(prompt="hi", model="any")).provider == "cheap"
        scripted(manager, "spare").push(ServerError("x"))
        response = await manager.complete(prompt="hi", model="quality")
        assert (response.provider, response.model) == ("cheap", "big")


async def test_fallback_chain_uses_the_fallback_providers_default_model() -> None:
    cfg = config(routing={"fallbackChains": [["fast", "cheap"]]})
    async with await make(cfg) as manager:
        scripted(manager, "fast").push(ServerError("down"))
        response = await manager.complete(prompt="hi", model="turbo")
    assert (response.provider, response.model) == ("cheap", "small")


async def test_retry_decision_from_a_plugin() -> None:
    class RetryOnce:
        @hookimpl
        def on_failure(self, error: Any, context: Any) -> FailureDecision | None:
            if len(context.attempts) < 2:
                return FailureDecision.retry(0.01)
            return None

    async with await make(plugins=(RetryOnce(),)) as manager:
        scripted(manager, "cheap").push(ServerError("blip"), "second time lucky")
        response = await manager.complete(prompt="hi", model="small")
    assert (response.provider, response.content) == ("cheap", "second time lucky")
    assert [a.ok for a in response.attempts] == [False, True]


async def test_endless_retry_is_bounded() -> None:
    class AlwaysRetry:
        @hookimpl
        def on_failure(self) -> FailureDecision:
            return FailureDecision.retry()

    cfg = config()
    cfg["providers"]["cheap"]["fail"] = "server_error"
    async with await make(cfg, plugins=(AlwaysRetry(),)) as manager:
        with pytest.raises(ServerError) as info:
            await manager.complete(prompt="hi", provider="cheap")
    assert len(info.value.attempts) == 32


async def test_before_request_can_rewrite_answer_or_refuse() -> None:
    class Hooks:
        def __init__(self) -> None:
            self.seen: list[CompletionResponse] = []

        @hookimpl
        async def before_request(self, request: CompletionRequest) -> Any:
            text = request.prompt_text()
            if text == "cached?":
                return CompletionResponse("from cache", "cache", "m", 0.0, 0.1, TokenUsage(), "stop", cached=True)
            if text == "refuse":
                raise RateLimitedError("too many requests", retry_after=1)
            if text == "rewrite":
                return CompletionRequest.create("rewritten", model=request.model)
            return None

        @hookimpl
        async def after_response(self, response: CompletionResponse) -> None:
            self.seen.append(response)

    hooks = Hooks()
    async with await make(plugins=(hooks,)) as manager:
        assert (await manager.complete(prompt="cached?")).cached
        with pytest.raises(RateLimitedError):
            await manager.complete(prompt="refuse")
        await manager.complete(prompt="rewrite")
        assert scripted(manager, "cheap").calls[-1].request.prompt_text() == "rewritten"
    # after_response sees the hook's answer (cached) and the provider's, not the refusal
    assert [r.cached for r in hooks.seen] == [True, False]


async def test_failing_after_response_hook_does_not_fail_the_request() -> None:
    class Broken:
        @hookimpl
        def after_response(self) -> None:
            raise RuntimeError("analytics down")

    async with await make(plugins=(Broken(),)) as manager:
        assert (await manager.complete(prompt="hi")).content == "ok"


async def collect(events: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in events]


async def test_stream_events_and_final_response() -> None:
    async with await make() as manager:
        scripted(manager, "cheap").push(Outcome("one two three", usage=(3, 3)))
        events = await collect(manager.stream(prompt="hi"))
    assert isinstance(events[0], StreamStart)
    assert events[0].provider == "cheap"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "one two three"
    usage = next(e for e in events if isinstance(e, UsageEvent))
    assert usage.cost == pytest.approx(6 * 0.001)
    final = events[-1]
    assert isinstance(final, FinishEvent)
    assert final.response is not None
    assert final.response.content == "one two three"
    assert final.response.ttft is not None


async def test_complete_with_stream_true_returns_the_stream() -> None:
    async with await make() as manager:
        events = await collect(await manager.complete(prompt="hi", stream=True))
    assert isinstance(events[-1], FinishEvent)


async def test_stream_fails_over_invisibly_before_the_first_token() -> None:
    async with await make() as manager:
        scripted(manager, "cheap").push(ServerError("down"))
        events = await collect(manager.stream(prompt="hi", model="small"))
    starts = [e for e in events if isinstance(e, StreamStart)]
    assert [s.provider for s in starts] == ["spare"]
    final = events[-1]
    assert isinstance(final, FinishEvent)
    assert final.response is not None
    assert [a.ok for a in final.response.attempts] == [False, True]


async def test_stream_error_after_output_is_raised_or_reported() -> None:
    async with await make() as manager:
        broken = Outcome("a b c d", error=ServerError("cut"), fail_after=2)
        scripted(manager, "cheap").push(broken)
        with pytest.raises(ServerError) as info:
            await collect(manager.stream(prompt="hi", model="small"))
        assert info.value.attempts[0].cost > 0
        scripted(manager, "cheap").push(broken)
        events = await collect(manager.stream(prompt="hi", model="small", errors="event"))
    assert isinstance(events[-1], ErrorEvent)
    assert events[-1].partial == "a b "
    assert not any(isinstance(e, StreamStart) and e.provider == "spare" for e in events)


async def test_stream_stall_times_out() -> None:
    async with await make() as manager:
        scripted(manager, "cheap").push(Outcome("late", delay=5))
        with anyio.fail_after(3):
            events = await collect(manager.stream(prompt="hi", model="small"))
    final = events[-1]
    assert isinstance(final, FinishEvent)
    assert final.response is not None
    assert final.response.attempts[0].error_kind == "timeout"


async def test_closing_a_stream_early_releases_the_provider() -> None:
    async with await make() as manager:
        scripted(manager, "cheap").push(Outcome("a b c d e f"))
        stream = manager.stream(prompt="hi")
        async for event in stream:
            if isinstance(event, TextDelta):
                break
        await stream.aclose()
        handle = manager.handle("cheap")
        assert handle is not None
        assert handle.inflight == 0


async def test_provider_changes_while_requests_are_in_flight() -> None:
    async with await make() as manager:
        old = scripted(manager, "cheap")
        old.push(Outcome("slow answer", delay=0.2))
        results: list[CompletionResponse] = []

        async def slow() -> None:
            results.append(await manager.complete(prompt="hi", provider="cheap"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            await anyio.sleep(0.05)
            await manager.update_provider("cheap", {"content": "new config"})
            assert not old.closed
            assert (await manager.complete(prompt="hi", provider="cheap")).content == "new config"
        assert results[0].content == "slow answer"
        assert old.closed

        await manager.add_provider("extra", {"type": "scripted", "models": {"x": {}}, "content": "added"})
        assert (await manager.complete(prompt="hi", model="x")).content == "added"
        await manager.remove_provider("extra")
        with pytest.raises(UnknownModelError):
            await manager.complete(prompt="hi", model="x")
        assert "extra" not in manager.config.providers


async def test_complete_with_chain_feeds_each_step_the_previous_answer() -> None:
    async with await make() as manager:
        scripted(manager, "cheap").push(Outcome("draft", usage=(2, 2)))
        scripted(manager, "fast").push(Outcome("final", usage=(3, 3)))
        response = await manager.complete_with_chain(
            prompt="Complex task",
            chain=[{"provider": "cheap", "task": "initial_analysis"}, {"provider": "fast", "task": "refinement"}],
        )
        second_call = scripted(manager, "fast").calls[-1]
    assert response.content == "final"
    assert response.tokens.total == 10
    assert len(response.metadata["chain"]) == 2
    assert [m.content for m in second_call.request.messages][-2:] == [
        "draft",
        "Task: refinement. Improve the answer above accordingly.",
    ]


async def test_health_checks_go_through_the_hook() -> None:
    cfg = config()
    cfg["providers"]["fast"]["healthy"] = False
    async with await make(cfg) as manager:
        status = await manager.check_health()
    assert status["cheap"].healthy
    assert not status["fast"].healthy
    assert status["fast"].latency is not None


async def test_use_before_initialize_is_a_clear_error() -> None:
    manager = ProviderManager(config(), drivers=DRIVERS)
    with pytest.raises(RuntimeError, match="not initialized"):
        await manager.complete(prompt="hi")


async def test_malformed_requests_name_the_field() -> None:
    async with await make() as manager:
        with pytest.raises(InvalidRequestError, match="needs a 'prompt' or at least one message"):
            await manager.complete(model="auto")
        with pytest.raises(InvalidRequestError, match="'max_tokens' must be an integer"):
            await manager.complete(prompt="hi", max_tokens="ten")
        with pytest.raises(InvalidRequestError, match="unknown request field"):
            await manager.complete(prompt="hi", temprature=1)
        with pytest.raises(InvalidRequestError, match="message role"):
            await manager.complete(messages=[{"role": "wizard", "content": "x"}])


async def test_timeout_error_is_typed() -> None:
    cfg = config()
    cfg["providers"]["cheap"]["timeout"] = 50
    async with await make(cfg) as manager:
        scripted(manager, "cheap").push(Outcome(delay=1))
        with pytest.raises(NoProviderAvailableError) as info:
            await manager.complete(prompt="hi", provider="cheap")
    assert isinstance(info.value.last_error, ProviderTimeoutError)


async def test_missing_usage_is_estimated_and_flagged() -> None:
    async with await make() as manager:
        scripted(manager, "cheap").push(Outcome("four words of text", usage=(0, 0)))
        response = await manager.complete(prompt="a prompt")
    assert response.tokens.output == 5
    assert response.metadata["usage_estimated"] is True
    assert response.cost > 0


async def test_a_cost_reported_by_the_driver_wins_over_pricing() -> None:
    async with await make() as manager:
        scripted(manager, "cheap").push(Outcome("meta", usage=(10, 10), cost=0.5), Outcome("meta", cost=0.25))
        assert (await manager.complete(prompt="hi")).cost == 0.5
        events = await collect(manager.stream(prompt="hi"))
        assert manager.provider("fast").manager is manager
    assert events[-1].response.cost == 0.25


async def test_stream_finish_metadata_and_failed_call_cost_are_kept() -> None:
    class Meta(ScriptedProvider):
        async def stream(self, call: Any) -> Any:
            yield TextDelta("x")
            yield FinishEvent("stop", metadata={"winner": "a/m"})

        async def complete(self, call: Any) -> Any:
            error = ServerError("inner calls failed")
            error.cost = 0.125
            raise error

    drivers = {"swarmgate.providers": {"scripted": ScriptedProvider, "meta": Meta}}
    cfg = config()
    cfg["providers"]["cheap"]["type"] = "meta"
    async with ProviderManager(cfg, drivers=drivers) as manager:
        events = await collect(manager.stream(prompt="hi", provider="cheap"))
        with pytest.raises(NoProviderAvailableError) as info:
            await manager.complete(prompt="hi", provider="cheap")
    assert events[-1].response.metadata["winner"] == "a/m"
    assert info.value.attempts[0].cost == 0.125


async def test_filter_targets_switch_and_refresh_credentials() -> None:
    class Breaker:
        @hookimpl
        def filter_targets(self, candidates: Any) -> list[tuple[Any, str]]:
            return [(t, "circuit open") for t in candidates if t.provider == "cheap"]

    class Upgrade:
        @hookimpl
        def on_failure(self, error: Any) -> FailureDecision | None:
            from swarmgate import Target

            if error.kind.value == "context_length_exceeded":
                return FailureDecision.switch(Target("fast", "turbo"))
            return None

    env = {"KEY": "old-key-1234"}
    cfg = config()
    cfg["providers"]["spare"]["apiKey"] = "${KEY}"
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(Breaker(), Upgrade()), env=env) as manager:
        assert (await manager.complete(prompt="hi")).provider == "fast"
        with pytest.raises(NoProviderAvailableError, match="cheap/small: circuit open"):
            await manager.complete(prompt="hi", provider="cheap")
        from swarmgate import ContextLengthExceededError

        scripted(manager, "spare").push(ContextLengthExceededError("too long"))
        response = await manager.complete(prompt="hi", provider="spare")
        assert (response.provider, response.model) == ("fast", "turbo")
        assert not await manager.refresh_credentials("spare")
        env["KEY"] = "new-key-5678"
        assert await manager.refresh_credentials("spare")
        assert manager.config.providers["spare"].api_key == "new-key-5678"


async def test_health_marks_from_several_sources_must_all_agree() -> None:
    async with await make() as manager:
        manager.set_health("cheap", False, "probe failed", source="health")
        manager.set_health("cheap", False, "circuit open", source="breaker")
        manager.set_health("cheap", True, source="health")
        handle = manager.handle("cheap")
        assert handle is not None
        assert not handle.healthy
        assert handle.health_detail == "circuit open"
        manager.set_health("cheap", True, source="breaker")
        assert handle.healthy


async def test_a_hanging_health_probe_is_bounded_by_the_provider_timeout() -> None:
    class Hanging(ScriptedProvider):
        async def health_check(self) -> Any:
            await anyio.sleep(10)

    cfg = config()
    cfg["providers"]["cheap"]["type"] = "hanging"
    drivers = {"swarmgate.providers": {"scripted": ScriptedProvider, "hanging": Hanging}}
    async with ProviderManager(cfg, drivers=drivers) as manager:
        with anyio.fail_after(2):
            status = (await manager.check_health("cheap"))["cheap"]
    assert not status.healthy
    assert "within 500 ms" in status.detail
