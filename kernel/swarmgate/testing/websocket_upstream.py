"""A scriptable fake WebSocket upstream: a real WebSocket server on a loopback socket.

:class:`FakeWebSocketUpstream` is :class:`~swarmgate.testing.upstream.FakeUpstream`'s
twin for providers that stream over a WebSocket. It listens on
``127.0.0.1`` on an ephemeral port (``ws://``, or ``wss://`` with an
``ssl_context``), speaks RFC 6455 through the Sans-I/O layer of the
``websockets`` library (``websockets.server.ServerProtocol``) over anyio byte
streams, so it runs inside the test's own event loop on asyncio and on trio,
and answers in the message format of its :class:`SocketWire`:

* :class:`WebSocketWire` (the default): the OpenAI Chat Completions format
  carried over a WebSocket. The client sends one chat-completion request
  body per exchange (a text message); a streamed answer is one
  ``chat.completion.chunk`` object per message, ending with the message
  ``[DONE]``; an answer to a request without ``"stream": true`` is one
  ``chat.completion`` object, then ``[DONE]``; an error is OpenAI's error
  object, which also carries ``status`` (the HTTP status the same error has
  on the HTTP API) and, for rate limits, ``retry_after`` (seconds): a
  WebSocket has no status line or headers once it is open.
* :class:`RealtimeWire`: the text side of the OpenAI Realtime API
  (``session.created`` on connect; per ``response.create``:
  ``response.created`` ... ``response.output_text.delta`` ...
  ``response.done`` with the usage; ``error`` events).

It is scripted with the same :class:`~swarmgate.testing.upstream.ScriptedReply`
objects as the HTTP fake: each request message takes the next queued reply
(:meth:`FakeWebSocketUpstream.enqueue`), else :attr:`FakeWebSocketUpstream.default`.
A reply's ``status`` makes it an in-band error message (the connection
stays open); ``delay``, ``chunk_delay``, ``stall_after`` (send N chunks,
then nothing until the client goes away), ``cut_after`` (send N chunks, then
drop the TCP connection without a close frame), ``malformed_at`` (a message
that is not JSON instead of chunk N) and ``body`` (raw messages, one per
line, instead of the answer; it also answers a request message that is not
JSON) work as they do over HTTP. What only a WebSocket has is scripted
separately: :class:`ScriptedClose` (a close frame with a code after N
messages, or a TCP drop), handshake answers
(:meth:`FakeWebSocketUpstream.enqueue_handshake`: a non-2xx
:class:`ScriptedReply` rejects the upgrade with that HTTP status and the
wire's error body; any reply's ``delay`` holds the handshake back),
:meth:`FakeWebSocketUpstream.close_connections` (close idle sockets now) and
:attr:`FakeWebSocketUpstream.fragment_size` (send messages in fragments).

Everything is recorded: :attr:`~FakeWebSocketUpstream.handshakes` (each
upgrade request), :attr:`~FakeWebSocketUpstream.requests` (each request
message, as a :class:`~swarmgate.testing.upstream.RecordedRequest` carrying
the handshake's path and headers), :attr:`~FakeWebSocketUpstream.connections`,
:attr:`~FakeWebSocketUpstream.disconnects` (how each connection ended) and
:attr:`~FakeWebSocketUpstream.pings`.

Hand-written on purpose, like the HTTP fake: a test server must misbehave
on cue, which no production server offers.
"""

from __future__ import annotations

import contextlib
import email.utils
import http
import itertools
import json
import math
import ssl
import urllib.parse
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import anyio.from_thread
import attrs
from anyio.streams.memory import MemoryObjectSendStream
from anyio.streams.tls import TLSListener
from websockets.datastructures import Headers
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN, State
from websockets.server import ServerProtocol

from swarmgate.testing.loopback import LoopbackServer, run_in_thread
from swarmgate.testing.openai_wire import OpenAIWire
from swarmgate.testing.upstream import (
    Endpoint,
    RecordedRequest,
    ScriptedReply,
    SSEPlan,
    Wire,
    WireRequest,
)

if TYPE_CHECKING:
    pass

__all__ = [
    "MESSAGE_METHOD",
    "Disconnect",
    "FakeWebSocketUpstream",
    "RealtimeWire",
    "ScriptedClose",
    "SocketWire",
    "WebSocketWire",
]

MESSAGE_METHOD = "MESSAGE"
"""The ``method`` of a :class:`RecordedRequest` that records a WebSocket message."""

_RECEIVE_SIZE = 65536
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "upgrade"})


def _quiet_logger() -> Any:
    """A logger the websockets protocol cannot log handshake headers to: it
    is outside the logging tree and never enabled for DEBUG, so that an
    application's DEBUG logging cannot print an ``Authorization`` header."""
    import logging

    logger = logging.Logger("swarmgate.testing.websocket_upstream.protocol", logging.WARNING)
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


_PROTOCOL_LOGGER = _quiet_logger()


# ---------------------------------------------------------------------------
# Scripting values


@attrs.frozen
class ScriptedClose:
    """Answer like ``reply`` in its streamed form (its opening messages
    unless ``head`` is false, then its first ``after`` messages counting the
    body chunks and then the closing messages: ``after`` past the body
    includes the finish and usage messages), then send a close frame with
    ``code`` and ``reason`` and end the connection once the client has
    answered it (or after a second). ``code`` 1006 (which no close frame may
    carry) drops the TCP connection without a close frame."""

    code: int
    reason: str = ""
    after: int = 0
    reply: ScriptedReply = attrs.field(factory=ScriptedReply)
    head: bool = True


@attrs.frozen
class Disconnect:
    """How one accepted WebSocket connection ended: ``code`` and ``reason``
    of the close frame (the client's, or the server's when the server
    closed first); ``clean`` when close frames were exchanged, ``False``
    with code 1006 when the TCP connection ended without one."""

    code: int
    reason: str = ""
    clean: bool = True


# ---------------------------------------------------------------------------
# Wires


class SocketWire(Wire, Protocol):
    """A :class:`~swarmgate.testing.upstream.Wire` spoken over a WebSocket.

    The :class:`Wire` methods render *messages* instead of HTTP bodies:
    each :class:`SSEPlan` frame is one message's payload, and
    :meth:`render_completion` returns the messages of a non-streamed answer
    separated by ``b"\\n"``. ``route`` sees the handshake's ``GET`` (the
    ``completion`` endpoint is the socket) and plain HTTP ``GET`` requests
    (``models``).
    """

    @property
    def socket_path(self) -> str:
        """The path the WebSocket is opened on (``/v1/chat/completions``)."""
        ...

    def render_greeting(self) -> bytes | None:
        """A message sent as soon as a connection is accepted, or ``None``."""
        ...

    def render_rejection(self, reply: ScriptedReply) -> bytes:
        """The HTTP body of a rejected handshake (``reply`` is non-2xx)."""
        ...


def _sse_payload(frame: bytes) -> bytes:
    """The data of one ``data: ...`` SSE frame."""
    return frame.removeprefix(b"data: ").rstrip(b"\n")


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _retry_after(reply: ScriptedReply) -> float | None:
    for name, value in reply.headers.items():
        if name.lower() == "retry-after":
            try:
                return float(value)
            except ValueError:
                return None
    return None


class WebSocketWire:
    """The OpenAI Chat Completions format over a WebSocket (see the module docstring).

    Rendering is :class:`~swarmgate.testing.openai_wire.OpenAIWire`'s,
    unframed: the same ``chat.completion.chunk`` and ``chat.completion``
    objects and error bodies. Usage is sent in a last chunk when the request
    asks for it (``stream_options.include_usage``), as on the HTTP API.
    """

    name = "openai-websocket"

    def __init__(
        self,
        models: Sequence[str] = ("gpt-4o-mini", "gpt-4o"),
        *,
        base_path: str = "/v1",
        socket_path: str | None = None,
    ) -> None:
        self._openai = OpenAIWire(models, base_path=base_path)
        self.base_path = self._openai.base_path
        self.socket_path = socket_path if socket_path is not None else f"{self.base_path}/chat/completions"

    def route(self, method: str, path: str) -> Endpoint | None:
        """``GET {socket_path}`` is the socket; ``GET {base}/models`` the listing."""
        if method == "GET" and path == self.socket_path:
            return "completion"
        if method == "GET" and path == f"{self.base_path}/models":
            return "models"
        return None

    def wants_stream(self, request: RecordedRequest) -> bool:
        """``"stream": true`` in the request message."""
        return self._openai.wants_stream(request)

    def summarize(self, request: RecordedRequest) -> WireRequest:
        """As :meth:`OpenAIWire.summarize`: the message is a chat-completion body."""
        return self._openai.summarize(request)

    def render_completion(self, reply: ScriptedReply, request: RecordedRequest) -> bytes:
        """A ``chat.completion`` object, then ``[DONE]`` (two messages)."""
        return self._openai.render_completion(reply, request) + b"\n[DONE]"

    @property
    def stream_media_type(self) -> str:
        return "application/json"

    def render_stream(self, reply: ScriptedReply, request: RecordedRequest) -> SSEPlan:
        """OpenAI's chunks, one per message; the tail ends with ``[DONE]``."""
        plan = self._openai.render_stream(reply, request)
        return SSEPlan(
            tuple(_sse_payload(f) for f in plan.head),
            tuple(_sse_payload(f) for f in plan.body),
            tuple(_sse_payload(f) for f in plan.tail),
        )

    def render_malformed(self) -> bytes:
        """A message that is not valid JSON."""
        return b'{"id": "chatcmpl-fake", "choices": [oops, not json'

    def render_error(self, reply: ScriptedReply, request: RecordedRequest | None) -> bytes:
        """OpenAI's ``{"error": {...}}`` plus ``status`` and, when the reply
        has a ``Retry-After`` header, ``retry_after`` inside ``error``."""
        body = json.loads(self._openai.render_error(reply, request))
        body["error"]["status"] = reply.status
        retry_after = _retry_after(reply)
        if retry_after is not None:
            body["error"]["retry_after"] = retry_after
        return _dumps(body)

    def render_models(self) -> bytes:
        """OpenAI's models listing."""
        return self._openai.render_models()

    def render_greeting(self) -> bytes | None:
        """No greeting: the client speaks first."""
        return None

    def render_rejection(self, reply: ScriptedReply) -> bytes:
        """OpenAI's error body (the HTTP status carries the status)."""
        return self._openai.render_error(reply, None)


#: How :class:`RealtimeWire` reports a :class:`ScriptedReply` finish reason:
#: ``(status, status_details.reason)`` of the ``response.done`` event.
_REALTIME_STATUS: dict[str, tuple[str, str | None]] = {
    "stop": ("completed", None),
    "length": ("incomplete", "max_output_tokens"),
    "content_filter": ("incomplete", "content_filter"),
}


class RealtimeWire:
    """The text side of the OpenAI Realtime API (GA event names).

    The socket (``GET /v1/realtime?model=...``) greets with
    ``session.created``. Each ``response.create`` client event is answered
    with ``response.created``, ``response.output_item.added``,
    ``response.content_part.added`` (the head), one
    ``response.output_text.delta`` per chunk (the body), then
    ``response.output_text.done``, ``response.content_part.done``,
    ``response.output_item.done`` and ``response.done`` with ``status``
    (``completed``; ``incomplete`` with ``status_details.reason``
    ``max_output_tokens`` or ``content_filter``) and ``usage`` (the tail).
    Failures are ``error`` events (``{"type": "error", "error": {"type",
    "code", "message", "param", "event_id"}}``). The API always streams;
    tool calls are not rendered.
    """

    name = "openai-realtime"

    def __init__(self, model: str = "gpt-realtime", *, base_path: str = "/v1") -> None:
        self.model = model
        self.base_path = base_path.rstrip("/")
        self.socket_path = f"{self.base_path}/realtime"
        self._openai = OpenAIWire((model,), base_path=base_path)
        self._ids = itertools.count(1)

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"

    def route(self, method: str, path: str) -> Endpoint | None:
        """``GET /v1/realtime`` is the socket; ``GET /v1/models`` the listing."""
        if method == "GET" and path == self.socket_path:
            return "completion"
        if method == "GET" and path == f"{self.base_path}/models":
            return "models"
        return None

    def wants_stream(self, request: RecordedRequest) -> bool:
        """Always: the Realtime API streams every response."""
        return True

    def summarize(self, request: RecordedRequest) -> WireRequest:
        """The model from the socket URL's ``model`` query parameter; the
        ``instructions`` as a system message, then each input message item
        with its text parts joined; ``max_output_tokens`` as ``max_tokens``."""
        body: dict[str, Any] = request.json if isinstance(request.json, dict) else {}
        response = body.get("response") if isinstance(body.get("response"), dict) else {}
        assert isinstance(response, dict)
        messages: list[tuple[str, str]] = []
        if isinstance(response.get("instructions"), str):
            messages.append(("system", response["instructions"]))
        for item in response.get("input") or ():
            if isinstance(item, dict) and item.get("type") == "message":
                parts = item.get("content") or ()
                text = "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
                messages.append((str(item.get("role")), text))
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        max_tokens = response.get("max_output_tokens")
        return WireRequest(
            model=query.get("model", [None])[0],
            messages=tuple(messages),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            stream=True,
        )

    def render_completion(self, reply: ScriptedReply, request: RecordedRequest) -> bytes:
        """The streamed answer's messages, newline-separated."""
        plan = self.render_stream(reply, request)
        return b"\n".join((*plan.head, *plan.body, *plan.tail))

    @property
    def stream_media_type(self) -> str:
        return "application/json"

    def render_stream(self, reply: ScriptedReply, request: RecordedRequest) -> SSEPlan:
        """The response's events (see the class docstring)."""
        response_id, item_id = self._id("resp"), self._id("item")
        prompt = "\n".join(text for _, text in self.summarize(request).messages)
        input_tokens, output_tokens = reply.token_usage(prompt)
        status, reason = _REALTIME_STATUS.get(reply.finish_reason, ("completed", None))
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        part = {**where, "content_index": 0}
        item: dict[str, Any] = {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant"}

        def event(kind: str, **fields: Any) -> bytes:
            return _dumps({"type": kind, "event_id": self._id("event"), **fields})

        def response(state: str, **fields: Any) -> dict[str, Any]:
            return {
                "id": response_id,
                "object": "realtime.response",
                "status": state,
                "output_modalities": ["text"],
                "conversation_id": None,
                **fields,
            }

        head = (
            event("response.created", response=response("in_progress", status_details=None, output=[], usage=None)),
            event(
                "response.output_item.added",
                response_id=response_id,
                output_index=0,
                item={**item, "status": "in_progress", "content": []},
            ),
            event("response.content_part.added", **part, part={"type": "output_text", "text": ""}),
        )
        body = tuple(event("response.output_text.delta", **part, delta=piece) for piece in reply.stream_chunks())
        done_item = {**item, "status": "completed", "content": [{"type": "output_text", "text": reply.content}]}
        details = None if reason is None else {"type": status, "reason": reason}
        usage = {
            "total_tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        }
        tail = (
            event("response.output_text.done", **part, text=reply.content),
            event("response.content_part.done", **part, part={"type": "output_text", "text": reply.content}),
            event("response.output_item.done", response_id=response_id, output_index=0, item=done_item),
            event("response.done", response=response(status, status_details=details, output=[done_item], usage=usage)),
        )
        return SSEPlan(head, body, tail)

    def render_malformed(self) -> bytes:
        """A message that is not valid JSON."""
        return b'{"type": "response.output_text.delta", "delta": oops'

    def render_error(self, reply: ScriptedReply, request: RecordedRequest | None) -> bytes:
        """An ``error`` event with OpenAI's type/code/message for the status."""
        error = json.loads(self._openai.render_error(reply, request))["error"]
        error["event_id"] = None
        return _dumps({"type": "error", "event_id": self._id("event"), "error": error})

    def render_models(self) -> bytes:
        """OpenAI's models listing (the realtime model)."""
        return self._openai.render_models()

    def render_greeting(self) -> bytes | None:
        """``session.created`` for a text-only session."""
        session = {
            "type": "realtime",
            "object": "realtime.session",
            "id": self._id("sess"),
            "model": self.model,
            "output_modalities": ["text"],
            "instructions": "",
            "max_output_tokens": "inf",
        }
        return _dumps({"type": "session.created", "event_id": self._id("event"), "session": session})

    def render_rejection(self, reply: ScriptedReply) -> bytes:
        """OpenAI's HTTP error body."""
        return self._openai.render_error(reply, None)


# ---------------------------------------------------------------------------
# The server


class _ClientGone(Exception):
    """The client closed or reset the connection; end this connection quietly."""


class _Hangup(Exception):
    """The script ends this connection now (cut, stall over, close sent)."""


class _ServerConnection:
    """One accepted TCP connection driven through ``ServerProtocol``."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.protocol = ServerProtocol(logger=_PROTOCOL_LOGGER)
        self._write_lock = anyio.Lock()
        self.ended = anyio.Event()
        self.request: Request | None = None
        self.disconnect: Disconnect | None = None

    async def flush(self) -> None:
        """Send what the protocol has queued; an EOF marker closes the stream."""
        async with self._write_lock:
            for data in self.protocol.data_to_send():
                try:
                    if data:
                        await self.stream.send(data)
                    else:
                        await self.stream.aclose()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    raise _ClientGone from exc

    async def feed(self) -> list[Any]:
        """Read from the network once; the protocol's new events."""
        try:
            data = await self.stream.receive(_RECEIVE_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.protocol.receive_eof()
        else:
            self.protocol.receive_data(data)
        events = self.protocol.events_received()
        await self.flush()
        return events

    async def send_message(self, payload: bytes, fragment_size: int | None = None) -> None:
        """Send one text message (in fragments of ``fragment_size`` bytes when set)."""
        if self.protocol.state is not OPEN:
            raise _ClientGone
        if fragment_size is None or len(payload) <= fragment_size:
            self.protocol.send_text(payload)
        else:
            pieces = [payload[i : i + fragment_size] for i in range(0, len(payload), fragment_size)]
            self.protocol.send_text(pieces[0], fin=False)
            for index, piece in enumerate(pieces[1:], start=2):
                self.protocol.send_continuation(piece, fin=index == len(pieces))
        await self.flush()


class FakeWebSocketUpstream(LoopbackServer):
    """A fake streaming API on a loopback WebSocket; see the module docstring.

    ``async with FakeWebSocketUpstream() as server:`` listens within the
    current event loop (asyncio or trio) until the block ends; then every
    connection is dropped. ``with FakeWebSocketUpstream.in_thread() as
    server:`` does the same from synchronous code, on an event loop in a
    background thread.

    Attributes: ``wire`` (a :class:`SocketWire`), ``default`` (the reply
    used when the queue is empty), ``handshake_default`` (the handshake
    answer when the handshake queue is empty: ``None`` accepts at once),
    ``models_reply`` (how ``GET {base}/models`` over plain HTTP answers, as
    in :class:`~swarmgate.testing.upstream.FakeUpstream`), ``requests``,
    ``handshakes``, ``connections`` (TCP connections accepted, rejected
    handshakes included), ``disconnects`` (one :class:`Disconnect` per
    accepted WebSocket, once it has ended), ``pings`` (ping frames
    received), ``fragment_size`` (when set, messages longer than this many
    bytes are sent in fragments) and ``errors`` (unexpected exceptions
    inside the server; leaving the ``async with`` block raises the first of
    them).
    """

    label = "fake WebSocket upstream"
    usage = "use 'async with FakeWebSocketUpstream() as server'"

    def __init__(
        self,
        wire: SocketWire | None = None,
        *,
        default: ScriptedReply | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__()
        self.wire: SocketWire = wire if wire is not None else WebSocketWire()
        self.default: ScriptedReply = default if default is not None else ScriptedReply()
        self.handshake_default: ScriptedReply | None = None
        self.models_reply: ScriptedReply | None = None
        self.ssl_context = ssl_context
        self.requests: list[RecordedRequest] = []
        self.handshakes: list[RecordedRequest] = []
        self.connections = 0
        self.disconnects: list[Disconnect] = []
        self.pings = 0
        self.fragment_size: int | None = None
        self._open: set[_ServerConnection] = set()
        self._open_changed = anyio.Event()
        self._queue: deque[ScriptedReply | ScriptedClose] = deque()
        self._handshake_queue: deque[ScriptedReply] = deque()

    # -- scripting -------------------------------------------------------------

    def enqueue(self, *replies: ScriptedReply | ScriptedClose) -> None:
        """Queue answers for the next request messages, in order."""
        self._queue.extend(replies)

    def enqueue_handshake(self, *replies: ScriptedReply) -> None:
        """Queue answers for the next WebSocket handshakes: a non-2xx reply
        rejects the upgrade with its status, ``headers`` and the wire's
        error body (or its ``body``); any reply's ``delay`` holds the
        handshake response back that long."""
        self._handshake_queue.extend(replies)

    @property
    def open_connections(self) -> int:
        """How many WebSockets are open right now."""
        return len(self._open)

    async def wait_open_connections(self, at_most: int) -> None:
        """Return once at most ``at_most`` WebSockets are open (the caller bounds the wait)."""
        while len(self._open) > at_most:
            await self._open_changed.wait()

    async def close_connections(self, code: int = 1001, reason: str = "going away") -> None:
        """Close every open WebSocket now, idle or not: with a close frame
        carrying ``code``, or, for ``code`` 1006, by dropping the TCP
        connection. Returns once each has ended (a second at most each)."""
        for conn in list(self._open):
            if code == 1006:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    await conn.stream.aclose()
                conn.disconnect = conn.disconnect or Disconnect(1006, "", clean=False)
            elif conn.protocol.state is OPEN:
                conn.protocol.send_close(code, reason)
                with contextlib.suppress(_ClientGone):
                    await conn.flush()
            with anyio.move_on_after(1.0):
                await conn.ended.wait()

    @property
    def pending(self) -> int:
        """How many queued answers have not been used yet."""
        return len(self._queue)

    @property
    def completions(self) -> list[RecordedRequest]:
        """The recorded request messages."""
        return [r for r in self.requests if r.endpoint == "completion"]

    def last_completion(self) -> WireRequest:
        """The last request message, read back by the wire.

        Raises ``AssertionError`` when there was none.
        """
        completions = self.completions
        assert completions, "the fake WebSocket upstream received no request message"
        return self.wire.summarize(completions[-1])

    # -- addresses -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``ws://127.0.0.1:PORT`` (``wss://`` with TLS), no path."""
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The WebSocket URL to configure: :attr:`base_url` plus the wire's socket path."""
        return self.base_url + self.wire.socket_path

    # -- lifecycle ---------------------------------------------------------------

    def _wrap_listener(self, listener: anyio.abc.Listener[Any]) -> anyio.abc.Listener[Any]:
        """TLS when the server was given an ``ssl_context`` (``wss://``)."""
        if self.ssl_context is None:
            return listener
        return TLSListener(listener, self.ssl_context, standard_compatible=False, handshake_timeout=5)

    @classmethod
    @contextlib.contextmanager
    def in_thread(
        cls,
        wire: SocketWire | None = None,
        *,
        default: ScriptedReply | None = None,
        backend: str = "asyncio",
    ) -> Iterator[FakeWebSocketUpstream]:
        """Run a fake upstream on its own event loop (``backend``) in a
        background thread for the duration of the ``with`` block."""
        with run_in_thread(cls(wire, default=default), backend=backend, name="swarmgate-fake-websocket") as server:
            yield server

    # -- serving -----------------------------------------------------------------

    async def _serve(self, listener: anyio.abc.Listener[Any]) -> None:
        try:
            await listener.serve(self._handle)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()

    async def _handle(self, stream: anyio.abc.ByteStream) -> None:
        self.connections += 1
        conn = _ServerConnection(stream)
        try:
            async with stream:
                request = await self._read_handshake(conn)
                if request is not None and await self._answer_handshake(conn, request):
                    await self._session(conn, request)
        except (_ClientGone, _Hangup):
            pass
        except Exception as exc:  # noqa: BLE001 - recorded, raised when the server stops
            self.errors.append(exc)
        finally:
            if conn.disconnect is not None:
                self.disconnects.append(conn.disconnect)

    async def _read_handshake(self, conn: _ServerConnection) -> RecordedRequest | None:
        while True:
            events = await conn.feed()
            for event in events:
                if isinstance(event, Request):
                    headers: dict[str, str] = {}
                    for name, value in event.headers.raw_items():
                        key = name.lower()
                        headers[key] = f"{headers[key]}, {value}" if key in headers else value
                    endpoint = self.wire.route("GET", event.path.split("?", 1)[0])
                    recorded = RecordedRequest("GET", event.path, headers, None, b"", endpoint)
                    conn.request = event
                    return recorded
            if conn.protocol.handshake_exc is not None or conn.protocol.state is State.CLOSED:
                return None

    def _http_response(self, reply: ScriptedReply, body: bytes) -> Response:
        try:
            phrase = http.HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = "Error"
        headers = Headers(
            [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Server", f"swarmgate-fake-upstream ({self.wire.name})"),
                ("Connection", "close"),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
            ]
        )
        for name, value in reply.headers.items():
            if name.lower() not in _FRAMING_HEADERS:
                headers[name] = value
        return Response(reply.status, phrase, headers, body)

    async def _answer_handshake(self, conn: _ServerConnection, recorded: RecordedRequest) -> bool:
        """Reject, answer plain HTTP, or accept; ``True`` when the socket is open."""
        protocol = conn.protocol
        if recorded.endpoint is None:
            reply = ScriptedReply.error(404, f"unknown path: GET {recorded.path}")
            protocol.send_response(self._http_response(reply, self.wire.render_rejection(reply)))
            await conn.flush()
            return False
        request = conn.request
        assert request is not None
        if recorded.endpoint == "models":
            reply = self.models_reply or ScriptedReply()
            if reply.delay > 0:
                await anyio.sleep(reply.delay)
            body = (
                reply.body
                if reply.body is not None
                else (self.wire.render_models() if reply.ok else self.wire.render_rejection(reply))
            )
            protocol.send_response(self._http_response(reply, body))
            await conn.flush()
            return False
        self.handshakes.append(recorded)
        script = self._handshake_queue.popleft() if self._handshake_queue else self.handshake_default
        if script is not None and script.delay > 0:
            await anyio.sleep(script.delay)
        if script is not None and not script.ok:
            body = script.body if script.body is not None else self.wire.render_rejection(script)
            protocol.send_response(self._http_response(script, body))
            await conn.flush()
            return False
        response = protocol.accept(request)
        if script is not None and response.status_code == 101:
            for name, value in script.headers.items():
                if name.lower() not in _FRAMING_HEADERS:
                    response.headers[name] = value
        protocol.send_response(response)
        await conn.flush()
        if protocol.state is not OPEN:
            return False
        greeting = self.wire.render_greeting()
        if greeting is not None:
            await conn.send_message(greeting)
        return True

    async def _session(self, conn: _ServerConnection, handshake: RecordedRequest) -> None:
        """Read messages in one task and answer them in this one, so that
        pings and close frames are handled while an answer streams."""
        send, receive = anyio.create_memory_object_stream[bytes](math.inf)
        self._open.add(conn)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self._read_messages, conn, send)
            try:
                async with receive:
                    async for payload in receive:
                        await self._answer(conn, handshake, payload)
            except (_ClientGone, _Hangup):
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    await conn.stream.aclose()
            finally:
                task_group.cancel_scope.cancel()
        if conn.disconnect is None:
            conn.disconnect = Disconnect(1006, "", clean=False)

    async def _read_messages(self, conn: _ServerConnection, send: MemoryObjectSendStream[bytes]) -> None:
        parts: list[bytes] = []
        async with send:
            try:
                while conn.protocol.state is not State.CLOSED:
                    for frame in await conn.feed():
                        if not isinstance(frame, Frame):
                            continue
                        if frame.opcode is Opcode.PING:
                            self.pings += 1
                        elif frame.opcode is Opcode.CLOSE:
                            self._record_close(conn)
                        elif frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                            parts.append(bytes(frame.data))
                            if frame.fin:
                                await send.send(b"".join(parts))
                                parts.clear()
            except _ClientGone:
                pass
            finally:
                if conn.disconnect is None:
                    self._record_close(conn)
                self._open.discard(conn)
                self._open_changed.set()
                self._open_changed = anyio.Event()
                conn.ended.set()

    def _record_close(self, conn: _ServerConnection) -> None:
        protocol = conn.protocol
        first: Close | None
        if protocol.close_rcvd_then_sent is False:
            first = protocol.close_sent
        else:
            first = protocol.close_rcvd or protocol.close_sent
        if first is None:
            conn.disconnect = Disconnect(1006, "", clean=False)
        else:
            clean = protocol.close_rcvd is not None and protocol.close_sent is not None
            conn.disconnect = Disconnect(int(first.code), first.reason, clean=clean)

    async def _answer(self, conn: _ServerConnection, handshake: RecordedRequest, payload: bytes) -> None:
        parsed: Any = None
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = None
        request = RecordedRequest(MESSAGE_METHOD, handshake.path, handshake.headers, parsed, payload, "completion")
        self.requests.append(request)
        wire = self.wire
        script = self._queue[0] if self._queue else self.default
        raw_answer = isinstance(script, ScriptedReply) and script.body is not None
        if not isinstance(parsed, dict) and not raw_answer:
            # A raw ``body`` answers anything (plain-text protocols); otherwise
            # the wire needs a JSON object, and the queued reply waits.
            refusal = ScriptedReply.error(400, "the request message must be a JSON object")
            await self._send(conn, wire.render_error(refusal, request))
            return
        if self._queue:
            self._queue.popleft()
        close = script if isinstance(script, ScriptedClose) else None
        reply = script.reply if isinstance(script, ScriptedClose) else script
        if reply.delay > 0:
            await anyio.sleep(reply.delay)
        if close is not None:
            plan = wire.render_stream(reply, request)
            for message in (*(plan.head if close.head else ()), *(*plan.body, *plan.tail)[: close.after]):
                await self._send(conn, message)
            await self._close(conn, close)
            return
        if reply.body is not None:
            for line in reply.body.split(b"\n"):
                if line.strip():
                    await self._send(conn, line)
            return
        if not reply.ok:
            await self._send(conn, wire.render_error(reply, request))
            return
        if not wire.wants_stream(request):
            for line in wire.render_completion(reply, request).split(b"\n"):
                await self._send(conn, line)
            return
        await self._stream(conn, reply, wire.render_stream(reply, request))

    async def _stream(self, conn: _ServerConnection, reply: ScriptedReply, plan: SSEPlan) -> None:
        for message in plan.head:
            await self._send(conn, message)
        count = len(plan.body)
        for index in range(count + 1):
            if reply.stall_after == index:
                await conn.ended.wait()
                raise _Hangup
            if reply.cut_after == index:
                await conn.stream.aclose()
                conn.disconnect = Disconnect(1006, "", clean=False)
                raise _Hangup
            if index == count:
                break
            message = self.wire.render_malformed() if reply.malformed_at == index else plan.body[index]
            await self._send(conn, message)
            if reply.chunk_delay > 0:
                await anyio.sleep(reply.chunk_delay)
        if reply.malformed_at is not None and reply.malformed_at >= count:
            await self._send(conn, self.wire.render_malformed())
        for message in plan.tail:
            await self._send(conn, message)

    async def _send(self, conn: _ServerConnection, message: bytes) -> None:
        await conn.send_message(message, self.fragment_size)

    async def _close(self, conn: _ServerConnection, close: ScriptedClose) -> None:
        """Send the scripted close frame; wait (a second at most) for the echo."""
        if close.code == 1006:
            await conn.stream.aclose()
            conn.disconnect = Disconnect(1006, "", clean=False)
            raise _Hangup
        if conn.protocol.state is OPEN:
            conn.protocol.send_close(close.code, close.reason)
            await conn.flush()
        with anyio.move_on_after(1.0):
            await conn.ended.wait()
        raise _Hangup
