"""A scriptable fake upstream: a real HTTP/1.1 server on a loopback socket.

:class:`FakeUpstream` listens on ``127.0.0.1`` on an ephemeral port and
answers the way an LLM API does, in the wire format of its :class:`Wire`
(:class:`~swarmgate.testing.openai_wire.OpenAIWire` by default). It is
written with anyio and h11, so it runs inside the test's own event loop on
asyncio and on trio; :meth:`FakeUpstream.in_thread` runs it in a background
thread for synchronous code, official SDK clients and benchmarks.

HTTP/1.1 keep-alive is supported (httpx pools connections) and streamed
answers are sent with chunked transfer encoding, frame by frame.

Each completion request takes the next :class:`ScriptedReply` queued with
:meth:`FakeUpstream.enqueue`; with the queue empty, :attr:`FakeUpstream.default`
answers. Every request received is recorded in :attr:`FakeUpstream.requests`.

Hand-written on purpose: a test server needs to misbehave on cue (stall,
cut a stream, send garbage), which no production server library offers.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import anyio.abc
import anyio.from_thread
import attrs
import h11

from swarmgate.testing.loopback import LoopbackServer, run_in_thread

if TYPE_CHECKING:
    pass

Endpoint = Literal["completion", "models"]
"""What a request path is for: a completion (chat) call, or the models listing."""

DEFAULT_CONTENT = "Hello from the fake upstream"
"""What the default :class:`ScriptedReply` answers."""

_RECEIVE_SIZE = 65536
_WORD_RE = re.compile(r"\s*\S+|\s+$")
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


# ---------------------------------------------------------------------------
# Values


@attrs.frozen
class RecordedRequest:
    """One request the fake upstream received.

    ``path`` is the request target as sent (query string included);
    ``headers`` has lower-case names (repeated headers joined with ``", "``);
    ``json`` is the parsed body, or ``None`` when the body is empty or not
    JSON; ``endpoint`` is what the wire routed the path to (``None``: unknown
    path, answered 404).
    """

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    body: bytes
    endpoint: Endpoint | None = None
    #: When the request had been read (``time.monotonic()``), for spacing checks.
    received_at: float = attrs.field(factory=time.monotonic, eq=False)


def _opt_tuple(value: Iterable[Any] | None) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


def _opt_usage(value: Iterable[int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    items = tuple(value)
    if len(items) != 2:
        raise ValueError(f"usage must be (input_tokens, output_tokens), got {items!r}")
    return (int(items[0]), int(items[1]))


def _str_dict(value: Mapping[str, str] | None) -> dict[str, str]:
    return dict(value or {})


def count_words(text: str) -> int:
    """The fake upstream's "tokenizer": whitespace-separated words."""
    return len(text.split())


def split_words(text: str) -> tuple[str, ...]:
    """``text`` split into words, each carrying the whitespace before it, so
    that the pieces join back to ``text`` exactly."""
    return tuple(_WORD_RE.findall(text))


@attrs.frozen
class ScriptedReply:
    """How the fake upstream answers one completion request.

    Success (``status`` 2xx): ``content`` (and ``tool_calls``, OpenAI format)
    with ``finish_reason``; streamed, the content is split into ``chunks``
    (default: word by word, see :func:`split_words`). ``usage`` is
    ``(input_tokens, output_tokens)``; by default the words of the prompt
    (at least 1) and of the content plus tool-call arguments.

    Failure (``status`` 4xx/5xx): the wire's error body built from
    ``error_type``, ``error_code`` and ``error_message`` (each defaulted by
    the wire from the status). ``headers`` are added to the response either
    way (``Retry-After``, ...; framing headers are ignored). ``body``
    replaces the whole response body with raw bytes (e.g. invalid JSON for
    a 200), sent as ``application/json`` unless ``headers`` say otherwise.

    Timing and misbehaviour: ``delay`` seconds before the response starts;
    ``chunk_delay`` seconds after each streamed chunk. Streamed answers
    count *chunks* as the wire's body frames (text pieces, then tool-call
    fragments), after its opening frames: ``stall_after=N`` sends N chunks
    and then nothing until the client goes away; ``cut_after=N`` sends N
    chunks and closes the connection without the stream's end;
    ``malformed_at=N`` sends a non-JSON data line instead of chunk N (at or
    past the last chunk: just before the closing frames). ``model``
    overrides the model the answer reports (default: echo the request's).
    ``reset`` closes the connection after reading the request, before any
    response headers (a connection reset). ``drop_terminator`` streams
    everything but the wire's last closing frame (OpenAI's ``[DONE]``,
    Anthropic's ``message_stop``) and then ends the response cleanly.
    """

    status: int = 200
    content: str = DEFAULT_CONTENT
    chunks: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_tuple)
    usage: tuple[int, int] | None = attrs.field(default=None, converter=_opt_usage)
    finish_reason: str = "stop"
    headers: dict[str, str] = attrs.field(factory=dict, converter=_str_dict)
    error_type: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    stall_after: int | None = None
    cut_after: int | None = None
    malformed_at: int | None = None
    tool_calls: tuple[dict[str, Any], ...] | None = attrs.field(default=None, converter=_opt_tuple)
    body: bytes | None = None
    model: str | None = None
    reset: bool = False
    drop_terminator: bool = False

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        type: str | None = None,  # noqa: A002 - the wire formats' own field name
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> ScriptedReply:
        """A failure answer: ``status`` with the wire's error body."""
        return cls(
            status=status,
            error_type=type,
            error_code=code,
            error_message=message,
            headers=_str_dict(headers),
            delay=delay,
        )

    @property
    def ok(self) -> bool:
        """Is this a success (2xx) answer?"""
        return 200 <= self.status < 300

    def stream_chunks(self) -> tuple[str, ...]:
        """The content split for streaming: ``chunks``, else word by word."""
        return self.chunks if self.chunks is not None else split_words(self.content)

    def token_usage(self, prompt: str) -> tuple[int, int]:
        """``(input, output)`` tokens: ``usage``, else counted words of
        ``prompt`` (at least 1) and of the content and tool-call arguments."""
        if self.usage is not None:
            return self.usage
        output = count_words(self.content)
        for call in self.tool_calls or ():
            output += count_words(str(call.get("function", {}).get("arguments", "")))
        return max(1, count_words(prompt)), output


@attrs.frozen
class WireRequest:
    """A completion request read back in wire-neutral terms (for asserting
    what a driver sent): ``messages`` are ``(role, text)`` pairs, a system
    prompt sent outside the messages comes first as ``("system", text)``."""

    model: str | None
    messages: tuple[tuple[str, str], ...]
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    stream: bool = False


@attrs.frozen
class SSEPlan:
    """A streamed answer as encoded SSE frames (each ``bytes`` is one
    complete event, blank line included): ``head`` opens the stream,
    ``body`` holds the chunks :class:`ScriptedReply` counts, ``tail``
    finishes it (finish reason, usage, terminator)."""

    head: tuple[bytes, ...] = ()
    body: tuple[bytes, ...] = ()
    tail: tuple[bytes, ...] = ()


class Wire(Protocol):
    """A provider's wire format, as the fake upstream speaks it.

    Implementations are pure: they route paths and render bytes; the server
    does the HTTP, the timing and the misbehaviour.
    """

    @property
    def name(self) -> str:
        """Short name (``"openai"``), sent in the ``server`` header."""
        ...

    @property
    def base_path(self) -> str:
        """The path prefix of the API (``"/v1"``); :attr:`FakeUpstream.url` ends with it."""
        ...

    def route(self, method: str, path: str) -> Endpoint | None:
        """What ``method path`` (no query string) is for, or ``None`` (404)."""
        ...

    def wants_stream(self, request: RecordedRequest) -> bool:
        """Does this completion request ask for a streamed answer?"""
        ...

    def summarize(self, request: RecordedRequest) -> WireRequest:
        """Read a completion request back (``request.json`` is a dict)."""
        ...

    def render_completion(self, reply: ScriptedReply, request: RecordedRequest) -> bytes:
        """The JSON body of a successful, non-streamed answer."""
        ...

    @property
    def stream_media_type(self) -> str:
        """The ``content-type`` of streamed answers: ``text/event-stream`` for
        SSE wires, ``application/x-ndjson`` for newline-delimited JSON."""
        ...

    def render_stream(self, reply: ScriptedReply, request: RecordedRequest) -> SSEPlan:
        """The frames of a successful, streamed answer (SSE events, or NDJSON
        lines, per :attr:`stream_media_type`)."""
        ...

    def render_malformed(self) -> bytes:
        """One SSE frame whose data is not valid JSON."""
        ...

    def render_error(self, reply: ScriptedReply, request: RecordedRequest | None) -> bytes:
        """The JSON error body for a non-2xx ``reply``."""
        ...

    def render_models(self) -> bytes:
        """The JSON body of the models listing (health probes)."""
        ...


# ---------------------------------------------------------------------------
# The server


class _ClientGone(Exception):
    """The client closed or reset the connection; end this connection quietly."""


def unreachable_url(path: str = "/v1") -> str:
    """A loopback URL on which nothing listens (a port bound and released),
    for connection-refused tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


class FakeUpstream(LoopbackServer):
    """A fake LLM API on ``127.0.0.1``; see the module docstring.

    ``async with FakeUpstream() as server:`` listens within the current
    event loop (asyncio or trio) until the block ends; then every open
    connection is dropped, a stalled one included. ``with
    FakeUpstream.in_thread() as server:`` does the same from synchronous
    code, on an event loop of its own in a background thread.

    Attributes: ``wire`` (the :class:`Wire`), ``default`` (the reply used
    when the queue is empty), ``models_reply`` (how the models listing
    answers: ``None`` lists the wire's models; a :class:`ScriptedReply`
    with an error status fails it, its ``delay``, ``headers`` and ``body``
    apply), ``requests`` (every :class:`RecordedRequest`, in arrival order),
    ``connections`` (TCP connections accepted, for keep-alive checks),
    ``disconnects`` (answers the client abandoned: it closed or reset the
    connection before the answer's end, e.g. a cancelled call or a stream
    closed early; noticed at the fake's next write, or at once for a
    stalled stream) and ``errors`` (unexpected exceptions inside the
    server: leaving the ``async with`` block raises the first of them, so
    a broken fake never passes silently).
    """

    label = "fake upstream"
    usage = "use 'async with FakeUpstream() as server'"

    def __init__(self, wire: Wire | None = None, *, default: ScriptedReply | None = None) -> None:
        super().__init__()
        if wire is None:
            from swarmgate.testing.openai_wire import OpenAIWire

            wire = OpenAIWire()
        self.wire: Wire = wire
        self.default: ScriptedReply = default if default is not None else ScriptedReply()
        self.models_reply: ScriptedReply | None = None
        self.requests: list[RecordedRequest] = []
        self.connections = 0
        self.disconnects = 0
        self._queue: deque[ScriptedReply] = deque()

    # -- scripting -------------------------------------------------------------

    def clear(self) -> int:
        """Drop the replies still queued (the default answers from now on); returns how many."""
        dropped = len(self._queue)
        self._queue.clear()
        return dropped

    def enqueue(self, *replies: ScriptedReply) -> None:
        """Queue replies for the next completion requests, in order
        (thread-safe: callable from the test thread in thread mode)."""
        self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """How many queued replies have not been used yet."""
        return len(self._queue)

    @property
    def completions(self) -> list[RecordedRequest]:
        """The recorded completion requests (models listings etc. left out)."""
        return [r for r in self.requests if r.endpoint == "completion"]

    def last_completion(self) -> WireRequest:
        """The last completion request, read back by the wire.

        Raises ``AssertionError`` when there was none.
        """
        completions = self.completions
        assert completions, "the fake upstream received no completion request"
        return self.wire.summarize(completions[-1])

    # -- addresses -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The API base URL to configure as a provider's endpoint:
        ``http://127.0.0.1:PORT`` plus the wire's base path (``/v1``)."""
        return self.base_url + self.wire.base_path

    # -- lifecycle ---------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def in_thread(
        cls,
        wire: Wire | None = None,
        *,
        default: ScriptedReply | None = None,
        backend: str = "asyncio",
    ) -> Iterator[FakeUpstream]:
        """Run a fake upstream on its own event loop (``backend``) in a
        background thread for the duration of the ``with`` block; leaving it
        stops the server and joins the thread."""
        with run_in_thread(cls(wire, default=default), backend=backend, name="swarmgate-fake-upstream") as server:
            yield server

    # -- serving -----------------------------------------------------------------

    async def _serve(self, listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
        try:
            await listener.serve(self._handle)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            async with stream:
                while await self._exchange(conn, stream):
                    conn.start_next_cycle()
        except (_ClientGone, h11.RemoteProtocolError):
            pass
        except Exception as exc:  # noqa: BLE001 - recorded, raised when the server stops
            self.errors.append(exc)

    async def _exchange(self, conn: h11.Connection, stream: anyio.abc.SocketStream) -> bool:
        """Read one request and answer it; ``True`` when the connection may be reused."""
        request = await self._read_request(conn, stream)
        if request is None:
            return False
        self.requests.append(request)
        try:
            keep = await self._respond(conn, stream, request)
        except _ClientGone:
            self.disconnects += 1
            raise
        return keep and conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _next_event(self, conn: h11.Connection, stream: anyio.abc.SocketStream) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await stream.receive(_RECEIVE_SIZE)
            except anyio.EndOfStream:
                data = b""
            except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise _ClientGone from exc
            conn.receive_data(data)

    async def _read_request(self, conn: h11.Connection, stream: anyio.abc.SocketStream) -> RecordedRequest | None:
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
                return None
        assert head is not None
        headers: dict[str, str] = {}
        for name, value in head.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        raw = bytes(body)
        parsed: Any = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        method = head.method.decode("ascii")
        path = head.target.decode("latin-1")
        endpoint = self.wire.route(method, path.split("?", 1)[0])
        return RecordedRequest(method, path, headers, parsed, raw, endpoint)

    async def _respond(self, conn: h11.Connection, stream: anyio.abc.SocketStream, request: RecordedRequest) -> bool:
        wire = self.wire
        if request.endpoint is None:
            reply = ScriptedReply.error(404, f"unknown path: {request.method} {request.path}")
            return await self._send_body(conn, stream, reply, wire.render_error(reply, request))
        if request.endpoint == "models":
            reply = self.models_reply or ScriptedReply()
            if reply.delay > 0:
                await anyio.sleep(reply.delay)
            body = (
                reply.body
                if reply.body is not None
                else (wire.render_models() if reply.ok else wire.render_error(reply, None))
            )
            return await self._send_body(conn, stream, reply, body)
        if not isinstance(request.json, dict):
            reply = ScriptedReply.error(400, "the request body must be a JSON object")
            return await self._send_body(conn, stream, reply, wire.render_error(reply, request))
        reply = self._queue.popleft() if self._queue else self.default
        if reply.delay > 0:
            await anyio.sleep(reply.delay)
        if reply.reset:
            await stream.aclose()
            return False
        if reply.body is not None:
            return await self._send_body(conn, stream, reply, reply.body)
        if not reply.ok:
            return await self._send_body(conn, stream, reply, wire.render_error(reply, request))
        if wire.wants_stream(request):
            return await self._send_stream(conn, stream, reply, wire.render_stream(reply, request))
        return await self._send_body(conn, stream, reply, wire.render_completion(reply, request))

    def _headers(self, reply: ScriptedReply, content_type: str, framing: tuple[str, str]) -> list[tuple[str, str]]:
        merged = {"content-type": content_type, "server": f"swarmgate-fake-upstream ({self.wire.name})"}
        for name, value in reply.headers.items():
            if name.lower() not in _FRAMING_HEADERS:
                merged[name.lower()] = value
        return [*merged.items(), framing]

    async def _send(self, conn: h11.Connection, stream: anyio.abc.SocketStream, event: Any) -> None:
        data = conn.send(event)
        if data:
            try:
                await stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise _ClientGone from exc

    async def _send_body(
        self, conn: h11.Connection, stream: anyio.abc.SocketStream, reply: ScriptedReply, body: bytes
    ) -> bool:
        headers = self._headers(reply, "application/json", ("content-length", str(len(body))))
        await self._send(conn, stream, h11.Response(status_code=reply.status, headers=headers))
        await self._send(conn, stream, h11.Data(data=body))
        await self._send(conn, stream, h11.EndOfMessage())
        return True

    async def _send_stream(
        self, conn: h11.Connection, stream: anyio.abc.SocketStream, reply: ScriptedReply, plan: SSEPlan
    ) -> bool:
        headers = self._headers(reply, self.wire.stream_media_type, ("transfer-encoding", "chunked"))
        headers.append(("cache-control", "no-cache"))
        await self._send(conn, stream, h11.Response(status_code=reply.status, headers=headers))
        for frame in plan.head:
            await self._send(conn, stream, h11.Data(data=frame))
        count = len(plan.body)
        for index in range(count + 1):
            if reply.stall_after == index:
                await _wait_until_gone(stream)
                self.disconnects += 1
                return False
            if reply.cut_after == index:
                await stream.aclose()
                return False
            if index == count:
                break
            frame = self.wire.render_malformed() if reply.malformed_at == index else plan.body[index]
            await self._send(conn, stream, h11.Data(data=frame))
            if reply.chunk_delay > 0:
                await anyio.sleep(reply.chunk_delay)
        if reply.malformed_at is not None and reply.malformed_at >= count:
            await self._send(conn, stream, h11.Data(data=self.wire.render_malformed()))
        tail = plan.tail[:-1] if reply.drop_terminator else plan.tail
        for frame in tail:
            await self._send(conn, stream, h11.Data(data=frame))
        await self._send(conn, stream, h11.EndOfMessage())
        return True


async def _wait_until_gone(stream: anyio.abc.SocketStream) -> None:
    """Send nothing more; return when the client closes the connection."""
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        while True:
            await stream.receive(_RECEIVE_SIZE)
