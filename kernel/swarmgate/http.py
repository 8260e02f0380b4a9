"""Shared HTTP plumbing for provider plugins that speak HTTP through httpx.

One pooled ``httpx.AsyncClient`` per provider (:func:`make_client`), the
mapping of transport failures to the error taxonomy
(:func:`transport_error`), ``Retry-After`` parsing, a small SSE reader
(:func:`aiter_sse`): SSE framing is a dozen lines, and hand-writing it keeps
one dependency off the hot path of every streamed token; and
:class:`HTTPProvider`, the scaffolding that httpx-based drivers share.
"""

from __future__ import annotations

import email.utils
import functools
import json
import logging
import os
import time
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

import anyio
import attrs
import httpx
import sniffio

from swarmgate.config import ProviderConfig
from swarmgate.errors import (
    InvalidRequestError,
    ProviderConnectionError,
    ProviderTimeoutError,
    ServerError,
    SwarmgateError,
    error_for_status,
)
from swarmgate.logs import scrub_secrets
from swarmgate.provider import Provider, ProviderCall


def _json_codec() -> tuple[Callable[[bytes | str], Any], Callable[[Any], bytes]]:
    """orjson when installed (several times faster on streamed chunks), else
    the standard library with the same compact output."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is installed in development

        def encode(value: Any) -> bytes:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

        return json.loads, encode
    return orjson.loads, orjson.dumps


#: ``loads(bytes | str) -> Any`` and ``dumps(value) -> bytes`` (compact UTF-8
#: JSON): orjson when installed. Invalid JSON raises ``ValueError``; a value
#: JSON cannot express raises ``TypeError``.
loads, dumps = _json_codec()


def make_client(
    config: ProviderConfig,
    *,
    base_url: str,
    headers: Mapping[str, str] | None = None,
    max_connections: int = 1000,
) -> httpx.AsyncClient:
    """A pooled client for one provider: ``base_url``, default headers (the
    config's ``headers`` override ``headers``, case-insensitively), the
    config's timeout and ``proxy`` (SOCKS needs ``httpx[socks]``).

    At most ``max_connections`` connections at once (streams hold theirs
    for their whole length), of which up to 100 are kept alive when idle.
    The transport is :func:`fast_transport`'s: swarmgate's own
    (:class:`~swarmgate.transport.NativeTransport`) under asyncio, httpx's
    own under trio and with a ``proxy``. The client API (httpx's) is the
    same either way."""
    timeout = config.timeout / 1000.0
    merged = httpx.Headers(headers or {})
    merged.update(config.headers)  # case-insensitive: the config's "user-agent" replaces "User-Agent"
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=min(max_connections, 100))
    # With a proxy (configured, or from the environment) httpx mounts its own
    # transports for the proxied URLs: the fast transport is not used then.
    transport = fast_transport(limits) if config.proxy is None and not urllib.request.getproxies() else None
    options: dict[str, Any] = {
        "proxy": config.proxy,
        "base_url": base_url.rstrip("/"),
        "headers": merged,
        "timeout": httpx.Timeout(timeout, connect=connect_timeout(config)),
        "limits": limits,
    }
    if transport is not None:
        return SwarmgateClient(transport=transport, **options)
    return httpx.AsyncClient(**options)


_DEFAULT = type(httpx.USE_CLIENT_DEFAULT)
_httpx_log = logging.getLogger("httpx")
_FRAMING = frozenset({b"host", b"content-length", b"transfer-encoding"})
_EMPTY_BODY_LENGTH = frozenset({"POST", "PUT", "PATCH"})  # httpx sends ``Content-Length: 0`` for these


def _bytes_request(
    method: str,
    url: httpx.URL,
    host: bytes,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    extensions: dict[str, Any],
) -> httpx.Request:
    """The request ``httpx.Request(method, url, content=body, headers=headers)``
    makes -- the same headers in the same order (``Host`` first, then a
    ``Content-Length`` for a body last, or ``Content-Length: 0`` second for
    an empty ``POST``/``PUT``/``PATCH``), the body read -- without its
    encoding and header-preparing passes (~12 -> ~4 µs). ``headers`` has no
    ``Host``/``Content-Length``/``Transfer-Encoding``."""
    if body:
        items = [(b"Host", host), *headers, (b"Content-Length", b"%d" % len(body))]
    elif method.upper() in _EMPTY_BODY_LENGTH:
        items = [(b"Host", host), (b"Content-Length", b"0"), *headers]
    else:
        items = [(b"Host", host), *headers]
    request = httpx.Request(method, url, headers=items, stream=httpx.ByteStream(body), extensions=extensions)
    request.read()
    return request


class SwarmgateClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose every request goes to the one
    transport it was given (:func:`make_client` makes one only when no
    proxy applies), with a shorter path for the common request.

    httpx's client spends more per request than aiohttp itself (measured:
    ``build_request`` ~45 µs, cookie extraction ~15 µs, the auth and
    redirect layers around the transport). When the request needs none of
    that -- a relative URL without query parameters, no per-request
    cookies, params or extensions, no cookies kept, no auth, no redirects to
    follow, no event hooks -- :meth:`build_request` makes the request from
    a cached absolute URL (and, for a ``bytes`` body, the headers httpx
    would make, built directly) and :meth:`send` calls the transport
    directly; cookies an answer sets are still kept. When the native
    transport hands over an answer that came whole with its headers, a
    non-streamed response gets its content without an async read. Anything
    else takes httpx's own path, unchanged. Responses have no ``elapsed``
    on the short path.
    """

    def __init__(self, *, transport: httpx.AsyncBaseTransport, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self._direct = transport
        self._urls: dict[str, tuple[httpx.URL, bytes]] = {}

    def build_request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: Any = None,
        headers: Any = None,
        timeout: Any = httpx.USE_CLIENT_DEFAULT,
        **rest: Any,
    ) -> httpx.Request:
        """httpx's ``build_request``; for a relative URL and nothing but
        ``content``, ``headers`` and ``timeout``, without its merging work."""
        if any(value is not None for value in rest.values()) or not isinstance(url, str) or self.cookies or self.params:
            return super().build_request(method, url, content=content, headers=headers, timeout=timeout, **rest)
        found = self._urls.get(url)
        if found is None:
            full = super().build_request(method, url).url  # httpx's own merge with base_url, once per path
            if full.query or not full.host or len(self._urls) >= 256:
                return super().build_request(method, url, content=content, headers=headers, timeout=timeout)
            found = self._urls[url] = (full, full.netloc)
        full, host = found
        resolved = self.timeout if isinstance(timeout, _DEFAULT) else httpx.Timeout(timeout)
        extensions = {"timeout": resolved.as_dict()}
        if content is None or type(content) is bytes:
            items = self._merged_headers(headers)
            if items is not None:
                return _bytes_request(method, full, host, content or b"", items, extensions)
        merged = httpx.Headers(self.headers)
        if headers:
            merged.update(headers)
        return httpx.Request(method, full, content=content, headers=merged, extensions=extensions)

    def _merged_headers(self, headers: Any) -> list[tuple[bytes, bytes]] | None:
        """The client's headers updated with ``headers`` (a request header
        replaces every client header of its name, case-insensitively, and
        goes last: ``httpx.Headers.update``'s order), as raw pairs; ``None``
        when they name ``Host``, ``Content-Length`` or ``Transfer-Encoding``
        (httpx's own request build knows how those combine)."""
        items = self.headers.raw
        if headers:
            extra = (headers if isinstance(headers, httpx.Headers) else httpx.Headers(headers)).raw
            names = {name.lower() for name, _ in extra}
            items = [item for item in items if item[0].lower() not in names]
            items += extra
        for name, _ in items:
            if name.lower() in _FRAMING:
                return None
        return items

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        """httpx's ``send``; straight to the transport when no auth,
        redirect following or event hook is involved."""
        follow = self.follow_redirects if isinstance(follow_redirects, _DEFAULT) else follow_redirects
        hooks = self.event_hooks
        if follow or self.auth is not None or not isinstance(auth, _DEFAULT) or hooks["request"] or hooks["response"]:
            return await super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        if "timeout" not in request.extensions:
            request.extensions["timeout"] = self.timeout.as_dict()
        response = await self._direct.handle_async_request(request)
        response.request = request
        if "set-cookie" in response.headers:
            self.cookies.extract_cookies(response)
        if _httpx_log.isEnabledFor(logging.INFO):  # the line httpx's own path logs
            _httpx_log.info(
                'HTTP Request: %s %s "%s %d %s"',
                request.method,
                request.url,
                response.http_version,
                response.status_code,
                response.reason_phrase,
            )
        if not stream:
            body: Any = response.stream
            if type(body) is _read_body and body.plain:
                # The whole answer came with its headers and no Content-Encoding
                # applies: the bytes are the content (what aread() would make,
                # without its three async generator levels: ~9 µs).
                response._content = body.body
                response._num_bytes_downloaded = len(response._content)
                response.is_stream_consumed = response.is_closed = True
                return response
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response


#: ``aiohttp`` keeps the aiohttp-based transport under asyncio, ``httpx``
#: httpx's own (for comparisons, or to step around an upstream the native
#: transport mishandles); unset (or ``native``): :class:`NativeTransport`.
TRANSPORT_ENV = "SWARMGATE_HTTP_TRANSPORT"


def fast_transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport | None:
    """The fastest transport for the running event loop, or ``None`` for
    httpx's own (what a client gets without ``transport=``).

    Under asyncio, when ``httptools`` imports: swarmgate's own
    :class:`~swarmgate.transport.NativeTransport` (asyncio protocols, the
    llhttp parser; measured at a fraction of aiohttp's cost per request).
    ``$SWARMGATE_HTTP_TRANSPORT=aiohttp`` selects :class:`AiohttpTransport`
    instead (aiohttp's pool behind httpx's API; needs ``httpx-aiohttp``,
    imported only then), ``=httpx`` httpx's own. Under trio, or outside an
    event loop, this is ``None``: both fast transports are asyncio-only.
    """
    choice = os.environ.get(TRANSPORT_ENV, "").strip().lower()
    if choice == "httpx":
        return None
    try:
        if sniffio.current_async_library() != "asyncio":
            return None
    except sniffio.AsyncLibraryNotFoundError:
        return None
    if choice == "aiohttp":
        transport_class = _aiohttp_transport_class()
    else:
        transport_class = _native_transport_class() or _aiohttp_transport_class()
    return transport_class(limits) if transport_class is not None else None


@functools.cache
def _native_transport_class() -> Callable[[httpx.Limits], httpx.AsyncBaseTransport] | None:
    """:class:`~swarmgate.transport.NativeTransport` when httptools imports, else ``None``."""
    try:
        from swarmgate.transport import NativeTransport, ReadBody
    except ImportError:
        return None
    global _read_body
    _read_body = ReadBody
    return NativeTransport


#: :class:`swarmgate.transport.ReadBody` once the native transport is loaded
#: (a placeholder type until then: no response has that body before).
_read_body: Any = type(None)


@functools.cache
def _aiohttp_transport_class() -> Callable[[httpx.Limits], httpx.AsyncBaseTransport] | None:
    """:class:`AiohttpTransport` when aiohttp and httpx-aiohttp import, else
    ``None``. Imported on first use: a trio program never loads aiohttp."""
    try:
        import aiohttp
        import httpx_aiohttp
    except ImportError:
        return None
    import yarl  # aiohttp's URL type

    global _aiohttp, _yarl
    _aiohttp, _yarl = aiohttp, yarl
    return functools.partial(AiohttpTransport, base=httpx_aiohttp.AiohttpTransport)


_aiohttp: Any = None
_yarl: Any = None


def _httpx_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError | None:
    """The httpx error for an aiohttp failure, as httpx's own transport
    would raise it (so :func:`transport_error` gives the same taxonomy
    under both transports); ``None`` when ``exc`` is no transport failure.

    httpx-aiohttp maps failures itself, but calls every connection error a
    ``ConnectTimeout`` (a refused connection, a dropped one) and lets some
    through unmapped; this mapping is the one the drivers rely on."""
    a = _aiohttp
    message = str(exc) or type(exc).__name__
    error: type[httpx.TransportError]
    if isinstance(exc, a.ClientProxyConnectionError | a.ClientHttpProxyError):
        error = httpx.ProxyError
    elif isinstance(exc, a.ConnectionTimeoutError):
        error = httpx.ConnectTimeout
    elif isinstance(exc, a.ServerTimeoutError | TimeoutError):
        error = httpx.ReadTimeout
    elif isinstance(exc, a.ClientConnectorError):
        error = httpx.ConnectError
    elif isinstance(exc, a.ServerDisconnectedError | a.ClientPayloadError | a.ClientResponseError):
        error = httpx.RemoteProtocolError
    elif isinstance(exc, a.ClientConnectionError | OSError):
        error = httpx.ReadError
    elif isinstance(exc, a.InvalidURL):
        error = httpx.UnsupportedProtocol
    elif isinstance(exc, a.ClientError):
        error = httpx.TransportError
    else:
        return None
    return error(message, request=request)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface over aiohttp's connection pool, built on
    httpx-aiohttp's ``AiohttpTransport`` (``base``: it makes the SSL
    context and holds the session), with a leaner request path than the
    package's own (measured: about half its cost per request): the
    ``ClientTimeout`` and parsed URL of each distinct timeout and URL made
    once, the body read with ``readany``; failures mapped by
    :func:`_httpx_error`; no cookie jar (httpx's client keeps cookies);
    at most ``limits.max_connections`` connections. Build it through
    :func:`fast_transport`; asyncio only."""

    def __init__(self, limits: httpx.Limits, *, base: Any) -> None:
        self._limits = limits
        # A callable: the session is made on the first request, on the running loop.
        self._inner = base(limits=limits, client=self._new_session)
        self._timeouts: dict[tuple[float | None, float | None, float | None], Any] = {}
        self._urls: dict[str, Any] = {}

    def _new_session(self) -> Any:
        connector = _aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            keepalive_timeout=self._limits.keepalive_expiry,
            ssl=self._inner.ssl_context,
        )
        return _aiohttp.ClientSession(connector=connector, cookie_jar=_aiohttp.DummyCookieJar())

    def _session(self) -> Any:
        inner = self._inner
        if not isinstance(inner.client, _aiohttp.ClientSession):
            inner.client = inner.get_client()
        return inner.client

    def _timeout(self, request: httpx.Request) -> Any:
        timeout = request.extensions.get("timeout") or {}
        key = (timeout.get("connect"), timeout.get("read"), timeout.get("pool"))
        found = self._timeouts.get(key)
        if found is None:
            if len(self._timeouts) >= 256:
                self._timeouts.clear()
            found = self._timeouts[key] = _aiohttp.ClientTimeout(sock_connect=key[0], sock_read=key[1], connect=key[2])
        return found

    def _url(self, request: httpx.Request) -> Any:
        text = str(request.url)
        found = self._urls.get(text)
        if found is None:
            if len(self._urls) >= 256:
                self._urls.clear()
            found = self._urls[text] = _yarl.URL(text, encoded=True)  # httpx's URL is encoded already
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through aiohttp; transport failures raise httpx's errors."""
        try:
            data: Any = request.content or None
        except httpx.RequestNotRead:
            data = request.stream  # a streamed body: aiohttp reads the async iterable
            request.headers.pop("transfer-encoding", None)  # aiohttp frames it
        try:
            response = await self._session().request(
                request.method,
                self._url(request),
                headers=request.headers.multi_items(),
                data=data,
                allow_redirects=False,
                auto_decompress=False,  # httpx decodes per Content-Encoding
                compress=False,
                timeout=self._timeout(request),
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except Exception as exc:
            _raise_mapped(exc, request)
            raise
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_AiohttpBody(response, request),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        """Close aiohttp's session (every pooled connection)."""
        await self._inner.aclose()


def _raise_mapped(exc: Exception, request: httpx.Request) -> None:
    """Raise :func:`_httpx_error`'s error for ``exc``; return if there is none."""
    mapped = _httpx_error(exc, request)
    if mapped is not None:
        raise mapped from exc


class _AiohttpBody(httpx.AsyncByteStream):
    """An aiohttp response's body as httpx reads it: each piece as it
    arrives (``readany``: a streamed event is not held back), read failures
    mapped by :func:`_httpx_error`. Closing it releases the connection to
    the pool when the body was read to its end, and closes it otherwise."""

    def __init__(self, response: Any, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        readany = self._response.content.readany
        try:
            while chunk := await readany():
                yield chunk
        except Exception as exc:
            _raise_mapped(exc, self._request)
            raise

    async def aclose(self) -> None:
        try:
            await self._response.__aexit__(None, None, None)
        except Exception as exc:
            _raise_mapped(exc, self._request)
            raise


def connect_timeout(config: ProviderConfig) -> float:
    """Seconds allowed to open a connection: ``timeouts.connect``, else
    ``min(timeout, 10 s)``."""
    if config.timeouts.connect is not None:
        return config.timeouts.connect / 1000.0
    return min(config.timeout / 1000.0, 10.0)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def transport_error(exc: httpx.HTTPError, *, provider: str, model: str | None = None) -> SwarmgateError:
    """The taxonomy error for an httpx transport failure (no HTTP status)."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx.ProxyError):
        return ProviderConnectionError(
            f"the proxy refused or failed the request ({detail})", provider=provider, model=model
        )
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeoutError(f"upstream timed out ({detail})", provider=provider, model=model)
    if isinstance(
        exc, httpx.ConnectError | httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError | httpx.NetworkError
    ):
        return ProviderConnectionError(f"connection to upstream failed ({detail})", provider=provider, model=model)
    return ServerError(f"upstream request failed ({detail})", provider=provider, model=model)


async def drain(pieces: AsyncIterator[Any], response: httpx.Response, within: float) -> None:
    """Read ``pieces`` (an iterator over ``response``'s body: its events,
    lines or frames) to their end, so that the connection goes back to the
    pool, for at most ``within`` seconds: a server that keeps the body open
    after its last event costs only that bound (the connection is then
    dropped when the response closes). Drivers call it once the answer's
    last event is in. When the transport has the rest of the body already
    (the native transport says so), no timer is armed: the read cannot wait."""
    stream = response.stream
    # httpx's own client wraps the transport's stream (BoundAsyncStream, its
    # ``_stream``); SwarmgateClient's short path hands it over as it is.
    if getattr(stream, "arrived", False) or getattr(getattr(stream, "_stream", None), "arrived", False):
        async for _ in pieces:
            pass
        return
    with anyio.move_on_after(within):
        async for _ in pieces:
            pass


@attrs.frozen
class SSEEvent:
    """One server-sent event: ``event`` name (``message`` by default), ``data``,
    and the comment lines (``:...``, without the colon) that came with it:
    some providers put metadata there (DashScope: ``HTTP_STATUS/429``)."""

    event: str
    data: str
    comments: tuple[str, ...] = ()


async def aiter_sse(response: httpx.Response) -> AsyncGenerator[SSEEvent, None]:
    """The events of a ``text/event-stream`` response, per the SSE spec
    (lines end with CR, LF or CRLF; UTF-8; multi-line ``data`` joined with
    newlines, comments skipped). The body is split into lines here, as
    bytes (:class:`SSEParser`), not by httpx's text and line decoders: two
    generator levels fewer per event. Closing this generator closes the
    body iterator at once.

    A body the native transport received whole with the headers, with no
    ``Content-Encoding`` to undo, is parsed at once, without httpx's byte
    iterators (three generator levels); the response is closed after its
    last event, as reading it to its end through httpx would."""
    body: Any = response.stream
    if type(body) is _read_body and body.plain:
        parser = SSEParser()
        found = parser.feed(body.body)
        found.extend(parser.close())
        for event in found:
            yield event
        await response.aclose()
        return
    chunks = response.aiter_bytes()
    parser = SSEParser()
    try:
        async for chunk in chunks:
            for event in parser.feed(chunk):
                yield event
        for event in parser.close():
            yield event
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


class SSEParser:
    """Server-sent events from a byte stream fed in pieces of any size:
    :meth:`feed` returns the events each piece completes, :meth:`close`
    those the end of the stream completes (a last line without a line
    break counts). Invalid UTF-8 is replaced, as httpx's decoder does."""

    __slots__ = ("_comments", "_data", "_event", "_rest")

    def __init__(self) -> None:
        self._rest = b""
        self._event = ""
        self._data: list[str] = []
        self._comments: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by ``chunk``."""
        if self._rest:
            chunk = self._rest + chunk
        if not chunk:
            return []
        lines = chunk.splitlines(keepends=True)  # bytes: only CR, LF and CRLF end lines
        # An unfinished last line waits for the next piece; so does a final CR,
        # which may be the first half of a CRLF.
        self._rest = b"" if lines[-1][-1:] == b"\n" else lines.pop()
        return self._lines(lines)

    def close(self) -> list[SSEEvent]:
        """The events completed by the end of the stream."""
        rest, self._rest = self._rest, b""
        found = self._lines([rest]) if rest else []
        if self._data:
            found.append(SSEEvent(self._event or "message", "\n".join(self._data), tuple(self._comments)))
            self._event, self._data, self._comments = "", [], []
        return found

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        found: list[SSEEvent] = []
        data = self._data
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if not line:
                if data:
                    found.append(SSEEvent(self._event or "message", "\n".join(data), tuple(self._comments)))
                self._event, self._comments = "", []
                data = self._data = []
                continue
            text = line.decode("utf-8", "replace")
            if text[0] == ":":
                self._comments.append(text[1:])
                continue
            field, _, value = text.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if field == "data":
                data.append(value)
            elif field == "event":
                self._event = value
        return found


#: Headers of a JSON request expecting a JSON answer.
JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}


class HTTPProvider(Provider):
    """Base class of drivers that speak HTTP through one pooled httpx client.

    It holds the client (``_client``, an instance attribute: the ``proxy``
    plugin finds httpx clients among a driver's attributes), opened by
    :meth:`start` with :meth:`build_client` and closed by :meth:`aclose`, and
    the helpers every such driver needs: per-request timeouts that honour
    ``timeouts.connect`` (:meth:`request_timeout`, :meth:`probe_timeout`),
    JSON encoding and decoding with the right errors (:meth:`encode_json`,
    :meth:`_decode`), and API-key scrubbing (:meth:`_scrub`,
    :meth:`_transport_error`). The wire format stays in the subclass, which
    sets :attr:`endpoint` (default: the config's ``endpoint``) and usually
    :meth:`default_headers`, and may replace the static methods
    :meth:`json_loads` and :meth:`json_dumps` (with orjson's, say).
    """

    def __init__(self, name: str, config: ProviderConfig, settings: Any = None) -> None:
        super().__init__(name, config, settings)
        #: The API base URL (no trailing slash); subclasses set their own default.
        self.endpoint = (config.endpoint or "").rstrip("/")
        self._client: httpx.AsyncClient | None = None

    # -- lifecycle -------------------------------------------------------------------

    def default_headers(self) -> dict[str, str]:
        """Headers sent with every request; the config's ``headers`` are laid
        over them by :func:`make_client`. None by default."""
        return {}

    def build_client(self) -> httpx.AsyncClient:
        """The pooled client (:func:`make_client` at :attr:`endpoint` with
        :meth:`default_headers`); a subclass may override this to use
        another transport (tests)."""
        return make_client(self.config, base_url=self.endpoint, headers=self.default_headers())

    async def start(self) -> None:
        """Open the connection pool."""
        if self._client is None:
            self._client = self.build_client()

    async def aclose(self) -> None:
        """Close the connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled client; only between :meth:`start` and :meth:`aclose`."""
        if self._client is None:
            raise RuntimeError(f"provider {self.name!r} is not started (await provider.start() first)")
        return self._client

    # -- requests --------------------------------------------------------------------

    def request_timeout(self, call: ProviderCall) -> httpx.Timeout:
        """The timeout of one request for ``call``: ``call.timeout``, and
        the configured connect timeout (:func:`connect_timeout`)."""
        return httpx.Timeout(call.timeout, connect=connect_timeout(self.config))

    def probe_timeout(self) -> httpx.Timeout:
        """The timeout of a health probe: the provider's ``timeout``, and the
        configured connect timeout (:func:`connect_timeout`)."""
        return httpx.Timeout(self.config.timeout / 1000.0, connect=connect_timeout(self.config))

    @staticmethod
    def json_dumps(value: Any) -> bytes:
        """``value`` as compact UTF-8 JSON (:data:`dumps`)."""
        return dumps(value)

    @staticmethod
    def json_loads(data: bytes | str) -> Any:
        """Parsed JSON (:data:`loads`); raises ``ValueError`` for invalid JSON."""
        return loads(data)

    def status_error(self, status: int, headers: Mapping[str, str], body: bytes, model: str | None) -> SwarmgateError:
        """The taxonomy error for a non-2xx answer. This default maps the
        status alone; drivers read their provider's error body."""
        text = self._scrub(body.decode("utf-8", "replace").strip()[:300])
        return error_for_status(
            status, text or f"HTTP {status}", provider=self.name, model=model, retry_after=parse_retry_after(headers)
        )

    async def post_json(self, path: str, content: bytes, call: ProviderCall) -> Any:
        """``POST`` ``content`` (JSON) to ``path`` for ``call`` and return the
        parsed answer; transport failures, non-2xx statuses (through
        :meth:`status_error`) and invalid JSON raise taxonomy errors."""
        try:
            response = await self.client.post(
                path, content=content, headers=JSON_HEADERS, timeout=self.request_timeout(call)
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, call.model) from exc
        if not response.is_success:
            raise self.status_error(response.status_code, response.headers, response.content, call.model)
        return self._decode(response.content, call.model, "answer")

    def encode_json(self, body: Any, model: str | None) -> bytes:
        """``body`` encoded with :meth:`json_dumps`; a body that JSON cannot
        express raises :class:`InvalidRequestError` naming the problem."""
        try:
            return self.json_dumps(body)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(
                f"the request cannot be encoded as JSON ({type(exc).__name__}: {exc})",
                provider=self.name,
                model=model,
            ) from exc

    def _decode(self, data: bytes | str, model: str | None, what: str) -> Any:
        """``data`` parsed with :meth:`json_loads`; invalid JSON raises
        :class:`ServerError` quoting its start (``what``: "answer", ...)."""
        try:
            return self.json_loads(data)
        except ValueError as exc:
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            snippet = self._scrub(text.strip()[:80])
            raise ServerError(
                f"upstream {what} is not valid JSON: {snippet!r}", provider=self.name, model=model
            ) from exc

    # -- errors ----------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """``text`` without API keys (upstreams echo bad keys back): this
        instance's key becomes ``***``, and every other registered secret
        (the provider's other keys, rotated-out keys, proxy passwords)
        its fingerprint."""
        key = self.config.api_key
        if key and key in text:
            text = text.replace(key, "***")
        return scrub_secrets(text)

    def _transport_error(self, exc: httpx.HTTPError, model: str | None) -> SwarmgateError:
        """:func:`transport_error` for this provider, without the API key."""
        error = transport_error(exc, provider=self.name, model=model)
        scrubbed = self._scrub(error.message)
        return error if scrubbed == error.message else type(error)(scrubbed, provider=self.name, model=model)
