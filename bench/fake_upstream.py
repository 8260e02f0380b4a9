"""An instant OpenAI-wire upstream for the benchmarks: as little work per
request as a Python server can do.

A raw ``asyncio.Protocol`` on uvloop (when installed) with httptools'
request parser: no ASGI, no framework, canned answers encoded once. It
answers

- ``POST .../chat/completions``: a ``chat.completion`` JSON object, or, when
  the body asks for ``"stream": true`` (with or without a space: Python
  clients write one, JavaScript ones do not), an SSE stream of four text
  chunks, a finish chunk, a usage chunk and ``[DONE]`` -- written at once,
  chunked transfer encoding;
- a stream whose body contains :data:`HOLD_MARKER`: the headers and the first
  chunk at once, then nothing until the client goes away (or ``--hold``
  seconds pass, when it finishes normally) -- for the "1,000 open streams"
  memory measurement;
- ``GET`` anything: a model list (health checks).

Run: ``python bench/fake_upstream.py [--port 0] [--hold 120]``; it prints the
bound port on its first stdout line and serves until SIGTERM/SIGINT.
Hand-written on purpose (the brief: an upstream that costs the load core as
little as possible); it is a benchmark fixture, not a general server.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from typing import Any, cast

import httptools

#: A streamed request whose body contains this is held open after its first chunk.
HOLD_MARKER = b"HOLD-STREAM"

ANSWER = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"a short benchmark answer"},'
    b'"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":4,"total_tokens":16}}'
)
MODELS = b'{"object":"list","data":[{"id":"bench-model","object":"model","created":1700000000,"owned_by":"bench"}]}'

_CHUNK = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-model",'
    b'"choices":[{"index":0,"delta":{%s},"logprobs":null,"finish_reason":%s}]}\n\n'
)
EVENTS = (
    _CHUNK % (b'"role":"assistant","content":"a"', b"null"),
    _CHUNK % (b'"content":" short"', b"null"),
    _CHUNK % (b'"content":" benchmark"', b"null"),
    _CHUNK % (b'"content":" answer"', b"null"),
    _CHUNK % (b"", b'"stop"'),
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-model",'
    b'"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":4,"total_tokens":16}}\n\n',
    b"data: [DONE]\n\n",
)


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _json_response(body: bytes, keep_alive: bool) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body),
        b"" if keep_alive else b"connection: close\r\n",
        body,
    )


def stream_events(words: int) -> tuple[bytes, ...]:
    """The SSE events of a streamed answer of ``words`` text chunks."""
    texts = [b"a"] + [b" word" for _ in range(max(0, words - 1))]
    first = _CHUNK % (b'"role":"assistant","content":"' + texts[0] + b'"', b"null")
    rest = tuple(_CHUNK % (b'"content":"' + text + b'"', b"null") for text in texts[1:])
    return (first, *rest, *EVENTS[4:])


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n%s\r\n"
)
STREAM_TAIL = b"".join(_chunked(e) for e in EVENTS) + b"0\r\n\r\n"


def _responses(events: tuple[bytes, ...]) -> dict[tuple[str, bool], bytes]:
    tail = b"".join(_chunked(e) for e in events) + b"0\r\n\r\n"
    return {
        (kind, keep): data
        for keep in (True, False)
        for kind, data in (
            ("json", _json_response(ANSWER, keep)),
            ("models", _json_response(MODELS, keep)),
            ("stream", STREAM_HEAD % (b"" if keep else b"connection: close\r\n") + tail),
            ("hold", STREAM_HEAD % (b"" if keep else b"connection: close\r\n") + _chunked(events[0])),
        )
    }


RESPONSES = {
    (kind, keep): data
    for keep in (True, False)
    for kind, data in (
        ("json", _json_response(ANSWER, keep)),
        ("models", _json_response(MODELS, keep)),
        ("stream", STREAM_HEAD % (b"" if keep else b"connection: close\r\n") + STREAM_TAIL),
        ("hold", STREAM_HEAD % (b"" if keep else b"connection: close\r\n") + _chunked(EVENTS[0])),
    )
}
HOLD_REST = b"".join(_chunked(e) for e in EVENTS[1:]) + b"0\r\n\r\n"


class Upstream(asyncio.Protocol):
    """One connection: parse requests (keep-alive, pipelining), answer at once."""

    hold_seconds = 120.0

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.held: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.held is not None:
            self.held.cancel()
            self.held = None
        self.transport = None

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self.body = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None:
            return
        keep = self.parser.should_keep_alive()
        if self.parser.get_method() != b"POST":
            transport.write(RESPONSES["models", keep])
        else:
            body = b"".join(self.body)
            if b'"stream":true' in body or b'"stream": true' in body:
                if HOLD_MARKER in body:
                    transport.write(RESPONSES["hold", keep])
                    self.held = asyncio.get_running_loop().call_later(self.hold_seconds, self._release, keep)
                    return
                transport.write(RESPONSES["stream", keep])
            else:
                transport.write(RESPONSES["json", keep])
        if not keep:
            transport.close()

    def _release(self, keep: bool) -> None:
        self.held = None
        if self.transport is not None:
            self.transport.write(HOLD_REST)
            if not keep:
                self.transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, host, port, backlog=4096, reuse_address=True)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hold", type=float, default=120.0, help="seconds a held stream stays open at most")
    parser.add_argument("--words", type=int, default=4, help="text chunks in a streamed answer (default 4)")
    args = parser.parse_args(argv)
    Upstream.hold_seconds = args.hold
    if args.words != 4:
        global HOLD_REST
        events = stream_events(args.words)
        RESPONSES.update(_responses(events))
        HOLD_REST = b"".join(_chunked(e) for e in events[1:]) + b"0\r\n\r\n"
    runner: Any
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is installed with the server plugin
        runner = asyncio.run
    runner(serve(args.host, args.port))
    sys.exit(0)


if __name__ == "__main__":
    main()
