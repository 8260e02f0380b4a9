"""The ``qwen`` driver: DashScope's native API, or its compatible mode through ``swarmgate-openai``."""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.metadata
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import attrs
import httpx

from swarmgate.config import ProviderConfig
from swarmgate.errors import ContentFilteredError, InvalidRequestError, ServerError, SwarmgateError
from swarmgate.http import HTTPProvider, aiter_sse, drain, parse_retry_after
from swarmgate.models import (
    ZERO_USAGE,
    FinishEvent,
    HealthStatus,
    ProviderEvent,
    ProviderReply,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
)
from swarmgate.provider import ProviderCall
from swarmgate_openai import OpenAIProvider, OpenAISettings
from swarmgate_qwen import wire
from swarmgate_qwen.errors import DashScopeError, classify, describe, refine
from swarmgate_qwen.settings import OPENAI_COMPATIBLE, QwenSettings

DEFAULT_ENDPOINT = "https://dashscope.aliyuncs.com/api/v1"
"""The native API base of a ``qwen`` provider without an ``endpoint`` (mainland China region)."""

DEFAULT_COMPATIBLE_ENDPOINT = "https://dashscope.aliyuncs.com/compatible-mode/v1"
"""The API base in ``"mode": "openai-compatible"`` without an ``endpoint``."""

WORKSPACE_HEADER = "X-DashScope-WorkSpace"
"""The header naming a Model Studio workspace (the ``workspace`` setting)."""

try:
    _VERSION = importlib.metadata.version("swarmgate-qwen")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0.0.0"

_USER_AGENT = f"swarmgate-qwen/{_VERSION}"
_STREAM_HEADERS = {"content-type": "application/json", "accept": "text/event-stream", "x-dashscope-sse": "enable"}
#: Seconds to keep reading a stream after its last frame, so the connection
#: goes back to the pool; a server that keeps it open costs only this bound.
_DRAIN_SECONDS = 0.25


class CompatibleDelegate(OpenAIProvider):
    """The ``openai`` driver as the compatible mode uses it: its errors for
    non-2xx answers are re-typed with DashScope's codes
    (:func:`swarmgate_qwen.errors.refine`) while the ``Retry-After`` header
    is still at hand."""

    def status_error(self, status: int, headers: Mapping[str, str], body: bytes, model: str | None) -> SwarmgateError:
        """The ``openai`` driver's error, refined with DashScope's codes."""
        error = super().status_error(status, headers, body, model)
        return refine(error, retry_after=parse_retry_after(headers))


def default_health_url(endpoint: str, *, compatible: bool) -> str:
    """Where the health probe looks by default: ``{endpoint}/models`` in
    compatible mode; for a native endpoint ``.../api/v1``, the compatible
    mode's listing beside it (``.../compatible-mode/v1/models``), else
    ``/compatible-mode/v1/models`` on the endpoint's host. DashScope's
    native API has no models listing; this one is cheap and checks the key."""
    if compatible:
        return f"{endpoint}/models"
    parts = urlsplit(endpoint)
    path = parts.path.rstrip("/")
    prefix = path[: -len("/api/v1")] if path.endswith("/api/v1") else ""
    return urlunsplit((parts.scheme, parts.netloc, f"{prefix}/compatible-mode/v1/models", "", ""))


class QwenProvider(HTTPProvider):
    """A provider speaking Alibaba DashScope's API (Qwen models).

    Native mode (default): ``POST {endpoint}/services/aigc/text-generation/generation``
    (or ``.../multimodal-generation/generation`` for images, audio, video and
    the models in ``multimodalModels``), streamed over SSE with
    ``X-DashScope-SSE: enable`` and ``incremental_output``. Compatible mode
    (``"mode": "openai-compatible"``): every call is delegated to
    :class:`swarmgate_openai.OpenAIProvider` (as :class:`CompatibleDelegate`)
    at ``{endpoint}/chat/completions``; its errors are re-typed with
    DashScope's codes (:func:`swarmgate_qwen.errors.refine`), those of
    error statuses with their ``Retry-After``, those inside streams after.

    One pooled ``httpx.AsyncClient`` per instance (the delegate has its own),
    opened in :meth:`start`, closed in :meth:`aclose`.
    """

    settings_class: ClassVar[type | None] = QwenSettings
    requires_api_key: ClassVar[bool] = True

    def __init__(self, name: str, config: ProviderConfig, settings: QwenSettings | None = None) -> None:
        super().__init__(name, config, settings if settings is not None else QwenSettings())
        self.options: QwenSettings = self.settings
        #: Whether calls go to the OpenAI-compatible API (through :attr:`delegate`).
        self.compatible = self.options.mode == OPENAI_COMPATIBLE
        default = DEFAULT_COMPATIBLE_ENDPOINT if self.compatible else DEFAULT_ENDPOINT
        #: The API base URL (no trailing slash).
        self.endpoint = (config.endpoint or default).rstrip("/")
        #: What :meth:`health_check` GETs.
        self.health_url = self.options.health_url or default_health_url(self.endpoint, compatible=self.compatible)
        self._patterns = tuple(pattern.lower() for pattern in self.options.multimodal_models)
        #: The ``openai`` driver doing the work in compatible mode (``None`` in native mode).
        self.delegate: CompatibleDelegate | None = None
        if self.compatible:
            delegated = attrs.evolve(
                config, endpoint=self.endpoint, headers={**self._workspace_header(), **config.headers}, settings={}
            )
            self.delegate = CompatibleDelegate(name, delegated, OpenAISettings(stream_usage=self.options.stream_usage))

    # -- lifecycle -------------------------------------------------------------------

    def _workspace_header(self) -> dict[str, str]:
        return {WORKSPACE_HEADER: self.options.workspace} if self.options.workspace else {}

    def default_headers(self) -> dict[str, str]:
        """Headers sent with every native request: ``Authorization: Bearer``
        (when a key is configured), ``X-DashScope-WorkSpace`` (when
        ``workspace`` is set) and ``User-Agent``; the config's ``headers``
        are laid over them by :func:`swarmgate.http.make_client`."""
        headers = {"User-Agent": _USER_AGENT, **self._workspace_header()}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    async def start(self) -> None:
        """Open the connection pool (compatible mode: the delegate's, and
        ours only when ``healthUrl`` is set)."""
        if self.delegate is not None:
            self.delegate.manager = self.manager
            await self.delegate.start()
        if self.delegate is None or self.options.health_url is not None:
            await super().start()

    async def aclose(self) -> None:
        """Close the connection pools."""
        try:
            await super().aclose()
        finally:
            if self.delegate is not None:
                await self.delegate.aclose()

    # -- requests --------------------------------------------------------------------

    def uses_multimodal(self, call: ProviderCall) -> bool:
        """Does ``call`` go to the multimodal-generation endpoint? Yes when a
        message has image, audio or video parts, or the upstream model name
        matches a ``multimodalModels`` pattern (case-insensitive)."""
        if wire.has_media(call.request.messages):
            return True
        model = call.upstream_model.lower()
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self._patterns)

    def request_body(self, call: ProviderCall, *, stream: bool, multimodal: bool | None = None) -> dict[str, Any]:
        """The native JSON body for ``call`` (see :func:`swarmgate_qwen.wire.request_body`);
        ``multimodal`` defaults to :meth:`uses_multimodal`. A subclass may
        override this to adjust what is sent."""
        if multimodal is None:
            multimodal = self.uses_multimodal(call)
        return wire.request_body(call, stream=stream, multimodal=multimodal)

    def _prepare(self, call: ProviderCall, *, stream: bool) -> tuple[str, bytes]:
        """The path and encoded body of a native call."""
        multimodal = self.uses_multimodal(call)
        try:
            body = self.request_body(call, stream=stream, multimodal=multimodal)
        except InvalidRequestError as exc:
            raise InvalidRequestError(exc.message, provider=self.name, model=call.model) from exc
        content = self.encode_json(body, call.model)
        return (wire.MULTIMODAL_GENERATION if multimodal else wire.TEXT_GENERATION), content

    async def complete(self, call: ProviderCall) -> ProviderReply:
        """One generation call; the answer as a :class:`ProviderReply`
        (usage from DashScope's ``usage``, zero when it sends none)."""
        if self.delegate is not None:
            try:
                return await self.delegate.complete(call)
            except SwarmgateError as exc:
                refined = refine(exc)
                if refined is exc:
                    raise
                raise refined from exc
        path, content = self._prepare(call, stream=False)
        return self.parse_reply(await self.post_json(path, content, call), call)

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        """One generation call streamed over SSE (``incremental_output``):
        text and tool-call deltas as frames arrive, the usage so far with
        every frame that carries it (which also keeps the stream alive while
        a thinking model reasons), then the finish reason. An ``event:error``
        frame ends the stream with its typed error. A server that answers
        JSON instead of SSE is handled too."""
        if self.delegate is not None:
            inner = self.delegate.stream(call)
            try:
                async for event in inner:
                    yield event
            except SwarmgateError as exc:
                refined = refine(exc)
                if refined is exc:
                    raise
                raise refined from exc
            finally:
                if isinstance(inner, AsyncGenerator):
                    with anyio.CancelScope(shield=True):
                        await inner.aclose()
            return
        client = self.client
        path, content = self._prepare(call, stream=True)
        request = client.build_request(
            "POST", path, content=content, headers=_STREAM_HEADERS, timeout=self.request_timeout(call)
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, call.model) from exc
        try:
            if not response.is_success:
                body = await response.aread()
                raise self.status_error(response.status_code, response.headers, body, call.model)
            if response.headers.get("content-type", "").startswith("application/json"):
                reply = self.parse_reply(self._decode(await response.aread(), call.model, "answer"), call)
                if reply.content:
                    yield TextDelta(reply.content)
                for index, tool_call in enumerate(reply.tool_calls or ()):
                    function = tool_call["function"]
                    yield ToolCallDelta(index, tool_call["id"] or None, function["name"] or None, function["arguments"])
                if reply.tokens.total:
                    yield UsageEvent(reply.tokens)
                yield FinishEvent(reply.finish_reason)
                return
            # One generator level, and aiter_sse closed explicitly: an
            # abandoned async generator is finalised late (trio warns).
            events = aiter_sse(response)
            finish: str | None = None
            try:
                async for sse in events:
                    found, finish = self._frame_events(sse.event, sse.data, call)
                    for event in found:
                        yield event
                    if finish is not None:
                        break
                if finish is not None:
                    # The last frame is in; read the end of the body so the
                    # connection can be reused, within a small bound.
                    await drain(events, response, _DRAIN_SECONDS)
            finally:
                with anyio.CancelScope(shield=True):
                    await events.aclose()
            if finish is None:
                raise ServerError(
                    "the upstream stream ended without a finish_reason", provider=self.name, model=call.model
                )
            if finish == "content_filter":
                raise self._filtered(call.model)
            yield FinishEvent(finish)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, call.model) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()

    def _frame_events(self, event: str, data: str, call: ProviderCall) -> tuple[list[ProviderEvent], str | None]:
        """The events in one SSE frame and its finish reason (``None`` while
        generating). Raises the typed error of an error frame, and
        :class:`ServerError` for a frame that is not DashScope's shape."""
        if event == "error":
            raise self._classify(None, wire.error_info(data), None, call.model)
        parsed = self._decode(data, call.model, "stream frame")
        error = wire.frame_error(parsed)
        if error is not None:
            raise self._classify(None, error, None, call.model)
        try:
            answer = wire.parse_answer(parsed)
            deltas = wire.tool_call_deltas(answer.tool_calls)
        except (wire.ShapeError, TypeError, ValueError) as exc:
            raise ServerError(
                f"stream frame is not a DashScope generation result ({exc})", provider=self.name, model=call.model
            ) from exc
        found: list[ProviderEvent] = []
        if answer.text:
            found.append(TextDelta(answer.text))
        found.extend(deltas)
        if answer.usage is not None:
            found.append(UsageEvent(answer.usage))
        return found, answer.finish_reason

    def parse_reply(self, data: Any, call: ProviderCall) -> ProviderReply:
        """A whole answer object as a :class:`ProviderReply`: the message text
        (parts joined), tool calls in OpenAI format, the finish reason
        (``stop`` when absent) and the usage (zero when absent: the kernel
        then estimates it). ``metadata`` has DashScope's ``request_id`` and a
        thinking model's ``reasoning``. Raises the typed error of an error
        object, :class:`ServerError` for another shape and
        :class:`ContentFilteredError` for ``finish_reason: content_filter``."""
        error = wire.frame_error(data)
        if error is not None:
            raise self._classify(None, error, None, call.model, where="error in answer")
        try:
            answer = wire.parse_answer(data)
            tools = wire.tool_calls(answer.tool_calls)
        except (wire.ShapeError, TypeError, ValueError) as exc:
            raise ServerError(
                f"upstream answer is not a DashScope generation result ({exc})", provider=self.name, model=call.model
            ) from exc
        if not answer.has_output:
            raise ServerError(
                "upstream answer has neither output.choices nor output.text", provider=self.name, model=call.model
            )
        finish = answer.finish_reason or "stop"
        if finish == "content_filter":
            raise self._filtered(call.model)
        metadata: dict[str, Any] = {}
        if answer.request_id:
            metadata["request_id"] = answer.request_id
        if answer.reasoning:
            metadata["reasoning"] = answer.reasoning
        return ProviderReply(answer.text, answer.usage or ZERO_USAGE, finish, tools or None, metadata=metadata)

    # -- errors ----------------------------------------------------------------------

    def _filtered(self, model: str | None) -> ContentFilteredError:
        return ContentFilteredError(
            "the upstream's content filter stopped the answer (finish_reason: content_filter)",
            provider=self.name,
            model=model,
        )

    def _classify(
        self,
        status: int | None,
        info: DashScopeError,
        retry_after: float | None,
        model: str | None,
        *,
        where: str | None = None,
    ) -> SwarmgateError:
        """DashScope's code and the status to the taxonomy
        (:func:`swarmgate_qwen.errors.classify`), the message scrubbed of the key."""
        message = self._scrub(describe(status, info, where=where))
        return classify(status, info, provider=self.name, model=model, retry_after=retry_after, message=message)

    def status_error(self, status: int, headers: Mapping[str, str], body: bytes, model: str | None) -> SwarmgateError:
        """The typed error for a non-2xx answer, from its status, headers
        (``Retry-After``) and error body (JSON, or an SSE error frame)."""
        return self._classify(status, wire.error_info(body), parse_retry_after(headers), model)

    # -- health ----------------------------------------------------------------------

    async def health_check(self) -> HealthStatus:
        """GET :attr:`health_url` within the provider timeout: healthy on a
        2xx (the compatible mode's models listing by default, which also
        checks the key). In compatible mode without ``healthUrl`` the
        delegate probes ``{endpoint}/models``."""
        if self._client is None and self.delegate is not None:
            return await self.delegate.health_check()
        timeout = self.config.timeout / 1000.0
        url = self.health_url
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000.0

        try:
            with anyio.fail_after(timeout):
                response = await self.client.get(
                    url, headers={"accept": "application/json"}, timeout=self.probe_timeout()
                )
        except TimeoutError:
            return HealthStatus(False, elapsed(), detail=f"GET {url}: no answer within {timeout:g}s")
        except httpx.HTTPError as exc:
            return HealthStatus(False, elapsed(), detail=f"GET {url}: {self._transport_error(exc, None).message}")
        latency = elapsed()
        if not response.is_success:
            error = self.status_error(response.status_code, response.headers, response.content, None)
            return HealthStatus(False, latency, detail=f"GET {url}: {error.message}")
        detail = f"GET {url}: ok"
        with contextlib.suppress(ValueError, AttributeError):
            listed = wire.loads(response.content).get("data")
            if isinstance(listed, list):
                detail = f"GET {url}: {len(listed)} models"
        return HealthStatus(True, latency, detail=detail)
