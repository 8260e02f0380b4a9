"""``fanout`` mode: every target answers, a majority vote or a judge picks one.

In-process scripted targets (``swarmgate.testing.ScriptedProvider``): the
combining logic needs no socket.
"""

from __future__ import annotations

import time
from typing import Any, cast

import pytest

from swarmgate import (
    CompletionResponse,
    FinishEvent,
    Message,
    OverloadedError,
    ProviderManager,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    StreamStart,
    SwarmgateError,
    TextDelta,
    TokenUsage,
    UsageEvent,
    registry,
)
from swarmgate.testing import Outcome, ScriptedProvider, attempt_error
from swarmgate_composite import CompositeProvider

PRICE = 0.001
JUDGE_PRICE = 0.01


def fanout_manager(targets: list[str] | None = None, **composite: Any) -> ProviderManager:
    """Scripted providers ``a``, ``b``, ``c`` (model ``m``) and ``judge``
    (model ``j``), and the fanout composite ``vote`` over ``targets``."""
    providers: dict[str, Any] = {
        name: {"type": "scripted", "models": {"m": {"costPerToken": PRICE}}} for name in ("a", "b", "c")
    }
    providers["judge"] = {"type": "scripted", "models": {"j": {"costPerToken": JUDGE_PRICE}}}
    providers["vote"] = {
        "type": "composite",
        "mode": "fanout",
        "targets": targets or ["a/m", "b/m", "c/m"],
        "timeout": 2000,
        "models": {"vote": {}},
        **composite,
    }
    return ProviderManager(
        {"providers": providers},
        drivers={registry.PROVIDERS: {"scripted": ScriptedProvider, "composite": CompositeProvider}},
    )


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    return cast(ScriptedProvider, manager.provider(name))


def decision(response: CompletionResponse) -> dict[str, Any]:
    return dict(response.metadata["composite"]["decision"])


JUDGE = {"type": "judge", "target": "judge/j"}


@pytest.mark.anyio
async def test_majority_of_normalised_answers_wins() -> None:
    async with fanout_manager() as manager:
        scripted(manager, "a").push(Outcome("Lyon", usage=(10, 1)))
        scripted(manager, "b").push(Outcome("Paris.", usage=(10, 2)))
        scripted(manager, "c").push(Outcome("  paris", usage=(10, 3)))
        response = await manager.complete(model="vote", prompt="Capital of France?")
        calls = {name: scripted(manager, name).calls for name in ("a", "b", "c")}
    assert response.content == "Paris."  # the first answer of the winning group, as written
    assert response.metadata["upstream_model"] == "b/m"
    info = response.metadata["composite"]
    assert info["winner"] == "b/m"
    assert [c["provider"] for c in info["candidates"]] == ["a", "b", "c"]
    assert all(c["ok"] for c in info["candidates"])
    assert decision(response) == {"combiner": "majority", "chosen": 1, "votes": {"0": 1, "1": 2, "2": 2}, "tie": False}
    assert response.tokens == TokenUsage.of(30, 6)
    assert response.cost == pytest.approx(36 * PRICE)
    # Each target got the caller's request, forced to it, marked as an inner call.
    for name, (call,) in calls.items():
        assert call.request.messages == (Message("user", "Capital of France?"),)
        assert call.request.provider == name
        assert call.request.metadata["composite"] == {
            "parent": "vote",
            "path": ["vote"],
            "mode": "fanout",
            "role": "candidate",
        }


@pytest.mark.anyio
@pytest.mark.parametrize(("targets", "expected"), [(["a/m", "b/m"], "Rome"), (["b/m", "a/m"], "Oslo")])
async def test_a_tie_goes_to_the_earliest_target(targets: list[str], expected: str) -> None:
    async with fanout_manager(targets) as manager:
        scripted(manager, "a").push("Rome")
        scripted(manager, "b").push("Oslo")
        response = await manager.complete(model="vote", prompt="A capital?")
    assert response.content == expected
    assert decision(response)["tie"] is True


@pytest.mark.anyio
async def test_the_same_target_twice_votes_twice() -> None:
    """A repeated target is sampled twice (self-consistency voting)."""
    async with fanout_manager(["a/m", "a/m", "b/m"]) as manager:
        scripted(manager, "a").push("42", "42")
        scripted(manager, "b").push("41")
        response = await manager.complete(model="vote", prompt="6 x 7?")
        assert len(scripted(manager, "a").calls) == 2
    assert response.content == "42"


@pytest.mark.anyio
async def test_failed_candidates_are_listed_and_the_rest_vote() -> None:
    async with fanout_manager() as manager:
        scripted(manager, "a").push(OverloadedError("a is overloaded"))
        scripted(manager, "b").push("Paris")
        scripted(manager, "c").push("Paris")
        response = await manager.complete(model="vote", prompt="Capital of France?")
    assert response.content == "Paris"
    failed = response.metadata["composite"]["candidates"][0]
    assert (failed["ok"], failed["error_kind"]) == (False, "overloaded")
    assert "a is overloaded" in failed["error"]
    assert decision(response)["votes"] == {"1": 2, "2": 2}


@pytest.mark.anyio
async def test_fewer_answers_than_min_successes_fail_with_every_error() -> None:
    async with fanout_manager(minSuccesses=2) as manager:
        scripted(manager, "a").push("Paris")
        scripted(manager, "b").push(RateLimitedError("b: slow down", retry_after=4))
        scripted(manager, "c").push(ServerError("c: exploded"))
        with pytest.raises(SwarmgateError) as info:
            await manager.complete(model="vote", prompt="Capital of France?")
    error = attempt_error(info.value)
    assert type(error) is RateLimitedError  # retryable kinds come first among mixed failures
    assert error.retry_after == pytest.approx(4.0)
    assert "only 1 of 3 targets answered, 2 needed" in error.message
    assert "b: slow down" in error.message
    assert "c: exploded" in error.message


@pytest.mark.anyio
async def test_a_slow_candidate_is_cut_at_candidate_timeout() -> None:
    async with fanout_manager(candidateTimeout=100) as manager:
        scripted(manager, "a").push("Paris")
        scripted(manager, "b").push("Paris")
        scripted(manager, "c").push(Outcome("Lyon", delay=5))
        started = time.perf_counter()
        response = await manager.complete(model="vote", prompt="Capital of France?")
        elapsed = time.perf_counter() - started
    assert response.content == "Paris"
    assert elapsed < 1.0
    late = response.metadata["composite"]["candidates"][2]
    assert (late["ok"], late["cancelled"], late["error_kind"]) == (False, True, "timeout")


@pytest.mark.anyio
async def test_the_judge_picks_by_number() -> None:
    async with fanout_manager(combiner={**JUDGE, "instructions": "Prefer the most precise answer."}) as manager:
        scripted(manager, "a").push(Outcome("About 8 minutes.", usage=(10, 3)))
        scripted(manager, "b").push(Outcome("8 minutes and 20 seconds.", usage=(10, 5)))
        scripted(manager, "c").push(Outcome("About 8 minutes.", usage=(10, 3)))
        scripted(manager, "judge").push(Outcome("Candidate 1 is vague. The best answer is 2.", usage=(50, 9)))
        response = await manager.complete(model="vote", prompt="How long does sunlight take to reach Earth?")
        (call,) = scripted(manager, "judge").calls
    assert response.content == "8 minutes and 20 seconds."  # the judge overrules the 2-1 majority
    assert response.metadata["composite"]["winner"] == "b/m"
    made = decision(response)
    assert (made["combiner"], made["choice"], made["chosen"]) == ("judge", 2, 1)
    assert made["judge"]["provider"] == "judge"
    assert made["judge"]["cost"] == pytest.approx(59 * JUDGE_PRICE)
    assert response.cost == pytest.approx(41 * PRICE + 59 * JUDGE_PRICE)
    assert response.tokens == TokenUsage.of(80, 20)
    system, user = call.request.messages
    assert (system.role, system.content) == ("system", "Prefer the most precise answer.")
    assert "How long does sunlight take to reach Earth?" in user.text()
    assert "[1]\nAbout 8 minutes." in user.text()
    assert "[2]\n8 minutes and 20 seconds." in user.text()
    assert "[3]\nAbout 8 minutes." in user.text()
    assert call.request.temperature == 0.0
    assert call.request.metadata["composite"]["role"] == "judge"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("verdict", "reason"),
    [
        (ServerError("the judge broke"), "the judge failed"),
        (Outcome("They are all fine answers."), "the judge's reply names no candidate"),
        (Outcome("7"), "the judge's reply names no candidate"),
    ],
    ids=["judge-error", "no-number", "out-of-range"],
)
async def test_a_failed_judge_falls_back_to_the_vote(verdict: Outcome | SwarmgateError, reason: str) -> None:
    async with fanout_manager(combiner=JUDGE) as manager:
        scripted(manager, "a").push("Paris")
        scripted(manager, "b").push("Lyon")
        scripted(manager, "c").push("paris")
        scripted(manager, "judge").push(verdict)
        response = await manager.complete(model="vote", prompt="Capital of France?")
    assert response.content == "Paris"
    made = decision(response)
    assert (made["combiner"], made["fallback"], made["reason"]) == ("judge", "majority", reason)
    assert made["votes"] == {"0": 2, "1": 1, "2": 2}


@pytest.mark.anyio
async def test_the_judge_is_skipped_with_a_single_answer() -> None:
    async with fanout_manager(combiner=JUDGE) as manager:
        scripted(manager, "a").push("Paris")
        scripted(manager, "b").push(ServerError("down"))
        scripted(manager, "c").push(ServerError("down"))
        response = await manager.complete(model="vote", prompt="Capital of France?")
        assert scripted(manager, "judge").calls == []
    assert response.content == "Paris"
    assert decision(response)["judge_skipped"] == "only one candidate answered"


@pytest.mark.anyio
async def test_a_hanging_judge_still_leaves_time_for_the_vote() -> None:
    async with fanout_manager(combiner=JUDGE, timeout=300) as manager:
        scripted(manager, "a").push("Paris")
        scripted(manager, "b").push("Paris")
        scripted(manager, "c").push("Lyon")
        scripted(manager, "judge").push(Outcome("1", delay=5))
        response = await manager.complete(model="vote", prompt="Capital of France?")
    made = decision(response)
    assert made["fallback"] == "majority"
    assert made["judge"]["error_kind"] == "timeout"
    assert response.content == "Paris"


@pytest.mark.anyio
async def test_stream_sends_the_chosen_answer_then_the_total_cost() -> None:
    async with fanout_manager() as manager:
        scripted(manager, "a").push(Outcome("Paris is the capital.", usage=(10, 4)))
        scripted(manager, "b").push(Outcome("paris is the capital", usage=(10, 4)))
        scripted(manager, "c").push(Outcome("Lyon", usage=(10, 1)))
        events = [e async for e in manager.stream(model="vote", prompt="Capital of France?")]
        # The candidates were asked for complete answers.
        assert scripted(manager, "a").calls[0].request.stream is False
    start, delta, usage, finish = events
    assert isinstance(start, StreamStart)
    assert start.provider == "vote"
    assert isinstance(delta, TextDelta)
    assert delta.text == "Paris is the capital."
    assert isinstance(usage, UsageEvent)
    assert usage.tokens == TokenUsage.of(30, 9)
    assert usage.cost == pytest.approx(39 * PRICE)
    assert isinstance(finish, FinishEvent)
    assert finish.response is not None
    assert finish.response.cost == pytest.approx(39 * PRICE)


@pytest.mark.anyio
async def test_the_composite_timeout_still_bounds_everything() -> None:
    async with fanout_manager(timeout=300, candidateTimeout=250) as manager:
        for name in ("a", "b", "c"):
            scripted(manager, name).push(Outcome("late", delay=5))
        started = time.perf_counter()
        with pytest.raises(SwarmgateError) as info:
            await manager.complete(model="vote", prompt="Capital of France?")
        elapsed = time.perf_counter() - started
    assert type(attempt_error(info.value)) is ProviderTimeoutError
    assert elapsed < 1.0
