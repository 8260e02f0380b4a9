"""The lean stream path keeps the old behaviour: event subclasses, iterators
that are not generators, the request copy made for streaming, the clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import pytest

from swarmgate import (
    CompletionRequest,
    FinishEvent,
    ProviderManager,
    StreamStart,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
    UsageEvent,
)
from swarmgate.deadlines import current_time
from swarmgate.manager import _streamed
from swarmgate.models import Message, RequestTimeouts
from swarmgate.testing import ScriptedProvider

pytestmark = pytest.mark.anyio


class LoudDelta(TextDelta):
    """A driver's own TextDelta subclass."""


class LabelledUsage(UsageEvent):
    """A driver's own UsageEvent subclass."""


def config() -> dict[str, Any]:
    return {"providers": {"only": {"type": "custom", "timeout": 2000, "models": {"m": {"costPerToken": 0.001}}}}}


async def test_subclassed_driver_events_count_as_their_base_class() -> None:
    class Subclassing(ScriptedProvider):
        async def stream(self, call: Any) -> AsyncIterator[Any]:
            yield LoudDelta("hello ")
            yield ToolCallDelta(0, "call-1", "lookup", '{"q": 1}')
            yield LoudDelta("world")
            yield LabelledUsage(TokenUsage.of(7, 2), 0.5)
            yield FinishEvent("stop")

    async with ProviderManager(config(), drivers={"swarmgate.providers": {"custom": Subclassing}}) as manager:
        events = [event async for event in manager.stream(prompt="hi", model="m")]
    assert isinstance(events[0], StreamStart)
    assert [type(e) for e in events[1:4]] == [LoudDelta, ToolCallDelta, LoudDelta]
    response = events[-1].response
    assert response.content == "hello world"
    assert response.tokens == TokenUsage.of(7, 2)
    assert response.cost == 0.5
    assert response.tool_calls == (
        {"id": "call-1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}},
    )


async def test_an_iterator_that_is_not_a_generator_is_still_closed_after_its_end() -> None:
    closed: list[bool] = []

    class Iterator:
        def __init__(self) -> None:
            self.events = [TextDelta("plain iterator"), FinishEvent("stop")]

        def __aiter__(self) -> Iterator:
            return self

        async def __anext__(self) -> Any:
            if not self.events:
                raise StopAsyncIteration
            return self.events.pop(0)

        async def aclose(self) -> None:
            closed.append(True)

    class IteratorProvider(ScriptedProvider):
        def stream(self, call: Any) -> Any:
            return Iterator()

    async with ProviderManager(config(), drivers={"swarmgate.providers": {"custom": IteratorProvider}}) as manager:
        events = [event async for event in manager.stream(prompt="hi", model="m")]
        handle = manager.handle("only")
        assert handle is not None
        assert handle.inflight == 0
        assert [slot.inflight for slot in handle.keys.slots] == [0]
    assert events[-1].response.content == "plain iterator"
    assert closed == [True]


async def test_a_finished_generator_releases_its_key_slot() -> None:
    async with ProviderManager(config(), drivers={"swarmgate.providers": {"custom": ScriptedProvider}}) as manager:
        for _ in range(3):
            [event async for event in manager.stream(prompt="hi", model="m")]
        handle = manager.handle("only")
        assert handle is not None
        assert [slot.inflight for slot in handle.keys.slots] == [0]
        assert handle.inflight == 0


def test_the_request_copied_for_streaming_keeps_every_field() -> None:
    request = CompletionRequest(
        (Message("system", "be brief"), Message("user", "hi")),
        model="m",
        provider="only",
        temperature=0.2,
        max_tokens=12,
        top_p=0.9,
        stop=("\n",),
        tools=({"type": "function", "function": {"name": "f"}},),
        tool_choice="auto",
        response_format={"type": "json_object"},
        user="u-1",
        strategy="cost",
        metadata={"trace": "t-1"},
        tags=("a", "b"),
        extra={"seed": 3},
        timeouts=RequestTimeouts(total=1000.0),
        caller="team-a",
    )
    streamed = _streamed(request)
    assert streamed.stream is True
    assert streamed == attrs.evolve(request, stream=True)
    assert request.stream is False


async def test_the_clock_is_anyios() -> None:
    assert abs(current_time() - anyio.current_time()) < 0.01
