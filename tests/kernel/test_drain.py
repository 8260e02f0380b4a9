"""``swarmgate.http.drain``: reading the rest of a streamed answer after its
last event so the connection goes back to the pool -- with no timer when the
native transport has the rest already, and bounded when a server keeps the
body open; and ``aiter_sse`` parsing a body that arrived whole at once.
asyncio (the native transport's loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest

from swarmgate.http import aiter_sse, drain
from swarmgate.transport import NativeTransport, ReadBody

pytestmark = pytest.mark.anyio

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


EVENTS = chunk(b"data: one\n\n") + chunk(b"data: [DONE]\n\n")


@pytest.fixture
def anyio_backend() -> str:
    """The native transport is asyncio's."""
    return "asyncio"


@asynccontextmanager
async def upstream(*pieces: bytes, pause: float = 0.0) -> AsyncIterator[tuple[str, list[int]]]:
    """A server answering every request with ``pieces`` (``pause`` seconds
    between them); yields its URL and the number of connections made."""
    connections = [0]

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                for index, piece in enumerate(pieces):
                    if index and pause:
                        await asyncio.sleep(pause)
                    writer.write(piece)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", connections


def native_client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=NativeTransport(httpx.Limits()), base_url=url)


async def first_then_drain(client: httpx.AsyncClient, within: float) -> tuple[httpx.Response, float]:
    """Read a stream's events up to ``[DONE]``, drain the rest; the response
    and the seconds the drain took."""
    async with client.stream("POST", "/stream", content=b"{}") as response:
        events = aiter_sse(response)
        async for event in events:
            if event.data == "[DONE]":
                break
        started = time.perf_counter()
        await drain(events, response, within)
        return response, time.perf_counter() - started


async def test_a_body_that_arrived_whole_drains_without_a_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_timer(*args: object) -> None:
        raise AssertionError("drain armed a timer for a body that had arrived")

    async with upstream(HEAD + EVENTS + b"0\r\n\r\n") as (url, connections), native_client(url) as client:
        monkeypatch.setattr(anyio, "move_on_after", no_timer)
        for _ in range(3):
            response, _ = await first_then_drain(client, 5.0)
            assert isinstance(response.stream._stream, ReadBody)  # type: ignore[attr-defined]
    assert connections[0] == 1  # each drained connection went back to the pool


async def test_the_end_arriving_later_is_read_and_the_connection_kept() -> None:
    async with upstream(HEAD + EVENTS, b"0\r\n\r\n", pause=0.05) as (url, connections), native_client(url) as client:
        for _ in range(2):
            response, took = await first_then_drain(client, 5.0)
            assert not isinstance(response.stream._stream, ReadBody)  # type: ignore[attr-defined]
            assert took < 2.0
    assert connections[0] == 1


async def test_a_server_holding_the_body_open_costs_only_the_bound() -> None:
    async with upstream(HEAD + EVENTS, b"0\r\n\r\n", pause=30.0) as (url, connections), native_client(url) as client:
        _, took = await first_then_drain(client, 0.2)
        assert 0.15 < took < 2.0
        _, again = await first_then_drain(client, 0.2)  # the held connection was dropped: a new one
        assert again < 2.0
    assert connections[0] == 2


async def test_a_whole_body_is_parsed_at_once_with_the_same_events() -> None:
    """SwarmgateClient hands the native transport's read-whole body over as
    it is: aiter_sse parses it in one go, yields what httpx's iterators
    would, and closes the response after the last event."""
    from swarmgate.config import ProviderConfig
    from swarmgate.http import make_client

    body = chunk(b': keep-alive\n\nevent: note\ndata: a\ndata: b\n\ndata: {"x": 1}\r\n\r\ndata: tail')
    async with upstream(HEAD + body + b"0\r\n\r\n") as (url, _connections):
        fast = make_client(ProviderConfig(type="openai"), base_url=url)
        try:
            response = await fast.send(fast.build_request("POST", "/stream", content=b"{}"), stream=True)
            assert isinstance(response.stream, ReadBody)
            events = aiter_sse(response)
            seen = [event async for event in events]
            assert response.is_closed
        finally:
            await fast.aclose()
        async with native_client(url) as slow, slow.stream("POST", "/stream", content=b"{}") as reference:
            assert seen == [event async for event in aiter_sse(reference)]
    assert [(e.event, e.data) for e in seen] == [("note", "a\nb"), ("message", '{"x": 1}'), ("message", "tail")]
    assert seen[0].comments == ()  # a comment before a blank line belongs to no event
