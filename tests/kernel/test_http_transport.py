"""The transport behind :func:`swarmgate.http.make_client`: swarmgate's
native one under asyncio (or aiohttp's, with ``$SWARMGATE_HTTP_TRANSPORT``),
httpx's own under trio, and the same httpx errors for the same transport
failures whichever it is (real sockets). Every test runs three ways:
asyncio with the native transport, asyncio with the aiohttp one, trio."""

from __future__ import annotations

import gzip
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import httpx
import pytest

from swarmgate.config import ProviderConfig
from swarmgate.http import TRANSPORT_ENV, AiohttpTransport, SwarmgateClient, make_client
from swarmgate.testing import unreachable_url
from swarmgate.transport import NativeTransport

pytestmark = pytest.mark.anyio

#: (event loop, transport) combinations: both fast transports under asyncio, httpx's under trio.
COMBINATIONS = [("asyncio", "native"), ("asyncio", "aiohttp"), ("trio", "httpx")]
EXPECTED = {"native": NativeTransport, "aiohttp": AiohttpTransport, "httpx": httpx.AsyncHTTPTransport}


@pytest.fixture(params=COMBINATIONS, ids=["asyncio-native", "asyncio-aiohttp", "trio"])
def transport_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """The event loop and the transport ``make_client`` is to pick (set through the environment)."""
    backend, kind = request.param
    if kind == "aiohttp":
        monkeypatch.setenv(TRANSPORT_ENV, "aiohttp")
    else:
        monkeypatch.delenv(TRANSPORT_ENV, raising=False)
    return backend, kind


@pytest.fixture
def anyio_backend(transport_kind: tuple[str, str]) -> str:
    """This module's event loops follow :func:`transport_kind`."""
    return transport_kind[0]


Handler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


def _config(**fields: object) -> ProviderConfig:
    return ProviderConfig(type="test", endpoint="http://127.0.0.1:1/v1", timeout=500, **fields)  # type: ignore[arg-type]


async def _read_request(stream: anyio.abc.SocketStream) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()


@asynccontextmanager
async def _server(handler: Handler) -> AsyncIterator[str]:
    """A loopback TCP server running ``handler`` per connection; yields its URL."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                await handler(stream)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
                pass

    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, serve)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            tasks.cancel_scope.cancel()


async def test_the_transport_follows_the_event_loop(transport_kind: tuple[str, str]) -> None:
    async with make_client(_config(), base_url="http://127.0.0.1:1") as client:
        assert type(client._transport) is EXPECTED[transport_kind[1]]


async def test_native_is_the_default_and_can_be_named(
    transport_kind: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TRANSPORT_ENV, "native")
    async with make_client(_config(), base_url="http://127.0.0.1:1") as client:
        expected = NativeTransport if transport_kind[0] == "asyncio" else httpx.AsyncHTTPTransport
        assert type(client._transport) is expected


async def test_the_environment_can_keep_httpx_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRANSPORT_ENV, "httpx")
    async with make_client(_config(), base_url="http://127.0.0.1:1") as client:
        assert type(client._transport) is httpx.AsyncHTTPTransport


async def test_a_proxy_keeps_httpx_transport() -> None:
    async with make_client(_config(proxy="http://127.0.0.1:3128"), base_url="http://127.0.0.1:1") as client:
        assert type(client._transport) is httpx.AsyncHTTPTransport
        assert client._mounts, "the proxy is mounted"


def test_outside_an_event_loop_httpx_transport_is_used() -> None:
    client = make_client(_config(), base_url="http://127.0.0.1:1")
    assert type(client._transport) is httpx.AsyncHTTPTransport


async def test_json_and_chunked_bodies_round_trip() -> None:
    async def handler(stream: anyio.abc.SocketStream) -> None:
        await _read_request(stream)
        await stream.send(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}')
        await _read_request(stream)
        await stream.send(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            b"8\r\ndata: a\n\r\n8\r\ndata: b\n\r\n0\r\n\r\n"
        )
        await _read_request(stream)

    async with _server(handler) as url, make_client(_config(), base_url=url) as client:
        response = await client.post("/x", content=b"{}", headers={"content-type": "application/json"})
        assert response.json() == {"ok": True}
        assert response.headers["content-type"] == "application/json"
        async with client.stream("POST", "/x", content=b"{}") as streamed:
            lines = [line async for line in streamed.aiter_lines()]
        assert lines == ["data: a", "data: b"]


async def test_a_refused_connection_is_connect_error() -> None:
    async with make_client(_config(), base_url=unreachable_url("")) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/")


async def test_a_connection_closed_before_the_answer_is_remote_protocol_error() -> None:
    async def handler(stream: anyio.abc.SocketStream) -> None:
        await _read_request(stream)

    async with _server(handler) as url, make_client(_config(), base_url=url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/")


async def test_a_body_cut_mid_way_is_remote_protocol_error() -> None:
    async def handler(stream: anyio.abc.SocketStream) -> None:
        await _read_request(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n8\r\ndata: a\n\r\n")

    async with (
        _server(handler) as url,
        make_client(_config(), base_url=url) as client,
        client.stream("GET", "/") as response,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await response.aread()


async def test_a_silent_upstream_is_read_timeout() -> None:
    async def handler(stream: anyio.abc.SocketStream) -> None:
        await _read_request(stream)
        await anyio.sleep(5)

    async with _server(handler) as url, make_client(_config(), base_url=url) as client:
        with anyio.fail_after(3), pytest.raises(httpx.ReadTimeout):
            await client.get("/", timeout=httpx.Timeout(0.2))


async def test_the_short_path_keeps_cookies_hooks_and_params(anyio_backend: str) -> None:
    """Cookies an answer sets are sent back, event hooks run, query
    parameters reach the upstream: whichever path the client takes."""
    seen: list[bytes] = []

    async def handler(stream: anyio.abc.SocketStream) -> None:
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            head, _, data = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                ),
                0,
            )
            while len(data) < length:
                data += await stream.receive()
            data = data[length:]
            seen.append(head)
            await stream.send(
                b"HTTP/1.1 200 OK\r\nset-cookie: sticky=abc; Path=/\r\ncontent-type: application/json\r\n"
                b"content-length: 2\r\n\r\n{}"
            )

    hooked: list[str] = []

    async def hook(response: httpx.Response) -> None:
        hooked.append(str(response.request.url))

    async with _server(handler) as url, make_client(_config(), base_url=url + "/v1") as client:
        if anyio_backend == "asyncio":
            assert isinstance(client, SwarmgateClient)
        first = await client.post("/chat", content=b"{}", headers={"content-type": "application/json"})
        assert first.json() == {}
        assert first.request.url == httpx.URL(url + "/v1/chat")
        await client.post("/chat", content=b"{}")
        assert b"cookie: sticky=abc" in seen[1].lower()
        await client.get("/models", params={"limit": "2"})
        assert b"GET /v1/models?limit=2 " in seen[2]  # (this bare-socket server may glue a late body to the next head)
        client.event_hooks = {"request": [], "response": [hook]}
        await client.post("/chat", content=b"{}")
        assert hooked == [url + "/v1/chat"]
    with pytest.raises(RuntimeError, match="closed"):
        await client.post("/chat", content=b"{}")


async def test_the_short_path_logs_like_httpx(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(stream: anyio.abc.SocketStream) -> None:
        await _read_request(stream)
        await stream.send(b"HTTP/1.1 204 No Content\r\n\r\n")
        await _read_request(stream)

    caplog.set_level(logging.INFO, logger="httpx")
    async with _server(handler) as url, make_client(_config(), base_url=url) as client:
        await client.post("/x", content=b"{}")
    assert f'HTTP Request: POST {url}/x "HTTP/1.1 204 No Content"' in caplog.text


@pytest.mark.parametrize(
    ("method", "content", "headers"),
    [
        ("POST", b'{"a":1}', {"content-type": "application/json", "accept": "application/json"}),
        ("POST", b"{}", {"User-Agent": "mine", "X-Key": "k"}),  # replaces the client's, case-insensitively
        ("POST", b"", None),
        ("post", None, {"x-empty": ""}),
        ("GET", None, None),
        ("GET", b"body", httpx.Headers([("x-twice", "1"), ("X-Twice", "2")])),
        ("PUT", None, [("x-list", "v")]),
        ("POST", b"{}", {"content-length": "2"}),  # framing headers: httpx's own build
        ("POST", "text body", None),  # not bytes: httpx's own build
    ],
)
def test_the_short_path_builds_the_request_httpx_would(method: str, content: object, headers: object) -> None:
    options = {"base_url": "http://127.0.0.1:1/v1", "headers": {"user-agent": "swarmgate", "authorization": "Bearer k"}}
    short = SwarmgateClient(transport=NativeTransport(), **options)  # type: ignore[arg-type]
    plain = httpx.AsyncClient(**options)  # type: ignore[arg-type]
    timeout = httpx.Timeout(3.0)
    for _ in range(2):  # the second time from the cached URL
        ours = short.build_request(method, "/chat", content=content, headers=headers, timeout=timeout)
        theirs = plain.build_request(method, "/chat", content=content, headers=headers, timeout=timeout)
        assert ours.method == theirs.method
        assert ours.url == theirs.url
        assert ours.headers.raw == theirs.headers.raw
        assert ours.content == theirs.content
        assert ours.extensions == theirs.extensions


async def test_an_answer_read_whole_is_the_same_response(transport_kind: tuple[str, str]) -> None:
    """A body that came with its headers is handed over read (no async
    read); an encoded one is still decoded by httpx."""
    packed = gzip.compress(b'{"packed":true}')

    async def handler(stream: anyio.abc.SocketStream) -> None:
        await _read_request(stream)
        await stream.send(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n" + b'{"ok":true}'
        )
        await _read_request(stream)
        await stream.send(
            b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n%b" % (len(packed), packed)
        )
        await _read_request(stream)

    async with _server(handler) as url, make_client(_config(), base_url=url) as client:
        response = await client.get("/")
        assert response.content == b'{"ok":true}'
        assert (response.is_closed, response.is_stream_consumed, response.num_bytes_downloaded) == (True, True, 11)
        assert response.json() == {"ok": True}
        encoded = await client.get("/")
        assert encoded.json() == {"packed": True}
        assert encoded.num_bytes_downloaded == len(packed)


def test_aiohttp_is_imported_only_when_selected() -> None:
    """Idle memory: the default (native) transport does not load aiohttp."""
    script = (
        "import asyncio, sys\n"
        "from swarmgate.config import ProviderConfig\n"
        "from swarmgate.http import make_client\n"
        "async def main():\n"
        "    client = make_client(ProviderConfig(type='openai'), base_url='http://127.0.0.1:1')\n"
        "    await client.aclose()\n"
        "    print(type(client._transport).__name__, 'aiohttp' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    env_free = {k: v for k, v in os.environ.items() if k != TRANSPORT_ENV}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env_free)
    assert out.stdout.split() == ["NativeTransport", "False"]
