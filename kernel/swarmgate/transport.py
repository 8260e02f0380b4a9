"""swarmgate's own HTTP/1.1 client transport for httpx, on asyncio protocols.

:class:`NativeTransport` is an ``httpx.AsyncBaseTransport``: httpx stays the
client API (cookies, redirects, auth, decompression are its client's and
response's business); this module does the connection pool and the wire.
Parsing is ``httptools`` (llhttp, the parser uvicorn uses); the socket work
is the event loop's (``loop.create_connection`` with a ``Protocol``), so a
request costs one write, one future and one parse, with no stream-reader
layers in between. asyncio only (uvloop included); under trio httpx's own
transport is used (:func:`swarmgate.http.fast_transport`).

Contracts, in short (each method says more):

- One pool per transport, keyed by origin ``(scheme, host, port, sni)``;
  idle keep-alive connections are reused last-in first-out; at most
  ``limits.max_connections`` open in total (requests beyond wait first in,
  first out; waiting longer than the pool timeout raises
  ``httpx.PoolTimeout``); at most ``limits.max_keepalive_connections`` kept
  idle, each for at most ``limits.keepalive_expiry`` seconds (checked when
  the pool is next used, and ``aclose``). A connection the peer closed, or
  that received bytes while idle, is never handed out.
- The failures are httpx's: ``ConnectTimeout``/``ConnectError``,
  ``ReadTimeout`` (each wait for data), ``WriteTimeout``/``WriteError``,
  ``RemoteProtocolError`` (the peer closed early, or spoke bad HTTP),
  ``ReadError`` (a socket error while reading), ``PoolTimeout``,
  ``UnsupportedProtocol``, ``LocalProtocolError`` (a header value with CR,
  LF or NUL in it).
- A request sent on a reused idle connection that the peer had closed
  (nothing of the answer arrived) is sent once more on a new connection,
  when its body is bytes (a streamed body cannot be replayed).
- An answer to ``HEAD`` has no body; its connection is closed afterwards
  (the parser cannot be told that a ``HEAD`` answer's length header
  announces nothing), as is a ``101`` answer's.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import httptools
import httpx

__all__ = ["NativeTransport"]

#: Body bytes buffered unread before the connection stops reading from the
#: socket (and starts again once the reader has taken them).
READ_BUFFER_LIMIT: Final = 256 * 1024

_HTTP_VERSIONS: Final = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0"}
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_TOKEN: Final = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

Origin = tuple[str, str, int, str | None]


class _Timeout:
    """A timer's verdict (a future's result distinct from any real one)."""


_TIMED_OUT: Final = _Timeout()


def _expire(future: asyncio.Future[Any]) -> None:
    """Timer callback: end ``future``'s wait with :data:`_TIMED_OUT`."""
    if not future.done():
        future.set_result(_TIMED_OUT)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: the protocol the event loop calls, the
    parser's callbacks, and the state of the one answer in flight.

    The connection never raises from an event-loop callback: failures are
    recorded (:attr:`lost`, :attr:`lost_exc`, :attr:`parse_error`) and turned
    into httpx errors by :meth:`failure` in the requesting task."""

    __slots__ = (
        "active",
        "buffered",
        "chunks",
        "complete",
        "counted",
        "discard",
        "drain_waiter",
        "encoded",
        "framed",
        "headers",
        "headers_done",
        "idle_since",
        "interim",
        "is_head",
        "keep_alive",
        "lost",
        "lost_exc",
        "origin",
        "parse_error",
        "parser",
        "reading_paused",
        "reason",
        "received",
        "sending",
        "status",
        "transport",
        "waiter",
        "write_paused",
    )

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        #: The connection counts against the pool's total (until discarded).
        self.counted = True
        #: Closed by the peer, by an error, or by us: never to be used again.
        self.lost = False
        self.lost_exc: BaseException | None = None
        self.parse_error: Exception | None = None
        self.idle_since = 0.0
        self.sending = False
        self.waiter: asyncio.Future[Any] | None = None
        self.drain_waiter: asyncio.Future[Any] | None = None
        self.write_paused = False
        self.reading_paused = False
        self._reset(False)

    def _reset(self, is_head: bool) -> None:
        """Forget the previous answer; expect one (to a ``HEAD``: ``is_head``)."""
        self.active = False
        self.is_head = is_head
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.interim = False
        self.framed = False
        self.encoded = False
        self.discard = False
        self.keep_alive = False
        self.received = False
        self.chunks: list[bytes] = []
        self.buffered = 0

    def begin(self, is_head: bool) -> None:
        """Start an exchange on this (open, idle) connection; :attr:`sending`
        until the request is all handed to the socket."""
        self._reset(is_head)
        self.active = True
        self.sending = True

    # -- the event loop's callbacks ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.active or self.discard:
            if not self.active:  # bytes nobody asked for: this connection is out of step
                self.lost = True
                self.transport.close()  # type: ignore[union-attr]
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # a 101 answer: its headers are all there is
            self.complete = self.headers_done = self.discard = True
            self.keep_alive = False
        except httptools.HttpParserError as exc:
            self.parse_error = exc
            self.lost = True
            self.transport.abort()  # type: ignore[union-attr]
        if self.buffered > READ_BUFFER_LIMIT and not self.reading_paused and not self.lost:
            self.reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool | None:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.lost_exc = exc
        if self.active and self.headers_done and not self.complete and not self.framed and exc is None:
            # No Content-Length, not chunked: the body is what came before the close.
            self.complete = True
            self.keep_alive = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        drain = self.drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drain = self.drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- the parser's callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer to one request: do not trust this connection again
            self.discard = True
            self.keep_alive = False

    def on_status(self, status: bytes) -> None:
        if not self.discard:
            self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.discard or self.headers_done:  # trailers are dropped, as httpx's own transport does
            return
        self.headers.append((name, value))
        if len(name) in (14, 16, 17):
            lower = name.lower()
            if lower == b"content-encoding":
                self.encoded = True
            elif lower in (b"content-length", b"transfer-encoding"):
                self.framed = True

    def on_headers_complete(self) -> None:
        if self.discard:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # an interim answer: skipped
            self.interim = True
            self.reason = b""
            self.headers = []
            self.framed = self.encoded = False
            return
        self.status = status
        self.headers_done = True
        if self.is_head:  # what the length headers announce is not coming
            self.complete = self.discard = True
            self.keep_alive = False
        elif status in (204, 304):
            self.framed = True

    def on_body(self, body: bytes) -> None:
        if not self.discard:
            self.chunks.append(body)
            self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self.discard:
            return
        if self.interim:
            self.interim = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # -- the requesting task's side ------------------------------------------------------

    def take(self) -> list[bytes]:
        """The body pieces received since the last call (reading resumes
        if it was paused for them)."""
        chunks = self.chunks
        if chunks:
            self.chunks = []
            self.buffered = 0
            if self.reading_paused:
                self.reading_paused = False
                if not self.lost:
                    self.transport.resume_reading()  # type: ignore[union-attr]
        return chunks

    def failure(self, request: httpx.Request) -> httpx.TransportError:
        """The httpx error for why this connection cannot go on (it is
        :attr:`lost`, or the answer did not parse)."""
        if self.parse_error is not None:
            return httpx.RemoteProtocolError(f"invalid HTTP answer: {self.parse_error}", request=request)
        exc = self.lost_exc
        if exc is not None:
            error = httpx.WriteError if self.sending else httpx.ReadError
            return error(str(exc) or type(exc).__name__, request=request)
        if not self.headers_done:
            return httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body", request=request
        )

    async def wait(self, seconds: float | None, request: httpx.Request) -> None:
        """Wait for the next event on this connection (data, its loss), at
        most ``seconds`` (``httpx.ReadTimeout`` after that). Any
        exception (a cancellation included) aborts the connection."""
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(seconds, _expire, waiter) if seconds is not None else None
        try:
            result = await waiter
        except BaseException:
            self.abort()
            raise
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()
        if result is _TIMED_OUT:
            self.abort()
            raise httpx.ReadTimeout("timed out waiting for the upstream's answer", request=request)

    async def drain(self, seconds: float | None, request: httpx.Request) -> None:
        """Wait until the transport takes writes again (flow control), at
        most ``seconds`` (``httpx.WriteTimeout``)."""
        loop = asyncio.get_running_loop()
        while self.write_paused and not self.lost:
            drain = self.drain_waiter = loop.create_future()
            timer = loop.call_later(seconds, _expire, drain) if seconds is not None else None
            try:
                result = await drain
            except BaseException:
                self.abort()
                raise
            finally:
                self.drain_waiter = None
                if timer is not None:
                    timer.cancel()
            if result is _TIMED_OUT:
                self.abort()
                raise httpx.WriteTimeout("timed out sending the request", request=request)

    def abort(self) -> None:
        """Close the connection at once (nothing buffered is sent)."""
        self.lost = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close the connection (what is buffered is sent first)."""
        self.lost = True
        if self.transport is not None:
            self.transport.close()


class _Waiter:
    """A request waiting for a connection slot; :attr:`future` gets a
    connection (an idle one of :attr:`origin`), ``None`` (a slot to open
    one in), :data:`_TIMED_OUT` or :data:`_CLOSED`."""

    __slots__ = ("future", "origin")

    def __init__(self, origin: Origin, future: asyncio.Future[Any]) -> None:
        self.origin = origin
        self.future = future


class _Closed:
    """The pool was closed while a request waited."""


_CLOSED: Final = _Closed()


class _Stale(Exception):
    """A reused connection turned out closed before any of the answer came."""

    def __init__(self, error: httpx.TransportError) -> None:
        super().__init__(str(error))
        self.error = error


class NativeTransport(httpx.AsyncBaseTransport):
    """An HTTP/1.1 transport for ``httpx.AsyncClient`` on asyncio: a
    keep-alive connection pool (see the module's docstring for its rules)
    and httptools parsing, with a short path for the common exchange.

    ``limits``: httpx's ``Limits`` (``max_connections``,
    ``max_keepalive_connections``, ``keepalive_expiry``; ``None`` means no
    limit). ``ssl_context``: for ``https`` URLs; by default
    ``httpx.create_ssl_context()``, made on the first ``https`` connection.

    Requests use each request's ``timeout`` extension (httpx's client sets
    it): ``connect``, ``read`` (each wait for data), ``write`` (each wait for
    the socket to take more), ``pool`` (the wait for a connection slot).
    The ``sni_hostname`` extension names the TLS server (and keys the pool).

    A response body is handed out as the bytes arrive; when the whole answer
    had arrived with its headers (a small JSON answer), the response's
    stream is a :class:`ReadBody`, iterable at once without waiting, and the
    connection is back in the pool before the response is returned.
    Otherwise the connection goes back to the pool when the body was read to
    its end and both sides allow keep-alive, on the response's ``aclose``;
    a body closed part-read, a cancelled request and any failure close it.
    """

    def __init__(self, limits: httpx.Limits | None = None, *, ssl_context: ssl.SSLContext | None = None) -> None:
        limits = limits if limits is not None else httpx.Limits()
        self._max = limits.max_connections
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._ssl = ssl_context
        self._idle: dict[Origin, collections.deque[_Connection]] = {}
        self._idle_count = 0
        self._total = 0
        self._open: set[_Connection] = set()
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._targets: dict[int, tuple[httpx.URL, Origin, bytes]] = {}
        self._names: set[bytes] = set()

    # -- the request -----------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the response once its headers have
        arrived (its body streams on: see the class docstring)."""
        if self._closed:
            raise RuntimeError("Cannot send a request, as the transport has been closed.")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)
        url = request.url
        found = self._targets.get(id(url))
        if found is None or found[0] is not url:
            found = self._target(url)
        origin, target = found[1], found[2]
        sni = request.extensions.get("sni_hostname")
        if sni is not None:
            origin = (origin[0], origin[1], origin[2], sni if isinstance(sni, str) else sni.decode("ascii"))
        timeout = request.extensions.get("timeout") or {}
        method = request.method
        head = self._head(method, target, request.headers.raw)
        try:
            body: bytes | None = request.content
        except httpx.RequestNotRead:
            body = None
        if body:
            head += body

        conn = await self._checkout(origin, timeout.get("pool"), request)
        reused = conn is not None
        if conn is None:
            conn = await self._connect(origin, timeout.get("connect"), request)
        try:
            return await self._exchange(conn, request, method == "HEAD", head, body, timeout, reused)
        except _Stale:
            self._discard(conn, free_slot=False)  # its slot goes to the new connection
            conn = await self._connect(origin, timeout.get("connect"), request)
            try:
                return await self._exchange(conn, request, method == "HEAD", head, body, timeout, False)
            except _Stale as stale:  # not raised for a new connection; kept exhaustive
                raise stale.error from None

    async def _exchange(
        self,
        conn: _Connection,
        request: httpx.Request,
        is_head: bool,
        head: bytes,
        body: bytes | None,
        timeouts: dict[str, float | None],
        reused: bool,
    ) -> httpx.Response:
        """One request and its answer's head on ``conn``; the response's
        stream owns the connection from then on. Failures discard ``conn``;
        a reused connection found closed before any answer raises
        :class:`_Stale` (when the body can be sent again)."""
        try:
            conn.begin(is_head)
            if conn.lost:
                raise conn.failure(request)
            transport = conn.transport
            assert transport is not None
            transport.write(head)
            if body is None:
                await self._send_stream(conn, request, timeouts.get("write"))
            elif conn.write_paused:
                await conn.drain(timeouts.get("write"), request)
            if not conn.lost:  # lost while sending: its failure is a write error
                conn.sending = False
            read = timeouts.get("read")
            while not conn.headers_done:
                if conn.lost:
                    error = conn.failure(request)
                    if reused and body is not None and not conn.received and conn.parse_error is None:
                        raise _Stale(error)
                    raise error
                await conn.wait(read, request)
        except _Stale:
            raise
        except BaseException:
            self._discard(conn)
            raise
        extensions: dict[str, Any] = {"http_version": _HTTP_VERSIONS.get(conn.parser.get_http_version(), b"HTTP/1.1")}
        if conn.reason:
            extensions["reason_phrase"] = conn.reason
        status, headers = conn.status, conn.headers
        stream: httpx.AsyncByteStream
        if conn.complete:  # read whole already: the connection goes back now
            chunks = conn.take()
            stream = ReadBody(chunks[0] if len(chunks) == 1 else b"".join(chunks), plain=not conn.encoded)
            self._checkin(conn)
        else:
            stream = _StreamedBody(self, conn, request, timeouts.get("read"))
        return httpx.Response(status, headers=headers, stream=stream, request=request, extensions=extensions)

    async def _send_stream(self, conn: _Connection, request: httpx.Request, write_timeout: float | None) -> None:
        """Send a streamed request body piece by piece (chunked when httpx's
        headers say so), waiting whenever the socket is full. Stops early
        when the peer closed the connection (its answer, or the lack of
        one, then decides the outcome)."""
        chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
        transport = conn.transport
        assert transport is not None
        stream = request.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            raise RuntimeError("a streamed request body must be async (an httpx.AsyncByteStream)")
        async for piece in stream:
            if conn.lost:
                return
            if not piece:
                continue
            transport.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
            if conn.write_paused:
                await conn.drain(write_timeout, request)
        if chunked and not conn.lost:
            transport.write(b"0\r\n\r\n")
        if conn.write_paused:
            await conn.drain(write_timeout, request)

    def _target(self, url: httpx.URL) -> tuple[httpx.URL, Origin, bytes]:
        """The origin and request target of ``url`` (cached per URL object,
        which :class:`~swarmgate.http.SwarmgateClient` reuses per path)."""
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{scheme}://'.")
        host = url.host
        if not host:
            raise httpx.UnsupportedProtocol("Request URL is missing an 'http://' or 'https://' protocol.")
        port = url.port or _DEFAULT_PORTS[scheme]
        found = (url, (scheme, host, port, None), url.raw_path)
        if len(self._targets) >= 256:
            self._targets.clear()
        self._targets[id(url)] = found
        return found

    def _head(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The request line and header block; header names must be tokens
        and values free of CR, LF and NUL (``httpx.LocalProtocolError``)."""
        names = self._names
        for name, _ in headers:
            if name not in names:
                if not name or not _TOKEN.issuperset(name):
                    raise httpx.LocalProtocolError(f"Illegal header name {name!r}")
                if len(names) < 512:
                    names.add(name)
        lines = [b"%b %b HTTP/1.1" % (method.encode("ascii"), target)]
        lines += [name + b": " + value for name, value in headers]
        lines.append(b"\r\n")
        block = b"\r\n".join(lines)
        count = len(lines)
        if block.count(b"\n") != count or block.count(b"\r") != count or b"\0" in block:
            raise httpx.LocalProtocolError("Illegal header value: CR, LF or NUL in a header")
        return block

    # -- the pool ------------------------------------------------------------------

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the pool to the running loop; connections of an earlier
        loop are dropped (they cannot be used from another loop)."""
        if self._loop is not None:
            for conn in list(self._open):
                conn.counted = False
                conn.lost = True
                try:
                    conn.abort()
                except RuntimeError:  # that loop is closed: its sockets went with it
                    pass
            self._open.clear()
            self._idle.clear()
            self._idle_count = self._total = 0
            self._waiters.clear()
        self._loop = loop

    async def _checkout(self, origin: Origin, seconds: float | None, request: httpx.Request) -> _Connection | None:
        """An idle connection to ``origin`` (the most recent first), or
        ``None`` with a slot reserved for a new one; waits (first come,
        first served) while ``max_connections`` are open."""
        idle = self._idle.get(origin)
        if idle:
            now = time.monotonic()
            expiry = self._expiry
            while idle:
                conn = idle.pop()
                self._idle_count -= 1
                if conn.lost or (expiry is not None and now - conn.idle_since > expiry):
                    self._discard(conn)
                    continue
                return conn
        limit = self._max
        if limit is None or (self._total < limit and not self._waiters):
            self._total += 1
            return None
        if self._idle_count:  # make room: close the oldest idle connection to another origin
            self._evict_one()
            if self._total < limit and not self._waiters:
                self._total += 1
                return None
        loop = asyncio.get_running_loop()
        waiter = _Waiter(origin, loop.create_future())
        self._waiters.append(waiter)
        timer = loop.call_later(seconds, _expire, waiter.future) if seconds is not None else None
        try:
            result = await waiter.future
        except BaseException:
            self._forget_waiter(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if result is _TIMED_OUT:
            self._forget_waiter(waiter)
            raise httpx.PoolTimeout("timed out waiting for a connection from the pool", request=request)
        if result is _CLOSED:
            raise RuntimeError("Cannot send a request, as the transport has been closed.")
        if self._closed:  # handed a slot or a connection just before the pool closed
            self._forget_waiter(waiter)
            raise RuntimeError("Cannot send a request, as the transport has been closed.")
        handed: _Connection | None = result
        if handed is not None and handed.lost:  # closed while it was being handed over: keep its slot
            self._discard(handed, free_slot=False)
            return None
        return handed

    def _forget_waiter(self, waiter: _Waiter) -> None:
        """Take ``waiter`` out of the queue; what it was handed meanwhile goes back."""
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass
        future = waiter.future
        if future.done() and not future.cancelled():
            result = future.result()
            if isinstance(result, _Connection):
                self._checkin(result)
            elif result is None:
                self._free_slot()

    def _evict_one(self) -> None:
        """Close the longest-idle connection of the first origin that has one."""
        for idle in self._idle.values():
            if idle:
                self._idle_count -= 1
                self._discard(idle.popleft())
                return

    async def _connect(self, origin: Origin, seconds: float | None, request: httpx.Request) -> _Connection:
        """A new connection to ``origin`` in the slot reserved for it (freed
        again if the connection cannot be made)."""
        scheme, host, port, sni = origin
        loop = asyncio.get_running_loop()
        context = self._ssl_context() if scheme == "https" else None
        conn = _Connection(origin)
        try:
            async with asyncio.timeout(seconds):
                await loop.create_connection(
                    lambda: conn,
                    host,
                    port,
                    ssl=context,
                    server_hostname=(sni or host) if context is not None else None,
                )
        except TimeoutError as exc:
            self._free_slot()
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}", request=request) from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            self._free_slot()
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        except BaseException:
            self._free_slot()
            conn.abort()
            raise
        if self._closed:  # the pool was closed meanwhile
            self._free_slot()
            conn.abort()
            raise RuntimeError("Cannot send a request, as the transport has been closed.")
        transport = conn.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - the loop usually set it already
                pass
        self._open.add(conn)
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        context = self._ssl
        if context is None:
            context = self._ssl = httpx.create_ssl_context()
        return context

    def _checkin(self, conn: _Connection) -> None:
        """Give back ``conn`` after a complete answer: to the first waiter,
        to the idle pool (when both sides allow keep-alive and there is
        room), or closed."""
        if conn.lost or not conn.keep_alive or not conn.complete or conn.discard or self._closed:
            self._discard(conn)
            return
        conn.active = False
        waiters = self._waiters
        while waiters and waiters[0].future.done():  # timed out or cancelled: leaving the queue
            waiters.popleft()
        if waiters:
            if waiters[0].origin == conn.origin:
                waiters.popleft().future.set_result(conn)
            else:
                self._discard(conn)  # its slot goes to the first waiter
            return
        if self._max_idle is not None and self._idle_count >= self._max_idle:
            self._discard(conn)
            return
        conn.idle_since = time.monotonic()
        idle = self._idle.get(conn.origin)
        if idle is None:
            idle = self._idle[conn.origin] = collections.deque()
        idle.append(conn)
        self._idle_count += 1

    def _discard(self, conn: _Connection, *, free_slot: bool = True) -> None:
        """Close ``conn`` (aborted unless it finished cleanly) and free its slot."""
        if conn.active and not conn.complete:
            conn.abort()
        else:
            conn.close()
        conn.active = False
        self._open.discard(conn)
        if conn.counted:
            conn.counted = False
            if free_slot:
                self._free_slot()

    def _free_slot(self) -> None:
        """One connection fewer: the slot goes to the first waiter, if any."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_result(None)
                return
        self._total -= 1

    # -- closing -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every connection (idle, and those answers are still read
        from) and fail requests waiting for one; requests afterwards raise
        ``RuntimeError``."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - aclose awaited outside asyncio
            loop = None
        if loop is not None and loop is not self._loop:
            self._adopt(loop)  # connections of an earlier (closed) loop are dropped, not closed through it
        self._closed = True
        waiters, self._waiters = self._waiters, collections.deque()
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_result(_CLOSED)
        self._idle.clear()
        self._idle_count = 0
        for conn in list(self._open):
            self._discard(conn)


class ReadBody(httpx.AsyncByteStream, httpx.SyncByteStream):
    """A response body that had arrived whole with its headers: iterable at
    once (sync or async), nothing to release (its connection is back in
    the pool already). :attr:`body` is the raw body; :attr:`plain` says no
    ``Content-Encoding`` applies (the raw body is the content)."""

    __slots__ = ("body", "plain")

    def __init__(self, body: bytes, *, plain: bool = False) -> None:
        self.body = body
        self.plain = plain

    def __iter__(self) -> Iterator[bytes]:
        if self.body:
            yield self.body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.body:
            yield self.body

    #: The whole body is here (see :attr:`_StreamedBody.arrived`).
    arrived = True

    def close(self) -> None:
        """Nothing to release."""

    async def aclose(self) -> None:
        """Nothing to release."""


class _StreamedBody(httpx.AsyncByteStream):
    """A response body still arriving: each piece is yielded as it comes
    (an SSE event is not held back); each wait for more is bounded by the
    read timeout. :meth:`aclose` gives the connection back when the answer
    came whole, and closes it otherwise."""

    __slots__ = ("_conn", "_pool", "_read", "_request")

    def __init__(self, pool: NativeTransport, conn: _Connection, request: httpx.Request, read: float | None) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self._request = request
        self._read = read

    @property
    def arrived(self) -> bool:
        """Whether the rest of the body is here already: reading it to its
        end cannot wait on the network."""
        conn = self._conn
        return conn is None or conn.complete

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        while True:
            if conn.chunks:
                for chunk in conn.take():
                    yield chunk
                continue
            if conn.complete:
                self._release()
                return
            if conn.lost:
                error = conn.failure(self._request)
                self._release()
                raise error
            await conn.wait(self._read, self._request)

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool._checkin(conn) if conn.complete else self._pool._discard(conn)

    async def aclose(self) -> None:
        self._release()
