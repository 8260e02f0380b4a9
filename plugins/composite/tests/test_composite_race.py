"""``race`` mode over real sockets: two openai providers, each on its own fake upstream."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from swarmgate import (
    CompletionResponse,
    FinishEvent,
    ProviderConnectionError,
    ProviderManager,
    RateLimitedError,
    ServerError,
    StreamEvent,
    StreamStart,
    SwarmgateError,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
    UsageEvent,
    estimate_tokens,
)
from swarmgate.testing import FakeUpstream, ScriptedReply, attempt_error

FAST_PRICE = 0.001
SLOW_PRICE = 0.002
PROMPT = "Name a colour of the sky on a clear day, please."
LONG = " ".join(f"word{i}" for i in range(60))
WEATHER_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def race_config(fast: str, slow: str, **composite: Any) -> dict[str, Any]:
    """``race`` over ``slow/m-slow`` then ``fast/m-fast`` (the configured
    order must not matter: the fastest wins)."""
    return {
        "providers": {
            "fast": {
                "type": "openai",
                "endpoint": fast,
                "timeout": 2000,
                "models": {"m-fast": {"costPerToken": FAST_PRICE}},
            },
            "slow": {
                "type": "openai",
                "endpoint": slow,
                "timeout": 2000,
                "models": {"m-slow": {"costPerToken": SLOW_PRICE}},
            },
            "race": {
                "type": "composite",
                "mode": "race",
                "targets": ["slow/m-slow", "fast/m-fast"],
                "timeout": 3000,
                "models": {"best": {}},
                **composite,
            },
        }
    }


@contextlib.asynccontextmanager
async def race_setup(**composite: Any) -> AsyncIterator[tuple[FakeUpstream, FakeUpstream, ProviderManager]]:
    async with (
        FakeUpstream() as fast,
        FakeUpstream() as slow,
        ProviderManager(race_config(fast.url, slow.url, **composite)) as manager,
    ):
        yield fast, slow, manager


async def wait_for_disconnect(server: FakeUpstream, count: int = 1) -> None:
    """Until the fake has seen ``count`` abandoned answers (at most 2 s)."""
    for _ in range(200):
        if server.disconnects >= count:
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"the fake upstream saw {server.disconnects} disconnect(s), expected {count}")


def candidates(response: CompletionResponse) -> dict[str, dict[str, Any]]:
    return {c["provider"]: c for c in response.metadata["composite"]["candidates"]}


async def collect(manager: ProviderManager, **fields: Any) -> list[StreamEvent]:
    return [event async for event in manager.stream(model="best", prompt=PROMPT, **fields)]


async def ask(manager: ProviderManager, *, stream: bool) -> None:
    """One request for ``best``, streamed or not (for requests that must fail)."""
    if stream:
        await collect(manager)
    else:
        await manager.complete(model="best", prompt=PROMPT)


@pytest.mark.anyio
async def test_fastest_complete_answer_wins_and_the_slow_stream_is_cut() -> None:
    """The first complete answer wins; the slow target, mid-stream, is
    disconnected at once and its partial output is priced into the cost."""
    async with race_setup() as (fast, slow, manager):
        slow.enqueue(ScriptedReply(content=LONG, chunk_delay=0.02))
        fast.enqueue(ScriptedReply(content="Blue.", usage=(11, 2), delay=0.1))
        with anyio.fail_after(1):  # the slow answer alone would take 1.2 s
            response = await manager.complete(model="best", prompt=PROMPT)
        await wait_for_disconnect(slow)
        assert fast.disconnects == 0
        assert slow.completions[0].json["stream"] is True

    assert response.content == "Blue."
    assert (response.provider, response.model) == ("race", "best")
    assert response.metadata["upstream_model"] == "fast/m-fast"
    info = response.metadata["composite"]
    assert info["mode"] == "race"
    assert info["winner"] == "fast/m-fast"
    by_provider = candidates(response)
    assert by_provider["fast"]["ok"] is True
    assert by_provider["fast"]["cancelled"] is False
    assert by_provider["fast"]["cost"] == pytest.approx(13 * FAST_PRICE)
    loser = by_provider["slow"]
    assert (loser["ok"], loser["cancelled"], loser["model"]) == (False, True, "m-slow")
    # The loser had streamed a few words: priced as prompt + partial output, estimated.
    assert loser["tokens"]["input"] == estimate_tokens(PROMPT)
    assert 0 < loser["tokens"]["output"] < estimate_tokens(LONG)
    assert loser["cost"] == pytest.approx(loser["tokens"]["total"] * SLOW_PRICE)
    assert response.cost == pytest.approx(13 * FAST_PRICE + loser["cost"])
    assert response.tokens == TokenUsage.of(11 + loser["tokens"]["input"], 2 + loser["tokens"]["output"])


@pytest.mark.anyio
async def test_a_target_cancelled_before_any_output_costs_nothing() -> None:
    async with race_setup() as (fast, slow, manager):
        slow.enqueue(ScriptedReply(content=LONG, delay=0.3))
        fast.enqueue(ScriptedReply(content="Blue.", usage=(11, 2)))
        response = await manager.complete(model="best", prompt=PROMPT)
        await wait_for_disconnect(slow)
    loser = candidates(response)["slow"]
    assert loser["cancelled"] is True
    assert loser["cost"] == 0.0
    assert response.cost == pytest.approx(13 * FAST_PRICE)


@pytest.mark.anyio
async def test_stream_the_first_target_to_produce_output_wins() -> None:
    """Streaming: the first output decides; the winner streams live, the
    other is cut before its first byte; the usage carries the total cost."""
    content = "Blue, mostly, on a clear day."
    async with race_setup() as (fast, slow, manager):
        slow.enqueue(ScriptedReply(content=LONG, delay=0.2))
        fast.enqueue(ScriptedReply(content=content, usage=(11, 6), chunk_delay=0.01))
        events = await collect(manager)
        await wait_for_disconnect(slow)
    start, *middle, usage, finish = events
    assert isinstance(start, StreamStart)
    assert (start.provider, start.model) == ("race", "best")
    deltas = [e for e in middle if isinstance(e, TextDelta)]
    assert len(deltas) > 1
    assert "".join(d.text for d in deltas) == content
    assert isinstance(usage, UsageEvent)
    assert usage.tokens == TokenUsage(11, 6, 17)
    assert usage.cost == pytest.approx(17 * FAST_PRICE)
    assert isinstance(finish, FinishEvent)
    assert finish.response is not None
    assert finish.response.cost == pytest.approx(17 * FAST_PRICE)


@pytest.mark.anyio
async def test_stream_closed_early_closes_the_winner_upstream() -> None:
    async with race_setup() as (fast, slow, manager):
        slow.enqueue(ScriptedReply(content=LONG, delay=0.2))
        fast.enqueue(ScriptedReply(content=LONG, chunk_delay=0.01))
        stream = manager.stream(model="best", prompt=PROMPT)
        async with contextlib.aclosing(stream):
            async for event in stream:
                if isinstance(event, TextDelta):
                    break
        await wait_for_disconnect(fast)
        await wait_for_disconnect(slow)
        response = await manager.complete(model="best", prompt=PROMPT)
    assert response.content == fast.default.content


@pytest.mark.anyio
async def test_a_failed_target_does_not_win() -> None:
    async with race_setup() as (fast, slow, manager):
        fast.enqueue(ScriptedReply.error(429, "Rate limit reached for gpt-4o-mini", headers={"Retry-After": "3"}))
        slow.enqueue(ScriptedReply(content="Blue.", usage=(11, 2), delay=0.05))
        response = await manager.complete(model="best", prompt=PROMPT)
    assert response.content == "Blue."
    assert response.metadata["composite"]["winner"] == "slow/m-slow"
    loser = candidates(response)["fast"]
    assert (loser["ok"], loser["cancelled"], loser["error_kind"]) == (False, False, "rate_limited")
    assert "Rate limit reached for gpt-4o-mini" in loser["error"]
    assert response.cost == pytest.approx(13 * SLOW_PRICE)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_all_targets_failing_gives_the_common_kind_with_every_message(stream: bool) -> None:
    async with race_setup() as (fast, slow, manager):
        fast.enqueue(ScriptedReply.error(429, "fast is rate limited", headers={"Retry-After": "3"}))
        slow.enqueue(ScriptedReply.error(429, "slow is rate limited", headers={"Retry-After": "5"}))
        with pytest.raises(SwarmgateError) as info:
            await ask(manager, stream=stream)
    error = attempt_error(info.value)
    assert type(error) is RateLimitedError
    assert error.provider == "race"
    assert error.retry_after == pytest.approx(3.0)
    assert "fast/m-fast: rate_limited" in error.message
    assert "fast is rate limited" in error.message
    assert "slow is rate limited" in error.message


@pytest.mark.anyio
async def test_the_winner_failing_mid_stream_reports_its_partial_cost() -> None:
    async with race_setup() as (fast, slow, manager):
        slow.enqueue(ScriptedReply(content=LONG, delay=0.3))
        fast.enqueue(ScriptedReply(content="one two three four", cut_after=2, chunk_delay=0.01))
        events = [e async for e in manager.stream(model="best", prompt=PROMPT, errors="event")]
    *before, last = events
    assert "".join(e.text for e in before if isinstance(e, TextDelta)) == "one two"
    assert isinstance(last.error, ProviderConnectionError | ServerError)  # type: ignore[union-attr]
    assert last.error.provider == "race"  # type: ignore[union-attr]
    assert "fast/m-fast failed mid-stream" in str(last.error)  # type: ignore[union-attr]
    (attempt,) = last.error.attempts  # type: ignore[union-attr]
    # The kernel records the cost the composite reported: the inner attempt's partial cost.
    expected = (estimate_tokens(PROMPT) + estimate_tokens("one two")) * FAST_PRICE
    assert attempt.cost == pytest.approx(expected)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_tool_calls_pass_through(stream: bool) -> None:
    async with race_setup() as (fast, slow, manager):
        slow.enqueue(ScriptedReply(content=LONG, delay=0.3))
        fast.enqueue(ScriptedReply(content="", tool_calls=[WEATHER_CALL], finish_reason="tool_calls"))
        if stream:
            events = await collect(manager, tools=[WEATHER_TOOL])
            finish = events[-1]
            assert isinstance(finish, FinishEvent)
            assert finish.response is not None
            response = finish.response
            assert any(isinstance(e, ToolCallDelta) for e in events)
        else:
            response = await manager.complete(model="best", prompt=PROMPT, tools=[WEATHER_TOOL])
        sent = fast.completions[0].json
    assert sent["tools"] == [WEATHER_TOOL]
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls is not None
    (call,) = response.tool_calls
    assert call["function"] == WEATHER_CALL["function"]
    assert call["id"] == "call_1"
