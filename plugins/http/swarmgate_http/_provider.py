"""The ``http`` provider driver: one pooled httpx client, templates in, paths out.

Everything specific to an upstream API is in the config (see
:mod:`swarmgate_http._settings`); this module compiles it once in
:meth:`HttpProvider.__init__` (templates, JMESPath expressions, the error
table, the headers) and then, per call, renders a body, sends it, and reads
the answer, the stream events or the error body with the compiled paths.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, ClassVar, Final

import anyio
import attrs
import httpx

from swarmgate.config import ProviderConfig, parse_section
from swarmgate.errors import (
    ERROR_CLASSES,
    ConfigError,
    ContentFilteredError,
    ErrorKind,
    InvalidRequestError,
    ServerError,
    SwarmgateError,
    error_for_status,
)
from swarmgate.http import HTTPProvider, aiter_sse, drain, make_client, parse_retry_after
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
from swarmgate_http._paths import Path, PathError, compile_path
from swarmgate_http._settings import (
    BODY_VARIABLES,
    HEADER_VARIABLES,
    URL_VARIABLES,
    ErrorRule,
    HealthCheckRequest,
    HttpSettings,
    StreamSettings,
)
from swarmgate_http._template import Node, StringTemplate, TemplateError, compile_body, merge_body

__all__ = ["HttpProvider"]

try:
    _VERSION = importlib.metadata.version("swarmgate-http")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0.0.0"

_USER_AGENT: Final = f"swarmgate-http/{_VERSION}"
_SYSTEM_ROLES: Final = frozenset({"system", "developer"})
_ACCEPT: Final = {"sse": "text/event-stream", "ndjson": "application/x-ndjson"}
#: How much of a non-JSON body goes into an error message.
_SNIPPET: Final = 300
#: Seconds to wait for the end of a streamed body after its done marker.
_DRAIN_SECONDS: Final = 0.25
#: The keys of ``healthCheck`` that describe the probe request (the rest belong to the health plugin).
_HEALTH_KEYS: Final = ("method", "path", "expectedStatus")


# ---------------------------------------------------------------------------
# Request variables


def _system(call: ProviderCall, _stream: bool) -> str | None:
    texts = [m.text() for m in call.request.messages if m.role in _SYSTEM_ROLES]
    return "\n".join(texts) if texts else None


def _prompt(call: ProviderCall, _stream: bool) -> str:
    return "\n".join(m.text() for m in call.request.messages if m.role not in _SYSTEM_ROLES)


def _messages(call: ProviderCall, _stream: bool) -> list[dict[str, Any]]:
    return [m.to_openai() for m in call.request.messages]


def _list_or_none(values: tuple[Any, ...] | None) -> list[Any] | None:
    return list(values) if values else None


#: How each body variable is computed from a call (and the stream flag).
_VARIABLES: Final[dict[str, Callable[[ProviderCall, bool], Any]]] = {
    "model": lambda call, _s: call.upstream_model,
    "messages": _messages,
    "prompt": _prompt,
    "system": _system,
    "temperature": lambda call, _s: call.temperature,
    "maxTokens": lambda call, _s: call.max_tokens,
    "topP": lambda call, _s: call.request.top_p,
    "stop": lambda call, _s: _list_or_none(call.request.stop),
    "stream": lambda _call, stream: stream,
    "tools": lambda call, _s: _list_or_none(call.request.tools),
    "toolChoice": lambda call, _s: call.request.tool_choice,
    "responseFormat": lambda call, _s: call.request.response_format,
    "user": lambda call, _s: call.request.user,
}


# ---------------------------------------------------------------------------
# The compiled config


@attrs.frozen
class _Paths:
    """Compiled paths for answers or for stream events."""

    text: Path
    finish_reason: Path | None
    input_tokens: Path | None
    output_tokens: Path | None
    tool_calls: Path | None
    model: Path | None
    error_message: Path
    error_code: Path


@attrs.frozen
class _BodyTemplate:
    """A compiled body and the variables it reads (computed per call, only those)."""

    node: Node
    names: tuple[str, ...]

    @classmethod
    def of(cls, template: Any, where: str) -> _BodyTemplate | None:
        if template is None:
            return None
        try:
            node = compile_body(template, BODY_VARIABLES)
        except TemplateError as exc:  # the settings validators caught this already; kept for direct use
            raise ConfigError([(where + exc.where, exc.reason)]) from None
        return cls(node, tuple(sorted(set(node.names()))))


@attrs.frozen
class _Stream:
    """The compiled ``stream`` section."""

    format: str
    paths: _Paths
    done_data: str | None
    done_path: Path | None
    done_equals: Any
    body: _BodyTemplate | None
    url: StringTemplate


@attrs.frozen
class _Probe:
    """The health probe: method, URL, and which statuses are healthy."""

    method: str
    url: str
    expected: int | None
    configured: bool

    def healthy(self, status: int) -> bool:
        """The configured status; else a 2xx for a configured probe, and
        anything but a 5xx for the default one (the server answered)."""
        if self.expected is not None:
            return status == self.expected
        return 200 <= status < 300 if self.configured else status < 500


def _compile(expression: str | None, where: str) -> Path | None:
    if expression is None:
        return None
    try:
        return compile_path(expression)
    except PathError as exc:  # the settings validators caught this already; kept for direct use
        raise ConfigError([(where, f"invalid JMESPath expression {expression!r}: {exc}")]) from None


def _required(expression: str, where: str) -> Path:
    path = _compile(expression, where)
    assert path is not None
    return path


def _url_template(value: str, where: str) -> StringTemplate:
    try:
        return StringTemplate.parse(value, URL_VARIABLES)
    except TemplateError as exc:
        raise ConfigError([(where, exc.reason)]) from None


def _absolute(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def _quote_model(text: str) -> str:
    """A model name in a URL path: percent-encoded, slashes kept (``org/model``)."""
    return urllib.parse.quote(text, safe="/:@")


# ---------------------------------------------------------------------------
# Reading values out of answers


def _as_int(value: Any) -> int | None:
    """A token count, or ``None`` for anything that is not a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _arguments(value: Any) -> str:
    """Tool-call arguments as the JSON text OpenAI uses."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _fragments(value: Any) -> list[Any]:
    """What a tool-calls path selected, as a list (one object, a list, or nothing)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class HttpProvider(HTTPProvider):
    """A provider for any JSON REST API, described by its config (see the package docstring)."""

    settings_class: ClassVar[type | None] = HttpSettings

    def __init__(self, name: str, config: ProviderConfig, settings: HttpSettings | None = None) -> None:
        base = f"providers.{name}"
        if settings is None:
            settings = parse_section(HttpSettings, config.settings, base)
        super().__init__(name, config, settings)
        self.options: HttpSettings = settings
        #: The API base URL (no trailing slash); may be empty when ``url`` is absolute.
        self.endpoint = (config.endpoint or "").rstrip("/")
        url = settings.url
        if not self.endpoint and not _absolute(url):
            raise ConfigError(
                [
                    (
                        f"{base}.endpoint",
                        "the http provider type needs an endpoint, or an absolute url (http:// or https://)",
                    )
                ]
            )
        self._method = settings.method
        self._url = _url_template(url, f"{base}.url")
        self._body = _BodyTemplate.of(settings.body, f"{base}.body")
        response = settings.response
        where = f"{base}.response"
        self._paths = _Paths(
            text=_required(response.text, f"{where}.text"),
            finish_reason=_compile(response.finish_reason, f"{where}.finishReason"),
            input_tokens=_compile(response.input_tokens, f"{where}.inputTokens"),
            output_tokens=_compile(response.output_tokens, f"{where}.outputTokens"),
            tool_calls=_compile(response.tool_calls, f"{where}.toolCalls"),
            model=_compile(response.model, f"{where}.model"),
            error_message=_required(response.error_message, f"{where}.errorMessage"),
            error_code=_required(response.error_code, f"{where}.errorCode"),
        )
        self._finish_reasons: Mapping[str, str] = dict(response.finish_reasons)
        self._stream = self._compile_stream(settings.stream, f"{base}.stream")
        self._rules: tuple[ErrorRule, ...] = settings.errors
        self._headers = self._render_headers(base)
        self._configured_headers = frozenset(name.lower() for name in config.headers)
        self._probe = self._compile_probe(base)

    # -- start-up ------------------------------------------------------------------

    def _compile_stream(self, stream: StreamSettings | None, where: str) -> _Stream | None:
        if stream is None:
            return None
        response = self.options.response

        def pick(own: str | None, default: str | None, key: str) -> Path | None:
            """The stream's own expression, else the response's."""
            return _compile(own if own is not None else default, f"{where}.{key}")

        paths = _Paths(
            text=_required(stream.text or response.text, f"{where}.text"),
            finish_reason=pick(stream.finish_reason, response.finish_reason, "finishReason"),
            input_tokens=pick(stream.input_tokens, response.input_tokens, "inputTokens"),
            output_tokens=pick(stream.output_tokens, response.output_tokens, "outputTokens"),
            tool_calls=pick(stream.tool_calls, response.tool_calls, "toolCalls"),
            model=None,
            error_message=_required(stream.error_message or response.error_message, f"{where}.errorMessage"),
            error_code=_required(stream.error_code or response.error_code, f"{where}.errorCode"),
        )
        if stream.url is not None and not self.endpoint and not _absolute(stream.url):
            raise ConfigError([(f"{where}.url", "a relative url needs an endpoint (or give an absolute url)")])
        body = None
        if self.options.body is not None or stream.body is not None:
            merged = merge_body(self.options.body, stream.body) if stream.body is not None else self.options.body
            body = _BodyTemplate.of(merged, f"{where}.body")
        done = stream.done
        return _Stream(
            format=stream.format,
            paths=paths,
            done_data=done.data if done is not None else None,
            done_path=_compile(done.path, f"{where}.done.path") if done is not None else None,
            done_equals=done.equals if done is not None else None,
            body=body,
            url=_url_template(stream.url, f"{where}.url") if stream.url is not None else self._url,
        )

    def _render_headers(self, base: str) -> httpx.Headers:
        """The default headers with the config's ``headers`` laid over them
        (names compared case-insensitively), ``{apiKey}`` substituted."""
        headers = httpx.Headers({"user-agent": _USER_AGENT, "accept": "application/json"})
        key = self.config.api_key
        problems: list[tuple[str, str]] = []
        for name, value in self.config.headers.items():
            where = f"{base}.headers.{name}"
            try:
                template = StringTemplate.parse(value, HEADER_VARIABLES)
            except TemplateError as exc:
                problems.append((where, exc.reason))
                continue
            if "apiKey" in template.names:
                if not key:
                    problems.append((where, "uses {apiKey} but the provider has no apiKey"))
                    continue
                if any(c in key for c in "\r\n\x00"):
                    problems.append((f"{base}.apiKey", "contains a line break or NUL: it cannot be sent in a header"))
                    continue
            headers[name] = template.render({"apiKey": key})
        if problems:
            raise ConfigError(problems)
        return headers

    def _compile_probe(self, base: str) -> _Probe:
        raw = self.config.health_check or {}
        mine = {k: raw[k] for k in _HEALTH_KEYS if k in raw}
        request = parse_section(HealthCheckRequest, mine, f"{base}.healthCheck")
        if request.path is not None and not self.endpoint and not _absolute(request.path):
            raise ConfigError(
                [(f"{base}.healthCheck.path", "a relative path needs an endpoint (or give an absolute url)")]
            )
        if request.path is not None:
            template = _url_template(request.path, f"{base}.healthCheck.path")
            model = self.config.resolve_default_model() or ""
            url = template.render({"model": model}, _quote_model)
        elif self.endpoint:
            url = self.endpoint
        else:
            parts = urllib.parse.urlsplit(self.options.url)
            url = f"{parts.scheme}://{parts.netloc}/"
        return _Probe(request.method, url, request.expected_status, configured=bool(mine))

    # -- lifecycle -----------------------------------------------------------------

    def build_client(self) -> httpx.AsyncClient:
        """The pooled client (``swarmgate.http.make_client``) with the
        rendered headers; a subclass may override this (tests)."""
        return make_client(attrs.evolve(self.config, headers={}), base_url=self.endpoint, headers=self._headers)

    # -- requests ------------------------------------------------------------------

    def request_body(self, call: ProviderCall, *, stream: bool) -> Any:
        """The JSON body for ``call`` (``None``: no body): the body template
        (with the ``stream.body`` overrides for streams) rendered with the
        call's variables, then, for an object body, the request's ``extra``
        merged in at the top level (a ``None`` value removes a key)."""
        template = self._stream.body if stream and self._stream is not None else self._body
        if template is None:
            return None
        variables = {name: _VARIABLES[name](call, stream) for name in template.names}
        try:
            body = template.node.render(variables)
        except PathError as exc:
            raise InvalidRequestError(
                f"the body template's expression failed: {exc}", provider=self.name, model=call.model
            ) from exc
        if isinstance(body, dict):
            for key, value in call.request.extra.items():
                if value is None:
                    body.pop(key, None)
                else:
                    body[key] = value
        return body

    def request_url(self, call: ProviderCall, *, stream: bool) -> str:
        """The URL for ``call`` (relative to the endpoint, or absolute)."""
        template = self._stream.url if stream and self._stream is not None else self._url
        return template.render({"model": call.upstream_model}, _quote_model)

    def _encode(self, call: ProviderCall, *, stream: bool) -> bytes | None:
        body = self.request_body(call, stream=stream)
        return None if body is None else self.encode_json(body, call.model)

    def _request_headers(self, content: bytes | None, accept: str) -> dict[str, str]:
        """Per-request headers, except those the config sets itself."""
        wanted = {"accept": accept}
        if content is not None:
            wanted["content-type"] = "application/json"
        return {name: value for name, value in wanted.items() if name not in self._configured_headers}

    async def complete(self, call: ProviderCall) -> ProviderReply:
        """Send the rendered request; the answer read with ``response`` paths."""
        content = self._encode(call, stream=False)
        try:
            response = await self.client.request(
                self._method,
                self.request_url(call, stream=False),
                content=content,
                headers=self._request_headers(content, "application/json"),
                timeout=self.request_timeout(call),
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, call.model) from exc
        if not response.is_success:
            raise self.status_error(response.status_code, response.headers, response.content, call.model)
        return self.parse_reply(self._decode(response.content, call.model, "answer"), call)

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        """Stream the answer: text and tool-call deltas as events arrive,
        the usage (when the upstream reported any), then the finish reason.

        Without a ``stream`` section, or when an SSE upstream answers with
        plain JSON, the whole answer arrives as one delta.
        """
        spec = self._stream
        if spec is None:
            for event in self._reply_events(await self.complete(call)):
                yield event
            return
        client = self.client
        content = self._encode(call, stream=True)
        request = client.build_request(
            self._method,
            self.request_url(call, stream=True),
            content=content,
            headers=self._request_headers(content, _ACCEPT[spec.format]),
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
            media = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if spec.format == "sse" and media == "application/json":
                reply = self.parse_reply(self._decode(await response.aread(), call.model, "answer"), call)
                for event in self._reply_events(reply):
                    yield event
                return
            # One generator level, and the frame reader closed explicitly:
            # an abandoned async generator is finalised late (trio warns).
            frames = self._frames(response, spec.format)
            state = _StreamState()
            try:
                async for data in frames:
                    if spec.done_data is not None and data == spec.done_data:
                        state.done = True
                        break
                    event = self._decode(data, call.model, "stream event")
                    for found in self._event(event, spec, state, call):
                        yield found
                    if state.done:
                        break
                if state.done:
                    # Read the end of the body so that the connection goes
                    # back to the pool; a server that keeps it open after
                    # the done marker costs only this bound.
                    await drain(frames, response, _DRAIN_SECONDS)
            finally:
                with anyio.CancelScope(shield=True):
                    await frames.aclose()
            if not state.done and state.finish is None and (spec.done_data is not None or spec.done_path is not None):
                raise ServerError(
                    "the upstream stream ended without its done marker or a finish reason",
                    provider=self.name,
                    model=call.model,
                )
            finish = self._finish(state.finish, state.tool_calls)
            if finish == "content_filter":
                raise self._filtered(call.model)
            if state.input_tokens is not None or state.output_tokens is not None:
                yield UsageEvent(TokenUsage.of(state.input_tokens or 0, state.output_tokens or 0))
            yield FinishEvent(finish)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, call.model) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()

    @staticmethod
    async def _frames(response: httpx.Response, fmt: str) -> AsyncGenerator[str, None]:
        """The raw data of each stream frame: SSE event data, or non-blank NDJSON lines (stripped)."""
        if fmt == "sse":
            events = aiter_sse(response)
            try:
                async for sse in events:
                    yield sse.data
            finally:
                await events.aclose()
            return
        lines = response.aiter_lines()
        try:
            async for line in lines:
                stripped = line.strip()
                if stripped:
                    yield stripped
        finally:
            await lines.aclose()  # type: ignore[attr-defined]

    def _reply_events(self, reply: ProviderReply) -> list[ProviderEvent]:
        """A whole reply as stream events (usage only when reported)."""
        events: list[ProviderEvent] = []
        if reply.content:
            events.append(TextDelta(reply.content))
        for index, tool_call in enumerate(reply.tool_calls or ()):
            function = tool_call.get("function") or {}
            events.append(
                ToolCallDelta(index, tool_call.get("id"), function.get("name"), function.get("arguments", ""))
            )
        if reply.tokens.total:
            events.append(UsageEvent(reply.tokens))
        events.append(FinishEvent(reply.finish_reason))
        return events

    def _event(self, event: Any, spec: _Stream, state: _StreamState, call: ProviderCall) -> list[ProviderEvent]:
        """The events in one decoded stream frame; updates ``state``."""
        paths = spec.paths
        try:
            message = paths.error_message.search(event)
            if message is not None:
                code = _optional_str(paths.error_code.search(event))
                raise self._classify(None, _message_text(message), code, None, call.model, where="error in stream")
            found: list[ProviderEvent] = []
            text = self._text(paths.text.search(event), "stream.text", call.model)
            if text:
                found.append(TextDelta(text))
            if paths.tool_calls is not None:
                for position, fragment in enumerate(_fragments(paths.tool_calls.search(event))):
                    found.append(self._tool_delta(fragment, position, call.model))
                    state.tool_calls = True
            if paths.finish_reason is not None:
                reason = paths.finish_reason.search(event)
                if reason is not None:
                    state.finish = str(reason)
            if paths.input_tokens is not None:
                tokens = _as_int(paths.input_tokens.search(event))
                if tokens is not None:
                    state.input_tokens = tokens
            if paths.output_tokens is not None:
                tokens = _as_int(paths.output_tokens.search(event))
                if tokens is not None:
                    state.output_tokens = tokens
            if spec.done_path is not None:
                marker = spec.done_path.search(event)
                state.done = bool(marker) if spec.done_equals is None else marker == spec.done_equals
        except PathError as exc:
            raise ServerError(
                f"a stream event did not fit the configured paths ({exc})", provider=self.name, model=call.model
            ) from exc
        return found

    def _tool_delta(self, fragment: Any, position: int, model: str) -> ToolCallDelta:
        if not isinstance(fragment, dict):
            raise ServerError(
                f"a streamed tool call is not an object: {str(fragment)[:_SNIPPET]}", provider=self.name, model=model
            )
        function = fragment.get("function")
        source = function if isinstance(function, dict) else fragment
        index = _as_int(fragment.get("index"))
        arguments = source.get("arguments", source.get("input", source.get("args")))
        return ToolCallDelta(
            index if index is not None else position,
            _optional_str(fragment.get("id")),
            _optional_str(source.get("name")),
            _arguments(arguments),
        )

    # -- answers -------------------------------------------------------------------

    def parse_reply(self, data: Any, call: ProviderCall) -> ProviderReply:
        """A decoded answer as a :class:`ProviderReply`.

        An error at ``response.errorMessage`` is raised as its typed error; an
        answer where ``text``, ``toolCalls`` and ``finishReason`` all select
        nothing is a :class:`ServerError` (the config does not fit it); a
        ``content_filter`` finish reason is :class:`ContentFilteredError`.
        Without token counts the usage is zero (the kernel estimates it).
        """
        paths = self._paths
        try:
            message = paths.error_message.search(data)
            if message is not None:
                code = _optional_str(paths.error_code.search(data))
                raise self._classify(None, _message_text(message), code, None, call.model, where="error in answer")
            raw_text = paths.text.search(data)
            tool_calls = self._tool_calls(paths.tool_calls.search(data), call.model) if paths.tool_calls else None
            reason = paths.finish_reason.search(data) if paths.finish_reason else None
            input_tokens = _as_int(paths.input_tokens.search(data)) if paths.input_tokens else None
            output_tokens = _as_int(paths.output_tokens.search(data)) if paths.output_tokens else None
            model = paths.model.search(data) if paths.model else None
        except PathError as exc:
            raise ServerError(
                f"the upstream answer did not fit the configured paths ({exc})", provider=self.name, model=call.model
            ) from exc
        if raw_text is None and not tool_calls and reason is None:
            snippet = self._scrub(json.dumps(data, ensure_ascii=False)[:80])
            raise ServerError(
                f"the upstream answer has nothing at response.text ({paths.text.expression!r}): {snippet}",
                provider=self.name,
                model=call.model,
            )
        content = self._text(raw_text, "response.text", call.model)
        finish = self._finish(_optional_str(reason), bool(tool_calls))
        if finish == "content_filter":
            raise self._filtered(call.model)
        tokens = TokenUsage.of(input_tokens or 0, output_tokens or 0)
        return ProviderReply(content, tokens, finish, tool_calls, _optional_str(model))

    def _text(self, value: Any, key: str, model: str) -> str:
        """Selected text: a string, a list of strings (joined), numbers as text."""
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return "".join(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ServerError(
            f"{key} selected {type(value).__name__}, not text: {self._scrub(str(value)[:80])}",
            provider=self.name,
            model=model,
        )

    def _tool_calls(self, value: Any, model: str) -> tuple[dict[str, Any], ...] | None:
        """Selected tool calls in OpenAI's format (``id``, ``type``, ``function``)."""
        calls: list[dict[str, Any]] = []
        for index, item in enumerate(_fragments(value)):
            function = item.get("function") if isinstance(item, dict) else None
            source = function if isinstance(function, dict) else item
            name = source.get("name") if isinstance(source, dict) else None
            if not isinstance(item, dict) or not isinstance(source, dict) or name is None:
                raise ServerError(
                    f"a tool call has no name: {self._scrub(str(item)[:_SNIPPET])}", provider=self.name, model=model
                )
            arguments = source.get("arguments", source.get("input", source.get("args")))
            calls.append(
                {
                    "id": str(item.get("id") or f"call_{index}"),
                    "type": "function",
                    "function": {"name": str(name), "arguments": _arguments(arguments) or "{}"},
                }
            )
        return tuple(calls) or None

    def _finish(self, reason: str | None, tool_calls: bool) -> str:
        """The upstream's finish reason through ``finishReasons``; by default
        ``tool_calls`` when tool calls came, else ``stop``."""
        if reason is None:
            return "tool_calls" if tool_calls else "stop"
        return self._finish_reasons.get(reason, reason)

    # -- errors --------------------------------------------------------------------

    def _filtered(self, model: str | None) -> ContentFilteredError:
        return ContentFilteredError(
            "the upstream's content filter stopped the answer (finish reason: content_filter)",
            provider=self.name,
            model=model,
        )

    def status_error(self, status: int, headers: Mapping[str, str], body: bytes, model: str | None) -> SwarmgateError:
        """The typed error for a non-2xx answer: its message and code read
        with ``response.errorMessage``/``errorCode`` (the body's text when
        they find nothing), ``Retry-After`` honoured, then :meth:`_classify`."""
        message: str | None = None
        code: str | None = None
        try:
            data: Any = json.loads(body) if body else None
        except ValueError:
            data = None
        if data is not None:
            try:
                found = self._paths.error_message.search(data)
                message = None if found is None else _message_text(found)
                code = _optional_str(self._paths.error_code.search(data))
            except PathError:
                message = None
        if message is None:
            text = body.decode("utf-8", "replace")
            message = " ".join(text.split())[:_SNIPPET] or "(empty body)"
        return self._classify(status, message, code, parse_retry_after(headers), model)

    def _classify(
        self,
        status: int | None,
        message: str,
        code: str | None,
        retry_after: float | None,
        model: str | None,
        *,
        where: str | None = None,
    ) -> SwarmgateError:
        """The error table first (rules in order), then the default mapping:
        :func:`~swarmgate.errors.error_for_status` for a status, ServerError
        for an error without one. The message keeps the upstream's words and
        code, never the API key."""
        label = f"HTTP {status}" if status is not None else (where or "error")
        text = self._scrub(f"upstream {label}: {message}" + (f" [{code}]" if code else ""))
        for rule in self._rules:
            if rule.matches(status, code, message):
                cls = ERROR_CLASSES[ErrorKind(rule.kind)]
                return cls(text, provider=self.name, model=model, retry_after=retry_after, upstream_status=status)
        if status is None:
            return ServerError(text, provider=self.name, model=model, retry_after=retry_after)
        return error_for_status(status, text, provider=self.name, model=model, retry_after=retry_after)

    # -- health --------------------------------------------------------------------

    async def health_check(self) -> HealthStatus:
        """The ``healthCheck`` request (default: ``GET`` on the endpoint,
        where any answer but a 5xx means the server is up), within the
        provider's timeout."""
        probe = self._probe
        timeout = self.config.timeout / 1000.0
        label = f"{probe.method} {probe.url}"
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000.0

        try:
            with anyio.fail_after(timeout):
                response = await self.client.request(
                    probe.method, probe.url, headers={"accept": "application/json"}, timeout=self.probe_timeout()
                )
        except TimeoutError:
            return HealthStatus(False, elapsed(), detail=f"{label}: no answer within {timeout:g}s")
        except httpx.HTTPError as exc:
            return HealthStatus(False, elapsed(), detail=f"{label}: {self._transport_error(exc, None).message}")
        latency = elapsed()
        if probe.healthy(response.status_code):
            return HealthStatus(True, latency, detail=f"{label}: HTTP {response.status_code}")
        expected = f"expected {probe.expected}" if probe.expected is not None else "unexpected status"
        error = self.status_error(response.status_code, response.headers, response.content, None)
        return HealthStatus(False, latency, detail=f"{label}: {expected}; {error.message}")


def _message_text(value: Any) -> str:
    """An error message selected from a body: text as is, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)[:_SNIPPET]
    except (TypeError, ValueError):
        return str(value)[:_SNIPPET]


@attrs.define
class _StreamState:
    """What a stream has said so far."""

    finish: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    tool_calls: bool = False
    done: bool = False
