"""swarmgate's native HTTP/1.1 transport (:mod:`swarmgate.transport`) on real
loopback sockets: the pool (keep-alive reuse, limits, expiry, stale
connections and the retry), the answer's framings (content-length,
chunked split anywhere, read-until-close, HEAD, 204, 1xx), flow control
both ways, timeouts, cancellation, TLS with SNI, closing. asyncio only."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import trustme

from swarmgate import transport as native
from swarmgate.transport import NativeTransport, ReadBody

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """The native transport is asyncio's."""
    return "asyncio"


class Peer:
    """The server's side of one accepted connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self) -> tuple[bytes, bytes]:
        """The next request's head and body (a chunked body de-chunked)."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                body += (await self.reader.readexactly(size + 2))[:size]
                if size == 0:
                    return head, body
        length = 0
        for line in lower.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return head, await self.reader.readexactly(length)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def closed_by_client(self) -> bool:
        """Whether the client closes this connection (within a second)."""
        try:
            async with asyncio.timeout(1.0):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True


class Server:
    """A loopback server; :attr:`peers` in the order they connected."""

    def __init__(self) -> None:
        self.peers: list[Peer] = []
        self.heads: list[bytes] = []
        self.url = ""
        self.release = asyncio.Event()


Handler = Callable[[Peer, Server], Awaitable[None]]

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n" + b'{"ok":true}'


async def answer_all(peer: Peer, server: Server) -> None:
    """Answer every request on the connection with :data:`OK`."""
    while True:
        head, _ = await peer.request()
        server.heads.append(head)
        await peer.send(OK)


@asynccontextmanager
async def serve(
    handler: Handler, *, context: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[Server]:
    server = Server()
    tasks: set[asyncio.Task[None]] = set()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        peer = Peer(reader, writer)
        server.peers.append(peer)
        try:
            await handler(peer, server)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            writer.close()

    listener = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=context)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if context else 'http'}://{host}:{port}"
    async with listener:
        try:
            yield server
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def client(
    url: str,
    *,
    limits: httpx.Limits | None = None,
    timeout: float = 2.0,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    transport = NativeTransport(limits or httpx.Limits(), ssl_context=ssl_context)
    return httpx.AsyncClient(transport=transport, base_url=url, timeout=timeout)


def pool(client: httpx.AsyncClient) -> NativeTransport:
    transport = client._transport
    assert isinstance(transport, NativeTransport)
    return transport


# -- keep-alive and the pool ------------------------------------------------------------


async def test_sequential_requests_share_one_connection() -> None:
    async with serve(answer_all) as server, client(server.url) as http:
        for _ in range(3):
            response = await http.post("/v1/x", content=b"{}")
            assert response.json() == {"ok": True}
            assert response.http_version == "HTTP/1.1"
            assert response.reason_phrase == "OK"
        assert len(server.peers) == 1
        assert [head.split(b"\r\n")[0] for head in server.heads] == [b"POST /v1/x HTTP/1.1"] * 3
        assert b"content-length: 2" in server.heads[0].lower()
        assert b"host: 127.0.0.1:" in server.heads[0].lower()


async def test_a_small_answer_comes_whole_and_its_connection_is_back_at_once() -> None:
    async with serve(answer_all) as server, client(server.url) as http:
        request = http.build_request("POST", "/x", content=b"{}")
        response = await pool(http).handle_async_request(request)
        assert isinstance(response.stream, ReadBody)
        assert pool(http)._idle_count == 1, "returned before the body was read"
        assert response.read() == b'{"ok":true}'


async def test_the_pool_limit_queues_requests_first_in_first_out_and_times_out() -> None:
    release = asyncio.Event()

    async def handler(peer: Peer, server: Server) -> None:
        while True:
            head, _ = await peer.request()
            server.heads.append(head)
            if b"/hold" in head:
                await peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
                await release.wait()
                await peer.send(b"0\r\n\r\n")
            else:
                await peer.send(OK)

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with serve(handler) as server, client(server.url, limits=limits) as http:
        async with http.stream("GET", "/hold") as held:
            with pytest.raises(httpx.PoolTimeout):
                await http.get("/late", timeout=httpx.Timeout(2.0, pool=0.1))
            first = asyncio.create_task(http.get("/first"))
            await asyncio.sleep(0.05)
            second = asyncio.create_task(http.get("/second"))
            await asyncio.sleep(0.05)
            assert not first.done()
            assert not second.done()
            release.set()
            assert await held.aread() == b"abc"
        assert (await first).status_code == 200
        assert (await second).status_code == 200
        assert [head.split(b" ")[1] for head in server.heads] == [b"/hold", b"/first", b"/second"]
        assert len(server.peers) == 1
        assert pool(http)._total == 1
        assert not pool(http)._waiters


async def hold_first(peer: Peer, server: Server) -> None:
    """The first request's answer: headers and a piece of body, the rest
    when :attr:`Server.release` is set; then :func:`answer_all`."""
    await peer.request()
    await peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
    await server.release.wait()
    await peer.send(b"0\r\n\r\n")
    await answer_all(peer, server)


async def test_a_cancelled_wait_for_the_pool_leaves_no_trace() -> None:
    async with serve(hold_first) as server, client(server.url, limits=httpx.Limits(max_connections=1)) as http:
        transport = pool(http)
        async with http.stream("GET", "/a") as held:
            waiting = asyncio.create_task(http.get("/b"))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            server.release.set()
            await held.aread()
        assert not transport._waiters
        assert (await http.get("/c")).status_code == 200
        assert transport._total == 1


async def test_a_full_pool_closes_an_idle_connection_to_another_origin() -> None:
    async with (
        serve(answer_all) as one,
        serve(answer_all) as two,
        client(one.url, limits=httpx.Limits(max_connections=1)) as http,
    ):
        await http.get("/")
        await http.get(two.url + "/")  # the idle connection to `one` makes room
        assert await one.peers[0].closed_by_client()
        assert pool(http)._total == 1


async def test_only_max_keepalive_connections_are_kept_idle() -> None:
    async def slow(peer: Peer, server: Server) -> None:
        while True:
            await peer.request()
            await asyncio.sleep(0.05)
            await peer.send(OK)

    limits = httpx.Limits(max_connections=10, max_keepalive_connections=1)
    async with serve(slow) as server, client(server.url, limits=limits) as http:
        await asyncio.gather(http.get("/"), http.get("/"), http.get("/"))
        assert len(server.peers) == 3
        assert pool(http)._idle_count == 1
        assert pool(http)._total == 1


async def test_idle_connections_expire() -> None:
    limits = httpx.Limits(keepalive_expiry=0.1)
    async with serve(answer_all) as server, client(server.url, limits=limits) as http:
        await http.get("/")
        await asyncio.sleep(0.2)
        await http.get("/")
        assert len(server.peers) == 2
        assert await server.peers[0].closed_by_client()


async def test_a_connection_the_peer_closed_while_idle_is_not_used() -> None:
    async def once(peer: Peer, server: Server) -> None:
        await peer.request()
        await peer.send(OK)  # keep-alive, then closed anyway

    async with serve(once) as server, client(server.url) as http:
        await http.get("/")
        await asyncio.sleep(0.05)  # the close reaches the client
        assert (await http.get("/")).status_code == 200
        assert len(server.peers) == 2


async def test_a_reused_connection_closed_under_the_request_is_retried_on_a_new_one() -> None:
    """The keep-alive race: the peer closes an idle connection just as a
    request goes out on it (here: closes it, unanswered, on the request)."""

    async def handler(peer: Peer, server: Server) -> None:
        head, _ = await peer.request()
        server.heads.append(head)
        await peer.send(OK)
        if len(server.peers) == 1:
            await peer.request()  # the second request on this connection: dropped unanswered
            return
        await answer_all(peer, server)

    async with serve(handler) as server, client(server.url) as http:
        await http.post("/a", content=b"{}")
        response = await http.post("/b", content=b"{}")
        assert response.json() == {"ok": True}
        assert len(server.peers) == 2
        assert server.heads[-1].startswith(b"POST /b ")


async def test_a_streamed_body_is_not_replayed_on_a_stale_connection() -> None:
    async def handler(peer: Peer, server: Server) -> None:
        await peer.request()
        await peer.send(OK)
        await peer.request()

    async def body() -> AsyncIterator[bytes]:
        yield b"{}"

    async with serve(handler) as server, client(server.url) as http:
        await http.post("/a", content=b"{}")
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await http.post("/b", content=body())
        assert len(server.peers) == 1


async def test_bytes_arriving_on_an_idle_connection_retire_it() -> None:
    async def chatty(peer: Peer, server: Server) -> None:
        await peer.request()
        await peer.send(OK + b"HTTP/1.1 200 OK\r\n")  # more than was asked for
        await answer_all(peer, server)

    async with serve(chatty) as server, client(server.url) as http:
        await http.get("/")
        await asyncio.sleep(0.05)
        await http.get("/")
        assert len(server.peers) == 2


# -- the answer's framings -------------------------------------------------------------------


def _feed(conn: native._Connection, data: bytes) -> None:
    for i in range(len(data)):
        conn.data_received(data[i : i + 1])


class _FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.closed = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def test_a_chunked_answer_fed_byte_by_byte_parses_whole() -> None:
    conn = native._Connection(("http", "h", 80, None))
    conn.connection_made(_FakeTransport())
    conn.begin(False)
    wire = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 201 Created Here\r\nX-One: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: t\r\n\r\n"
    )
    _feed(conn, wire)
    assert (conn.status, conn.reason, conn.headers_done, conn.complete, conn.keep_alive) == (
        201,
        b"Created Here",
        True,
        True,
        True,
    )
    assert conn.headers == [(b"X-One", b"1"), (b"Transfer-Encoding", b"chunked")]
    assert b"".join(conn.take()) == b"hello world"


async def test_a_chunked_answer_split_at_awkward_places_on_the_wire() -> None:
    pieces = [
        b"HTTP/1.1 200 OK\r\ntransfer-enc",
        b"oding: chunked\r",
        b"\n\r\n",
        b"4\r",
        b"\ndata\r\n",
        b"b\r\n: more da",
        b"ta\r\n0",
        b"\r\n\r",
        b"\n",
    ]

    async def handler(peer: Peer, server: Server) -> None:
        await peer.request()
        for piece in pieces:
            await peer.send(piece)
            await asyncio.sleep(0.005)
        await answer_all(peer, server)

    async with serve(handler) as server, client(server.url) as http:
        async with http.stream("GET", "/") as response:
            received = [chunk async for chunk in response.aiter_raw()]
        assert b"".join(received) == b"data: more data"
        assert len(received) > 1, "each piece as it arrives"
        assert (await http.get("/")).status_code == 200
        assert len(server.peers) == 1, "the connection was reused"


async def test_a_body_read_until_the_connection_closes() -> None:
    async def handler(peer: Peer, server: Server) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nfirst ")
        await asyncio.sleep(0.02)
        await peer.send(b"and last")

    async with serve(handler) as server, client(server.url) as http:
        response = await http.get("/")
        assert response.text == "first and last"
        assert pool(http)._idle_count == 0
        assert (await http.get("/")).text == "first and last"
        assert len(server.peers) == 2


async def test_head_204_and_304_have_no_body() -> None:
    async def handler(peer: Peer, server: Server) -> None:
        while True:
            head, _ = await peer.request()
            server.heads.append(head)
            if head.startswith(b"HEAD"):
                await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
            elif head.startswith(b"GET /cached"):
                await peer.send(b"HTTP/1.1 304 Not Modified\r\netag: x\r\n\r\n")
            else:
                await peer.send(b"HTTP/1.1 204 No Content\r\n\r\n")

    async with serve(handler) as server, client(server.url) as http:
        head = await http.head("/")
        assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "1000")
        assert len(server.peers) == 1
        for _ in range(2):
            empty = await http.delete("/")
            assert (empty.status_code, empty.content) == (204, b"")
            cached = await http.get("/cached")
            assert (cached.status_code, cached.content) == (304, b"")
        assert len(server.peers) == 2, "HEAD's connection is closed, 204's and 304's kept"


async def test_interim_answers_are_skipped() -> None:
    async def handler(peer: Peer, server: Server) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await asyncio.sleep(0.01)
        await peer.send(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + OK)
        await answer_all(peer, server)

    async with serve(handler) as server, client(server.url) as http:
        response = await http.post("/", content=b"{}")
        assert response.status_code == 200
        assert "link" not in response.headers
        assert response.json() == {"ok": True}
        await http.get("/")
        assert len(server.peers) == 1


async def test_connection_close_is_honoured() -> None:
    async def handler(peer: Peer, server: Server) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
        server.heads.append(b"closed" if await peer.closed_by_client() else b"open")

    async with serve(handler) as server, client(server.url) as http:
        assert (await http.get("/")).text == "ok"
        assert (await http.get("/")).text == "ok"
        assert len(server.peers) == 2
        await asyncio.sleep(0.05)
        assert server.heads[0] == b"closed"


async def test_garbage_is_remote_protocol_error() -> None:
    async def handler(peer: Peer, server: Server) -> None:
        await peer.request()
        await peer.send(b"HELLO THERE\r\n\r\n")

    async with serve(handler) as server, client(server.url) as http:
        with pytest.raises(httpx.RemoteProtocolError, match="invalid HTTP answer"):
            await http.get("/")
        assert pool(http)._total == 0


async def test_a_body_cut_short_of_its_length() -> None:
    async def handler(peer: Peer, server: Server) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")

    async with serve(handler) as server, client(server.url) as http:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending complete message body"):
            await http.get("/")
        assert pool(http)._total == 0


# -- bodies both ways, flow control, timeouts, cancellation ---------------------------------


async def test_a_streamed_request_body_goes_chunked_piece_by_piece() -> None:
    async def echo(peer: Peer, server: Server) -> None:
        while True:
            head, body = await peer.request()
            server.heads.append(head)
            await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body))

    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"one ", b"", b"two ", b"three"):
            yield piece
            await asyncio.sleep(0)

    async with serve(echo) as server, client(server.url) as http:
        response = await http.post("/", content=pieces())
        assert response.content == b"one two three"
        assert b"transfer-encoding: chunked" in server.heads[0].lower()
        assert (await http.post("/", content=b"again")).content == b"again"
        assert len(server.peers) == 1


async def test_large_bodies_both_ways_with_back_pressure() -> None:
    size = 4 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)

    async def handler(peer: Peer, server: Server) -> None:
        _, body = await peer.request()
        assert body == payload
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        for i in range(0, size, 65536):
            await peer.send(payload[i : i + 65536])

    async def upload() -> AsyncIterator[bytes]:
        for i in range(0, size, 1 << 20):
            yield payload[i : i + (1 << 20)]

    async with serve(handler) as server, client(server.url) as http:
        async with http.stream("POST", "/", content=upload()) as response:
            (conn,) = pool(http)._open
            received = bytearray()
            paused = False
            async for chunk in response.aiter_raw():
                received += chunk
                if len(received) < size // 2:
                    await asyncio.sleep(0.01)  # a slow reader: the transport stops reading
                    paused = paused or conn.reading_paused
                    assert conn.buffered <= native.READ_BUFFER_LIMIT + 262144
        assert bytes(received) == payload
        assert paused, "reading was paused while the reader lagged"


async def test_a_peer_that_stops_reading_is_write_timeout() -> None:
    async def deaf(peer: Peer, server: Server) -> None:
        await asyncio.sleep(5)

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536

    async with serve(deaf) as server, client(server.url) as http:
        with pytest.raises(httpx.WriteTimeout):
            await http.post("/", content=endless(), timeout=httpx.Timeout(2.0, write=0.2))
        assert pool(http)._total == 0


async def test_a_connection_reset_while_sending_is_write_error() -> None:
    async def resetting(peer: Peer, server: Server) -> None:
        await peer.reader.readuntil(b"\r\n\r\n")
        sock = peer.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        peer.writer.transport.abort()

    async def slow() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024
            await asyncio.sleep(0.01)

    async with serve(resetting) as server, client(server.url) as http:
        with pytest.raises(httpx.WriteError):
            await http.post("/", content=slow())
        assert pool(http)._total == 0


async def test_the_read_timeout_applies_between_chunks() -> None:
    async def handler(peer: Peer, server: Server) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await asyncio.sleep(0.15)
        await peer.send(b"6\r\nsecond\r\n")
        await asyncio.sleep(1.0)
        await peer.send(b"0\r\n\r\n")

    async with serve(handler) as server, client(server.url, timeout=0.5) as http:
        async with http.stream("GET", "/") as response:
            received: list[bytes] = []

            async def read_all() -> None:
                async for chunk in response.aiter_raw():
                    received.append(chunk)

            with pytest.raises(httpx.ReadTimeout):
                await read_all()
        assert received == [b"first", b"second"], "a 0.15 s gap is within the timeout"
        assert pool(http)._total == 0


async def test_cancellation_mid_body_closes_the_connection() -> None:
    async def handler(peer: Peer, server: Server) -> None:
        await peer.request()
        if len(server.peers) == 1:
            await peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            server.heads.append(b"closed" if await peer.closed_by_client() else b"open")
            return
        await peer.send(OK)

    async with serve(handler) as server, client(server.url) as http:

        async def read() -> None:
            async with http.stream("GET", "/") as response:
                async for _ in response.aiter_raw():
                    pass

        task = asyncio.create_task(read())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await http.get("/")).status_code == 200
        assert len(server.peers) == 2
        await asyncio.sleep(0.05)
        assert server.heads == [b"closed"]
        assert pool(http)._total == 1


async def test_a_body_closed_part_read_closes_the_connection() -> None:
    async def handler(peer: Peer, server: Server) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        server.heads.append(b"closed" if await peer.closed_by_client() else b"open")

    async with serve(handler) as server, client(server.url) as http:
        async with http.stream("GET", "/") as response:
            await response.aiter_raw().__anext__()
        await asyncio.sleep(0.05)
        assert server.heads == [b"closed"]
        assert pool(http)._total == 0


# -- connecting, TLS, errors, closing -----------------------------------------------------------


async def test_connect_timeout_and_refusal() -> None:
    async with serve(answer_all) as server, client(server.url) as http:
        with pytest.raises(httpx.ConnectTimeout):
            await http.get("/", timeout=httpx.Timeout(1.0, connect=1e-9))
        assert pool(http)._total == 0
    async with client(server.url) as http:  # the server is gone
        with pytest.raises(httpx.ConnectError):
            await http.get("/")
        assert pool(http)._total == 0


async def test_bad_requests_are_refused_before_connecting() -> None:
    async with client("http://127.0.0.1:1") as http:
        with pytest.raises(httpx.LocalProtocolError):
            await http.get("/", headers={"x-injected": "a\r\nevil: 1"})
        with pytest.raises(httpx.LocalProtocolError):
            await http.get("/", headers={"bad name": "a"})
        with pytest.raises(httpx.UnsupportedProtocol):
            await http.get("ftp://127.0.0.1/")
        assert pool(http)._total == 0


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


async def test_tls_with_sni(certificate_authority: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("localhost", "api.example.test").configure_cert(server_context)
    names: list[str | None] = []
    server_context.sni_callback = lambda _sock, name, _context: names.append(name)
    client_context = ssl.create_default_context()
    certificate_authority.configure_trust(client_context)

    async with (
        serve(answer_all, context=server_context, host="localhost") as server,
        client(server.url, ssl_context=client_context) as http,
    ):
        assert (await http.get("/")).json() == {"ok": True}
        assert (await http.get("/")).json() == {"ok": True}
        response = await http.get(
            server.url.replace("localhost", "127.0.0.1") + "/", extensions={"sni_hostname": "api.example.test"}
        )
        assert response.json() == {"ok": True}
        assert names == ["localhost", "api.example.test"]
        assert len(server.peers) == 2

    async with (
        serve(answer_all, context=server_context, host="localhost") as server,
        client(server.url) as http,  # the default context does not trust this CA
    ):
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            await http.get("/")


async def test_aclose_closes_every_connection_and_refuses_requests() -> None:
    async def handler(peer: Peer, server: Server) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await asyncio.sleep(5)

    async with serve(handler) as server:
        http = client(server.url, limits=httpx.Limits(max_connections=1))
        held = await http.send(http.build_request("GET", "/"), stream=True)
        waiting = asyncio.create_task(pool(http).handle_async_request(http.build_request("GET", "/")))
        await asyncio.sleep(0.02)
        await pool(http).aclose()
        assert await server.peers[0].closed_by_client()
        with pytest.raises(RuntimeError, match="closed"):
            await waiting
        with pytest.raises(RuntimeError, match="closed"):
            await pool(http).handle_async_request(http.build_request("GET", "/"))
        with pytest.raises(httpx.RemoteProtocolError):
            await held.aread()
        await http.aclose()


def test_a_transport_used_from_a_new_event_loop_drops_the_old_loops_connections() -> None:
    from swarmgate.testing import FakeUpstream

    transport = NativeTransport()
    with FakeUpstream.in_thread() as upstream:
        http = httpx.AsyncClient(transport=transport, base_url=upstream.url)

        async def models() -> int:
            return (await http.get("/models")).status_code

        assert asyncio.run(models()) == 200
        assert transport._idle_count == 1
        assert asyncio.run(models()) == 200  # the first loop (and its socket) is gone
        assert (transport._total, transport._idle_count) == (1, 1)
        asyncio.run(transport.aclose())
