"""Loopback proxies for tests: an HTTP proxy and a SOCKS5 proxy.

Both listen on ``127.0.0.1`` on an ephemeral port, are written with anyio
(so they run inside a test's own event loop on asyncio and on trio, or in a
background thread with :meth:`HTTPProxy.in_thread` like
:class:`~swarmgate.testing.upstream.FakeUpstream`), and record every
request or tunnel that goes through them as a :class:`ProxyRecord` in
``records``: a test asserts on those that its traffic really took the proxy.

:class:`HTTPProxy` (RFC 9110 / 9112):

* absolute-form forwarding for ``http://`` targets (``POST
  http://host:port/path``): the request goes upstream in origin form, with
  the hop-by-hop headers (``Proxy-Authorization`` included) removed and a
  ``Via`` header added; the answer is relayed frame by frame (streams stay
  streams), and upstream connections are kept alive per client connection;
* ``CONNECT host:port`` tunnelling (what clients do for ``https://``
  targets), answered ``200 Connection established`` and then relayed byte
  for byte in both directions;
* optional Basic credentials (``Proxy-Authorization``): wrong or missing
  ones are answered ``407`` with ``Proxy-Authenticate``;
* its own failures are answered the way real proxies do, ``502`` (or
  ``504`` for a connect timeout) with an RFC 9209 ``Proxy-Status`` header
  naming the error (``Proxy-Status: swarmgate-test-proxy;
  error=connection_refused``), so that a client can tell them from the
  upstream's own answers.

:class:`SOCKS5Proxy` (RFC 1928 and RFC 1929): no authentication or
username/password, the ``CONNECT`` command, IPv4, domain-name and IPv6
addresses; other commands are refused with reply ``0x07``.

When a connection breaks on one side, the proxy closes the other: a cut
upstream is a cut client connection, and a client that gives up (timeout,
early close) releases the upstream connection at once.

Hand-written on purpose, like the fake upstream: a test proxy must record
what it saw and fail on cue, and these are a few hundred lines over h11.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import socket
import urllib.parse
from collections.abc import Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import anyio
import anyio.abc
import anyio.from_thread
import attrs
import h11
from anyio.streams.buffered import BufferedByteReceiveStream

from swarmgate.testing.loopback import LoopbackServer, run_in_thread

if TYPE_CHECKING:
    pass

__all__ = [
    "PROXY_NAME",
    "SOCKS_ADDRESS_NOT_SUPPORTED",
    "SOCKS_COMMAND_NOT_SUPPORTED",
    "SOCKS_CONNECTION_REFUSED",
    "SOCKS_GENERAL_FAILURE",
    "SOCKS_HOST_UNREACHABLE",
    "SOCKS_NETWORK_UNREACHABLE",
    "SOCKS_SUCCEEDED",
    "SOCKS_TTL_EXPIRED",
    "HTTPProxy",
    "ProxyKind",
    "ProxyRecord",
    "SOCKS5Proxy",
]

PROXY_NAME = "swarmgate-test-proxy"
"""How the proxies name themselves (``Via``, ``Proxy-Status``, realm)."""

ProxyKind = Literal["forward", "connect", "socks"]
"""What went through: an absolute-form request, a CONNECT tunnel, a SOCKS5 tunnel."""

_RECEIVE_SIZE = 65536
#: Headers that belong to one connection (RFC 9110 section 7.6.1), never forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
_VIA = f"1.1 {PROXY_NAME}"

# SOCKS5 constants (RFC 1928 / RFC 1929).
_SOCKS_VERSION = 5
_AUTH_VERSION = 1
_NO_AUTH = 0x00
_USER_PASSWORD = 0x02
_NO_ACCEPTABLE = 0xFF
_CMD_CONNECT = 0x01
_ATYP_IPV4 = 0x01
_ATYP_DOMAIN = 0x03
_ATYP_IPV6 = 0x04
#: SOCKS5 reply codes.
SOCKS_SUCCEEDED = 0x00
SOCKS_GENERAL_FAILURE = 0x01
SOCKS_NETWORK_UNREACHABLE = 0x03
SOCKS_HOST_UNREACHABLE = 0x04
SOCKS_CONNECTION_REFUSED = 0x05
SOCKS_TTL_EXPIRED = 0x06
SOCKS_COMMAND_NOT_SUPPORTED = 0x07
SOCKS_ADDRESS_NOT_SUPPORTED = 0x08


# ---------------------------------------------------------------------------
# Values


@attrs.frozen
class ProxyRecord:
    """One request or tunnel a test proxy handled, recorded when it was
    answered (before any upstream data went back to the client), or when
    the request ended unanswered.

    ``host``/``port`` are the target as the client named it (``None`` when
    a SOCKS client failed before naming one). ``method`` and ``path`` are
    the forwarded request's (``path`` in origin form as sent upstream;
    ``method`` is ``"CONNECT"`` for a CONNECT tunnel). ``user`` is the
    username the client presented, if any (never the password). ``status``
    is the HTTP status answered to the client (the upstream's, for a
    forwarded request), or the SOCKS5 reply code. ``error`` says why the
    proxy itself refused or failed: ``"auth"`` for missing or wrong
    credentials, else an RFC 9209 error type (``connection_refused``,
    ``connection_timeout``, ``dns_error``, ``destination_unavailable``,
    ``connection_terminated``, ``http_request_error``), or
    ``"client_closed"`` when the client gave up before an answer came
    (``"proxy_stopped"`` when the proxy was stopped first).
    """

    kind: ProxyKind
    host: str | None
    port: int | None
    ok: bool
    method: str | None = None
    path: str | None = None
    user: str | None = None
    status: int | None = None
    error: str | None = None


class _ClientGone(Exception):
    """The client closed or reset its connection."""


class _DialError(Exception):
    """The proxy could not connect to the target; ``error`` is the RFC 9209 type."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# ---------------------------------------------------------------------------
# Shared lifecycle


class _LoopbackProxy(LoopbackServer):
    """Lifecycle, addresses, records and the byte relay shared by both proxies.

    ``credentials`` (``(username, password)``) makes the proxy require
    them; ``connect_timeout`` bounds its connection attempts upstream.
    Attributes: ``records`` (every :class:`ProxyRecord`, in order),
    ``connections`` (client connections accepted) and ``errors``
    (unexpected exceptions inside the proxy: leaving the ``async with``
    block raises the first, so a broken proxy never passes silently).
    """

    scheme: ClassVar[str]

    def __init__(self, *, credentials: tuple[str, str] | None = None, connect_timeout: float = 5.0) -> None:
        super().__init__()
        self.label = type(self).__name__
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.records: list[ProxyRecord] = []
        self.connections = 0

    # -- addresses ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """The proxy URL without credentials (``http://127.0.0.1:PORT``)."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def url_with(self, username: str, password: str, *, scheme: str | None = None) -> str:
        """The proxy URL with ``username:password@`` (percent-encoded);
        ``scheme`` replaces the default one (``socks5h`` for ``socks5``)."""
        user = urllib.parse.quote(username, safe="")
        secret = urllib.parse.quote(password, safe="")
        return f"{scheme or self.scheme}://{user}:{secret}@127.0.0.1:{self.port}"

    @property
    def targets(self) -> list[tuple[str | None, int | None]]:
        """``(host, port)`` of every record, in order."""
        return [(r.host, r.port) for r in self.records]

    # -- lifecycle ---------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def in_thread(
        cls,
        *,
        credentials: tuple[str, str] | None = None,
        connect_timeout: float = 5.0,
        backend: str = "asyncio",
    ) -> Iterator[Self]:
        """Run the proxy on its own event loop (``backend``) in a background
        thread for the duration of the ``with`` block; leaving it stops the
        proxy and joins the thread."""
        proxy = cls(credentials=credentials, connect_timeout=connect_timeout)
        with run_in_thread(proxy, backend=backend, name=f"swarmgate-{cls.scheme}-proxy"):
            yield proxy

    async def _serve(self, listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
        try:
            await listener.serve(self._accept)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()

    async def _accept(self, client: anyio.abc.SocketStream) -> None:
        self.connections += 1
        try:
            async with client:
                await self._handle(client)
        except (
            _ClientGone,
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
        ):
            pass
        except Exception as exc:  # noqa: BLE001 - recorded, raised when the proxy stops
            self.errors.append(exc)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------

    def _record(self, record: ProxyRecord) -> None:
        self.records.append(record)

    async def _dial(self, host: str, port: int) -> anyio.abc.SocketStream:
        """Connect to the target, or raise :class:`_DialError` naming why not."""
        try:
            with anyio.fail_after(self.connect_timeout):
                return await anyio.connect_tcp(host, port)
        except TimeoutError:
            raise _DialError(
                "connection_timeout", f"no connection to {host}:{port} within {self.connect_timeout:g}s"
            ) from None
        except socket.gaierror as exc:
            raise _DialError("dns_error", f"cannot resolve {host!r}: {exc.strerror or exc}") from exc
        except OSError as exc:
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, ConnectionRefusedError):
                cause = cause.__cause__
            if cause is not None:
                raise _DialError("connection_refused", f"{host}:{port} refused the connection") from exc
            raise _DialError("destination_unavailable", f"cannot connect to {host}:{port}: {exc}") from exc

    def _check_basic(self, header: str | None) -> tuple[bool, str | None]:
        """Do Basic credentials in ``header`` match? Returns ``(ok, username)``."""
        if self.credentials is None:
            return True, None
        if not header:
            return False, None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False, None
        username, _, password = decoded.partition(":")
        return (username, password) == self.credentials, username


async def _relay(client: anyio.abc.SocketStream, upstream: anyio.abc.SocketStream) -> None:
    """Copy bytes both ways until either side closes, then stop both."""
    async with anyio.create_task_group() as tg:

        async def copy(source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream) -> None:
            try:
                async for chunk in source:
                    await sink.send(chunk)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(copy, client, upstream)
        tg.start_soon(copy, upstream, client)


# ---------------------------------------------------------------------------
# HTTP proxy


@attrs.frozen
class _Incoming:
    """One request read from the client."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        return ", ".join(values) if values else None


@attrs.define
class _Upstream:
    """A kept-alive upstream connection of one client connection."""

    stream: anyio.abc.SocketStream
    conn: h11.Connection = attrs.field(factory=lambda: h11.Connection(h11.CLIENT))


class _UpstreamFailed(Exception):
    """The upstream connection broke before the answer was complete."""


def _forwardable(headers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """``headers`` without the hop-by-hop ones (and those ``Connection`` names)."""
    named = {token.strip().lower() for name, value in headers if name == "connection" for token in value.split(",")}
    return [(k, v) for k, v in headers if k not in _HOP_BY_HOP and k not in named]


def _lower_headers(raw: Any) -> tuple[tuple[str, str], ...]:
    return tuple((bytes(k).decode("latin-1").lower(), bytes(v).decode("latin-1")) for k, v in raw)


class HTTPProxy(_LoopbackProxy):
    """An HTTP/1.1 proxy on ``127.0.0.1`` (see the module docstring).

    ``async with HTTPProxy() as proxy:`` then configure ``proxy.url`` (or
    ``proxy.url_with(user, password)`` when built with ``credentials``).
    """

    scheme = "http"

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        upstreams: dict[tuple[str, int], _Upstream] = {}
        try:
            while True:
                request = await self._read_request(conn, client)
                if request is None:
                    return
                if request.method == "CONNECT":
                    await self._connect(conn, client, request)
                    if conn.our_state is h11.SWITCHED_PROTOCOL:
                        return
                elif not await self._forward(conn, client, request, upstreams):
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except h11.ProtocolError:
            return
        finally:
            with anyio.CancelScope(shield=True):
                for upstream in upstreams.values():
                    await anyio.aclose_forcefully(upstream.stream)

    # -- reading and answering -----------------------------------------------------

    async def _event(self, conn: h11.Connection, client: anyio.abc.SocketStream) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await client.receive(_RECEIVE_SIZE)
            except anyio.EndOfStream:
                data = b""
            except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise _ClientGone from exc
            conn.receive_data(data)

    async def _read_request(self, conn: h11.Connection, client: anyio.abc.SocketStream) -> _Incoming | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = await self._event(conn, client)
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                return None
        assert head is not None
        return _Incoming(
            head.method.decode("ascii"), head.target.decode("latin-1"), _lower_headers(head.headers), bytes(body)
        )

    async def _send(self, conn: h11.Connection, client: anyio.abc.SocketStream, event: Any) -> None:
        data = conn.send(event)
        if data:
            try:
                await client.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise _ClientGone from exc

    async def _answer(
        self,
        conn: h11.Connection,
        client: anyio.abc.SocketStream,
        status: int,
        text: str,
        *,
        error: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """The proxy's own answer: ``status`` with a text body; ``error``
        goes into an RFC 9209 ``Proxy-Status`` header."""
        body = (text + "\n").encode()
        fields = [
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", str(len(body))),
            ("via", _VIA),
            *headers,
        ]
        if error is not None:
            details = text.replace("\\", "\\\\").replace('"', '\\"')
            fields.append(("proxy-status", f'{PROXY_NAME}; error={error}; details="{details}"'))
        reason = HTTPStatus(status).phrase.encode()
        await self._send(conn, client, h11.Response(status_code=status, headers=fields, reason=reason))
        await self._send(conn, client, h11.Data(data=body))
        await self._send(conn, client, h11.EndOfMessage())

    async def _refuse_credentials(
        self, conn: h11.Connection, client: anyio.abc.SocketStream, record: ProxyRecord
    ) -> None:
        self._record(record)
        await self._answer(
            conn,
            client,
            407,
            "proxy authentication required" if record.user is None else "proxy credentials refused",
            headers=(("proxy-authenticate", f'Basic realm="{PROXY_NAME}"'),),
        )

    async def _fail_dial(
        self, conn: h11.Connection, client: anyio.abc.SocketStream, failure: _DialError, record: ProxyRecord
    ) -> None:
        status = 504 if failure.error == "connection_timeout" else 502
        self._record(attrs.evolve(record, ok=False, status=status, error=failure.error))
        await self._answer(conn, client, status, failure.detail, error=failure.error)

    # -- CONNECT -------------------------------------------------------------------

    async def _connect(self, conn: h11.Connection, client: anyio.abc.SocketStream, request: _Incoming) -> None:
        host, _, port_text = request.target.rpartition(":")
        host = host.strip("[]")
        if not host or not port_text.isdigit():
            self._record(ProxyRecord("connect", None, None, False, "CONNECT", status=400, error="http_request_error"))
            await self._answer(conn, client, 400, f"bad CONNECT target {request.target!r}", error="http_request_error")
            return
        port = int(port_text)
        ok, user = self._check_basic(request.header("proxy-authorization"))
        record = ProxyRecord("connect", host, port, True, "CONNECT", user=user)
        if not ok:
            await self._refuse_credentials(conn, client, attrs.evolve(record, ok=False, status=407, error="auth"))
            return
        try:
            upstream = await self._dial(host, port)
        except _DialError as failure:
            await self._fail_dial(conn, client, failure, record)
            return
        async with upstream:
            self._record(attrs.evolve(record, status=200))
            await self._send(
                conn, client, h11.Response(status_code=200, headers=[("via", _VIA)], reason=b"Connection established")
            )
            early, _ = conn.trailing_data
            if early:
                await upstream.send(early)
            await _relay(client, upstream)

    # -- absolute-form forwarding -----------------------------------------------------

    async def _forward(
        self,
        conn: h11.Connection,
        client: anyio.abc.SocketStream,
        request: _Incoming,
        upstreams: dict[tuple[str, int], _Upstream],
    ) -> bool:
        """Forward one request; ``False`` when the client connection must close."""
        url = urllib.parse.urlsplit(request.target)
        try:
            host, port = url.hostname, url.port or 80
        except ValueError:
            host, port = None, 80
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        if url.scheme != "http" or not host:
            self._record(
                ProxyRecord("forward", host, None, False, request.method, status=400, error="http_request_error")
            )
            await self._answer(
                conn,
                client,
                400,
                f"not an absolute http:// request target: {request.target!r}",
                error="http_request_error",
            )
            return True
        ok, user = self._check_basic(request.header("proxy-authorization"))
        record = ProxyRecord("forward", host, port, True, request.method, path, user)
        if not ok:
            await self._refuse_credentials(conn, client, attrs.evolve(record, ok=False, status=407, error="auth"))
            return True
        outcome = "done"
        recorded = len(self.records)
        try:
            async with anyio.create_task_group() as tg:

                async def watch_client() -> None:
                    # While the answer is pending or relayed, a client that
                    # goes away (timeout, early close) must release the upstream.
                    nonlocal outcome
                    try:
                        while True:
                            conn.receive_data(await client.receive(_RECEIVE_SIZE))
                    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                        outcome = "client_gone"
                        tg.cancel_scope.cancel()

                tg.start_soon(watch_client)
                try:
                    outcome = await self._exchange(conn, client, request, record, upstreams, (host, port), path)
                except _ClientGone:
                    outcome = "client_gone"
                tg.cancel_scope.cancel()
        finally:
            if len(self.records) == recorded:
                # No answer went back: the client gave up, or the proxy stopped first.
                error = "client_closed" if outcome == "client_gone" else "proxy_stopped"
                self._record(attrs.evolve(record, ok=False, error=error))
        if outcome != "done":
            upstream = upstreams.pop((host, port), None)
            if upstream is not None:
                await anyio.aclose_forcefully(upstream.stream)
        return outcome == "done"

    async def _exchange(
        self,
        conn: h11.Connection,
        client: anyio.abc.SocketStream,
        request: _Incoming,
        record: ProxyRecord,
        upstreams: dict[tuple[str, int], _Upstream],
        key: tuple[str, int],
        path: str,
    ) -> str:
        headers = [(k, v) for k, v in _forwardable(request.headers) if k not in ("content-length", "transfer-encoding")]
        if not any(k == "host" for k, _ in headers):
            headers.insert(0, ("host", f"{_format_host(key[0])}:{key[1]}"))
        headers += [("content-length", str(len(request.body))), ("via", _VIA)]
        while True:
            upstream = upstreams.get(key)
            if upstream is not None and upstream.conn.our_state is not h11.IDLE:
                upstreams.pop(key)
                await anyio.aclose_forcefully(upstream.stream)
                upstream = None
            reused = upstream is not None
            if upstream is None:
                try:
                    stream = await self._dial(*key)
                except _DialError as failure:
                    await self._fail_dial(conn, client, failure, record)
                    return "done"
                upstream = upstreams[key] = _Upstream(stream)
            try:
                await self._upstream_send(upstream, h11.Request(method=request.method, target=path, headers=headers))
                if request.body:
                    await self._upstream_send(upstream, h11.Data(data=request.body))
                await self._upstream_send(upstream, h11.EndOfMessage())
                head = await self._upstream_event(upstream)
                break
            except _UpstreamFailed:
                upstreams.pop(key, None)
                await anyio.aclose_forcefully(upstream.stream)
                if reused:
                    continue  # a kept-alive connection the upstream had closed: once more, on a new one
                lost = _DialError("connection_terminated", f"{key[0]}:{key[1]} closed the connection without answering")
                await self._fail_dial(conn, client, lost, record)
                return "done"
        assert isinstance(head, h11.Response)
        self._record(attrs.evolve(record, status=head.status_code))
        fields = [*_forwardable(_lower_headers(head.headers)), ("via", _VIA)]
        fields.append(("proxy-status", f"{PROXY_NAME}; received-status={head.status_code}"))
        await self._send(conn, client, h11.Response(status_code=head.status_code, headers=fields, reason=head.reason))
        try:
            while True:
                event = await self._upstream_event(upstream)
                if isinstance(event, h11.Data):
                    await self._send(conn, client, h11.Data(data=event.data))
                elif isinstance(event, h11.EndOfMessage):
                    await self._send(conn, client, h11.EndOfMessage())
                    break
        except _UpstreamFailed:
            return "upstream_failed"
        if upstream.conn.our_state is h11.DONE and upstream.conn.their_state is h11.DONE:
            upstream.conn.start_next_cycle()
        else:
            upstreams.pop(key, None)
            await anyio.aclose_forcefully(upstream.stream)
        return "done"

    async def _upstream_send(self, upstream: _Upstream, event: Any) -> None:
        data = upstream.conn.send(event)
        if data:
            try:
                await upstream.stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise _UpstreamFailed from exc

    async def _upstream_event(self, upstream: _Upstream) -> Any:
        """The next h11 event from the upstream that is not ``NEED_DATA``;
        raises :class:`_UpstreamFailed` when the connection ends early."""
        conn = upstream.conn
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _UpstreamFailed from exc
            if isinstance(event, h11.ConnectionClosed):
                raise _UpstreamFailed
            if event is not h11.NEED_DATA:
                if isinstance(event, h11.InformationalResponse):
                    continue
                return event
            try:
                data = await upstream.stream.receive(_RECEIVE_SIZE)
            except anyio.EndOfStream:
                data = b""
            except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise _UpstreamFailed from exc
            conn.receive_data(data)


# ---------------------------------------------------------------------------
# SOCKS5 proxy


class SOCKS5Proxy(_LoopbackProxy):
    """A SOCKS5 proxy on ``127.0.0.1`` (see the module docstring).

    Without ``credentials`` it offers only "no authentication"; with them,
    only RFC 1929 username/password (a client that offers neither gets
    ``0xFF``, wrong credentials get status 1 and the connection closed).
    """

    scheme = "socks5"

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        reader = BufferedByteReceiveStream(client)
        version, count = await reader.receive_exactly(2)
        if version != _SOCKS_VERSION:
            self._record(ProxyRecord("socks", None, None, False, error="http_request_error"))
            return
        methods = await reader.receive_exactly(count)
        wanted = _USER_PASSWORD if self.credentials is not None else _NO_AUTH
        if wanted not in methods:
            self._record(ProxyRecord("socks", None, None, False, error="auth"))
            await client.send(bytes([_SOCKS_VERSION, _NO_ACCEPTABLE]))
            return
        await client.send(bytes([_SOCKS_VERSION, wanted]))
        user: str | None = None
        if wanted == _USER_PASSWORD:
            auth_version, length = await reader.receive_exactly(2)
            username = (await reader.receive_exactly(length)).decode("utf-8", "replace")
            (length,) = await reader.receive_exactly(1)
            password = (await reader.receive_exactly(length)).decode("utf-8", "replace")
            user = username
            if auth_version != _AUTH_VERSION or (username, password) != self.credentials:
                self._record(ProxyRecord("socks", None, None, False, user=user, error="auth"))
                await client.send(bytes([_AUTH_VERSION, 0x01]))
                return
            await client.send(bytes([_AUTH_VERSION, 0x00]))
        _, command, _, address_type = await reader.receive_exactly(4)
        host: str
        if address_type == _ATYP_IPV4:
            host = str(ipaddress.IPv4Address(await reader.receive_exactly(4)))
        elif address_type == _ATYP_DOMAIN:
            (length,) = await reader.receive_exactly(1)
            host = (await reader.receive_exactly(length)).decode("idna")
        elif address_type == _ATYP_IPV6:
            host = str(ipaddress.IPv6Address(await reader.receive_exactly(16)))
        else:
            self._record(
                ProxyRecord(
                    "socks",
                    None,
                    None,
                    False,
                    user=user,
                    status=SOCKS_ADDRESS_NOT_SUPPORTED,
                    error="http_request_error",
                )
            )
            await self._reply(client, SOCKS_ADDRESS_NOT_SUPPORTED)
            return
        port = int.from_bytes(await reader.receive_exactly(2), "big")
        record = ProxyRecord("socks", host, port, True, user=user)
        if command != _CMD_CONNECT:
            self._record(attrs.evolve(record, ok=False, status=SOCKS_COMMAND_NOT_SUPPORTED, error="http_request_error"))
            await self._reply(client, SOCKS_COMMAND_NOT_SUPPORTED)
            return
        try:
            upstream = await self._dial(host, port)
        except _DialError as failure:
            code = {
                "connection_refused": SOCKS_CONNECTION_REFUSED,
                "connection_timeout": SOCKS_TTL_EXPIRED,
                "dns_error": SOCKS_HOST_UNREACHABLE,
            }.get(failure.error, SOCKS_NETWORK_UNREACHABLE)
            self._record(attrs.evolve(record, ok=False, status=code, error=failure.error))
            await self._reply(client, code)
            return
        async with upstream:
            bound = upstream.extra(anyio.abc.SocketAttribute.local_address)
            self._record(attrs.evolve(record, status=SOCKS_SUCCEEDED))
            if isinstance(bound, tuple):
                await self._reply(client, SOCKS_SUCCEEDED, str(bound[0]), int(bound[1]))
            else:
                await self._reply(client, SOCKS_SUCCEEDED)
            early = reader.buffer
            if early:
                await upstream.send(bytes(early))
            await _relay(client, upstream)

    async def _reply(self, client: anyio.abc.SocketStream, code: int, host: str = "0.0.0.0", port: int = 0) -> None:
        address = ipaddress.ip_address(host)
        kind = _ATYP_IPV4 if address.version == 4 else _ATYP_IPV6
        await client.send(bytes([_SOCKS_VERSION, code, 0x00, kind]) + address.packed + port.to_bytes(2, "big"))
