"""The ``websocket`` provider driver (see the package docstring and README)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import ssl
import time
import urllib.parse
import uuid
from collections.abc import AsyncGenerator
from typing import Any, ClassVar

import anyio
import jmespath.exceptions
import jmespath.parser
from websockets.exceptions import InvalidStatus, InvalidURI
from websockets.frames import CLOSE_CODE_EXPLANATIONS
from websockets.uri import parse_uri

from swarmgate.config import ProviderConfig
from swarmgate.errors import (
    ERROR_CLASSES,
    AuthenticationError,
    ConfigError,
    ContentFilteredError,
    ErrorKind,
    InvalidRequestError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    SwarmgateError,
    error_for_status,
)
from swarmgate.http import parse_retry_after
from swarmgate.logs import scrub_secrets
from swarmgate.models import (
    ZERO_USAGE,
    FinishEvent,
    HealthStatus,
    ProviderEvent,
    ProviderReply,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
    UsageEvent,
)
from swarmgate.provider import Provider, ProviderCall
from swarmgate.stats import estimate_tokens
from swarmgate_websocket.connection import Closed, HandshakeFailed, WebSocketConnection
from swarmgate_websocket.settings import (
    DEFAULT_ERROR_CODES,
    DEFAULT_FINISH_REASONS,
    WebSocketSettings,
    compile_path,
    placeholders,
)
from swarmgate_websocket.template import render, render_text

__all__ = ["WebSocketProvider"]

try:
    _VERSION = importlib.metadata.version("swarmgate-websocket")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0.0.0"

_USER_AGENT = f"swarmgate-websocket/{_VERSION}"
#: How much of an unexpected message or body goes into an error message.
_SNIPPET = 300
#: At most this many seconds for a clean close (and for reading what an idle connection received).
_CLOSE_SECONDS = 1.0
#: Close codes of an orderly end: after a finish reason they end the answer like a done marker.
_NORMAL_CLOSES = frozenset({1000, 1001, 1005})
#: The error kind of each close code before the answer ended (others: server error).
_CLOSE_KINDS: dict[int, ErrorKind] = {
    1001: ErrorKind.CONNECTION_ERROR,
    1003: ErrorKind.INVALID_REQUEST,
    1006: ErrorKind.CONNECTION_ERROR,
    1007: ErrorKind.INVALID_REQUEST,
    1008: ErrorKind.PERMISSION,
    1009: ErrorKind.INVALID_REQUEST,
    1012: ErrorKind.OVERLOADED,
    1013: ErrorKind.OVERLOADED,
    1015: ErrorKind.CONNECTION_ERROR,
    3000: ErrorKind.AUTHENTICATION,
    3003: ErrorKind.PERMISSION,
    3008: ErrorKind.TIMEOUT,
}
#: Where an error message usually is in a JSON handshake-rejection body.
_BODY_MESSAGE = compile_path("error.message || message || error || detail")
_URL_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def _truthy(value: Any) -> bool:
    """Not null, false, 0 or empty (the ``error`` path and the done marker)."""
    return bool(value)


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def _where(url: str) -> str:
    """``url`` for messages: scheme, host, port and path (no credentials, no query)."""
    parts = urllib.parse.urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _close_label(code: int, reason: str) -> str:
    if 3000 <= code < 4000:
        name = "registered"
    elif 4000 <= code < 5000:
        name = "private use"
    else:
        name = CLOSE_CODE_EXPLANATIONS.get(code, "unknown")
    return f"{code} ({name})" + (f": {reason}" if reason else "")


class _Answer:
    """What has been read of one answer so far."""

    __slots__ = ("estimated", "finish", "input_tokens", "model", "output_tokens", "text", "tool_calls")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.tool_calls = False
        self.finish: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.model: str | None = None
        self.estimated = False

    def usage(self, call: ProviderCall) -> TokenUsage | None:
        """The reported usage; a side the upstream did not report is
        estimated (and :attr:`estimated` set); ``None`` when it reported none."""
        if self.input_tokens is None and self.output_tokens is None:
            return None
        input_tokens = self.input_tokens
        output_tokens = self.output_tokens
        if input_tokens is None:
            input_tokens = estimate_tokens(call.request.prompt_text())
            self.estimated = True
        if output_tokens is None:
            output_tokens = estimate_tokens("".join(self.text))
            self.estimated = True
        return TokenUsage.of(input_tokens, output_tokens)


class _Paths:
    """The compiled :class:`~swarmgate_websocket.settings.MessagePaths`."""

    def __init__(self, settings: WebSocketSettings) -> None:
        paths = settings.paths

        def compiled(expression: str | None) -> jmespath.parser.ParsedResult | None:
            return None if expression is None else compile_path(expression)

        self.text = compiled(paths.text)
        self.tool_calls = compiled(paths.tool_calls)
        self.finish_reason = compiled(paths.finish_reason)
        self.input_tokens = compiled(paths.input_tokens)
        self.output_tokens = compiled(paths.output_tokens)
        self.model = compiled(paths.model)
        self.error = compiled(paths.error)
        self.error_message = compiled(paths.error_message)
        self.error_code = compiled(paths.error_code)
        self.error_status = compiled(paths.error_status)
        self.retry_after = compiled(paths.retry_after)
        self.done = compiled(settings.done.path)


def _search(path: jmespath.parser.ParsedResult | None, data: Any) -> Any:
    return None if path is None else path.search(data)


class WebSocketProvider(Provider):
    """A provider that streams answers over a WebSocket (see the package docstring).

    One WebSocket per request by default (``connection: per-request``):
    connect (handshake with the connect headers), send the rendered request
    message, read messages until the done marker, close. With
    ``connection: keep-open`` a connection that ended its answer cleanly is
    kept for the next request (up to ``maxIdleConnections`` idle per URL);
    before reuse, what arrived meanwhile is read (a close or the end of the
    stream discards it), an idle connection older than the ping interval is
    pinged, and a reused connection that fails before the first message of
    the answer is replaced once by a new one. Concurrent requests each get
    their own connection.
    """

    settings_class: ClassVar[type | None] = WebSocketSettings

    def __init__(self, name: str, config: ProviderConfig, settings: WebSocketSettings | None = None) -> None:
        super().__init__(name, config, settings if settings is not None else WebSocketSettings())
        self.options: WebSocketSettings = self.settings
        if config.proxy:
            raise ConfigError(
                [
                    (
                        f"providers.{name}.proxy",
                        "the websocket provider type connects directly; proxies are not supported",
                    )
                ]
            )
        #: The URL template (``{{apiKey}}``/``{{model}}`` not yet filled in).
        self.url_template = self._url_template()
        self._paths = _Paths(self.options)
        self._done_message = self.options.done.message.strip().encode() if self.options.done.message else None
        self._error_kinds = {
            code: ErrorKind(kind) for code, kind in {**DEFAULT_ERROR_CODES, **self.options.error_codes}.items()
        }
        self._finish_names = {**DEFAULT_FINISH_REASONS, **self.options.finish_reasons}
        self._idle: dict[str, list[WebSocketConnection]] = {}
        self._ssl_context: ssl.SSLContext | None = None
        self._closing = False

    def _url_template(self) -> str:
        path = f"providers.{self.name}"
        url = self.options.url
        key = "url"
        if url is None:
            endpoint = self.config.endpoint
            if not endpoint:
                raise ConfigError([(f"{path}.url", "set 'url' (a ws:// or wss:// URL) or 'endpoint'")])
            scheme, sep, rest = endpoint.partition("://")
            if not sep or scheme.lower() not in _URL_SCHEMES:
                raise ConfigError([(f"{path}.endpoint", f"expected an http(s):// or ws(s):// URL, got {endpoint!r}")])
            url = f"{_URL_SCHEMES[scheme.lower()]}://{rest}"
            key = "endpoint"
        try:
            parse_uri(render_text(url, {"apiKey": "key", "model": "model"}))
        except InvalidURI as exc:
            raise ConfigError([(f"{path}.{key}", f"not a valid WebSocket URL: {exc}")]) from None
        return url

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the TLS trust store when the URL is ``wss://`` (the system's
        CAs; ``SSL_CERT_FILE``/``SSL_CERT_DIR`` are honoured)."""
        if self.url_template.startswith("wss://") and self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()

    async def aclose(self) -> None:
        """Close every idle connection (cleanly, a second at most each)."""
        self._closing = True
        idle = [conn for conns in self._idle.values() for conn in conns]
        self._idle.clear()
        if idle:
            async with anyio.create_task_group() as task_group:
                for conn in idle:
                    task_group.start_soon(conn.close, _CLOSE_SECONDS)

    # -- what is sent ------------------------------------------------------------------

    def url(self, model: str) -> str:
        """The WebSocket URL for ``model`` (placeholders filled in, URL-encoded)."""
        values = {"apiKey": self.config.api_key, "model": model}
        return render_text(self.url_template, values, escape=lambda text: urllib.parse.quote(text, safe=""))

    def _fill(self, template: str, model: str) -> str | None:
        """``template`` with ``{{apiKey}}``/``{{model}}`` filled in; ``None``
        when it needs the API key and none is configured."""
        key = self.config.api_key
        if not key and "apiKey" in set(placeholders(template)):
            return None
        return render_text(template, {"apiKey": key, "model": model})

    def connect_headers(self, model: str) -> list[tuple[str, str]]:
        """The handshake's extra headers: ``User-Agent``, then
        ``connectHeaders``, then the provider's ``headers`` (a later header
        replaces an earlier one of the same name, case-insensitively; a
        header using ``{{apiKey}}`` is left out when no key is configured)."""
        merged: dict[str, tuple[str, str]] = {"user-agent": ("User-Agent", _USER_AGENT)}
        for source in (self.options.connect_headers, self.config.headers):
            for name, template in source.items():
                value = self._fill(template, model)
                if value is None:
                    merged.pop(name.lower(), None)
                else:
                    merged[name.lower()] = (name, value)
        return list(merged.values())

    def subprotocols(self, model: str) -> list[str]:
        """The subprotocols offered (one using ``{{apiKey}}`` only with a key)."""
        filled = (self._fill(template, model) for template in self.options.subprotocols)
        return [value for value in filled if value is not None]

    def message_values(self, call: ProviderCall, *, stream: bool) -> dict[str, Any]:
        """The placeholder values for ``call``'s request message.

        ``messages`` are OpenAI-format dicts (content parts and tool calls
        passed through); ``prompt`` is the text of the non-system messages
        joined by newlines; ``system`` the system (and developer) messages'
        text, ``None`` without one; ``stream`` says whether the caller streams;
        ``requestId`` is new for every request.
        """
        request = call.request
        system = [m.text() for m in request.messages if m.role in ("system", "developer")]
        prompt = [m.text() for m in request.messages if m.role not in ("system", "developer")]
        return {
            "model": call.upstream_model,
            "messages": [m.to_openai() for m in request.messages],
            "prompt": "\n".join(prompt),
            "system": "\n".join(system) if system else None,
            "maxTokens": call.max_tokens,
            "temperature": call.temperature,
            "topP": request.top_p,
            "stop": list(request.stop) if request.stop else None,
            "stream": stream,
            "tools": list(request.tools) if request.tools else None,
            "toolChoice": request.tool_choice,
            "responseFormat": request.response_format,
            "user": request.user,
            "requestId": uuid.uuid4().hex,
            "apiKey": self.config.api_key,
        }

    def request_message(self, call: ProviderCall, *, stream: bool) -> str:
        """The text of the request message: the template rendered with
        :meth:`message_values`; when it renders to an object,
        ``request.extra`` is merged in last (a ``None`` value removes a
        field). A string is sent as is, anything else as compact JSON."""
        rendered = render(self.options.template, self.message_values(call, stream=stream))
        if isinstance(rendered, dict):
            for key, value in call.request.extra.items():
                if value is None:
                    rendered.pop(key, None)
                else:
                    rendered[key] = value
        if isinstance(rendered, str):
            return rendered
        try:
            return json.dumps(rendered, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(
                f"the request message cannot be encoded as JSON ({type(exc).__name__}: {exc})",
                provider=self.name,
                model=call.model,
            ) from exc

    # -- connections -----------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """``text`` without API keys (upstreams echo bad keys back): this
        instance's key (also URL-encoded) becomes ``***``, every other
        registered secret (the provider's other keys) its fingerprint."""
        key = self.config.api_key
        if key:
            for form in {key, urllib.parse.quote(key, safe="")}:
                text = text.replace(form, "***")
        return scrub_secrets(text)

    async def _connect(self, url: str, model: str, limit: float, label: str | None) -> WebSocketConnection:
        """Open a new connection within ``limit`` seconds; every failure
        is a typed error (``label`` is the call's model, for the error)."""
        where = _where(url)
        headers = self.connect_headers(model)
        try:
            with anyio.fail_after(limit):
                return await WebSocketConnection.open(
                    url,
                    headers=headers,
                    subprotocols=self.subprotocols(model),
                    max_size=self.options.max_message_size,
                    ssl_context=self._ssl_context,
                    key=self._pool_key(url, headers),
                )
        except TimeoutError:
            raise ProviderTimeoutError(
                self._scrub(f"the WebSocket at {where} did not open within {limit:g}s"),
                provider=self.name,
                model=label,
            ) from None
        except HandshakeFailed as exc:
            raise self._handshake_error(exc.error, where, label) from None
        except Closed:
            raise ProviderConnectionError(
                self._scrub(f"{where} closed the connection during the WebSocket handshake"),
                provider=self.name,
                model=label,
            ) from None
        except (InvalidURI, OSError, anyio.BrokenResourceError, anyio.EndOfStream, anyio.ClosedResourceError) as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise ProviderConnectionError(
                self._scrub(f"cannot connect to {where} ({detail})"), provider=self.name, model=label
            ) from None

    @staticmethod
    def _pool_key(url: str, headers: list[tuple[str, str]]) -> str:
        return "\n".join([url, *(f"{name.lower()}:{value}" for name, value in headers)])

    async def _acquire(self, url: str, call: ProviderCall) -> tuple[WebSocketConnection, bool]:
        """A connection for ``call``: an idle one that is still usable
        (``True``: reused), else a new one."""
        headers = self.connect_headers(call.upstream_model)
        idle = self._idle.get(self._pool_key(url, headers))
        while idle:
            conn = idle.pop()
            if await self._still_usable(conn, call.timeout):
                return conn, True
            await conn.abandon()
        return await self._connect(url, call.upstream_model, call.timeout, call.model), False

    async def _still_usable(self, conn: WebSocketConnection, limit: float) -> bool:
        """Is an idle connection fit for reuse (see :meth:`WebSocketConnection.usable`),
        and, idle for longer than the ping interval, does it answer a ping within ``limit``?"""
        if not await conn.usable(min(limit, _CLOSE_SECONDS)):
            return False
        interval = self.options.ping_seconds
        if interval is not None and time.monotonic() - conn.last_used >= interval:
            with anyio.move_on_after(limit) as scope:
                try:
                    await conn.ping()
                except Closed:
                    return False
            if scope.cancelled_caught:
                return False
        return True

    async def _release(self, conn: WebSocketConnection, call: ProviderCall, *, reuse: bool, graceful: bool) -> None:
        """Keep ``conn`` for the next request (keep-open, ``reuse``, room in
        the pool), else close it: cleanly when ``graceful``, else at once."""
        with anyio.CancelScope(shield=True):
            if reuse and self.options.keep_open and not self._closing and conn.is_open:
                idle = self._idle.setdefault(conn.key, [])
                if len(idle) < self.options.max_idle_connections:
                    conn.last_used = time.monotonic()
                    idle.append(conn)
                    return
            if graceful and conn.is_open:
                await conn.close(min(call.timeout, _CLOSE_SECONDS))
            else:
                await conn.abandon()

    async def _send(self, conn: WebSocketConnection, payload: str, call: ProviderCall) -> None:
        with anyio.move_on_after(call.timeout):
            await conn.send_text(payload)
            return
        raise ProviderTimeoutError(
            f"the request message could not be sent within {call.timeout:g}s", provider=self.name, model=call.model
        )

    async def _receive(self, conn: WebSocketConnection, call: ProviderCall) -> bytes:
        """The next message within ``call.timeout`` (a silent socket is
        ProviderTimeoutError); raises :class:`Closed` when the socket closes."""
        with anyio.move_on_after(call.timeout):
            return await conn.receive(self.options.ping_seconds)
        raise ProviderTimeoutError(
            f"no message from the upstream within {call.timeout:g}s", provider=self.name, model=call.model
        )

    async def _begin(self, url: str, payload: str, call: ProviderCall) -> tuple[WebSocketConnection, bytes]:
        """Get a connection, send the request, read the first message. A
        reused connection that turns out dead before the first message is
        replaced once by a new one. Raises :class:`Closed` for a new one."""
        conn, reused = await self._acquire(url, call)
        try:
            await self._send(conn, payload, call)
            return conn, await self._receive(conn, call)
        except Closed:
            await conn.abandon()
            if not reused:
                raise
        except BaseException:
            await conn.abandon()
            raise
        conn = await self._connect(url, call.upstream_model, call.timeout, call.model)
        try:
            await self._send(conn, payload, call)
            return conn, await self._receive(conn, call)
        except BaseException:
            await conn.abandon()
            raise

    # -- answers -----------------------------------------------------------------------

    async def complete(self, call: ProviderCall) -> ProviderReply:
        """The streamed answer, collected (the request says ``stream: false``)."""
        answer = _Answer()
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        usage = ZERO_USAGE
        finish = "stop"
        async with contextlib.aclosing(self._exchange(call, answer, stream=False)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    text.append(event.text)
                elif isinstance(event, ToolCallDelta):
                    merged = calls.setdefault(
                        event.index, {"id": None, "type": "function", "function": {"name": None, "arguments": ""}}
                    )
                    if event.id:
                        merged["id"] = event.id
                    if event.name:
                        merged["function"]["name"] = event.name
                    merged["function"]["arguments"] += event.arguments
                elif isinstance(event, UsageEvent):
                    usage = event.tokens
                elif isinstance(event, FinishEvent):
                    finish = event.finish_reason
        metadata = {"usage_estimated": True} if answer.estimated else {}
        tool_calls = tuple(calls[i] for i in sorted(calls)) if calls else None
        return ProviderReply("".join(text), usage, finish, tool_calls, answer.model, metadata=metadata)

    def stream(self, call: ProviderCall) -> AsyncGenerator[ProviderEvent, None]:
        """Text and tool-call deltas as messages arrive, then the usage (when
        the upstream reports any) and the finish reason."""
        return self._exchange(call, _Answer(), stream=True)

    async def _exchange(
        self, call: ProviderCall, answer: _Answer, *, stream: bool
    ) -> AsyncGenerator[ProviderEvent, None]:
        """One request on one connection, as provider events (see :meth:`stream`)."""
        payload = self.request_message(call, stream=stream)
        url = self.url(call.upstream_model)
        try:
            conn, raw = await self._begin(url, payload, call)
        except Closed as closed:
            raise self._close_error(closed, call.model) from None
        # ``graceful``: the socket still works (an answer or an error message
        # was read), so close it cleanly; after a timeout, a close or an
        # abandoned stream it is dropped at once.
        reuse = graceful = False
        try:
            while True:
                graceful = True
                events, done = self._read(raw, answer, call.model)
                graceful = False
                for event in events:
                    yield event
                if done:
                    reuse = graceful = True
                    break
                try:
                    raw = await self._receive(conn, call)
                except Closed as closed:
                    if closed.code in _NORMAL_CLOSES and not closed.local and answer.finish is not None:
                        break
                    raise self._close_error(closed, call.model) from None
            if answer.finish == "content_filter":
                raise ContentFilteredError(
                    "the upstream's content filter stopped the answer (finish reason: content_filter)",
                    provider=self.name,
                    model=call.model,
                )
            usage = answer.usage(call)
            if usage is not None:
                yield UsageEvent(usage)
            yield FinishEvent(answer.finish or ("tool_calls" if answer.tool_calls else "stop"))
        finally:
            await self._release(conn, call, reuse=reuse, graceful=graceful)

    def _read(self, raw: bytes, answer: _Answer, model: str) -> tuple[list[ProviderEvent], bool]:
        """The events in one message and whether it ends the answer. Raises
        the typed error of an error message; ServerError for a message
        that is not JSON."""
        if self._done_message is not None and raw.strip() == self._done_message:
            return [], True
        try:
            data = json.loads(raw)
        except ValueError as exc:
            snippet = self._scrub(raw.decode("utf-8", "replace").strip()[:80])
            raise ServerError(
                f"upstream message is not valid JSON: {snippet!r}", provider=self.name, model=model
            ) from exc
        paths = self._paths
        try:
            if _truthy(_search(paths.error, data)):
                raise self._message_error(data, model)
            events: list[ProviderEvent] = []
            text = _search(paths.text, data)
            if isinstance(text, str) and text:
                answer.text.append(text)
                events.append(TextDelta(text))
            if paths.tool_calls is not None:
                events.extend(self._tool_call_deltas(paths.tool_calls.search(data), answer))
            finish = _search(paths.finish_reason, data)
            if isinstance(finish, str) and finish:
                answer.finish = self._finish_names.get(finish, finish)
            tokens = _integer(_search(paths.input_tokens, data))
            if tokens is not None:
                answer.input_tokens = tokens
            tokens = _integer(_search(paths.output_tokens, data))
            if tokens is not None:
                answer.output_tokens = tokens
            reported = _search(paths.model, data)
            if isinstance(reported, str) and reported:
                answer.model = reported
            done = paths.done is not None and self._is_done(paths.done.search(data))
        except jmespath.exceptions.JMESPathError as exc:
            raise ServerError(
                f"upstream message has an unexpected shape ({type(exc).__name__}: {exc})",
                provider=self.name,
                model=model,
            ) from exc
        return events, done

    def _is_done(self, found: Any) -> bool:
        expected = self.options.done.value
        return _truthy(found) if expected is None else bool(found == expected)

    @staticmethod
    def _tool_call_deltas(found: Any, answer: _Answer) -> list[ProviderEvent]:
        """OpenAI-style tool-call fragments (a list, or one object) as deltas."""
        items = found if isinstance(found, list) else [found] if isinstance(found, dict) else []
        deltas: list[ProviderEvent] = []
        for position, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            nested = item.get("function")
            function: dict[str, Any] = nested if isinstance(nested, dict) else {}
            name = function.get("name", item.get("name"))
            arguments = function.get("arguments", item.get("arguments"))
            if arguments is not None and not isinstance(arguments, str):
                arguments = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
            index = _integer(item.get("index"))
            call_id = item.get("id", item.get("call_id"))
            deltas.append(
                ToolCallDelta(
                    position if index is None else index,
                    None if call_id is None else str(call_id),
                    None if name is None else str(name),
                    arguments or "",
                )
            )
        if deltas:
            answer.tool_calls = True
        return deltas

    # -- errors ------------------------------------------------------------------------

    def _message_error(self, data: Any, model: str | None) -> SwarmgateError:
        """An error message to the taxonomy: its code through ``errorCodes``
        first, else its status (:func:`~swarmgate.errors.error_for_status`),
        else ServerError. The message keeps the upstream's words, never the key."""
        paths = self._paths
        message = _search(paths.error_message, data)
        if not isinstance(message, str) or not message:
            found = _search(paths.error, data)
            message = found if isinstance(found, str) else json.dumps(found if found is not None else data)[:_SNIPPET]
        code_value = _search(paths.error_code, data)
        code = None if code_value is None or isinstance(code_value, dict | list) else str(code_value)
        status = _integer(_search(paths.error_status, data))
        if status is not None and not 100 <= status <= 599:
            status = None
        retry_after = _seconds(_search(paths.retry_after, data))
        text = self._scrub(f"upstream error: {message}" + (f" [{code}]" if code else ""))
        kind = self._error_kinds.get(code) if code else None
        if kind is not None:
            return ERROR_CLASSES[kind](
                text, provider=self.name, model=model, retry_after=retry_after, upstream_status=status
            )
        if status is not None and status >= 400:
            return error_for_status(status, text, provider=self.name, model=model, retry_after=retry_after)
        return ServerError(text, provider=self.name, model=model, retry_after=retry_after, upstream_status=status)

    def _close_error(self, closed: Closed, model: str | None) -> SwarmgateError:
        """A close before the end of the answer, to the taxonomy: the close
        code through ``errorCodes`` first, else the standard meaning of the
        code (1006 connection error, 1008 permission, 1012/1013 overloaded,
        1011 and the rest server error, ...)."""
        if closed.local:
            return ServerError(
                self._scrub(
                    f"the upstream sent what the WebSocket client cannot accept; closed with "
                    f"{_close_label(closed.code, closed.reason)}"
                ),
                provider=self.name,
                model=model,
            )
        if closed.code == 1006:
            message = "the WebSocket connection dropped without a close frame (1006)"
        elif closed.code in _NORMAL_CLOSES:
            message = f"upstream closed the WebSocket before the end of the answer: {_close_label(closed.code, closed.reason)}"
        else:
            message = f"upstream closed the WebSocket: {_close_label(closed.code, closed.reason)}"
        kind = self._error_kinds.get(str(closed.code)) or _CLOSE_KINDS.get(closed.code, ErrorKind.SERVER_ERROR)
        return ERROR_CLASSES[kind](self._scrub(message), provider=self.name, model=model)

    def _body_detail(self, body: bytes) -> str:
        text = body.decode("utf-8", "replace").strip()
        try:
            data = json.loads(text)
        except ValueError:
            return " ".join(text.split())[:_SNIPPET] or "(empty body)"
        found = _search(self._paths.error_message, data) or _BODY_MESSAGE.search(data)
        if isinstance(found, str) and found:
            return found[:_SNIPPET]
        return text[:_SNIPPET]

    def _handshake_error(self, error: Exception, where: str, model: str | None) -> SwarmgateError:
        """A refused upgrade: 401 AuthenticationError, 403
        PermissionDeniedError, 429 RateLimitedError (``Retry-After``),
        anything else ProviderConnectionError, each with the status and the
        body's message."""
        if not isinstance(error, InvalidStatus):
            return ProviderConnectionError(
                self._scrub(f"the WebSocket handshake with {where} failed: {error}"), provider=self.name, model=model
            )
        response = error.response
        status = response.status_code
        message = self._scrub(
            f"WebSocket handshake rejected with HTTP {status}: {self._body_detail(bytes(response.body))}"
        )
        common: dict[str, Any] = {"provider": self.name, "model": model, "upstream_status": status}
        if status == 401:
            return AuthenticationError(message, **common)
        if status == 403:
            return PermissionDeniedError(message, **common)
        if status == 429:
            return RateLimitedError(message, retry_after=parse_retry_after(response.headers), **common)
        return ProviderConnectionError(message, **common)

    # -- health ------------------------------------------------------------------------

    async def health_check(self) -> HealthStatus:
        """Open the WebSocket (the default model's URL and headers), ping,
        wait for the pong, close; all within the provider timeout."""
        timeout = self.config.timeout / 1000.0
        model = self.config.resolve_default_model() or ""
        model_config = self.config.models.get(model)
        upstream = model_config.upstream_name if model_config and model_config.upstream_name else model
        url = self.url(upstream)
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000.0

        conn: WebSocketConnection | None = None
        try:
            with anyio.fail_after(timeout):
                conn = await self._connect(url, upstream, timeout, None)
                opened = elapsed()
                await conn.ping()
            latency = elapsed()
        except TimeoutError:
            return HealthStatus(False, elapsed(), detail=f"{_where(url)}: no pong within {timeout:g}s")
        except SwarmgateError as exc:
            return HealthStatus(False, elapsed(), detail=exc.message)
        except Closed as exc:
            return HealthStatus(
                False, elapsed(), detail=self._scrub(f"{_where(url)}: {self._close_error(exc, None).message}")
            )
        finally:
            if conn is not None:
                await conn.close(min(timeout, _CLOSE_SECONDS))
        return HealthStatus(
            True, latency, detail=f"{_where(url)}: open in {opened:.1f} ms, pong in {latency - opened:.1f} ms"
        )
