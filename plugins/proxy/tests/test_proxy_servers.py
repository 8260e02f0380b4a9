"""The loopback test proxies of ``swarmgate.testing.proxy_servers`` on their own.

Raw sockets where the protocol detail matters (CONNECT answers, SOCKS5
replies), httpx where a real client's behaviour does (forwarding,
keep-alive, cut and abandoned answers), and both ways of running them
(in the event loop, in a thread).
"""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from swarmgate.testing import FakeUpstream, ScriptedReply, unreachable_url
from swarmgate.testing.proxy_servers import (
    PROXY_NAME,
    SOCKS_ADDRESS_NOT_SUPPORTED,
    SOCKS_COMMAND_NOT_SUPPORTED,
    SOCKS_CONNECTION_REFUSED,
    SOCKS_HOST_UNREACHABLE,
    SOCKS_NETWORK_UNREACHABLE,
    SOCKS_SUCCEEDED,
    HTTPProxy,
    ProxyRecord,
    SOCKS5Proxy,
)

USER, PASSWORD = "bob", "tunnel-password"


def dead_port() -> int:
    return int(unreachable_url().split(":")[2].split("/")[0])


async def read_head(stream: anyio.abc.SocketStream) -> bytes:
    """Bytes up to the end of an HTTP response head (and whatever came with them)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    return data


@pytest.fixture
def unresolvable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The name ``unresolvable.test`` fails to resolve, without asking a
    DNS server (the tests stay on the loopback interface)."""
    real = anyio.connect_tcp

    async def connect_tcp(host: str, port: int, **options: Any) -> Any:
        if host == "unresolvable.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return await real(host, port, **options)

    monkeypatch.setattr(anyio, "connect_tcp", connect_tcp)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- HTTP proxy: CONNECT -----------------------------------------------------------------


@pytest.mark.anyio
async def test_connect_tunnel() -> None:
    async with FakeUpstream() as server, HTTPProxy(credentials=(USER, PASSWORD)) as proxy:
        async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
            await stream.send(
                f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"Proxy-Authorization: {basic(USER, PASSWORD)}\r\n\r\n".encode()
            )
            head = await read_head(stream)
            assert head.startswith(b"HTTP/1.1 200 Connection established\r\n")
            await stream.send(b"GET /v1/models HTTP/1.1\r\nHost: upstream\r\n\r\n")
            answer = await read_head(stream)
        port = server.port
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert server.requests[-1].path == "/v1/models"
    assert proxy.records == [ProxyRecord("connect", "127.0.0.1", port, True, "CONNECT", user=USER, status=200)]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("target", "authorization", "status", "error"),
    [
        ("127.0.0.1:{live}", None, 407, "auth"),
        ("127.0.0.1:{live}", basic(USER, "nope"), 407, "auth"),
        ("127.0.0.1:{live}", "Bearer abc", 407, "auth"),
        ("127.0.0.1:{live}", "Basic !!notbase64", 407, "auth"),
        ("127.0.0.1:{dead}", basic(USER, PASSWORD), 502, "connection_refused"),
        ("no-port-here", basic(USER, PASSWORD), 400, "http_request_error"),
    ],
)
async def test_connect_refusals(target: str, authorization: str | None, status: int, error: str) -> None:
    async with FakeUpstream() as server, HTTPProxy(credentials=(USER, PASSWORD)) as proxy:
        target = target.format(live=server.port, dead=dead_port())
        auth = f"Proxy-Authorization: {authorization}\r\n" if authorization else ""
        async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
            await stream.send(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n".encode())
            head = (await read_head(stream)).decode("latin-1").lower()
    assert head.startswith(f"http/1.1 {status} ")
    assert "via: 1.1 swarmgate-test-proxy" in head
    if status == 407:
        assert 'proxy-authenticate: basic realm="swarmgate-test-proxy"' in head
    else:
        assert f"proxy-status: {PROXY_NAME}; error={error}" in head
    ((record),) = proxy.records
    assert (record.kind, record.ok, record.status, record.error) == ("connect", False, status, error)
    assert not server.requests


@pytest.mark.anyio
async def test_connect_timeout_is_a_504() -> None:
    async with (
        FakeUpstream() as server,
        HTTPProxy(connect_timeout=0) as proxy,
        await anyio.connect_tcp("127.0.0.1", proxy.port) as stream,
    ):
        await stream.send(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = (await read_head(stream)).decode("latin-1").lower()
    assert head.startswith("http/1.1 504 gateway timeout")
    assert "error=connection_timeout" in head


# -- HTTP proxy: forwarding -----------------------------------------------------------------


@pytest.mark.anyio
async def test_forwarding_rewrites_the_request() -> None:
    async with FakeUpstream() as server, HTTPProxy(credentials=(USER, PASSWORD)) as proxy:
        async with httpx.AsyncClient(proxy=proxy.url_with(USER, PASSWORD)) as client:
            response = await client.get(f"{server.url}/models?limit=2", headers={"X-Keep": "yes"})
            again = await client.get(f"{server.url}/models")
        received = server.requests[0]
        port = server.port
    assert (response.status_code, again.status_code) == (200, 200)
    assert response.headers["via"] == f"1.1 {PROXY_NAME}"
    assert response.headers["proxy-status"] == f"{PROXY_NAME}; received-status=200"
    assert received.path == "/v1/models?limit=2"
    assert received.headers["x-keep"] == "yes"
    assert received.headers["host"] == f"127.0.0.1:{port}"
    assert "proxy-authorization" not in received.headers
    assert server.connections == 1, "the upstream connection is kept alive"
    assert [r.path for r in proxy.records] == ["/v1/models?limit=2", "/v1/models"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("request_line", "status", "error"),
    [
        ("GET /v1/models HTTP/1.1", 400, "http_request_error"),
        ("GET https://127.0.0.1:{live}/v1/models HTTP/1.1", 400, "http_request_error"),
        ("GET http://127.0.0.1:{dead}/v1/models HTTP/1.1", 502, "connection_refused"),
        ("GET http://unresolvable.test/v1/models HTTP/1.1", 502, "dns_error"),
    ],
)
@pytest.mark.usefixtures("unresolvable")
async def test_forwarding_refusals(request_line: str, status: int, error: str) -> None:
    async with FakeUpstream() as server, HTTPProxy() as proxy:
        line = request_line.format(live=server.port, dead=dead_port())
        async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
            await stream.send(f"{line}\r\nHost: x\r\n\r\n".encode())
            head = (await read_head(stream)).decode("latin-1").lower()
    assert head.startswith(f"http/1.1 {status} ")
    assert f"proxy-status: {PROXY_NAME}; error={error}" in head
    assert [(r.kind, r.ok, r.status, r.error) for r in proxy.records] == [("forward", False, status, error)]


@pytest.mark.anyio
async def test_forwarding_retries_a_stale_kept_alive_connection() -> None:
    """An upstream that closes an idle kept-alive connection: the next
    request goes out once more on a new connection."""
    accepted = 0

    async def answer_once(stream: anyio.abc.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        async with stream:
            await read_head(stream)
            await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
        anyio.create_task_group() as tg,
        HTTPProxy() as proxy,
    ):
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(listener.serve, answer_once)
        async with httpx.AsyncClient(proxy=proxy.url) as client:
            first = await client.get(f"http://127.0.0.1:{port}/a")
            await anyio.sleep(0.05)
            second = await client.get(f"http://127.0.0.1:{port}/b")
        tg.cancel_scope.cancel()
    assert (first.text, second.text) == ("ok", "ok")
    assert accepted == 2
    assert [(r.path, r.status) for r in proxy.records] == [("/a", 200), ("/b", 200)]


@pytest.mark.anyio
async def test_forwarding_upstream_that_closes_without_answering() -> None:
    async def hang_up(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await read_head(stream)

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
        anyio.create_task_group() as tg,
        HTTPProxy() as proxy,
    ):
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(listener.serve, hang_up)
        async with httpx.AsyncClient(proxy=proxy.url) as client:
            response = await client.get(f"http://127.0.0.1:{port}/a")
        tg.cancel_scope.cancel()
    assert response.status_code == 502
    assert "error=connection_terminated" in response.headers["proxy-status"]


@pytest.mark.anyio
async def test_forwarding_a_cut_stream_cuts_the_client() -> None:
    async with FakeUpstream() as server, HTTPProxy() as proxy:
        server.enqueue(ScriptedReply(content="one two three four", cut_after=2))
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        received = bytearray()

        async def read_stream(client: httpx.AsyncClient) -> None:
            async with client.stream("POST", f"{server.url}/chat/completions", json=body) as response:
                async for chunk in response.aiter_bytes():
                    received.extend(chunk)

        async with httpx.AsyncClient(proxy=proxy.url) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await read_stream(client)
    assert b'"one"' in received
    assert b"[DONE]" not in received


@pytest.mark.anyio
async def test_a_client_that_gives_up_releases_the_upstream() -> None:
    """A client timing out on a silent upstream: the proxy closes its
    upstream connection at once and records the abandoned request."""
    upstream_closed = anyio.Event()

    async def silent(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await read_head(stream)
            try:
                while await stream.receive():
                    pass
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                upstream_closed.set()

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
        anyio.create_task_group() as tg,
        HTTPProxy() as proxy,
    ):
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(listener.serve, silent)
        async with httpx.AsyncClient(proxy=proxy.url, timeout=0.2) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(f"http://127.0.0.1:{port}/slow")
        with anyio.fail_after(2):
            await upstream_closed.wait()
        tg.cancel_scope.cancel()
    assert [(r.path, r.ok, r.error) for r in proxy.records] == [("/slow", False, "client_closed")]


# -- SOCKS5 proxy ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("host", "scheme"), [("127.0.0.1", "socks5"), ("localhost", "socks5h")])
async def test_socks_ipv4_and_domain_targets(host: str, scheme: str) -> None:
    async with FakeUpstream() as server, SOCKS5Proxy() as proxy:
        via = proxy.url.replace("socks5://", f"{scheme}://")
        async with httpx.AsyncClient(proxy=via) as client:
            response = await client.get(f"http://{host}:{server.port}/v1/models")
        port = server.port
    assert response.status_code == 200
    ((record),) = proxy.records
    assert (record.kind, record.host, record.port, record.ok, record.status) == ("socks", host, port, True, 0)


@pytest.fixture
async def socks_stream() -> AsyncIterator[tuple[SOCKS5Proxy, anyio.abc.SocketStream]]:
    """A raw connection to a SOCKS5 proxy that wants username/password."""
    async with (
        SOCKS5Proxy(credentials=(USER, PASSWORD)) as proxy,
        await anyio.connect_tcp("127.0.0.1", proxy.port) as stream,
    ):
        yield proxy, stream


async def receive_exactly(stream: anyio.abc.SocketStream, count: int) -> bytes:
    data = b""
    while len(data) < count:
        data += await stream.receive(count - len(data))
    return data


async def login(stream: anyio.abc.SocketStream) -> None:
    await stream.send(bytes([5, 1, 2]))
    assert await receive_exactly(stream, 2) == bytes([5, 2])
    await stream.send(bytes([1, len(USER)]) + USER.encode() + bytes([len(PASSWORD)]) + PASSWORD.encode())
    assert await receive_exactly(stream, 2) == bytes([1, 0])


async def ends(stream: anyio.abc.SocketStream) -> bool:
    try:
        with anyio.fail_after(2):
            await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        return True
    return False


@pytest.mark.anyio
async def test_socks_without_an_acceptable_method(socks_stream: tuple[SOCKS5Proxy, anyio.abc.SocketStream]) -> None:
    proxy, stream = socks_stream
    await stream.send(bytes([5, 1, 0]))
    assert await receive_exactly(stream, 2) == bytes([5, 0xFF])
    assert await ends(stream)
    assert [(r.ok, r.error) for r in proxy.records] == [(False, "auth")]


@pytest.mark.anyio
async def test_socks_wrong_password(socks_stream: tuple[SOCKS5Proxy, anyio.abc.SocketStream]) -> None:
    proxy, stream = socks_stream
    await stream.send(bytes([5, 2, 0, 2]))
    assert await receive_exactly(stream, 2) == bytes([5, 2])
    await stream.send(bytes([1, len(USER)]) + USER.encode() + bytes([5]) + b"wrong")
    assert await receive_exactly(stream, 2) == bytes([1, 1])
    assert await ends(stream)
    assert [(r.ok, r.user, r.error) for r in proxy.records] == [(False, USER, "auth")]


@pytest.mark.anyio
async def test_socks_wrong_version(socks_stream: tuple[SOCKS5Proxy, anyio.abc.SocketStream]) -> None:
    proxy, stream = socks_stream
    await stream.send(bytes([4, 1, 0]))
    assert await ends(stream)
    assert [r.ok for r in proxy.records] == [False]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("request_bytes", "replies"),
    [
        (bytes([5, 2, 0, 1, 127, 0, 0, 1, 0, 80]), {SOCKS_COMMAND_NOT_SUPPORTED}),
        (bytes([5, 1, 0, 9]), {SOCKS_ADDRESS_NOT_SUPPORTED}),
        (bytes([5, 1, 0, 1, 127, 0, 0, 1]) + b"{dead}", {SOCKS_CONNECTION_REFUSED}),
        (
            bytes([5, 1, 0, 4]) + bytes(15) + bytes([1]) + b"{dead}",
            {SOCKS_CONNECTION_REFUSED, SOCKS_NETWORK_UNREACHABLE, SOCKS_HOST_UNREACHABLE},
        ),
        (bytes([5, 1, 0, 3, 17]) + b"unresolvable.test" + bytes([0, 80]), {SOCKS_HOST_UNREACHABLE}),
    ],
    ids=["bind-command", "bad-address-type", "refused-ipv4", "ipv6", "unknown-domain"],
)
@pytest.mark.usefixtures("unresolvable")
async def test_socks_refusals(
    socks_stream: tuple[SOCKS5Proxy, anyio.abc.SocketStream], request_bytes: bytes, replies: set[int]
) -> None:
    proxy, stream = socks_stream
    await login(stream)
    await stream.send(request_bytes.replace(b"{dead}", dead_port().to_bytes(2, "big")))
    reply = await receive_exactly(stream, 10)
    assert reply[:2] == bytes([5, reply[1]])
    assert reply[1] in replies
    ((record),) = proxy.records
    assert (record.ok, record.status, record.user) == (False, reply[1], USER)


@pytest.mark.anyio
async def test_socks_tunnel_by_hand(socks_stream: tuple[SOCKS5Proxy, anyio.abc.SocketStream]) -> None:
    proxy, stream = socks_stream
    async with FakeUpstream() as server:
        await login(stream)
        name = b"localhost"
        await stream.send(bytes([5, 1, 0, 3, len(name)]) + name + server.port.to_bytes(2, "big"))
        reply = await receive_exactly(stream, 10)
        await stream.send(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await read_head(stream)
    assert reply[:4] == bytes([5, SOCKS_SUCCEEDED, 0, 1])
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert [(r.host, r.ok) for r in proxy.records] == [("localhost", True)]


# -- running them ----------------------------------------------------------------------------


def test_in_threads_from_synchronous_code() -> None:
    with (
        FakeUpstream.in_thread() as server,
        HTTPProxy.in_thread(credentials=(USER, "p@ss:/word")) as http_proxy,
        SOCKS5Proxy.in_thread(credentials=(USER, "p@ss:/word"), backend="trio") as socks_proxy,
    ):
        assert http_proxy.url_with(USER, "p@ss:/word").endswith(f"{USER}:p%40ss%3A%2Fword@127.0.0.1:{http_proxy.port}")
        for via in (http_proxy.url_with(USER, "p@ss:/word"), socks_proxy.url_with(USER, "p@ss:/word")):
            with httpx.Client(proxy=via) as client:
                assert client.get(f"{server.url}/models").status_code == 200
        assert http_proxy.targets == socks_proxy.targets == [("127.0.0.1", server.port)]
        assert http_proxy.connections == socks_proxy.connections == 1


@pytest.mark.anyio
async def test_not_running() -> None:
    proxy = HTTPProxy()
    with pytest.raises(RuntimeError, match="not running"):
        _ = proxy.url
    async with proxy:
        with pytest.raises(RuntimeError, match="already running"):
            await proxy.__aenter__()
