"""The ``local`` provider driver: Ollama's native API, or an OpenAI-compatible
local server through the ``openai`` driver."""

from __future__ import annotations

import importlib.metadata
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any, ClassVar, cast

import anyio
import attrs
import httpx

from swarmgate.config import ProviderConfig
from swarmgate.errors import ContentFilteredError, ServerError, SwarmgateError
from swarmgate.http import HTTPProvider, drain, parse_retry_after
from swarmgate.models import (
    FinishEvent,
    HealthStatus,
    ProviderEvent,
    ProviderReply,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
    UsageEvent,
)
from swarmgate.provider import ProviderCall
from swarmgate_local import _ollama
from swarmgate_local._errors import classify, refine
from swarmgate_local._settings import DEFAULT_OLLAMA_ENDPOINT, DEFAULT_OPENAI_ENDPOINT, LocalSettings
from swarmgate_openai import OpenAIProvider, OpenAISettings

try:
    _VERSION = importlib.metadata.version("swarmgate-local")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0.0.0"

_USER_AGENT = f"swarmgate-local/{_VERSION}"
_STREAM_HEADERS = {"content-type": "application/json", "accept": "application/x-ndjson"}
_CHAT = "/api/chat"
_TAGS = "/api/tags"
#: How much of a non-JSON error body goes into an error message.
_SNIPPET = 300
#: Seconds to wait for the end of a streamed body after the ``done`` line.
_DRAIN_SECONDS = 0.25


def ollama_base(endpoint: str) -> str:
    """The server root of an Ollama ``endpoint``: trailing slashes and a
    trailing ``/api`` removed (``http://host:11434/api/`` works too)."""
    base = endpoint.rstrip("/")
    return base[: -len("/api")] if base.endswith("/api") else base


def _tagged(name: str) -> str:
    """An Ollama model name with its tag (``llama3.2`` is ``llama3.2:latest``)."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@attrs.define
class _StreamState:
    """What a native stream has seen so far."""

    tool_calls: int = 0
    done: bool = False


class LocalProvider(HTTPProvider):
    """A local LLM server: Ollama's native API (default) or, with
    ``"api": "openai"``, any OpenAI-compatible server (see the package
    docstring). No API key is needed; one that is configured is sent as a
    Bearer token (for servers behind an authenticating proxy) and never
    appears in an error."""

    settings_class: ClassVar[type | None] = LocalSettings

    def __init__(self, name: str, config: ProviderConfig, settings: LocalSettings | None = None) -> None:
        super().__init__(name, config, settings if settings is not None else LocalSettings())
        self.options: LocalSettings = self.settings
        #: The OpenAI-compatible driver doing the work when ``api`` is ``openai``.
        self.compat: OpenAIProvider | None = None
        if self.options.api == "openai":
            #: The API base URL (no trailing slash).
            self.endpoint = (config.endpoint or DEFAULT_OPENAI_ENDPOINT).rstrip("/")
            stream_usage = self.options.stream_usage if self.options.stream_usage is not None else True
            self.compat = OpenAIProvider(
                name, attrs.evolve(config, endpoint=self.endpoint), OpenAISettings(stream_usage=stream_usage)
            )
        else:
            self.endpoint = ollama_base(config.endpoint or DEFAULT_OLLAMA_ENDPOINT)

    # -- lifecycle -------------------------------------------------------------------

    def default_headers(self) -> dict[str, str]:
        """Headers of every native request: ``User-Agent``, and
        ``Authorization: Bearer`` only when an API key is configured; minus
        those the config's ``headers`` set (case-insensitively), which the
        client adds instead."""
        headers = {"user-agent": _USER_AGENT}
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        overridden = {name.lower() for name in self.config.headers}
        return {name: value for name, value in headers.items() if name not in overridden}

    async def start(self) -> None:
        """Open the connection pool (the compatible driver's, in ``openai`` mode)."""
        if self.compat is not None:
            self.compat.manager = self.manager
            await self.compat.start()
        else:
            await super().start()

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self.compat is not None:
            await self.compat.aclose()
        await super().aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        """The native API's pooled client; only between :meth:`start` and
        :meth:`aclose`, and only with ``"api": "ollama"``."""
        if self._client is None and self.compat is not None:
            raise RuntimeError(f"provider {self.name!r} speaks the OpenAI API: use provider.compat.client")
        return super().client

    # -- requests --------------------------------------------------------------------

    def request_body(self, call: ProviderCall, *, stream: bool) -> dict[str, Any]:
        """The ``/api/chat`` body for ``call`` (see :func:`swarmgate_local._ollama.request_body`)."""
        return _ollama.request_body(
            call,
            stream=stream,
            provider=self.name,
            options=self.options.options,
            keep_alive=self.options.keep_alive,
        )

    def _encode(self, call: ProviderCall, *, stream: bool) -> bytes:
        return self.encode_json(self.request_body(call, stream=stream), call.model)

    async def complete(self, call: ProviderCall) -> ProviderReply:
        """``POST /api/chat`` with ``"stream": false``; the answer as a
        :class:`ProviderReply` (in ``openai`` mode: the compatible driver's)."""
        if self.compat is not None:
            try:
                return await self.compat.complete(call)
            except SwarmgateError as exc:
                raise refine(exc) from exc.__cause__
        return self.parse_reply(await self.post_json(_CHAT, self._encode(call, stream=False), call), call)

    def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        """``POST /api/chat`` streaming NDJSON: text and tool-call deltas as
        they arrive, then the usage and the finish reason from the final
        ``done`` line (in ``openai`` mode: the compatible driver's stream)."""
        if self.compat is not None:
            return self._compat_stream(self.compat, call)
        return self._native_stream(call)

    async def _compat_stream(self, compat: OpenAIProvider, call: ProviderCall) -> AsyncGenerator[ProviderEvent, None]:
        # The openai driver's stream() is an async generator (typed as an iterator).
        async with aclosing(cast(AsyncGenerator[ProviderEvent, None], compat.stream(call))) as events:
            try:
                async for event in events:
                    yield event
            except SwarmgateError as exc:
                raise refine(exc) from exc.__cause__

    async def _native_stream(self, call: ProviderCall) -> AsyncGenerator[ProviderEvent, None]:
        client = self.client
        request = client.build_request(
            "POST",
            _CHAT,
            content=self._encode(call, stream=True),
            headers=_STREAM_HEADERS,
            timeout=self.request_timeout(call),
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, call.model) from exc
        state = _StreamState()
        try:
            if not response.is_success:
                body = await response.aread()
                raise self.status_error(response.status_code, response.headers, body, call.model)
            if response.headers.get("content-type", "").startswith("application/json"):
                # A server (or proxy) that answers one JSON object: one chunk.
                data = self._decode(await response.aread(), call.model, "answer")
                for event in self._chunk_events(data, state, call):
                    yield event
            else:
                # One generator level, and the line iterator closed explicitly:
                # an abandoned async generator is finalised late (trio warns).
                lines = response.aiter_lines()
                try:
                    async for line in lines:
                        if not line.strip():
                            continue
                        for event in self._chunk_events(self._decode(line, call.model, "stream line"), state, call):
                            yield event
                        if state.done:
                            break
                    if state.done:
                        # Read the end of the body so that the connection goes
                        # back to the pool; a server that keeps it open after
                        # the done line costs only this bound.
                        await drain(lines, response, _DRAIN_SECONDS)
                finally:
                    with anyio.CancelScope(shield=True):
                        await lines.aclose()  # type: ignore[attr-defined]
            if not state.done:
                raise ServerError(
                    'the upstream stream ended without its final "done": true line',
                    provider=self.name,
                    model=call.model,
                )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, call.model) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()

    def _chunk_events(self, chunk: Any, state: _StreamState, call: ProviderCall) -> list[ProviderEvent]:
        """The events in one streamed chat response object; the final one
        (``done: true``) adds the usage and the finish. An ``error`` line
        raises its typed error."""
        if not isinstance(chunk, dict):
            raise ServerError(
                f"stream line is not a JSON object: {self._scrub(str(chunk))[:_SNIPPET]}",
                provider=self.name,
                model=call.model,
            )
        if chunk.get("error") is not None:
            raise self._classify(None, self._error_text(chunk), None, call.model)
        events: list[ProviderEvent] = []
        message = chunk.get("message")
        try:
            if message is not None:
                text = message.get("content")
                if text:
                    events.append(TextDelta(str(text)))
                for raw in message.get("tool_calls") or ():
                    tool_call = _ollama.tool_call_in(raw)
                    function = tool_call["function"]
                    events.append(
                        ToolCallDelta(state.tool_calls, tool_call["id"], function["name"], function["arguments"])
                    )
                    state.tool_calls += 1
        except (AttributeError, TypeError, ValueError) as exc:
            raise ServerError(
                f"stream line has an unexpected shape ({type(exc).__name__}: {exc})",
                provider=self.name,
                model=call.model,
            ) from exc
        if chunk.get("done") is True:
            state.done = True
            finish = _ollama.finish_reason(chunk.get("done_reason"), state.tool_calls > 0)
            if finish == "content_filter":
                raise self._filtered(call.model)
            tokens = _ollama.usage(chunk)
            if tokens is not None:
                events.append(UsageEvent(tokens))
            events.append(FinishEvent(finish))
        return events

    def parse_reply(self, data: Any, call: ProviderCall) -> ProviderReply:
        """A non-streamed chat response object as a :class:`ProviderReply`:
        Ollama's tool calls in OpenAI format (JSON-string arguments, generated
        ids), ``tool_calls`` as the finish reason when the model called tools.

        Raises :class:`ServerError` for another shape (or an answer that is
        not ``done``), the typed error for an ``error`` object, and
        :class:`ContentFilteredError` for ``done_reason: content_filter``.
        Without counts the usage is zero (the kernel estimates it).
        ``message.thinking`` of reasoning models goes to ``metadata``.
        """
        if isinstance(data, dict) and data.get("error") is not None:
            raise self._classify(None, self._error_text(data), None, call.model)
        try:
            message = data["message"]
            content = message.get("content") or ""
            if not isinstance(content, str):
                raise TypeError(f"message.content is {type(content).__name__}, not a string")
            raw_calls = message.get("tool_calls") or ()
            tool_calls = tuple(_ollama.tool_call_in(t) for t in raw_calls) or None
            thinking = message.get("thinking")
            done = data.get("done")
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise ServerError(
                f"upstream answer is not an Ollama chat response ({type(exc).__name__}: {exc})",
                provider=self.name,
                model=call.model,
            ) from exc
        if done is False:
            raise ServerError(
                'upstream answer is not finished ("done": false) although streaming was off',
                provider=self.name,
                model=call.model,
            )
        finish = _ollama.finish_reason(data.get("done_reason"), tool_calls is not None)
        if finish == "content_filter":
            raise self._filtered(call.model)
        metadata: dict[str, Any] = {}
        if thinking:
            metadata["thinking"] = thinking
        tokens = _ollama.usage(data) or TokenUsage()
        model = data.get("model")
        return ProviderReply(
            content, tokens, finish, tool_calls, str(model) if model is not None else None, metadata=metadata
        )

    # -- errors ----------------------------------------------------------------------

    def _filtered(self, model: str | None) -> ContentFilteredError:
        return ContentFilteredError(
            "the upstream's content filter stopped the answer (done_reason: content_filter)",
            provider=self.name,
            model=model,
        )

    @staticmethod
    def _error_text(data: Any) -> str:
        """The text of an error body: Ollama's ``{"error": "..."}``, an
        OpenAI-style ``{"error": {"message": ...}}`` from a proxy, or plain text."""
        if isinstance(data, bytes | str):
            raw = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            try:
                data = json.loads(raw) if raw.strip() else None
            except ValueError:
                return " ".join(raw.split())[:_SNIPPET] or "(empty body)"
        if isinstance(data, dict):
            error = data.get("error", data)
            if isinstance(error, dict):
                error = error.get("message") or error.get("detail") or json.dumps(error)[:_SNIPPET]
            if error is not None:
                return str(error)
        return "(no error message)" if data is None else str(data)[:_SNIPPET]

    def _classify(self, status: int | None, text: str, retry_after: float | None, model: str | None) -> SwarmgateError:
        where = f"HTTP {status}" if status is not None else "error in stream"
        message = self._scrub(f"upstream {where}: {text}")
        return classify(status, message, provider=self.name, model=model, retry_after=retry_after)

    def status_error(self, status: int, headers: Mapping[str, str], body: bytes, model: str | None) -> SwarmgateError:
        """The typed error for a non-2xx answer, from its status, its error
        text and ``Retry-After`` (the mapping is in :mod:`swarmgate_local._errors`)."""
        return self._classify(status, self._error_text(body), parse_retry_after(headers), model)

    # -- health ----------------------------------------------------------------------

    async def health_check(self) -> HealthStatus:
        """``GET /api/tags`` within the provider timeout: healthy on a 2xx;
        the detail counts the models and names configured ones not pulled
        (in ``openai`` mode: the compatible driver's ``GET /models``)."""
        if self.compat is not None:
            return await self.compat.health_check()
        timeout = self.config.timeout / 1000.0
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000.0

        try:
            with anyio.fail_after(timeout):
                response = await self.client.get(
                    _TAGS, headers={"accept": "application/json"}, timeout=self.probe_timeout()
                )
        except TimeoutError:
            return HealthStatus(False, elapsed(), detail=f"GET {_TAGS}: no answer within {timeout:g}s")
        except httpx.HTTPError as exc:
            return HealthStatus(False, elapsed(), detail=f"GET {_TAGS}: {self._transport_error(exc, None).message}")
        latency = elapsed()
        if not response.is_success:
            error = self.status_error(response.status_code, response.headers, response.content, None)
            return HealthStatus(False, latency, detail=f"GET {_TAGS}: {error.message}")
        return HealthStatus(True, latency, detail=self._tags_detail(response.content))

    def _tags_detail(self, body: bytes) -> str:
        try:
            listed = json.loads(body).get("models")
            names = {_tagged(str(m.get("name") or m.get("model"))) for m in listed}
        except (ValueError, AttributeError, TypeError):
            return f"GET {_TAGS}: ok (answer is not a model listing)"
        wanted = [model.upstream_name or name for name, model in self.config.models.items()]
        missing = [name for name in wanted if _tagged(name) not in names]
        detail = f"GET {_TAGS}: {len(names)} models"
        return detail + (f"; not pulled: {', '.join(missing)}" if missing else "")
