"""What the usage log records for each way a request can end: answered,
answered after failover, failed, refused (before routing and per target),
served from a cache, a stream cancelled or broken with partial usage."""

from __future__ import annotations

import math
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from usage_helpers import DRIVERS, config, priced, scripted, usage_of

from swarmgate import (
    BudgetExceededError,
    CompletionRequest,
    CompletionResponse,
    InvalidRequestError,
    ProviderManager,
    RateLimitedError,
    ServerError,
    SwarmgateError,
    Target,
    TextDelta,
    TokenUsage,
    hookimpl,
)
from swarmgate.errors import http_status
from swarmgate.testing import Outcome
from swarmgate_usage import AttemptRecord, UsageRecord

pytestmark = pytest.mark.anyio


async def only_record(manager: ProviderManager) -> UsageRecord:
    usage = usage_of(manager)
    await usage.flush()
    records = await usage.records()
    assert len(records) == 1, records
    return records[0]


async def test_an_answer_is_recorded_with_tokens_cost_caller_tags_and_its_attempt(manager: ProviderManager) -> None:
    scripted(manager, "a").push(Outcome("the answer", usage=(10, 5)))
    before = time.time()
    response = await manager.complete(prompt="hello", caller="alice", tags=("team-x", "batch"))
    after = time.time()
    record = await only_record(manager)
    assert record.id == response.id
    assert before <= record.ts <= after
    assert (record.caller, record.requested_model, record.provider, record.model) == ("alice", "auto", "a", "ma")
    assert (record.ok, record.status, record.error_kind) == (True, 200, None)
    assert (record.input_tokens, record.output_tokens) == (10, 5)
    assert record.cost == pytest.approx(priced(10, 5)) == pytest.approx(response.cost)
    assert record.latency_ms == pytest.approx(response.latency)
    assert record.latency_ms < (after - before) * 1000.0 + 1.0
    assert (record.cache_hit, record.cost_saved, record.stream, record.route) == (False, 0.0, False, None)
    assert record.tags == ("team-x", "batch")
    (attempt,) = record.attempts
    assert attempt == AttemptRecord(
        provider="a",
        model="ma",
        ok=True,
        error_kind=None,
        status=200,
        input_tokens=10,
        output_tokens=5,
        cost=pytest.approx(priced(10, 5)),
        latency_ms=attempt.latency_ms,
        ttft_ms=None,
        refused=False,
    )
    assert 0.0 <= attempt.latency_ms <= record.latency_ms


async def test_cost_is_the_total_over_attempts_not_only_the_answering_one(manager: ProviderManager) -> None:
    # A meta-provider's failed call still cost 0.5: the record counts it, response.cost does not.
    scripted(manager, "a").push(Outcome(error=ServerError("upstream broke", provider="a", cost=0.5)))
    scripted(manager, "b").push(Outcome("from b", usage=(4, 2)))
    response = await manager.complete(prompt="hello")
    record = await only_record(manager)
    assert response.cost == pytest.approx(priced(4, 2))
    assert record.cost == pytest.approx(0.5 + priced(4, 2))
    assert (record.provider, record.model, record.ok) == ("b", "mb", True)
    first, second = record.attempts
    assert (first.provider, first.ok, first.error_kind, first.status, first.cost) == (
        "a",
        False,
        "server_error",
        502,
        pytest.approx(0.5),
    )
    assert (second.provider, second.ok, second.status) == ("b", True, 200)


async def test_a_failure_records_the_status_kind_last_target_and_every_attempt(manager: ProviderManager) -> None:
    scripted(manager, "a").push(Outcome(error=RateLimitedError("slow down", provider="a", upstream_status=429)))
    scripted(manager, "b").push(Outcome(error=ServerError("down", provider="b", upstream_status=500)))
    with pytest.raises(SwarmgateError) as failed:
        await manager.complete(prompt="hello", caller="bob")
    error = failed.value
    record = await only_record(manager)
    assert (record.ok, record.status, record.error_kind) == (False, http_status(error), error.kind.value)
    assert record.status == 502  # what the gateway answers: the last target failed upstream
    assert record.error_kind == "no_provider_available"
    assert (record.provider, record.model, record.caller) == ("b", "mb", "bob")
    assert [(a.provider, a.error_kind, a.status) for a in record.attempts] == [
        ("a", "rate_limited", 429),
        ("b", "server_error", 500),
    ]
    assert (record.cost, record.input_tokens, record.output_tokens) == (0.0, 0, 0)
    assert record.latency_ms > 0


async def test_an_aborting_error_records_its_own_status(manager: ProviderManager) -> None:
    scripted(manager, "a").push(Outcome(error=InvalidRequestError("bad field", provider="a")))
    with pytest.raises(InvalidRequestError):
        await manager.complete(prompt="hello")
    record = await only_record(manager)
    assert (record.status, record.error_kind, record.provider) == (400, "invalid_request", "a")
    assert len(record.attempts) == 1


class RefuseEverything:
    """Refuses every request before routing (a budget that is spent)."""

    @hookimpl
    def before_request(self, request: CompletionRequest) -> None:
        raise BudgetExceededError(f"budget of {request.caller} exhausted")


class PerTargetRefusal(BudgetExceededError):
    failover = True  # another provider may still answer


class RefuseProviderA:
    """Refuses attempts at provider ``a`` (its budget is spent)."""

    @hookimpl
    def before_attempt(self, target: Target) -> None:
        if target.provider == "a":
            raise PerTargetRefusal("provider a's budget is exhausted")


async def test_a_refusal_before_routing_records_no_attempt(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS, plugins=(RefuseEverything(),)) as manager:
        with pytest.raises(BudgetExceededError):
            await manager.complete(prompt="hi", caller="carol")
        record = await only_record(manager)
        assert (record.ok, record.status, record.error_kind) == (False, 429, "budget_exceeded")
        assert (record.provider, record.model, record.attempts, record.cost) == (None, None, (), 0.0)
        assert record.caller == "carol"


async def test_a_refused_attempt_is_marked_and_costs_nothing(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS, plugins=(RefuseProviderA(),)) as manager:
        scripted(manager, "b").push(Outcome("b answers", usage=(3, 3)))
        await manager.complete(prompt="hi")
        record = await only_record(manager)
        refused, answered = record.attempts
        assert (refused.provider, refused.refused, refused.error_kind, refused.status, refused.cost) == (
            "a",
            True,
            "budget_exceeded",
            429,
            0.0,
        )
        assert (answered.provider, answered.ok, answered.refused) == ("b", True, False)
        assert record.cost == pytest.approx(priced(3, 3))


class CacheEverything:
    """Answers every request from a "cache": the answer once cost 0.02."""

    @hookimpl
    def before_request(self) -> CompletionResponse:
        return CompletionResponse(
            content="cached answer",
            provider="a",
            model="ma",
            cost=0.0,
            latency=0.2,
            tokens=TokenUsage.of(10, 5),
            finish_reason="stop",
            cached=True,
            metadata={"cost_saved": 0.02},
        )


async def test_a_cache_hit_costs_nothing_and_records_what_it_saved(db: Path) -> None:
    async with ProviderManager(config(db), drivers=DRIVERS, plugins=(CacheEverything(),)) as manager:
        await manager.complete(prompt="hi", caller="dave")
        record = await only_record(manager)
        assert (record.ok, record.status, record.cache_hit) == (True, 200, True)
        assert (record.cost, record.cost_saved) == (0.0, pytest.approx(0.02))
        assert (record.input_tokens, record.output_tokens, record.attempts) == (0, 0, ())
        assert (record.provider, record.model, record.caller) == ("a", "ma", "dave")
        assert scripted(manager, "a").calls == []


async def test_a_cancelled_stream_records_its_partial_usage_and_cost(manager: ProviderManager) -> None:
    words = " ".join(f"word{i}" for i in range(200))
    scripted(manager, "a").push(Outcome(words))
    received = 0
    async with aclosing(manager.stream(prompt="tell me a long story", caller="erin")) as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                received += 1
                if received == 5:
                    break
    record = await only_record(manager)
    assert (record.ok, record.status, record.error_kind, record.stream) == (False, 499, "cancelled", True)
    (attempt,) = record.attempts
    assert (attempt.provider, attempt.error_kind, attempt.status) == ("a", "cancelled", 499)
    assert 0 < attempt.output_tokens < 200
    assert attempt.cost == pytest.approx(priced(attempt.input_tokens, attempt.output_tokens))
    assert record.cost == pytest.approx(attempt.cost)
    assert record.cost > 0
    assert (record.input_tokens, record.output_tokens) == (attempt.input_tokens, attempt.output_tokens)
    assert record.ttft_ms is not None
    assert record.ttft_ms == attempt.ttft_ms


async def test_a_stream_broken_after_output_costs_what_it_delivered(manager: ProviderManager) -> None:
    words = " ".join(f"w{i}" for i in range(50))
    scripted(manager, "a").push(Outcome(words, fail_after=10, error=ServerError("connection dropped", provider="a")))
    events: list[Any] = []

    async def consume() -> None:
        async for event in manager.stream(prompt="go"):
            events.append(event)

    with pytest.raises(ServerError):
        await consume()
    record = await only_record(manager)
    assert (record.ok, record.stream, record.error_kind) == (False, True, "server_error")
    assert record.status == 502
    assert record.output_tokens > 0
    assert record.cost == pytest.approx(priced(record.input_tokens, record.output_tokens))


async def test_a_streamed_answer_records_stream_and_time_to_first_token(manager: ProviderManager) -> None:
    scripted(manager, "a").push(Outcome("a streamed answer", usage=(7, 3)))
    async for _event in manager.stream(prompt="go"):
        pass
    record = await only_record(manager)
    assert (record.ok, record.stream, record.status) == (True, True, 200)
    assert record.ttft_ms is not None
    assert 0 <= record.ttft_ms <= record.latency_ms
    assert record.cost == pytest.approx(priced(7, 3))


@pytest.mark.parametrize(("model", "route"), [("fast", "fast"), ("a/ma", None), ("mb", None)])
async def test_the_route_is_the_requested_model_when_it_names_a_route(
    manager: ProviderManager, model: str, route: str | None
) -> None:
    await manager.complete(prompt="hi", model=model)
    record = await only_record(manager)
    assert (record.requested_model, record.route) == (model, route)


async def test_records_come_back_equal_to_what_was_recorded(manager: ProviderManager) -> None:
    """A record survives the trip through SQLite unchanged (floats, None, tuples)."""
    usage = usage_of(manager)
    original = UsageRecord(
        id="imported-1",
        ts=1_700_000_000.25,
        caller=None,
        requested_model="fast",
        provider="b",
        model="mb",
        ok=False,
        status=499,
        error_kind="cancelled",
        input_tokens=12,
        output_tokens=34,
        cost=0.123456789,
        latency_ms=1234.5,
        ttft_ms=None,
        cache_hit=False,
        cost_saved=0.0,
        stream=True,
        attempts=(
            AttemptRecord(provider="a", model="ma", ok=False, error_kind="timeout", status=504, latency_ms=1.5),
            AttemptRecord(
                provider="b",
                model="mb",
                ok=False,
                error_kind="cancelled",
                status=499,
                input_tokens=12,
                output_tokens=34,
                cost=0.123456789,
                latency_ms=3.25,
                ttft_ms=0.5,
            ),
        ),
        tags=("a", "b c", 'quote"d'),
        route="fast",
    )
    usage.record(original)
    await usage.flush()
    (back,) = await usage.records()
    assert back == original
    assert math.isclose(sum(a.cost for a in back.attempts), back.cost)
    assert back.to_dict()["attempts"][1]["ttft_ms"] == 0.5
