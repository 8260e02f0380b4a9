"""A WebSocket client connection: ``websockets``' Sans-I/O ``ClientProtocol``
over an anyio byte stream.

The ``websockets`` library's own connection classes run on asyncio (or
trio) only; swarmgate runs on both through anyio. The protocol layer is
Sans-I/O, so this module is the small I/O loop around it: bytes from the
socket go into ``receive_data``/``receive_eof``, frames come out of
``events_received`` (a ping is answered by the protocol itself), and
``data_to_send`` goes back to the socket. It adds only what the driver
needs: message assembly, pings, a close handshake with a bound, and a
cheap check that an idle connection is still usable.

A connection is used by one request at a time; it is not safe for
concurrent use. No method here applies timeouts except where stated: the
caller bounds each call (the driver uses the provider timeout).
"""

from __future__ import annotations

import logging
import os
import select
import ssl
import time
from collections import deque
from collections.abc import Sequence

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import CLOSED, OPEN
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

__all__ = ["Closed", "HandshakeFailed", "WebSocketConnection"]

_RECEIVE_SIZE = 65536


def _quiet_logger() -> logging.Logger:
    """The logger handed to the protocol: outside the logging tree and never
    enabled for DEBUG, so that ``websockets`` never logs the handshake's
    headers (the API key) even when an application turns DEBUG logging on."""
    logger = logging.Logger("swarmgate_websocket.protocol", logging.WARNING)
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


_PROTOCOL_LOGGER = _quiet_logger()


class Closed(Exception):
    """The WebSocket is closed: ``code`` and ``reason`` of the peer's close
    frame, or 1006 when the connection ended without one. ``local``: this
    side closed it because the peer broke the protocol (an invalid frame, a
    message over the size limit); ``reason`` says what."""

    def __init__(self, code: int, reason: str = "", *, local: bool = False) -> None:
        super().__init__(f"WebSocket closed with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason
        self.local = local


class HandshakeFailed(Exception):
    """The opening handshake failed; ``error`` is websockets' exception
    (``InvalidStatus`` carries the HTTP response)."""

    def __init__(self, error: InvalidHandshake | Exception) -> None:
        super().__init__(str(error))
        self.error = error


class WebSocketConnection:
    """One open WebSocket (see the module docstring). Build it with :meth:`open`."""

    def __init__(self, stream: anyio.abc.ByteStream, protocol: ClientProtocol, key: str) -> None:
        self.stream = stream
        self.protocol = protocol
        #: What the connection was opened for (the pool's key: the URL).
        self.key = key
        #: ``time.monotonic()`` of the last use (for idle pings).
        self.last_used = time.monotonic()
        self._frames: deque[Frame] = deque()
        self._parts: list[bytes] = []
        self._pongs: set[bytes] = set()
        self._broken = False

    # -- opening -------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        subprotocols: Sequence[str] = (),
        max_size: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        key: str | None = None,
    ) -> WebSocketConnection:
        """Connect to ``url`` (``ws://`` or ``wss://``) and do the opening
        handshake with ``headers`` added (replacing a same-named default).

        Raises ``OSError``/anyio's stream errors when the TCP or TLS
        connection fails, :class:`HandshakeFailed` when the server refuses
        the upgrade, :class:`Closed` when it hangs up during the handshake,
        and ``websockets.exceptions.InvalidURI`` for a bad URL.
        """
        uri = parse_uri(url)
        protocol = ClientProtocol(
            uri,
            subprotocols=[Subprotocol(p) for p in subprotocols] or None,
            max_size=max_size,
            logger=_PROTOCOL_LOGGER,
        )
        request = protocol.connect()
        for name, value in headers:
            if name in request.headers:
                del request.headers[name]
            request.headers[name] = value
        protocol.send_request(request)
        if uri.secure:
            context = ssl_context if ssl_context is not None else ssl.create_default_context()
            # The WebSocket close handshake ends the session; TLS close_notify is not awaited.
            stream: anyio.abc.ByteStream = await anyio.connect_tcp(
                uri.host, uri.port, tls=True, ssl_context=context, tls_hostname=uri.host, tls_standard_compatible=False
            )
        else:
            stream = await anyio.connect_tcp(uri.host, uri.port)
        conn = cls(stream, protocol, key if key is not None else url)
        try:
            await conn._flush()
            while True:
                events = await conn._read()
                for index, event in enumerate(events):
                    if isinstance(event, Response):
                        if protocol.handshake_exc is not None:
                            raise HandshakeFailed(protocol.handshake_exc)
                        conn._frames.extend(e for e in events[index + 1 :] if isinstance(e, Frame))
                        return conn
                if protocol.handshake_exc is not None:
                    raise HandshakeFailed(protocol.handshake_exc)
                if protocol.state is CLOSED:
                    raise Closed(1006, "the connection ended during the opening handshake")
        except BaseException:
            await conn.abort()
            raise

    # -- I/O -------------------------------------------------------------------------

    async def _flush(self) -> None:
        """Write what the protocol has queued (an EOF marker closes the stream)."""
        for data in self.protocol.data_to_send():
            if not data:
                await self.abort()
                continue
            try:
                await self.stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                self._broken = True
                raise Closed(1006, f"the connection broke while sending ({type(exc).__name__})") from exc

    async def _receive_bytes(self) -> bytes:
        """The next bytes from the network; ``b""`` at the end of the stream."""
        try:
            return await self.stream.receive(_RECEIVE_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self._broken = True
            return b""

    async def _ingest(self, data: bytes) -> list[object]:
        """Feed ``data`` (``b""``: end of stream) to the protocol, answer what
        it queued, and return its new events."""
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        events: list[object] = list(self.protocol.events_received())
        await self._flush()
        return events

    async def _read(self) -> list[object]:
        return await self._ingest(await self._receive_bytes())

    def _closed(self) -> Closed:
        received = self.protocol.close_rcvd
        if received is not None:
            return Closed(int(received.code), received.reason)
        sent = self.protocol.close_sent
        if sent is not None:
            return Closed(int(sent.code), sent.reason or f"close code {int(sent.code)}", local=True)
        return Closed(1006, "")

    @property
    def is_open(self) -> bool:
        """Is the WebSocket open (no close frame seen, the socket not broken)?"""
        return self.protocol.state is OPEN and not self._broken and self.protocol.close_rcvd is None

    # -- messages --------------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        """Send one text message. Raises :class:`Closed` when the connection is gone."""
        if not self.is_open:
            raise self._closed()
        self.protocol.send_text(text.encode())
        await self._flush()

    async def receive(self, ping_interval: float | None = None) -> bytes:
        """The next data message (text or binary) as bytes. After
        ``ping_interval`` seconds without data, a ping is sent (and again
        after each further interval); the wait itself is unbounded: the
        caller sets the deadline. Raises :class:`Closed` once the peer has
        closed the WebSocket or the connection has ended."""
        while True:
            while self._frames:
                frame = self._frames.popleft()
                opcode = frame.opcode
                if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                    self._parts = [bytes(frame.data)]
                elif opcode is Opcode.CONT:
                    self._parts.append(bytes(frame.data))
                elif opcode is Opcode.PONG:
                    self._pongs.add(bytes(frame.data))
                    continue
                else:
                    continue
                if frame.fin:
                    message = b"".join(self._parts)
                    self._parts = []
                    return message
            if not self.is_open:
                raise self._closed()
            if ping_interval:
                with anyio.move_on_after(ping_interval) as scope:
                    data = await self._receive_bytes()
                if scope.cancelled_caught:
                    await self.send_ping()
                    continue
            else:
                data = await self._receive_bytes()
            self._frames.extend(e for e in await self._ingest(data) if isinstance(e, Frame))

    async def send_ping(self) -> bytes:
        """Send a ping; its payload (to match the pong)."""
        payload = os.urandom(4)
        if not self.is_open:
            raise self._closed()
        self.protocol.send_ping(payload)
        await self._flush()
        return payload

    async def ping(self) -> None:
        """Send a ping and wait for its pong (unbounded: the caller sets the
        deadline). Data messages that arrive meanwhile are kept for
        :meth:`receive`. Raises :class:`Closed` when the connection ends."""
        payload = await self.send_ping()
        while payload not in self._pongs:
            if any(f.opcode is Opcode.PONG and bytes(f.data) == payload for f in self._frames):
                break
            if not self.is_open:
                raise self._closed()
            self._frames.extend(e for e in await self._read() if isinstance(e, Frame))
        self._pongs.discard(payload)

    # -- reuse and closing -------------------------------------------------------

    def _pending_input(self) -> bool:
        """Is there received data not read yet (without blocking)? Polls the
        socket (data or the end of the stream both count); TLS data already
        decrypted counts too."""
        ssl_object = self.stream.extra(TLSAttribute.ssl_object, None)
        if ssl_object is not None and ssl_object.pending():
            return True
        sock = self.stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if sock is None:
            return False
        try:
            fileno = sock.fileno()
            if fileno < 0:
                return True
            if hasattr(select, "poll"):
                poller = select.poll()
                poller.register(fileno, select.POLLIN)
                return bool(poller.poll(0))
            readable, _, _ = select.select([fileno], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    async def usable(self, wait: float) -> bool:
        """Can this idle connection carry a new request? Reads (within
        ``wait`` seconds) whatever arrived while it was idle: pings are
        answered, stale data messages are dropped, a close frame or the end
        of the stream makes it unusable."""
        if not self.is_open:
            return False
        with anyio.move_on_after(wait) as scope:
            while self._pending_input():
                self._frames.extend(e for e in await self._read() if isinstance(e, Frame))
                if not self.is_open:
                    return False
        if scope.cancelled_caught:
            return False
        self._frames.clear()
        self._parts = []
        return self.is_open

    async def close(self, wait: float, *, code: int = 1000, reason: str = "") -> None:
        """Close cleanly: send a close frame, wait up to ``wait`` seconds
        for the server to answer and end the TCP connection, then release
        the socket. Never raises; shielded from cancellation."""
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(wait):
                try:
                    if self.is_open:
                        self.protocol.send_close(code, reason)
                        await self._flush()
                    while self.protocol.state is not CLOSED and not self._broken:
                        await self._read()
                except (Closed, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass
            await self.abort()

    async def abandon(self, *, code: int = 1000, reason: str = "") -> None:
        """Close without waiting: send a close frame if the socket still
        takes one (a short bound), then release it. Never raises; shielded."""
        with anyio.CancelScope(shield=True):
            if self.is_open:
                with anyio.move_on_after(0.2):
                    try:
                        self.protocol.send_close(code, reason)
                        await self._flush()
                    except (Closed, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        pass
            await self.abort()

    async def abort(self) -> None:
        """Release the socket at once. Never raises; shielded."""
        self._broken = True
        with anyio.CancelScope(shield=True):
            try:
                await self.stream.aclose()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass
