"""A real webhook receiver on a loopback socket, for tests.

:class:`WebhookReceiver` is an HTTP/1.1 server (anyio and h11, like the
kernel's fake upstreams) on ``127.0.0.1``: it records every request and
answers each with the next scripted :class:`ReceiverReply` (a status, a
delay, a dropped connection), then with ``default``. Given a ``secret`` it
checks each request's signature as a receiver should (see
:mod:`swarmgate_webhook.signing`) and answers 401 to a bad one::

    async with WebhookReceiver(secret="s3cret") as receiver:
        receiver.enqueue(ReceiverReply(503), ReceiverReply(503))  # fail twice, then 200
        ... configure {"url": receiver.url, "secret": "s3cret"} ...
        assert [r.status for r in receiver.requests] == [503, 503, 200]
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

import anyio
import anyio.abc
import attrs
import h11

from swarmgate.testing.loopback import LoopbackServer
from swarmgate_webhook.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

#: Seconds :meth:`WebhookReceiver.wait_for` waits at most.
WAIT_LIMIT = 10.0


@attrs.frozen
class ReceiverReply:
    """How the receiver answers one request: ``status`` after ``delay``
    seconds, or (``reset``) close the connection after reading it, with no
    answer at all. ``headers`` are added (``Retry-After``, ...)."""

    status: int = 200
    delay: float = 0.0
    reset: bool = False
    headers: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class ReceivedHook:
    """One request the receiver read. ``headers`` have lower-case names;
    ``json`` is the parsed body (``None`` if not JSON); ``verified`` whether
    its signature checked out (``None`` without a receiver secret);
    ``status`` what it answered (``None``: dropped the connection)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    verified: bool | None
    status: int | None
    received_at: float = attrs.field(factory=time.monotonic, eq=False)


class _Gone(Exception):
    """The client went away; end the connection quietly."""


class WebhookReceiver(LoopbackServer):
    """See the module docstring. ``path`` is the path it serves (others: 404)."""

    label = "webhook receiver"
    usage = "use 'async with WebhookReceiver() as receiver'"

    def __init__(
        self, *, secret: str | None = None, path: str = "/hooks/swarmgate", default: ReceiverReply | None = None
    ) -> None:
        super().__init__()
        self.secret = secret
        self.path = path
        self.default = default if default is not None else ReceiverReply()
        self.requests: list[ReceivedHook] = []
        self._received: anyio.Event | None = None
        self._queue: deque[ReceiverReply] = deque()

    @property
    def url(self) -> str:
        """The URL to configure (``http://127.0.0.1:PORT/hooks/swarmgate``)."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    def enqueue(self, *replies: ReceiverReply | int) -> None:
        """Script the next answers (an ``int`` is a status)."""
        self._queue.extend(ReceiverReply(r) if isinstance(r, int) else r for r in replies)

    @property
    def accepted(self) -> list[ReceivedHook]:
        """The requests answered with a 2xx."""
        return [r for r in self.requests if r.status is not None and 200 <= r.status < 300]

    async def wait_for(self, count: int) -> list[ReceivedHook]:
        """Wait until ``count`` requests were accepted (2xx); returns them.
        Raises ``TimeoutError`` after :data:`WAIT_LIMIT` seconds."""
        with anyio.fail_after(WAIT_LIMIT):
            while len(self.accepted) < count:
                self._received = anyio.Event()
                await self._received.wait()
        return self.accepted

    def _notify(self) -> None:
        if self._received is not None:
            self._received.set()

    async def _serve(self, listener: anyio.abc.Listener[Any]) -> None:
        try:
            await listener.serve(self._handle)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            async with stream:
                while await self._exchange(conn, stream):
                    conn.start_next_cycle()
        except (_Gone, h11.RemoteProtocolError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        except Exception as exc:  # noqa: BLE001 - recorded: leaving the 'async with' re-raises it
            self.errors.append(exc)

    async def _next_event(self, conn: h11.Connection, stream: anyio.abc.SocketStream) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                data = b""
            conn.receive_data(data)

    async def _exchange(self, conn: h11.Connection, stream: anyio.abc.SocketStream) -> bool:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = await self._next_event(conn, stream)
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                return False
        assert head is not None
        headers: dict[str, str] = {}
        for name, value in head.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        raw = bytes(body)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        path = head.target.decode("latin-1")
        reply = self._queue.popleft() if self._queue else self.default
        verified: bool | None = None
        status: int | None = reply.status
        if self.secret is not None:
            verified = verify(
                self.secret, raw, headers.get(SIGNATURE_HEADER.lower()), headers.get(TIMESTAMP_HEADER.lower())
            )
            if not verified:
                status = 401
        if path != self.path:
            status = 404
        if reply.reset and status == reply.status:
            status = None
        self.requests.append(ReceivedHook(head.method.decode(), path, headers, raw, parsed, verified, status))
        if reply.delay:
            await anyio.sleep(reply.delay)
        if status is None:
            self._notify()
            return False  # drop the connection without an answer
        answer = json.dumps({"ok": 200 <= status < 300}).encode()
        response_headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(answer))),
            *reply.headers.items(),
        ]
        await self._send(conn, stream, h11.Response(status_code=status, headers=response_headers))
        await self._send(conn, stream, h11.Data(data=answer))
        await self._send(conn, stream, h11.EndOfMessage())
        self._notify()
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _send(self, conn: h11.Connection, stream: anyio.abc.SocketStream, event: Any) -> None:
        data = conn.send(event)
        if data:
            try:
                await stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise _Gone from exc
