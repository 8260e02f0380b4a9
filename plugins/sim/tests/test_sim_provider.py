"""The sim provider's profile: latency, length, failures, outages, honesty, settings."""

from __future__ import annotations

import collections
import types
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import swarmgate_sim
from swarmgate import (
    CompletionRequest,
    ConfigError,
    ErrorEvent,
    FinishEvent,
    ModelConfig,
    OverloadedError,
    ProviderCall,
    ProviderConfig,
    ProviderConnectionError,
    ProviderManager,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    SwarmgateError,
    TextDelta,
    UsageEvent,
    parse_section,
)
from swarmgate.stats import estimate_tokens
from swarmgate_sim import SimProvider, SimSettings
from swarmgate_sim import provider as provider_module

FAST = {"timeScale": 0}


def make(
    settings: dict[str, Any] | None = None,
    *,
    name: str = "sim-x",
    clock: Callable[[], float] | None = None,
    timeout_ms: float = 60_000,
    max_tokens: int | None = None,
) -> SimProvider:
    """A provider built the way the kernel builds it (config -> settings -> instance)."""
    raw = {"type": "sim", "timeout": timeout_ms, "models": {"m": {"maxTokens": max_tokens}}, **(settings or {})}
    config = parse_section(ProviderConfig, raw, f"providers.{name}")
    return SimProvider(name, config, parse_section(SimSettings, config.settings, f"providers.{name}"), clock=clock)


def call_for(provider: SimProvider, prompt: str = "Explain swarm intelligence", **fields: Any) -> ProviderCall:
    request = CompletionRequest.create(prompt, **fields)
    model = provider.config.models.get("m", ModelConfig())
    return ProviderCall(request, "m", "m", model, provider.config.timeout / 1000.0)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def collect(provider: SimProvider, call: ProviderCall, into: list[Any] | None = None) -> list[Any]:
    """Every event of a stream (also appended to ``into`` as they come, for streams that fail)."""
    events = [] if into is None else into
    async for event in provider.stream(call):
        events.append(event)
    return events


# -- latency -------------------------------------------------------------------


@pytest.mark.anyio
async def test_zero_latency_mode_never_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> None:
        raise AssertionError("timeScale 0 must not sleep")

    monkeypatch.setattr(
        provider_module, "anyio", types.SimpleNamespace(sleep=boom, sleep_until=boom, current_time=boom)
    )
    provider = make(
        {"timeScale": 0, "ttftMs": 60_000, "tokensPerSecond": 0.01, "errorLatencyMs": 60_000, "failureRate": 0.5,
         "failureKinds": {"timeout": 1, "server_error": 1}, "seed": 3}
    )  # fmt: skip
    outcomes = collections.Counter()
    for _ in range(50):
        try:
            await provider.complete(call_for(provider))
            outcomes["ok"] += 1
        except SwarmgateError as error:
            outcomes[error.kind.value] += 1
        try:
            await collect(provider, call_for(provider))
        except SwarmgateError:
            pass
    assert outcomes["ok"] > 0
    assert outcomes["timeout"] > 0
    assert outcomes["server_error"] > 0


@pytest.mark.anyio
async def test_complete_takes_ttft_plus_output_time() -> None:
    provider = make({"ttftMs": 80, "ttftJitter": 0, "tokensPerSecond": 400, "outputTokens": [40, 40]})
    started = anyio.current_time()
    reply = await provider.complete(call_for(provider))
    elapsed = anyio.current_time() - started
    expected = 0.080 + reply.tokens.output / 400
    assert expected - 0.005 <= elapsed < expected + 0.1


@pytest.mark.anyio
async def test_stream_is_paced_ttft_then_tokens_per_second() -> None:
    provider = make({"ttftMs": 100, "ttftJitter": 0, "tokensPerSecond": 200, "outputTokens": [40, 40]})
    started = anyio.current_time()
    stamps: list[tuple[float, Any]] = []
    async for event in provider.stream(call_for(provider)):
        stamps.append((anyio.current_time() - started, event))
    deltas = [(t, e) for t, e in stamps if isinstance(e, TextDelta)]
    usage = next(e for _, e in stamps if isinstance(e, UsageEvent))
    assert isinstance(stamps[-1][1], FinishEvent)
    first, last = deltas[0][0], deltas[-1][0]
    assert 0.095 <= first < 0.2
    output_time = usage.tokens.output / 200
    assert output_time - 0.01 <= last - first < output_time + 0.15
    # Evenly spread: the middle word arrives about half-way through the output time.
    middle = deltas[len(deltas) // 2][0] - first
    assert abs(middle - output_time / 2) < 0.06


@pytest.mark.anyio
async def test_time_scale_shrinks_the_waits() -> None:
    slow = {"ttftMs": 400, "ttftJitter": 0, "tokensPerSecond": 100, "outputTokens": [40, 40]}
    provider = make({**slow, "timeScale": 0.1})
    started = anyio.current_time()
    reply = await provider.complete(call_for(provider))
    elapsed = anyio.current_time() - started
    expected = (0.4 + reply.tokens.output / 100) * 0.1
    assert expected - 0.005 <= elapsed < expected + 0.08


# -- length and honesty ----------------------------------------------------------


@pytest.mark.anyio
async def test_reply_is_honest_and_counted() -> None:
    provider = make({**FAST, "outputTokens": [60, 120]})
    call = call_for(provider, "Explain swarm intelligence", system="Be brief.")
    reply = await provider.complete(call)
    marker = "[simulated sim-x/m]"
    assert reply.content.startswith(marker + " ")
    assert reply.metadata == {"simulated": True}
    assert reply.finish_reason == "stop"
    assert reply.content.endswith(".")  # a natural stop ends a sentence
    body = reply.content[len(marker) :]
    assert reply.tokens.input == estimate_tokens(call.request.prompt_text())
    assert reply.tokens.output == estimate_tokens(body)
    assert reply.tokens.total == reply.tokens.input + reply.tokens.output
    assert reply.tokens.output <= 120


@pytest.mark.anyio
async def test_content_is_derived_from_the_prompt() -> None:
    provider = make({**FAST, "outputTokens": [50, 50]})
    one = await provider.complete(call_for(provider, "first prompt"))
    again = await provider.complete(call_for(provider, "first prompt"))
    other = await provider.complete(call_for(provider, "a different prompt"))
    assert one.content == again.content
    assert one.content != other.content


@pytest.mark.anyio
async def test_max_tokens_cuts_the_output() -> None:
    provider = make({**FAST, "outputTokens": [100, 200]})
    reply = await provider.complete(call_for(provider, max_tokens=10))
    assert reply.finish_reason == "length"
    assert 0 < reply.tokens.output <= 10
    events = await collect(provider, call_for(provider, max_tokens=10))
    assert events[-1] == FinishEvent("length")
    # The model's configured maxTokens applies when the request sets none.
    capped = make({**FAST, "outputTokens": [100, 200]}, max_tokens=7)
    reply = await capped.complete(call_for(capped))
    assert reply.finish_reason == "length"
    assert reply.tokens.output <= 7


@pytest.mark.anyio
async def test_output_length_derived_from_max_tokens() -> None:
    provider = make({**FAST, "outputTokens": None, "seed": 5})
    lengths = [(await provider.complete(call_for(provider, max_tokens=400))).tokens.output for _ in range(40)]
    assert all(0 < n <= 200 for n in lengths)
    assert max(lengths) - min(lengths) > 20  # it varies
    unset = [(await provider.complete(call_for(provider))).tokens.output for _ in range(20)]
    assert all(0 < n <= 128 for n in unset)


@pytest.mark.anyio
async def test_stream_matches_complete() -> None:
    provider = make({**FAST, "outputTokens": [80, 80]})
    reply = await provider.complete(call_for(provider))
    events = await collect(provider, call_for(provider))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == reply.content
    assert [type(e) for e in events[-2:]] == [UsageEvent, FinishEvent]
    assert events[-2].tokens == reply.tokens
    assert sum(isinstance(e, TextDelta) for e in events) > 10  # one delta per word


# -- failures ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_seeded_failure_rate_and_kinds() -> None:
    settings = {
        **FAST,
        "failureRate": 0.3,
        "failureKinds": {"rate_limited": 1, "overloaded": 1, "server_error": 2},
        "seed": 11,
    }
    provider = make(settings)
    classes = {"rate_limited": RateLimitedError, "overloaded": OverloadedError, "server_error": ServerError}
    runs = 2000
    errors: list[SwarmgateError] = []
    for _ in range(runs):
        try:
            await provider.complete(call_for(provider))
        except SwarmgateError as error:
            errors.append(error)
    for error in errors:
        assert isinstance(error, classes[error.kind.value])
        assert (error.provider, error.model) == ("sim-x", "m")
        assert error.message.startswith("simulated ")
    kinds = collections.Counter(error.kind.value for error in errors)
    failures = sum(kinds.values())
    assert 0.26 * runs <= failures <= 0.34 * runs
    assert 0.19 <= kinds["rate_limited"] / failures <= 0.31
    assert 0.40 <= kinds["server_error"] / failures <= 0.60


@pytest.mark.anyio
async def test_same_seed_same_run_other_seed_other_run() -> None:
    async def run(seed: int) -> list[str]:
        provider = make({**FAST, "failureRate": 0.5, "seed": seed, "outputTokens": [10, 300]})
        out = []
        for _ in range(60):
            try:
                out.append(str((await provider.complete(call_for(provider))).tokens.output))
            except SwarmgateError as error:
                out.append(error.kind.value)
        return out

    assert await run(1) == await run(1)
    assert await run(1) != await run(2)


@pytest.mark.anyio
async def test_rate_limit_carries_scaled_retry_after() -> None:
    provider = make(
        {"timeScale": 0.5, "failureRate": 1, "failureKinds": {"rate_limited": 1}, "retryAfterS": 3,
         "errorLatencyMs": 0}
    )  # fmt: skip
    with pytest.raises(RateLimitedError) as caught:
        await provider.complete(call_for(provider))
    assert caught.value.retry_after == pytest.approx(1.5)
    assert caught.value.upstream_status == 429


@pytest.mark.anyio
async def test_simulated_timeout_takes_the_provider_timeout() -> None:
    provider = make({"timeScale": 0.1, "failureRate": 1, "failureKinds": {"timeout": 1}}, timeout_ms=500)
    started = anyio.current_time()
    with pytest.raises(ProviderTimeoutError):
        await provider.complete(call_for(provider))
    assert 0.045 <= anyio.current_time() - started < 0.25


@pytest.mark.anyio
async def test_mid_stream_failure_breaks_after_some_words() -> None:
    provider = make({**FAST, "midStreamFailureRate": 1, "outputTokens": [60, 60], "seed": 4})
    received: list[Any] = []
    with pytest.raises(ProviderConnectionError, match="mid-stream"):
        await collect(provider, call_for(provider), received)
    assert received
    assert received[0].text.startswith("[simulated sim-x/m]")
    assert all(isinstance(e, TextDelta) for e in received)
    # complete() is not affected by midStreamFailureRate.
    assert (await provider.complete(call_for(provider))).finish_reason == "stop"


@pytest.mark.anyio
async def test_mid_stream_failure_through_the_manager_does_not_fail_over() -> None:
    config = {
        "providers": {
            "sim-broken": {"type": "sim", "priority": 1, "models": {"a": {}}, **FAST, "midStreamFailureRate": 1},
            "sim-ok": {"type": "sim", "priority": 2, "models": {"b": {}}, **FAST},
        }
    }
    async with ProviderManager(config) as manager:
        events = [event async for event in manager.stream(prompt="hi", errors="event")]
    error_event = events[-1]
    assert isinstance(error_event, ErrorEvent)
    assert isinstance(error_event.error, ProviderConnectionError)
    assert error_event.partial.startswith("[simulated sim-broken/a]")
    assert [(a.provider, a.ok) for a in error_event.error.attempts] == [("sim-broken", False)]


# -- outages -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_outage_window_fails_then_recovers() -> None:
    clock = FakeClock()
    provider = make({**FAST, "outages": [{"startS": 5, "durationS": 3}]}, clock=clock)
    await provider.start()
    clock.now = 1.0
    assert (await provider.complete(call_for(provider))).content
    assert (await provider.health_check()).healthy
    clock.now = 5.5
    with pytest.raises(ProviderConnectionError, match="outage"):
        await provider.complete(call_for(provider))
    with pytest.raises(ProviderConnectionError):
        await collect(provider, call_for(provider))
    status = await provider.health_check()
    assert not status.healthy
    assert "outage" in status.detail
    clock.now = 8.01
    assert (await provider.complete(call_for(provider))).content
    assert (await provider.health_check()).healthy


@pytest.mark.anyio
async def test_periodic_outage_and_its_kind() -> None:
    clock = FakeClock()
    provider = make(
        {**FAST, "outages": [{"startS": 2, "durationS": 1, "everyS": 10, "kind": "overloaded"}]}, clock=clock
    )
    await provider.start()
    timeline = {0.5: True, 2.2: False, 3.5: True, 12.1: False, 12.9: False, 13.2: True, 22.5: False}
    for at, ok in timeline.items():
        clock.now = at
        if ok:
            await provider.complete(call_for(provider))
        else:
            with pytest.raises(OverloadedError) as caught:
                await provider.complete(call_for(provider))
            assert caught.value.retry_after is not None
            assert 0 < caught.value.retry_after <= 1.0


@pytest.mark.anyio
async def test_outage_windows_are_in_simulated_time() -> None:
    clock = FakeClock()
    provider = make({"timeScale": 0.1, "errorLatencyMs": 0, "ttftMs": 0, "outages": [{"startS": 10, "durationS": 5}]},
                    clock=clock)  # fmt: skip
    await provider.start()
    clock.now = 0.9  # 9 simulated seconds
    assert (await provider.health_check()).healthy
    clock.now = 1.2  # 12 simulated seconds
    assert not (await provider.health_check()).healthy
    with pytest.raises(ProviderConnectionError) as caught:
        await provider.complete(call_for(provider))
    assert caught.value.retry_after == pytest.approx(0.3)  # 3 simulated seconds left, scaled
    clock.now = 1.6
    assert (await provider.health_check()).healthy


@pytest.mark.anyio
async def test_outage_counts_from_start() -> None:
    clock = FakeClock()
    clock.now = 100.0
    provider = make({**FAST, "outages": [{"startS": 0, "durationS": 2}]}, clock=clock)
    clock.now = 200.0
    await provider.start()
    assert not (await provider.health_check()).healthy
    clock.now = 202.5
    assert (await provider.health_check()).healthy


# -- settings ---------------------------------------------------------------------------


async def config_error(provider: dict[str, Any]) -> ConfigError:
    config = {"providers": {"x": {"type": "sim", "models": {"m": {}}, **provider}}}
    with pytest.raises(ConfigError) as caught:
        async with ProviderManager(config):
            pass
    return caught.value


@pytest.mark.anyio
async def test_settings_out_of_range_name_their_paths() -> None:
    error = await config_error(
        {
            "failureRate": 1.5,
            "midStreamFailureRate": -0.1,
            "failureKinds": {"bogus": 1, "rate_limited": -1},
            "outputTokens": [50, 10],
            "tokensPerSecond": 0,
            "outages": [{"startS": 1, "durationS": 0}, {"startS": 1, "durationS": 5, "everyS": 2, "kind": "nope"}],
        }
    )
    problems = dict(error.problems)
    assert "between 0 and 1" in problems["providers.x.failureRate"]
    assert "between 0 and 1" in problems["providers.x.midStreamFailureRate"]
    assert "valid kinds: authentication, connection_error" in problems["providers.x.failureKinds.bogus"]
    assert "negative" in problems["providers.x.failureKinds.rate_limited"]
    assert "min <= max" in problems["providers.x.outputTokens"]
    assert "positive" in problems["providers.x.tokensPerSecond"]
    assert "positive" in problems["providers.x.outages[0].durationS"]
    assert "longer than durationS" in problems["providers.x.outages[1].everyS"]
    assert "unknown failure kind 'nope'" in problems["providers.x.outages[1].kind"]
    assert "providers.x.failureRate" in str(error)


@pytest.mark.anyio
async def test_settings_types_and_unknown_keys_are_reported_by_path() -> None:
    error = await config_error({"failureRate": "often", "failureRat": 0.1, "outages": [{"durationS": 1}]})
    problems = dict(error.problems)
    assert problems["providers.x.failureRate"] == 'expected a number, got "often"'
    assert problems["providers.x.failureRat"].startswith("unknown key")
    assert "failureRate" in problems["providers.x.failureRat"]
    assert problems["providers.x.outages[0].startS"] == "required key missing"


def test_failure_rate_needs_a_kind() -> None:
    with pytest.raises(ConfigError) as caught:
        make({"failureRate": 0.2, "failureKinds": {"server_error": 0}})
    assert dict(caught.value.problems)["providers.sim-x.failureKinds"].startswith("needs at least one kind")


def test_default_settings_and_public_names() -> None:
    provider = SimProvider("plain", ProviderConfig(type="sim"))
    assert provider.profile == SimSettings()
    assert provider.profile.failure_rate == 0.0
    assert sorted(swarmgate_sim.__all__) == [
        "FAILURE_KINDS", "Outage", "SimPlugin", "SimProvider", "SimSettings", "embedded_default",
    ]  # fmt: skip
    assert "budget_exceeded" not in swarmgate_sim.FAILURE_KINDS
    assert {"rate_limited", "overloaded", "server_error", "timeout", "connection_error"} <= set(
        swarmgate_sim.FAILURE_KINDS
    )
