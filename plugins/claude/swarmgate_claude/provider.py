"""The ``claude`` driver: Anthropic's Messages API over one pooled httpx client.

``POST {endpoint}/messages`` with the ``x-api-key``, ``anthropic-version``
and (when set) ``anthropic-beta`` headers, answered as a ``message`` object
or, with ``"stream": true``, as Anthropic's named SSE events; ``GET
{endpoint}/models`` is the health probe. Request mapping is in
:mod:`swarmgate_claude.convert`.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import anyio
import attrs
import httpx

from swarmgate.config import InvalidValue, ProviderConfig
from swarmgate.errors import (
    AuthenticationError,
    ContentFilteredError,
    ContextLengthExceededError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    SwarmgateError,
    error_for_status,
)
from swarmgate.http import HTTPProvider, aiter_sse, drain, loads, parse_retry_after
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
from swarmgate_claude.convert import (
    convert_messages,
    convert_tool_choice,
    convert_tools,
    finish_reason,
    parse_content,
    parse_usage,
    tool_call,
)

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_VERSION",
    "ClaudeProvider",
    "ClaudeSettings",
]

DEFAULT_ENDPOINT = "https://api.anthropic.com/v1"
"""Where a ``claude`` provider without an ``endpoint`` sends requests."""

DEFAULT_VERSION = "2023-06-01"
"""The ``anthropic-version`` header sent unless ``anthropicVersion`` says otherwise."""

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` when neither the request nor the model config sets it
(the Messages API requires it; every current Claude model accepts 4096)."""

try:
    _VERSION = importlib.metadata.version("swarmgate-claude")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0.0.0"

_USER_AGENT = f"swarmgate-claude/{_VERSION}"
_STREAM_HEADERS = {"content-type": "application/json", "accept": "text/event-stream"}
#: How much of an unparseable body goes into an error message.
_SNIPPET = 300
#: Seconds to wait for the end of a streamed body after ``message_stop``.
_DRAIN_SECONDS = 0.25
#: Phrases of Anthropic's ``invalid_request_error`` messages for a prompt
#: that does not fit ("prompt is too long: 208310 tokens > 200000 maximum",
#: "input length and `max_tokens` exceed context limit: ...").
_CONTEXT_MARKERS = ("prompt is too long", "exceed context limit", "context window", "maximum context length")
#: Phrase of the 400 Anthropic sends when its filter blocks the output
#: ("Output blocked by content filtering policy").
_FILTER_MARKER = "content filtering"
#: Error ``type`` -> class; other types (``invalid_request_error``,
#: ``api_error``, unknown ones) are decided by the HTTP status.
_ERROR_TYPES: dict[str, type[SwarmgateError]] = {
    "overloaded_error": OverloadedError,
    "rate_limit_error": RateLimitedError,
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "billing_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "request_too_large": ContextLengthExceededError,
    "timeout_error": ProviderTimeoutError,
}


@attrs.frozen
class ClaudeSettings:
    """The ``claude`` type's own config keys.

    ``anthropic_version`` (``anthropicVersion``) is the ``anthropic-version``
    header; ``anthropic_beta`` (``anthropicBeta``) the ``anthropic-beta``
    header (comma-separated beta names), not sent when unset;
    ``default_max_tokens`` (``defaultMaxTokens``) the ``max_tokens`` sent
    when neither the request nor the model's ``maxTokens`` sets one.
    """

    anthropic_version: str = attrs.field(default=DEFAULT_VERSION)
    anthropic_beta: str | None = None
    default_max_tokens: int = attrs.field(default=DEFAULT_MAX_TOKENS)

    @anthropic_version.validator
    def _check_version(self, _attribute: object, value: str) -> None:
        if not value.strip():
            raise InvalidValue("anthropicVersion", "must not be empty (e.g. '2023-06-01')")

    @default_max_tokens.validator
    def _check_max_tokens(self, _attribute: object, value: int) -> None:
        if value <= 0:
            raise InvalidValue("defaultMaxTokens", f"must be a positive integer, got {value}")


@attrs.frozen
class _UpstreamError:
    """What an error body says: Anthropic's ``type`` and ``message``, and the ``request_id``."""

    message: str
    type: str | None = None
    request_id: str | None = None


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


class ClaudeProvider(HTTPProvider):
    """A provider speaking Anthropic's Messages API (see the package docstring)."""

    settings_class: ClassVar[type | None] = ClaudeSettings
    #: The Messages API continues a trailing assistant message (prefill), so a
    #: stream broken elsewhere can continue here (routing.streamFailover).
    supports_prefill: ClassVar[bool] = True

    def __init__(self, name: str, config: ProviderConfig, settings: ClaudeSettings | None = None) -> None:
        super().__init__(name, config, settings if settings is not None else ClaudeSettings())
        self.options: ClaudeSettings = self.settings
        #: The API base URL (no trailing slash).
        self.endpoint = (config.endpoint or DEFAULT_ENDPOINT).rstrip("/")

    # -- lifecycle -------------------------------------------------------------------

    def default_headers(self) -> dict[str, str]:
        """Headers sent with every request: ``x-api-key`` (only when an API
        key is configured), ``anthropic-version``, ``anthropic-beta`` (when
        set) and ``user-agent``. The config's ``headers`` are laid over these
        by :func:`swarmgate.http.make_client`, names compared case-insensitively."""
        headers = {"user-agent": _USER_AGENT, "anthropic-version": self.options.anthropic_version}
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        if self.options.anthropic_beta:
            headers["anthropic-beta"] = self.options.anthropic_beta
        return headers

    # -- requests --------------------------------------------------------------------

    def max_tokens(self, call: ProviderCall) -> int:
        """The request's ``max_tokens``, else the model's ``maxTokens``, else
        the ``defaultMaxTokens`` setting (the API requires a value)."""
        return call.max_tokens if call.max_tokens is not None else self.options.default_max_tokens

    def request_body(self, call: ProviderCall, *, stream: bool) -> dict[str, Any]:
        """The JSON body for ``call``: ``model`` (the upstream name),
        ``max_tokens`` (:meth:`max_tokens`), ``messages`` and ``system``
        (:func:`~swarmgate_claude.convert.convert_messages`), the sampling
        fields that are set (``temperature``, ``top_p``, ``stop`` as
        ``stop_sequences``), ``tools`` and, with tools, ``tool_choice``,
        ``metadata.user_id`` from ``user``, ``stream`` when streaming; then
        ``request.extra`` merged on top (a value of ``None`` removes that
        field). ``response_format`` has no Messages API equivalent and is
        not sent.

        Raises :class:`InvalidRequestError` for what the API cannot express.
        """
        request = call.request
        try:
            system, messages = convert_messages(request.messages)
            tools = convert_tools(request.tools) if request.tools else None
            choice = convert_tool_choice(request.tool_choice) if tools and request.tool_choice is not None else None
        except InvalidRequestError as exc:
            raise InvalidRequestError(exc.message, provider=self.name, model=call.model) from None
        body: dict[str, Any] = {"model": call.upstream_model, "max_tokens": self.max_tokens(call)}
        if system is not None:
            body["system"] = system
        body["messages"] = messages
        if call.temperature is not None:
            body["temperature"] = call.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if tools:
            body["tools"] = tools
        if choice is not None:
            body["tool_choice"] = choice
        if request.user is not None:
            body["metadata"] = {"user_id": request.user}
        if stream:
            body["stream"] = True
        for key, value in request.extra.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        return body

    def _encode(self, call: ProviderCall, *, stream: bool) -> bytes:
        return self.encode_json(self.request_body(call, stream=stream), call.model)

    async def complete(self, call: ProviderCall) -> ProviderReply:
        """``POST /messages``; the answer as a :class:`ProviderReply`."""
        return self.parse_message(await self.post_json("/messages", self._encode(call, stream=False), call), call)

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        """``POST /messages`` with ``"stream": true``: text and tool-call
        deltas as they arrive, the usage (when the upstream reported any),
        then the finish reason. An ``error`` event is raised as its typed
        error, a ``refusal`` stop reason as :class:`ContentFilteredError`.
        A server that ignores ``stream`` and answers JSON is handled too."""
        client = self.client
        request = client.build_request(
            "POST",
            "/messages",
            content=self._encode(call, stream=True),
            headers=_STREAM_HEADERS,
            timeout=self.request_timeout(call),
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
                reply = self.parse_message(self._decode(await response.aread(), call.model, "answer"), call)
                for event in _reply_events(reply):
                    yield event
                return
            state = _StreamState()
            # One generator level, and aiter_sse closed explicitly: an
            # abandoned async generator is finalised late (trio warns).
            events = aiter_sse(response)
            try:
                async for sse in events:
                    for event in self._event(self._decode(sse.data, call.model, "stream event"), state, call):
                        yield event
                    if state.stopped:
                        break
                if state.stopped:
                    # Read the end of the body so that the connection goes
                    # back to the pool; a server that keeps it open after
                    # message_stop costs only this bound (then it is dropped).
                    await drain(events, response, _DRAIN_SECONDS)
            finally:
                with anyio.CancelScope(shield=True):
                    await events.aclose()
            if not state.stopped and state.stop_reason is None:
                raise ServerError(
                    "the upstream stream ended without message_stop", provider=self.name, model=call.model
                )
            if state.stop_reason == "refusal":
                raise self._refusal(state.text(), state.stop_details, call.model)
            usage = parse_usage(state.usage)
            if usage is not None:
                yield UsageEvent(usage)
            yield FinishEvent(finish_reason(state.stop_reason))
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, call.model) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()

    def _event(self, data: Any, state: _StreamState, call: ProviderCall) -> list[ProviderEvent]:
        """The provider events of one Anthropic stream event, updating
        ``state``; unknown event and delta types are skipped (Anthropic may
        add new ones)."""
        if not isinstance(data, dict):
            raise ServerError(
                f"stream event is not a JSON object: {self._scrub(str(data))[:_SNIPPET]}",
                provider=self.name,
                model=call.model,
            )
        kind = data.get("type")
        try:
            if kind == "content_block_delta":
                delta = data["delta"]
                delta_type = delta.get("type")
                if delta_type == "text_delta":
                    state.texts.append(str(delta.get("text") or ""))
                    return [TextDelta(state.texts[-1])] if state.texts[-1] else []
                if delta_type == "input_json_delta":
                    position = state.tools.get(int(data["index"]))
                    if position is None:
                        raise ServerError(
                            f"input_json_delta for block {data['index']} which is not a tool_use block",
                            provider=self.name,
                            model=call.model,
                        )
                    return [ToolCallDelta(position, arguments=str(delta.get("partial_json") or ""))]
                return []
            if kind == "content_block_start":
                block = data["content_block"]
                if block.get("type") == "tool_use":
                    position = len(state.tools)
                    state.tools[int(data["index"])] = position
                    initial = block.get("input")
                    arguments = tool_call(block)["function"]["arguments"] if initial else ""
                    return [
                        ToolCallDelta(
                            position, _optional_str(block.get("id")), _optional_str(block.get("name")), arguments
                        )
                    ]
                if block.get("type") == "text" and block.get("text"):
                    state.texts.append(str(block["text"]))
                    return [TextDelta(state.texts[-1])]
                return []
            if kind == "message_start":
                message = data["message"]
                usage = message.get("usage")
                if isinstance(usage, dict):
                    state.usage.update({k: v for k, v in usage.items() if v is not None})
                return []
            if kind == "message_delta":
                delta = data.get("delta") or {}
                if delta.get("stop_reason") is not None:
                    state.stop_reason = str(delta["stop_reason"])
                if delta.get("stop_details") is not None:
                    state.stop_details = delta["stop_details"]
                usage = data.get("usage")
                if isinstance(usage, dict):
                    state.usage.update({k: v for k, v in usage.items() if v is not None})
                return []
            if kind == "message_stop":
                state.stopped = True
                return []
            if kind == "error":
                raise self._classify(None, self._error_info(data), None, call.model)
        except (KeyError, AttributeError, TypeError, ValueError) as exc:
            raise ServerError(
                f"stream event {kind!r} has an unexpected shape ({type(exc).__name__}: {exc})",
                provider=self.name,
                model=call.model,
            ) from exc
        return []  # ping, content_block_stop, and event types added later

    def parse_message(self, data: Any, call: ProviderCall) -> ProviderReply:
        """A ``message`` object as a :class:`ProviderReply`.

        Raises the typed error for an error object, :class:`ServerError`
        for another shape, :class:`ContentFilteredError` for ``stop_reason:
        refusal``. Without usable ``usage`` the tokens are zero (the kernel
        then estimates them and flags ``usage_estimated``); cache reads and
        writes are counted as input and also reported in ``metadata``.
        """
        if isinstance(data, dict) and data.get("type") == "error":
            raise self._classify(None, self._error_info(data), None, call.model)
        try:
            content, tools = parse_content(data["content"])
            stop_reason = data.get("stop_reason")
        except (KeyError, TypeError, AttributeError) as exc:
            raise ServerError(
                f"upstream answer is not a message ({type(exc).__name__}: {exc})",
                provider=self.name,
                model=call.model,
            ) from exc
        if stop_reason == "refusal":
            raise self._refusal(content, data.get("stop_details"), call.model)
        metadata: dict[str, Any] = {}
        if data.get("id"):
            metadata["upstream_id"] = data["id"]
        if stop_reason is not None:
            metadata["stop_reason"] = stop_reason
        if data.get("stop_sequence"):
            metadata["stop_sequence"] = data["stop_sequence"]
        usage = data.get("usage")
        if isinstance(usage, dict):
            for key in ("cache_creation_input_tokens", "cache_read_input_tokens"):
                if isinstance(usage.get(key), int) and usage[key]:
                    metadata[key] = usage[key]
        tokens = parse_usage(usage) or TokenUsage()
        model = data.get("model")
        return ProviderReply(
            content,
            tokens,
            finish_reason(stop_reason),
            tools,
            str(model) if model is not None else None,
            metadata=metadata,
        )

    # -- errors ----------------------------------------------------------------------

    def _refusal(self, text: str, details: Any, model: str | None) -> ContentFilteredError:
        """The error for ``stop_reason: refusal``, with the refusal's category
        and explanation (``stop_details``) or the text the model wrote."""
        parts = ["the model refused to answer (stop_reason: refusal)"]
        if isinstance(details, dict):
            if details.get("category"):
                parts.append(f"category {details['category']}")
            if details.get("explanation"):
                parts.append(str(details["explanation"]))
        if len(parts) == 1 and text.strip():
            parts.append(" ".join(text.split())[:_SNIPPET])
        return ContentFilteredError(self._scrub(": ".join(parts)), provider=self.name, model=model)

    def _error_info(self, data: Any) -> _UpstreamError:
        """The type, message and request id of an Anthropic error body (or of
        another server's JSON error, or of plain text)."""
        if isinstance(data, bytes | str):
            try:
                data = loads(data) if data else None
            except ValueError:
                text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
                return _UpstreamError(" ".join(text.split())[:_SNIPPET] or "(empty body)")
        if isinstance(data, dict):
            error = data.get("error", data)
            request_id = _optional_str(data.get("request_id"))
            if isinstance(error, dict):
                message = error.get("message") or error.get("detail") or json.dumps(error)[:_SNIPPET]
                return _UpstreamError(str(message), _optional_str(error.get("type")), request_id)
            if error is not None:
                return _UpstreamError(str(error)[:_SNIPPET], None, request_id)
        return _UpstreamError("(no error message)" if data is None else str(data)[:_SNIPPET])

    def status_error(self, status: int, headers: Mapping[str, str], body: bytes, model: str | None) -> SwarmgateError:
        """The typed error for a non-2xx answer, from its status, headers
        (``retry-after``, ``request-id``) and error body (see :meth:`_classify`)."""
        info = self._error_info(body)
        if info.request_id is None and headers.get("request-id"):
            info = attrs.evolve(info, request_id=headers["request-id"])
        return self._classify(status, info, parse_retry_after(headers), model)

    def _classify(
        self, status: int | None, info: _UpstreamError, retry_after: float | None, model: str | None
    ) -> SwarmgateError:
        """Status and error body to the taxonomy. First the message: a prompt
        too long for the context is ContextLengthExceededError, "Output blocked
        by content filtering policy" is ContentFilteredError. Then the error
        type: ``overloaded_error`` OverloadedError, ``rate_limit_error``
        RateLimitedError (with ``retry_after``), ``authentication_error``
        AuthenticationError, ``permission_error`` and ``billing_error``
        PermissionDeniedError, ``not_found_error`` NotFoundError,
        ``request_too_large`` ContextLengthExceededError, ``timeout_error``
        ProviderTimeoutError. Otherwise (``invalid_request_error``,
        ``api_error``, unknown) the status decides
        (:func:`~swarmgate.errors.error_for_status`); an error event inside a
        stream (no status) is then InvalidRequestError for
        ``invalid_request_error``, else ServerError. The message keeps the
        upstream's words and never contains the API key."""
        where = f"HTTP {status}" if status is not None else "error event in stream"
        label = f" [{info.type}]" if info.type else ""
        request_id = f" (request_id: {info.request_id})" if info.request_id else ""
        message = self._scrub(f"upstream {where}: {info.message}{label}{request_id}")
        common: dict[str, Any] = {"provider": self.name, "model": model, "upstream_status": status}
        text = info.message.lower()
        if any(marker in text for marker in _CONTEXT_MARKERS):
            return ContextLengthExceededError(message, **common)
        if _FILTER_MARKER in text:
            return ContentFilteredError(message, **common)
        cls = _ERROR_TYPES.get(info.type or "")
        if cls is not None:
            return cls(message, retry_after=retry_after, **common)
        if status is not None:
            return error_for_status(status, message, provider=self.name, model=model, retry_after=retry_after)
        if info.type == "invalid_request_error":
            return InvalidRequestError(message, **common)
        return ServerError(message, retry_after=retry_after, **common)

    # -- health ----------------------------------------------------------------------

    async def health_check(self) -> HealthStatus:
        """``GET /models`` (Anthropic's models listing, with the key headers)
        within the provider timeout: healthy on a 2xx."""
        timeout = self.config.timeout / 1000.0
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000.0

        try:
            with anyio.fail_after(timeout):
                response = await self.client.get(
                    "/models", headers={"accept": "application/json"}, timeout=self.probe_timeout()
                )
        except TimeoutError:
            return HealthStatus(False, elapsed(), detail=f"GET /models: no answer within {timeout:g}s")
        except httpx.HTTPError as exc:
            return HealthStatus(False, elapsed(), detail=f"GET /models: {self._transport_error(exc, None).message}")
        latency = elapsed()
        if not response.is_success:
            error = self.status_error(response.status_code, response.headers, response.content, None)
            return HealthStatus(False, latency, detail=f"GET /models: {error.message}")
        try:
            listed = loads(response.content).get("data")
            detail = f"GET /models: {len(listed)} models" if isinstance(listed, list) else "GET /models: ok"
        except (ValueError, AttributeError):
            detail = "GET /models: ok (answer is not a models listing)"
        return HealthStatus(True, latency, detail=detail)


@attrs.define
class _StreamState:
    """What a stream has said so far: the text pieces, the tool_use blocks
    (content-block index -> OpenAI tool-call index), the usage fields
    (``message_start``'s, updated by ``message_delta``'s cumulative ones),
    the stop reason and details, and whether ``message_stop`` arrived."""

    texts: list[str] = attrs.field(factory=list)
    tools: dict[int, int] = attrs.field(factory=dict)
    usage: dict[str, Any] = attrs.field(factory=dict)
    stop_reason: str | None = None
    stop_details: Any = None
    stopped: bool = False

    def text(self) -> str:
        return "".join(self.texts)


def _reply_events(reply: ProviderReply) -> list[ProviderEvent]:
    """A whole reply as stream events (for a server that answered a stream
    request with JSON)."""
    events: list[ProviderEvent] = []
    if reply.content:
        events.append(TextDelta(reply.content))
    for index, call in enumerate(reply.tool_calls or ()):
        function = call["function"]
        events.append(ToolCallDelta(index, call["id"], function["name"], function["arguments"]))
    if reply.tokens.total:
        events.append(UsageEvent(reply.tokens))
    events.append(FinishEvent(reply.finish_reason))
    return events
