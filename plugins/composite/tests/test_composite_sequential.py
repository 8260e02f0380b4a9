"""``sequential`` mode: each target refines the previous answer (scripted targets)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from swarmgate import (
    AuthenticationError,
    FinishEvent,
    Message,
    ProviderManager,
    ServerError,
    StreamStart,
    SwarmgateError,
    TextDelta,
    TokenUsage,
    UsageEvent,
    registry,
)
from swarmgate.testing import Outcome, ScriptedProvider, attempt_error
from swarmgate_composite import DEFAULT_REFINE_INSTRUCTIONS, CompositeProvider

PRICES = {"a": 0.001, "b": 0.002, "c": 0.003}
QUESTION = "Explain photosynthesis in one sentence."


def chain_manager(**composite: Any) -> ProviderManager:
    """Scripted ``a``, ``b``, ``c`` (model ``m``, priced differently) and
    the sequential composite ``chain`` over them, in that order."""
    providers: dict[str, Any] = {
        name: {"type": "scripted", "models": {"m": {"costPerToken": price}}} for name, price in PRICES.items()
    }
    providers["chain"] = {
        "type": "composite",
        "mode": "sequential",
        "targets": ["a/m", "b/m", "c/m"],
        "timeout": 2000,
        "models": {"chain": {}},
        **composite,
    }
    return ProviderManager(
        {"providers": providers},
        drivers={registry.PROVIDERS: {"scripted": ScriptedProvider, "composite": CompositeProvider}},
    )


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    return cast(ScriptedProvider, manager.provider(name))


def calls(manager: ProviderManager) -> dict[str, list[tuple[Message, ...]]]:
    return {name: [c.request.messages for c in scripted(manager, name).calls] for name in PRICES}


@pytest.mark.anyio
async def test_each_step_refines_the_previous_answer() -> None:
    async with chain_manager() as manager:
        scripted(manager, "a").push(Outcome("Plants make food.", usage=(10, 4)))
        scripted(manager, "b").push(Outcome("Plants make sugar from light.", usage=(40, 6)))
        scripted(manager, "c").push(Outcome("Plants turn light, water and CO2 into sugar.", usage=(60, 9)))
        response = await manager.complete(model="chain", prompt=QUESTION, system="Be exact.")
        sent = calls(manager)
    assert response.content == "Plants turn light, water and CO2 into sugar."
    assert response.metadata["composite"]["winner"] == "c/m"
    assert [c["ok"] for c in response.metadata["composite"]["candidates"]] == [True, True, True]
    assert response.tokens == TokenUsage.of(110, 19)
    assert response.cost == pytest.approx(14 * 0.001 + 46 * 0.002 + 69 * 0.003)

    original = (Message("system", "Be exact."), Message("user", QUESTION))
    assert sent["a"] == [original]
    (second,) = sent["b"]
    assert second[:2] == original
    assert second[2] == Message("assistant", "Plants make food.")
    assert second[3].role == "user"
    assert second[3].content == DEFAULT_REFINE_INSTRUCTIONS.replace("{step}", "2").replace("{steps}", "3")
    (third,) = sent["c"]
    assert third[2] == Message("assistant", "Plants make sugar from light.")
    assert "step 3 of 3" in str(third[3].content)


@pytest.mark.anyio
async def test_the_refine_template_placeholders() -> None:
    template = 'Step {step}/{steps}: rewrite what {target} said ({previous}) for a child. JSON stays: {"k": 1}'
    async with chain_manager(refineInstructions=template) as manager:
        scripted(manager, "a").push("Plants make food.")
        scripted(manager, "b").push("Plants eat sunshine.")
        scripted(manager, "c").push("Plants cook with sunlight.")
        await manager.complete(model="chain", prompt=QUESTION)
        sent = calls(manager)
    assert sent["b"][0][-1].content == (
        'Step 2/3: rewrite what a/m said (Plants make food.) for a child. JSON stays: {"k": 1}'
    )
    assert sent["c"][0][-1].content == (
        'Step 3/3: rewrite what b/m said (Plants eat sunshine.) for a child. JSON stays: {"k": 1}'
    )


@pytest.mark.anyio
async def test_a_failed_step_is_skipped() -> None:
    async with chain_manager() as manager:
        scripted(manager, "a").push("Plants make food.")
        scripted(manager, "b").push(ServerError("b is down"))
        scripted(manager, "c").push("Plants make food from light.")
        response = await manager.complete(model="chain", prompt=QUESTION)
        sent = calls(manager)
    assert response.content == "Plants make food from light."
    steps = response.metadata["composite"]["candidates"]
    assert [s["ok"] for s in steps] == [True, False, True]
    assert steps[1]["error_kind"] == "server_error"
    assert "b is down" in steps[1]["error"]
    # c refines a's answer (the last good one).
    assert sent["c"][0][-2] == Message("assistant", "Plants make food.")
    assert "step 3 of 3" in str(sent["c"][0][-1].content)


@pytest.mark.anyio
async def test_a_failed_first_step_leaves_the_request_to_the_next() -> None:
    async with chain_manager() as manager:
        scripted(manager, "a").push(ServerError("a is down"))
        scripted(manager, "b").push("Draft by b.")
        scripted(manager, "c").push("Final by c.")
        response = await manager.complete(model="chain", prompt=QUESTION)
        sent = calls(manager)
    assert response.content == "Final by c."
    assert sent["b"] == [(Message("user", QUESTION),)]
    assert sent["c"][0][-2] == Message("assistant", "Draft by b.")


@pytest.mark.anyio
async def test_a_last_step_failing_returns_the_previous_answer() -> None:
    async with chain_manager() as manager:
        scripted(manager, "a").push("Draft.")
        scripted(manager, "b").push("Better.")
        scripted(manager, "c").push(AuthenticationError("bad key for c"))
        response = await manager.complete(model="chain", prompt=QUESTION)
    assert response.content == "Better."
    assert response.metadata["composite"]["winner"] == "b/m"


@pytest.mark.anyio
async def test_every_step_failing_is_an_error_naming_each() -> None:
    async with chain_manager() as manager:
        for name in PRICES:
            scripted(manager, name).push(AuthenticationError(f"{name}: invalid key"))
        with pytest.raises(SwarmgateError) as info:
            await manager.complete(model="chain", prompt=QUESTION)
    error = attempt_error(info.value)
    assert type(error) is AuthenticationError
    assert error.provider == "chain"
    for name in PRICES:
        assert f"{name}/m: authentication ({name}: invalid key)" in error.message


@pytest.mark.anyio
async def test_stream_sends_the_final_answer_then_the_total_cost() -> None:
    async with chain_manager() as manager:
        scripted(manager, "a").push(Outcome("one", usage=(10, 1)))
        scripted(manager, "b").push(Outcome("two", usage=(20, 1)))
        scripted(manager, "c").push(Outcome("three", usage=(30, 1)))
        events = [e async for e in manager.stream(model="chain", prompt=QUESTION)]
    start, delta, usage, finish = events
    assert isinstance(start, StreamStart)
    assert isinstance(delta, TextDelta)
    assert delta.text == "three"
    assert isinstance(usage, UsageEvent)
    assert usage.tokens == TokenUsage.of(60, 3)
    assert usage.cost == pytest.approx(11 * 0.001 + 21 * 0.002 + 31 * 0.003)
    assert isinstance(finish, FinishEvent)
    assert finish.response is not None
    assert finish.response.content == "three"


@pytest.mark.anyio
async def test_stream_fails_before_any_event_when_every_step_fails() -> None:
    received: list[object] = []

    async def consume(manager: ProviderManager) -> None:
        async for event in manager.stream(model="chain", prompt=QUESTION):
            received.append(event)

    async with chain_manager() as manager:
        for name in PRICES:
            scripted(manager, name).push(ServerError(f"{name} exploded"))
        with pytest.raises(SwarmgateError) as info:
            await consume(manager)
    assert received == []
    error = attempt_error(info.value)
    assert type(error) is ServerError
    assert "c/m: server_error (c exploded)" in error.message
