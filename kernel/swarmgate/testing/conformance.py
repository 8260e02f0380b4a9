"""The provider conformance suite: what every provider plugin must do.

A provider plugin's tests subclass :class:`ProviderConformance` and state
only what differs::

    from swarmgate.testing import OpenAIWire, ProviderConformance, Wire

    class TestMyConformance(ProviderConformance):
        provider_type = "my-type"          # its entry point in swarmgate.providers
        provider_class = MyProvider

        def wire(self) -> Wire:            # the fake upstream's wire format
            return OpenAIWire()

        def provider_config(self, url: str) -> dict[str, Any]:
            return {"endpoint": url, "someSetting": "value"}

Every test drives the provider through a real
:class:`~swarmgate.manager.ProviderManager` whose config holds only that
provider, against a :class:`~swarmgate.testing.upstream.FakeUpstream` on a
loopback socket. The async tests are ``@pytest.mark.anyio``: the project's
``anyio_backend`` fixture decides the backends (ours: asyncio and trio).
While they run, only the kernel's own plugins load (``SWARMGATE_PLUGINS``
is set to the kernel's distribution), so that an installed retry, cache or
breaker plugin cannot change what the suite observes; the driver is passed
to the manager directly and :meth:`ProviderConformance.test_entry_point`
checks that it is also registered.

With a single provider, the kernel reports a failure that may fail over as
:class:`~swarmgate.errors.NoProviderAvailableError` whose ``last_error`` is
the typed error; :func:`attempt_error` unwraps it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import time
from typing import Any, ClassVar

import anyio
import pytest

from swarmgate import registry
from swarmgate.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    SwarmgateError,
)
from swarmgate.manager import ProviderManager
from swarmgate.models import (
    CompletionResponse,
    ErrorEvent,
    FinishEvent,
    StreamEvent,
    StreamStart,
    TextDelta,
    TokenUsage,
    UsageEvent,
)
from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV
from swarmgate.provider import Provider
from swarmgate.testing.failures import attempt_error
from swarmgate.testing.openai_wire import OpenAIWire
from swarmgate.testing.upstream import FakeUpstream, ScriptedReply, Wire, unreachable_url

#: The price per token the suite configures (``costPerToken``).
COST_PER_TOKEN = 0.001
#: The connect timeout (ms) of the suite's providers: the fake upstream is on loopback.
CONNECT_TIMEOUT_MS = 5000.0


def _texts(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


class ProviderConformance:
    """Base class of every provider plugin's conformance tests.

    Subclasses set ``provider_type`` and ``provider_class`` and, where the
    defaults do not fit, override :meth:`wire` and :meth:`provider_config`.
    ``model``, ``api_key`` and ``timeout_ms`` may be overridden too (keep
    the timeout short: several tests wait for it).
    """

    #: The provider type: the driver's entry-point name in ``swarmgate.providers``.
    provider_type: ClassVar[str]
    #: The driver class.
    provider_class: ClassVar[type[Provider]]
    #: The configured model name (and, unless a test sets ``upstreamName``, the one sent upstream).
    model: ClassVar[str] = "test-model"
    #: The API key configured (unless :meth:`provider_config` sets ``apiKey``); never to appear in errors.
    api_key: ClassVar[str] = "sk-conformance-0123456789abcdefSECRET"
    #: The provider's ``timeout`` in milliseconds.
    timeout_ms: ClassVar[float] = 400.0
    #: The provider's name in the config.
    provider_name: ClassVar[str] = "upstream"
    #: Further distributions to admit while the suite runs (a meta-provider
    #: that builds inner drivers through the registry names theirs here).
    extra_plugins: ClassVar[tuple[str, ...]] = ()

    # -- what subclasses state ---------------------------------------------------

    def wire(self) -> Wire:
        """The wire format the fake upstream speaks (default: OpenAI)."""
        return OpenAIWire()

    def provider_config(self, url: str) -> dict[str, Any]:
        """The provider's config (the guide's camelCase format) for an
        upstream at ``url`` (the fake's API base URL). The suite adds
        ``type``, ``timeout`` and ``models``, and ``apiKey`` when absent."""
        return {"endpoint": url}

    # -- building blocks ---------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _kernel_plugins_only(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Load only the kernel's own plugins (and :attr:`extra_plugins`) while a conformance test runs."""
        monkeypatch.setenv(ALLOW_ENV, ",".join(("swarmgate", *self.extra_plugins)))
        monkeypatch.delenv(BLOCK_ENV, raising=False)

    @property
    def timeout(self) -> float:
        """The provider timeout in seconds."""
        return self.timeout_ms / 1000.0

    def serve(self) -> FakeUpstream:
        """A fake upstream speaking :meth:`wire` (enter it with ``async with``)."""
        return FakeUpstream(self.wire())

    def config(
        self, url: str, model: dict[str, Any] | None = None, *, timeout_ms: float | None = None
    ) -> dict[str, Any]:
        """The whole config: one provider pointed at ``url``, serving
        :attr:`model` configured as ``model`` (default: ``costPerToken``),
        with :attr:`timeout_ms` unless ``timeout_ms`` is given."""
        provider = {"apiKey": self.api_key, **self.provider_config(url)}
        provider["type"] = self.provider_type
        provider["timeout"] = timeout_ms if timeout_ms is not None else self.timeout_ms
        # The short timeout is for the tests that wait on a slow answer; connecting
        # to the loopback fake gets a wide bound (a loaded CI machine once took
        # longer than 400 ms to connect; a refused connection still fails at once).
        provider["timeouts"] = {"connect": CONNECT_TIMEOUT_MS, **provider.get("timeouts", {})}
        provider["models"] = {self.model: model if model is not None else {"costPerToken": COST_PER_TOKEN}}
        return {"providers": {self.provider_name: provider}}

    def manager(
        self, url: str, model: dict[str, Any] | None = None, *, timeout_ms: float | None = None
    ) -> ProviderManager:
        """A manager for :meth:`config` (enter it with ``async with``)."""
        return ProviderManager(
            self.config(url, model, timeout_ms=timeout_ms),
            drivers={registry.PROVIDERS: {self.provider_type: self.provider_class}},
        )

    async def collect(
        self, manager: ProviderManager, *, into: list[StreamEvent] | None = None, **fields: Any
    ) -> list[StreamEvent]:
        """Every event of ``manager.stream(model=..., **fields)``, appended
        to ``into`` (a new list by default) as they arrive; errors are raised."""
        events = [] if into is None else into
        async for event in manager.stream(model=self.model, **fields):
            events.append(event)
        return events

    async def expect_error(self, manager: ProviderManager, *, stream: bool = False, **fields: Any) -> SwarmgateError:
        """Run one request that must fail; return the typed attempt error."""
        fields.setdefault("prompt", "Hello?")
        try:
            if stream:
                await self.collect(manager, **fields)
            else:
                await manager.complete(model=self.model, **fields)
        except SwarmgateError as exc:
            return attempt_error(exc)
        raise AssertionError("the request succeeded; an error was expected")

    async def stream_until_error(self, manager: ProviderManager, **fields: Any) -> tuple[list[StreamEvent], ErrorEvent]:
        """Stream with ``errors="event"``; return the events before the
        :class:`ErrorEvent` and the ErrorEvent (which must come last)."""
        fields.setdefault("prompt", "Hello?")
        events = [event async for event in manager.stream(model=self.model, errors="event", **fields)]
        assert events, "the stream yielded nothing"
        last = events[-1]
        assert isinstance(last, ErrorEvent), f"expected the stream to end with an ErrorEvent, got {last!r}"
        return events[:-1], last

    # -- answers -----------------------------------------------------------------

    @pytest.mark.anyio
    async def test_complete(self) -> None:
        """Content, target, upstream token counts, cost and latency."""
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(content="Paris is the capital of France.", usage=(12, 7)))
            response = await manager.complete(prompt="What is the capital of France?", model=self.model)
        assert isinstance(response, CompletionResponse)
        assert response.content == "Paris is the capital of France."
        assert (response.provider, response.model) == (self.provider_name, self.model)
        assert response.tokens == TokenUsage(12, 7, 19)
        assert response.cost == pytest.approx(19 * COST_PER_TOKEN)
        assert response.latency > 0
        assert response.finish_reason == "stop"
        assert [a.ok for a in response.attempts] == [True]

    @pytest.mark.anyio
    async def test_complete_with_input_and_output_prices(self) -> None:
        """Cost from ``inputCostPerToken`` and ``outputCostPerToken``."""
        prices = {"inputCostPerToken": 0.002, "outputCostPerToken": 0.005}
        async with self.serve() as server, self.manager(server.url, prices) as manager:
            server.enqueue(ScriptedReply(content="ok", usage=(10, 4)))
            response = await manager.complete(prompt="Hi", model=self.model)
        assert response.tokens == TokenUsage(10, 4, 14)
        assert response.cost == pytest.approx(10 * 0.002 + 4 * 0.005)

    @pytest.mark.anyio
    async def test_request_sent_upstream(self) -> None:
        """The model, messages and sampling settings reach the upstream."""
        async with self.serve() as server, self.manager(server.url) as manager:
            await manager.complete(
                prompt="Say hello",
                system="Be brief.",
                model=self.model,
                temperature=0.25,
                max_tokens=64,
                top_p=0.5,
                stop=["END"],
            )
            sent = server.last_completion()
        assert sent.model == self.model
        assert sent.messages == (("system", "Be brief."), ("user", "Say hello"))
        assert sent.temperature == pytest.approx(0.25)
        assert sent.max_tokens == 64
        assert sent.top_p == pytest.approx(0.5)
        assert sent.stop == ("END",)
        assert sent.stream is False

    @pytest.mark.anyio
    async def test_upstream_model_name(self) -> None:
        """A model's ``upstreamName`` is what goes upstream."""
        model = {"costPerToken": COST_PER_TOKEN, "upstreamName": "upstream-name-v2"}
        async with self.serve() as server, self.manager(server.url, model) as manager:
            response = await manager.complete(prompt="Hi", model=self.model)
            sent = server.last_completion()
        assert sent.model == "upstream-name-v2"
        assert response.model == self.model

    @pytest.mark.anyio
    async def test_stream(self) -> None:
        """StreamStart, text deltas that join to the content, usage with cost,
        then a FinishEvent with the full response."""
        content = "Streaming works one word at a time."
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(content=content, usage=(9, 8)))
            events = await self.collect(manager, prompt="Stream please")
            sent = server.last_completion()
        assert sent.stream is True
        start, *middle, usage, finish = events
        assert isinstance(start, StreamStart)
        assert (start.provider, start.model) == (self.provider_name, self.model)
        deltas = [e for e in middle if isinstance(e, TextDelta)]
        assert len(deltas) > 1, "the answer should arrive in several deltas"
        assert "".join(d.text for d in deltas) == content
        assert isinstance(usage, UsageEvent)
        assert usage.tokens == TokenUsage(9, 8, 17)
        assert usage.cost == pytest.approx(17 * COST_PER_TOKEN)
        assert isinstance(finish, FinishEvent)
        assert finish.finish_reason == "stop"
        assert finish.response is not None
        assert finish.response.content == content
        assert finish.response.tokens == TokenUsage(9, 8, 17)
        assert finish.response.cost == pytest.approx(17 * COST_PER_TOKEN)

    @pytest.mark.anyio
    async def test_connections_are_reused(self) -> None:
        """One pooled connection serves consecutive calls, streamed or not."""
        async with self.serve() as server, self.manager(server.url) as manager:
            first = await manager.complete(prompt="one", model=self.model)
            events = await self.collect(manager, prompt="two")
            third = await manager.complete(prompt="three", model=self.model)
            assert server.connections == 1
        assert first.content == third.content == server.default.content
        assert _texts(events) == server.default.content

    @pytest.mark.anyio
    async def test_concurrent_requests(self) -> None:
        """Concurrent calls on one provider all get their own answer."""
        results: dict[int, str] = {}
        patient = max(self.timeout_ms * 10, 5000.0)  # eight at once through a proxy on a busy 2-core machine
        async with self.serve() as server, self.manager(server.url, timeout_ms=patient) as manager:
            server.enqueue(*(ScriptedReply(content=f"answer {i}", delay=0.02) for i in range(8)))

            async def ask(i: int) -> None:
                results[i] = (await manager.complete(prompt=f"question {i}", model=self.model)).content

            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(ask, i)
        assert sorted(results.values()) == sorted(f"answer {i}" for i in range(8))

    @pytest.mark.anyio
    async def test_stream_closed_early(self) -> None:
        """Leaving a stream early releases it; the provider keeps working."""
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(content="a long answer that is never read to the end", chunk_delay=0.01))
            stream = manager.stream(prompt="go", model=self.model)
            async with contextlib.aclosing(stream):
                async for event in stream:
                    if isinstance(event, TextDelta):
                        break
            response = await manager.complete(prompt="again", model=self.model)
        assert response.content == server.default.content

    # -- failures ----------------------------------------------------------------

    @pytest.mark.anyio
    @pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            (400, InvalidRequestError),
            (401, AuthenticationError),
            (403, PermissionDeniedError),
            (404, NotFoundError),
            (500, ServerError),
            (502, ServerError),
            (503, OverloadedError),
        ],
    )
    async def test_error_status(self, status: int, expected: type[SwarmgateError], stream: bool) -> None:
        """Each upstream status becomes its typed error, naming the target and
        carrying the upstream's message."""
        message = f"scripted failure with status {status}"
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply.error(status, message))
            error = await self.expect_error(manager, stream=stream)
        assert type(error) is expected, f"HTTP {status} gave {type(error).__name__}: {error}"
        assert error.upstream_status == status
        assert error.provider == self.provider_name
        assert message in str(error)

    @pytest.mark.anyio
    @pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
    async def test_rate_limited(self, stream: bool) -> None:
        """429 with Retry-After is RateLimitedError with ``retry_after``."""
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply.error(429, "slow down", headers={"Retry-After": "7"}))
            error = await self.expect_error(manager, stream=stream)
        assert type(error) is RateLimitedError
        assert error.retry_after == pytest.approx(7.0)

    @pytest.mark.anyio
    @pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
    async def test_timeout(self, stream: bool) -> None:
        """An upstream slower than the timeout is ProviderTimeoutError, in time."""
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(delay=self.timeout * 5))
            started = time.perf_counter()
            error = await self.expect_error(manager, stream=stream)
            elapsed = time.perf_counter() - started
        assert type(error) is ProviderTimeoutError
        assert elapsed < self.timeout * 3

    @pytest.mark.anyio
    async def test_stream_stall(self) -> None:
        """A stream that stops mid-way is ProviderTimeoutError within the timeout."""
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(content="one two three four", stall_after=2))
            started = time.perf_counter()
            events, error_event = await self.stream_until_error(manager)
            elapsed = time.perf_counter() - started
        assert type(error_event.error) is ProviderTimeoutError
        assert error_event.partial == "one two"
        assert _texts(events) == "one two"
        assert elapsed < self.timeout * 3

    @pytest.mark.anyio
    async def test_stream_cut(self) -> None:
        """A stream whose connection drops mid-way ends with a connection or
        server error after the partial output."""
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(content="one two three four", cut_after=2))
            events, error_event = await self.stream_until_error(manager)
        assert isinstance(events[0], StreamStart)
        assert isinstance(error_event.error, ProviderConnectionError | ServerError)
        assert error_event.partial == "one two"
        assert _texts(events) == "one two"

    @pytest.mark.anyio
    async def test_stream_cut_raises(self) -> None:
        """By default the cut stream's error is raised to the consumer."""
        received: list[StreamEvent] = []
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(content="one two three four", cut_after=1))
            with pytest.raises(SwarmgateError) as info:
                await self.collect(manager, prompt="Hello?", into=received)
        assert isinstance(info.value, ProviderConnectionError | ServerError)
        assert _texts(received) == "one"

    @pytest.mark.anyio
    async def test_stream_malformed_chunk(self) -> None:
        """Non-JSON data mid-stream is ServerError after the partial output."""
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(content="one two three four", malformed_at=2))
            events, error_event = await self.stream_until_error(manager)
        assert type(error_event.error) is ServerError
        assert _texts(events) == "one two"

    @pytest.mark.anyio
    async def test_stream_malformed_first_chunk(self) -> None:
        """Non-JSON data before any output is ServerError (and may fail over)."""
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(content="one two", malformed_at=0))
            error = await self.expect_error(manager, stream=True)
        assert type(error) is ServerError

    @pytest.mark.anyio
    async def test_malformed_body(self) -> None:
        """A 200 whose body is not JSON is ServerError."""
        async with self.serve() as server, self.manager(server.url) as manager:
            server.enqueue(ScriptedReply(body=b"<html>this is not JSON</html>"))
            error = await self.expect_error(manager)
        assert type(error) is ServerError

    @pytest.mark.anyio
    @pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
    async def test_connection_refused(self, stream: bool) -> None:
        """Nothing listening is ProviderConnectionError."""
        async with self.manager(unreachable_url()) as manager:
            error = await self.expect_error(manager, stream=stream)
        assert type(error) is ProviderConnectionError
        assert error.provider == self.provider_name

    @pytest.mark.anyio
    async def test_api_key_never_in_errors(self) -> None:
        """Even when the upstream echoes the API key, no error shows it."""
        async with self.serve() as server, self.manager(server.url) as manager:
            key = manager.config.providers[self.provider_name].api_key
            assert key, "the conformance config must carry an API key"
            server.enqueue(ScriptedReply.error(401, f"Incorrect API key provided: {key}."))
            try:
                await manager.complete(prompt="Hello?", model=self.model)
            except SwarmgateError as exc:
                raised: SwarmgateError = exc
            else:
                raise AssertionError("a 401 must fail")
        error = attempt_error(raised)
        assert isinstance(error, AuthenticationError)
        shown = [str(raised), repr(raised), str(raised.to_dict()), str(error), repr(error), str(error.to_dict())]
        shown += [str(a.to_dict()) for a in raised.attempts]
        for text in shown:
            assert key not in text, f"the API key leaked: {text}"

    # -- health --------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_health_check(self) -> None:
        """The probe is healthy on a live upstream, with a latency."""
        async with self.serve() as server, self.manager(server.url) as manager:
            status = (await manager.check_health(self.provider_name))[self.provider_name]
        assert status.healthy, status.detail
        assert status.latency is not None
        assert status.latency > 0

    @pytest.mark.anyio
    async def test_health_check_unreachable(self) -> None:
        """The probe is unhealthy, within the timeout, when nothing listens."""
        async with self.manager(unreachable_url()) as manager:
            key = manager.config.providers[self.provider_name].api_key
            started = time.perf_counter()
            status = (await manager.check_health(self.provider_name))[self.provider_name]
            elapsed = time.perf_counter() - started
        assert not status.healthy
        assert status.detail
        assert not key or key not in status.detail
        assert elapsed < self.timeout * 3

    # -- packaging -----------------------------------------------------------------

    def test_entry_point(self) -> None:
        """The driver is registered as ``provider_type`` in ``swarmgate.providers``."""
        found = importlib.metadata.entry_points(group=registry.PROVIDERS, name=self.provider_type)
        assert found, f"no entry point {self.provider_type!r} in {registry.PROVIDERS!r}: is the plugin installed?"
        (entry_point,) = tuple(found)
        assert entry_point.load() is self.provider_class
