"""The composite provider type against the kernel's provider conformance suite.

The suite is written for a provider with an HTTP upstream. A composite has
none of its own, so each class here runs the suite against a composite
whose single target is an ``openai`` provider (``inner``) pointed at the
suite's fake upstream (serving the suite's model under another name):
every request, error, stall and probe the suite
scripts goes through the composite, the kernel's inner request and the
openai driver. The inner provider carries the suite's prices and API key
(the key is also set on the composite, where the suite looks for it), and
the suite's timeout; the composite gets twice that, as a composite's
timeout must cover its inner calls.

``race`` passes the suite unchanged. ``fanout`` computes the answer with
non-streamed inner calls and then streams it, so the tests that script a
*streamed* upstream answer (stall, cut, malformed chunk) do not apply as
written: those are overridden, each saying what is checked instead.
``sequential`` with one target runs a strict subset of what ``fanout``
does with one (one non-streamed inner call, the same error path), so it
is not run through the suite a third time: its own tests and the socket
tests in ``test_composite_errors.py`` cover it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from swarmgate import registry
from swarmgate.errors import ProviderTimeoutError, ServerError, SwarmgateError
from swarmgate.manager import ProviderManager
from swarmgate.models import ErrorEvent, FinishEvent, StreamEvent, StreamStart, TextDelta, TokenUsage, UsageEvent
from swarmgate.testing import ProviderConformance, ScriptedReply, attempt_error
from swarmgate.testing.conformance import COST_PER_TOKEN
from swarmgate_composite import CompositeProvider
from swarmgate_openai import OpenAIProvider

INNER = "inner"
#: The inner model's own name: not the suite's, so that a request for the
#: suite's model reaches only the composite (never the target directly, by
#: failover); its ``upstreamName`` is what the suite expects upstream.
INNER_MODEL = "inner-model"


class _CompositeOverOpenAI(ProviderConformance):
    """A composite (``upstream``) with one openai target (``inner``) on the fake."""

    provider_type = "composite"
    provider_class = CompositeProvider
    model = "gpt-4o-mini"
    timeout_ms = 800.0  # two hops (composite, then its inner provider) on a loaded 2-core CI machine
    #: The composite's mode.
    mode: ClassVar[str] = "race"

    def provider_config(self, url: str) -> dict[str, Any]:
        return {"mode": self.mode, "targets": [f"{INNER}/{INNER_MODEL}"]}

    def config(
        self, url: str, model: dict[str, Any] | None = None, *, timeout_ms: float | None = None
    ) -> dict[str, Any]:
        timeout = timeout_ms if timeout_ms is not None else self.timeout_ms
        config = super().config(url, model, timeout_ms=timeout)
        composite = config["providers"][self.provider_name]
        composite["timeout"] = timeout * 2
        (prices,) = composite["models"].values()
        config["providers"][INNER] = {
            "type": "openai",
            "endpoint": url,
            "apiKey": composite["apiKey"],
            "timeout": timeout,
            "models": {INNER_MODEL: {"upstreamName": self.model, **prices}},
        }
        return config

    def manager(
        self, url: str, model: dict[str, Any] | None = None, *, timeout_ms: float | None = None
    ) -> ProviderManager:
        """Both drivers passed in code: the suite's allow-list admits only the kernel's plugins."""
        return ProviderManager(
            self.config(url, model, timeout_ms=timeout_ms),
            drivers={registry.PROVIDERS: {"composite": CompositeProvider, "openai": OpenAIProvider}},
        )


class TestCompositeRaceConformance(_CompositeOverOpenAI):
    mode = "race"


class _ComputedStream(_CompositeOverOpenAI):
    """Overrides for the modes whose stream is computed first, then sent."""

    @pytest.mark.anyio
    async def test_stream(self) -> None:
        """Overridden: the answer is computed with a non-streamed inner call,
        then sent as one text delta; the usage carries the real cost."""
        content = "Streaming works one word at a time."
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(content=content, usage=(9, 8)))
            events = await self.collect(manager, prompt="Stream please")
            sent = server.last_completion()
        assert sent.stream is False
        start, delta, usage, finish = events
        assert isinstance(start, StreamStart)
        assert (start.provider, start.model) == (self.provider_name, self.model)
        assert isinstance(delta, TextDelta)
        assert delta.text == content
        assert isinstance(usage, UsageEvent)
        assert usage.tokens == TokenUsage(9, 8, 17)
        assert usage.cost == pytest.approx(17 * COST_PER_TOKEN)
        assert isinstance(finish, FinishEvent)
        assert finish.response is not None
        assert finish.response.content == content
        assert finish.response.cost == pytest.approx(17 * COST_PER_TOKEN)

    @pytest.mark.anyio
    async def test_stream_stall(self) -> None:
        """Overridden: a stall script only affects streamed upstream answers.
        Checked instead: an upstream slower than the inner timeout ends the
        stream with ProviderTimeoutError before any output, within the timeout."""
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(delay=self.timeout * 5))
            events, error_event = await self.stream_until_error(manager)
        assert events == []
        assert type(attempt_error(error_event.error)) is ProviderTimeoutError
        assert error_event.partial == ""

    @pytest.mark.anyio
    async def test_stream_cut(self) -> None:
        """Overridden: a cut script only affects streamed upstream answers;
        the non-streamed inner call gets the whole answer, which is streamed."""
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(content="one two three four", cut_after=2))
            events = await self.collect(manager, prompt="Hello?")
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "one two three four"

    @pytest.mark.anyio
    async def test_stream_cut_raises(self) -> None:
        """Overridden: no partial output can reach the consumer (see
        :meth:`test_stream_cut`); a failing upstream raises before the first event."""
        received: list[StreamEvent] = []
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply.error(500, "upstream broke"))
            with pytest.raises(SwarmgateError) as info:
                await self.collect(manager, prompt="Hello?", into=received)
        assert type(attempt_error(info.value)) is ServerError
        assert received == []

    @pytest.mark.anyio
    async def test_stream_malformed_chunk(self) -> None:
        """Overridden: malformed chunks only exist in streamed upstream
        answers. Checked instead: a non-JSON answer is a ServerError event
        before any output."""
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(body=b"<html>not JSON</html>"))
            events, error_event = await self.stream_until_error(manager)
        assert events == []
        assert isinstance(error_event, ErrorEvent)
        assert type(attempt_error(error_event.error)) is ServerError

    @pytest.mark.anyio
    async def test_stream_malformed_first_chunk(self) -> None:
        """Overridden: as :meth:`test_stream_malformed_chunk`, raised."""
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(body=b"{not json"))
            error = await self.expect_error(manager, stream=True)
        assert type(error) is ServerError


class TestCompositeFanoutConformance(_ComputedStream):
    mode = "fanout"
