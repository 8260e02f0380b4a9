"""The ``openai`` provider type: the OpenAI Chat Completions wire format.

Works with ``api.openai.com`` (the default ``endpoint``) and with any
OpenAI-compatible server (vLLM, llama.cpp, Ollama, LM Studio, Azure-style
proxies, DashScope's compatible mode, ...): set ``endpoint`` to its API base
URL, the one that ``/chat/completions`` and ``/models`` hang off.

Config (the guide's format)::

    "openai": {
      "type": "openai",
      "endpoint": "https://api.openai.com/v1",   # optional
      "apiKey": "${OPENAI_API_KEY}",             # optional: sent as a Bearer token when set
      "organization": "org-...",                  # optional: OpenAI-Organization header
      "project": "proj_...",                      # optional: OpenAI-Project header
      "streamUsage": true,                        # ask for usage in streams (stream_options)
      "models": {"gpt-4o-mini": {"inputCostPerToken": 1.5e-7, "outputCostPerToken": 6e-7}}
    }

One pooled ``httpx.AsyncClient`` per provider instance, opened in
:meth:`OpenAIProvider.start` and closed in :meth:`OpenAIProvider.aclose`.
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

from swarmgate.config import ProviderConfig
from swarmgate.errors import (
    ContentFilteredError,
    ContextLengthExceededError,
    PermissionDeniedError,
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
from swarmgate.stats import estimate_tokens

__all__ = ["DEFAULT_ENDPOINT", "OpenAIProvider", "OpenAISettings"]

DEFAULT_ENDPOINT = "https://api.openai.com/v1"
"""Where an ``openai`` provider without an ``endpoint`` sends requests."""

try:
    _VERSION = importlib.metadata.version("swarmgate-openai")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0.0.0"

_USER_AGENT = f"swarmgate-openai/{_VERSION}"
_STREAM_HEADERS = {"content-type": "application/json", "accept": "text/event-stream"}
_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})
#: How much of a non-JSON error body goes into an error message.
_SNIPPET = 300
#: Seconds to wait for the end of a streamed body after ``[DONE]``.
_DRAIN_SECONDS = 0.25


@attrs.frozen
class OpenAISettings:
    """The ``openai`` type's own config keys.

    ``organization`` and ``project`` are sent as the ``OpenAI-Organization``
    and ``OpenAI-Project`` headers. ``stream_usage`` (``streamUsage``,
    default true) asks for token usage at the end of streams
    (``stream_options.include_usage``); turn it off for a compatible server
    that rejects ``stream_options`` (the kernel then estimates usage).
    """

    organization: str | None = None
    project: str | None = None
    stream_usage: bool = True


@attrs.frozen
class _UpstreamError:
    """What an error body says: ``message`` plus OpenAI's ``type``/``code``."""

    message: str
    type: str | None = None
    code: str | None = None


def _text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def _usage(data: Any) -> TokenUsage | None:
    """OpenAI ``usage`` as :class:`TokenUsage` (``None`` when absent or odd)."""
    if not isinstance(data, dict):
        return None
    prompt = data.get("prompt_tokens")
    completion = data.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    total = data.get("total_tokens")
    return TokenUsage(prompt, completion, total if isinstance(total, int) else prompt + completion)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


class OpenAIProvider(HTTPProvider):
    """A provider speaking the OpenAI Chat Completions API (see the module docstring)."""

    settings_class: ClassVar[type | None] = OpenAISettings

    def __init__(self, name: str, config: ProviderConfig, settings: OpenAISettings | None = None) -> None:
        super().__init__(name, config, settings if settings is not None else OpenAISettings())
        self.options: OpenAISettings = self.settings
        #: The API base URL (no trailing slash).
        self.endpoint = (config.endpoint or DEFAULT_ENDPOINT).rstrip("/")

    # -- lifecycle -------------------------------------------------------------------

    def default_headers(self) -> dict[str, str]:
        """Headers sent with every request: ``Authorization: Bearer`` only
        when an API key is configured, the organization/project headers when
        set, ``User-Agent``; minus those the config's ``headers`` set (names
        compared case-insensitively), which the client adds instead."""
        headers = {"user-agent": _USER_AGENT}
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        if self.options.organization:
            headers["openai-organization"] = self.options.organization
        if self.options.project:
            headers["openai-project"] = self.options.project
        # make_client lays the config's headers over these with a plain dict
        # merge, which is case-sensitive: leave out what the config sets, so
        # that "User-Agent" replaces "user-agent" instead of both being sent.
        overridden = {name.lower() for name in self.config.headers}
        return {name: value for name, value in headers.items() if name not in overridden}

    # -- requests --------------------------------------------------------------------

    def request_body(self, call: ProviderCall, *, stream: bool) -> dict[str, Any]:
        """The JSON body for ``call``: ``model`` (the upstream name),
        ``messages``, the sampling fields that are set, ``stream`` and
        ``stream_options`` when streaming, then ``request.extra`` merged on
        top (an ``extra`` value of ``None`` removes that field, e.g.
        ``{"max_tokens": None, "max_completion_tokens": 512}``)."""
        request = call.request
        body: dict[str, Any] = {
            "model": call.upstream_model,
            "messages": [m.to_openai() for m in request.messages],
        }
        if call.temperature is not None:
            body["temperature"] = call.temperature
        if call.max_tokens is not None:
            body["max_tokens"] = call.max_tokens
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        if request.tools:
            body["tools"] = list(request.tools)
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.response_format is not None:
            body["response_format"] = request.response_format
        if request.user is not None:
            body["user"] = request.user
        if stream:
            body["stream"] = True
            if self.options.stream_usage:
                body["stream_options"] = {"include_usage": True}
        for key, value in request.extra.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        return body

    def _encode(self, call: ProviderCall, *, stream: bool) -> bytes:
        return self.encode_json(self.request_body(call, stream=stream), call.model)

    async def complete(self, call: ProviderCall) -> ProviderReply:
        """``POST /chat/completions``; the answer as a :class:`ProviderReply`."""
        return self.parse_reply(await self.post_json("/chat/completions", self._encode(call, stream=False), call), call)

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        """``POST /chat/completions`` with ``"stream": true``: text and
        tool-call deltas as they arrive, the usage, then the finish reason.

        A server that ignores ``stream`` and answers JSON is handled too.
        """
        client = self.client
        request = client.build_request(
            "POST",
            "/chat/completions",
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
                reply = self.parse_reply(self._decode(await response.aread(), call.model, "answer"), call)
                if reply.content:
                    yield TextDelta(reply.content)
                for index, tool_call in enumerate(reply.tool_calls or ()):
                    function = tool_call.get("function") or {}
                    yield ToolCallDelta(
                        index, tool_call.get("id"), function.get("name"), str(function.get("arguments") or "")
                    )
                if not reply.metadata.get("usage_estimated"):
                    yield UsageEvent(reply.tokens)
                yield FinishEvent(reply.finish_reason)
                return
            # One generator level, and aiter_sse closed explicitly: an
            # abandoned async generator is finalised late (trio warns).
            events = aiter_sse(response)
            try:
                finish: str | None = None
                done = False
                async for sse in events:
                    if sse.data == "[DONE]":
                        done = True
                        break
                    chunk = self._decode(sse.data, call.model, "stream chunk")
                    found, reason = self._chunk_events(chunk, call)
                    if reason is not None:
                        finish = reason
                    for event in found:
                        yield event
                if done:
                    # Read the end of the body so that the connection goes
                    # back to the pool; a server that keeps it open after
                    # [DONE] costs only this bound (then it is dropped).
                    await drain(events, response, _DRAIN_SECONDS)
            finally:
                if getattr(events, "ag_frame", True) is not None:  # not run to its end
                    with anyio.CancelScope(shield=True):
                        await events.aclose()
            if not done and finish is None:
                raise ServerError(
                    "the upstream stream ended without a finish_reason or [DONE]", provider=self.name, model=call.model
                )
            if finish == "content_filter":
                raise self._filtered(call.model)
            yield FinishEvent(finish or "stop")
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, call.model) from exc
        finally:
            if not response.is_closed:  # a body read to its end closed itself
                with anyio.CancelScope(shield=True):
                    await response.aclose()

    def _chunk_events(self, chunk: Any, call: ProviderCall) -> tuple[list[ProviderEvent], str | None]:
        """The events in one ``chat.completion.chunk`` and its finish reason."""
        if not isinstance(chunk, dict):
            raise ServerError(
                f"stream chunk is not a JSON object: {str(chunk)[:_SNIPPET]}", provider=self.name, model=call.model
            )
        if chunk.get("error") is not None:
            raise self._classify(None, self._error_info(chunk), None, call.model)
        events: list[ProviderEvent] = []
        finish: str | None = None
        try:
            for choice in chunk.get("choices") or ():
                if choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if text:
                    events.append(TextDelta(_text(text)))
                for tool_call in delta.get("tool_calls") or ():
                    function = tool_call.get("function") or {}
                    events.append(
                        ToolCallDelta(
                            int(tool_call.get("index", 0)),
                            _optional_str(tool_call.get("id")),
                            _optional_str(function.get("name")),
                            str(function.get("arguments") or ""),
                        )
                    )
                if choice.get("finish_reason"):
                    finish = str(choice["finish_reason"])
        except (AttributeError, TypeError, ValueError) as exc:
            raise ServerError(
                f"stream chunk has an unexpected shape ({type(exc).__name__}: {exc})",
                provider=self.name,
                model=call.model,
            ) from exc
        usage = _usage(chunk.get("usage"))
        if usage is not None:
            events.append(UsageEvent(usage))
        return events, finish

    def parse_reply(self, data: Any, call: ProviderCall) -> ProviderReply:
        """A ``chat.completion`` object as a :class:`ProviderReply`.

        Raises :class:`ServerError` for another shape and
        :class:`ContentFilteredError` for ``finish_reason: content_filter``.
        Without ``usage`` in the answer, usage is estimated and
        ``metadata["usage_estimated"]`` set.
        """
        try:
            choice = data["choices"][0]
            message = choice["message"]
            content = _text(message.get("content"))
            finish = str(choice.get("finish_reason") or "stop")
            tool_calls = message.get("tool_calls")
            tools = tuple(dict(t) for t in tool_calls) if tool_calls else None
            refusal = message.get("refusal")
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise ServerError(
                f"upstream answer is not a chat completion ({type(exc).__name__}: {exc})",
                provider=self.name,
                model=call.model,
            ) from exc
        if finish == "content_filter":
            raise self._filtered(call.model)
        metadata: dict[str, Any] = {}
        if data.get("id"):
            metadata["upstream_id"] = data["id"]
        if refusal:
            metadata["refusal"] = refusal
        tokens = _usage(data.get("usage"))
        if tokens is None:
            tokens = TokenUsage.of(estimate_tokens(call.request.prompt_text()), estimate_tokens(content))
            metadata["usage_estimated"] = True
        model = data.get("model")
        return ProviderReply(
            content, tokens, finish, tools, str(model) if model is not None else None, metadata=metadata
        )

    # -- errors ----------------------------------------------------------------------

    def _filtered(self, model: str | None) -> ContentFilteredError:
        return ContentFilteredError(
            "the upstream's content filter stopped the answer (finish_reason: content_filter)",
            provider=self.name,
            model=model,
        )

    def _error_info(self, data: Any) -> _UpstreamError:
        """The message, type and code of an OpenAI error body (or of another
        server's JSON error, or of plain text)."""
        if isinstance(data, bytes | str):
            try:
                data = loads(data) if data else None
            except ValueError:
                text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
                return _UpstreamError(" ".join(text.split())[:_SNIPPET] or "(empty body)")
        if isinstance(data, dict):
            error = data.get("error", data)
            if isinstance(error, dict):
                message = error.get("message") or error.get("detail") or json.dumps(error)[:_SNIPPET]
                return _UpstreamError(str(message), _optional_str(error.get("type")), _optional_str(error.get("code")))
            if error is not None:
                return _UpstreamError(str(error)[:_SNIPPET])
        return _UpstreamError("(no error message)" if data is None else str(data)[:_SNIPPET])

    def status_error(self, status: int, headers: Mapping[str, str], body: bytes, model: str | None) -> SwarmgateError:
        """The typed error for a non-2xx answer, from its status, headers and
        error body (see :meth:`_classify`)."""
        return self._classify(status, self._error_info(body), parse_retry_after(headers), model)

    def _classify(
        self, status: int | None, info: _UpstreamError, retry_after: float | None, model: str | None
    ) -> SwarmgateError:
        """Status and error body to the taxonomy: ``context_length_exceeded``
        (or OpenAI's "maximum context length" message) is
        ContextLengthExceededError; ``content_filter`` /
        ``content_policy_violation`` is ContentFilteredError;
        ``insufficient_quota`` (a 429 that waiting does not cure) is
        PermissionDeniedError; otherwise the status decides
        (:func:`~swarmgate.errors.error_for_status`), and an error inside a
        stream (no status) is RateLimitedError for rate limits, else
        ServerError. The message never contains the API key."""
        label = info.code or info.type
        where = f"HTTP {status}" if status is not None else "error in stream"
        message = self._scrub(f"upstream {where}: {info.message}" + (f" [{label}]" if label else ""))
        code = (info.code or "").lower()
        kind = (info.type or "").lower()
        text = info.message.lower()
        common: dict[str, Any] = {"provider": self.name, "model": model, "upstream_status": status}
        if code == "context_length_exceeded" or kind == "context_length_exceeded" or "maximum context length" in text:
            return ContextLengthExceededError(message, **common)
        if code in _FILTER_CODES or kind in _FILTER_CODES:
            return ContentFilteredError(message, **common)
        if code == "insufficient_quota" or kind == "insufficient_quota":
            return PermissionDeniedError(message, **common)
        if status is None:
            if "rate_limit" in code or "rate_limit" in kind:
                return RateLimitedError(message, retry_after=retry_after, **common)
            return ServerError(message, retry_after=retry_after, **common)
        return error_for_status(status, message, provider=self.name, model=model, retry_after=retry_after)

    # -- health ----------------------------------------------------------------------

    async def health_check(self) -> HealthStatus:
        """``GET /models`` within the provider timeout: healthy on a 2xx."""
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
