"""Connections of the ``websocket`` provider type: the reuse policy, dropped
sockets, pings, silent sockets, TLS, and the driver used directly."""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from swarmgate import (
    CompletionRequest,
    FinishEvent,
    ModelConfig,
    ProviderConfig,
    ProviderConnectionError,
    ProviderEvent,
    ProviderManager,
    ProviderTimeoutError,
    SwarmgateError,
    TextDelta,
    TokenUsage,
    UsageEvent,
    parse_section,
)
from swarmgate.provider import ProviderCall
from swarmgate.testing import ScriptedReply, attempt_error
from swarmgate.testing.websocket_upstream import Disconnect, FakeWebSocketUpstream, ScriptedClose
from swarmgate_websocket import WebSocketProvider, WebSocketSettings

MODEL = "gpt-4o-mini"
KEY = "sk-ws-test-0123456789abcdef"
TLS = Path(__file__).parent / "tls"
CLEAN = Disconnect(1000, "", clean=True)


def manager_for(url: str, **provider: Any) -> ProviderManager:
    """A manager with one ``websocket`` provider ``ws`` at ``url``."""
    config: dict[str, Any] = {
        "type": "websocket",
        "url": url,
        "apiKey": KEY,
        "timeout": 2000,
        "pingInterval": 0,
        "models": {MODEL: {"costPerToken": 0.001}},
    }
    config.update(provider)
    return ProviderManager({"providers": {"ws": config}})


# -- reuse -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_keep_open_reuses_one_connection_and_closes_it_at_the_end() -> None:
    async with FakeWebSocketUpstream() as server:
        async with manager_for(server.url, connection="keep-open") as manager:
            for i in range(3):
                server.enqueue(ScriptedReply(content=f"answer {i}"))
                assert (await manager.complete(prompt=f"q{i}", model=MODEL)).content == f"answer {i}"
            assert server.connections == 1
            assert server.open_connections == 1, "the idle connection stays open"
        # Closing the manager closes the idle connection cleanly.
        with anyio.fail_after(2):
            await server.wait_open_connections(0)
    assert server.disconnects == [CLEAN]


@pytest.mark.anyio
async def test_keep_open_concurrent_requests_and_the_idle_limit() -> None:
    async with (
        FakeWebSocketUpstream() as server,
        manager_for(server.url, connection="keep-open", maxIdleConnections=2) as manager,
    ):
        server.enqueue(*(ScriptedReply(content=f"answer {i}", delay=0.05) for i in range(4)))
        results: list[str] = []

        async def ask(i: int) -> None:
            results.append((await manager.complete(prompt=f"q{i}", model=MODEL)).content)

        async with anyio.create_task_group() as task_group:
            for i in range(4):
                task_group.start_soon(ask, i)
        assert sorted(results) == [f"answer {i}" for i in range(4)]
        assert server.connections == 4, "concurrent requests do not share a connection"
        with anyio.fail_after(2):
            await server.wait_open_connections(2)
        assert server.open_connections == 2, "two are kept idle, the others closed"
        await manager.complete(prompt="later", model=MODEL)
        assert server.connections == 4
    assert server.disconnects == [CLEAN] * 4


@pytest.mark.anyio
@pytest.mark.parametrize("code", [1001, 1006], ids=["close-frame", "dropped"])
async def test_a_dropped_idle_socket_is_replaced(code: int) -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url, connection="keep-open") as manager:
        first = await manager.complete(prompt="one", model=MODEL)
        await server.close_connections(code)
        second = await manager.complete(prompt="two", model=MODEL)
        assert server.connections == 2
        assert len(server.completions) == 2, "the request went once, on the new connection"
    assert first.content == second.content == server.default.content


@pytest.mark.anyio
async def test_a_reused_socket_that_dies_on_the_request_is_retried_once() -> None:
    """The server closes the idle connection just as the request arrives
    (before any answer): the request is sent again on a new connection."""
    async with FakeWebSocketUpstream() as server, manager_for(server.url, connection="keep-open") as manager:
        await manager.complete(prompt="one", model=MODEL)
        server.enqueue(ScriptedClose(1001, "going away", head=False), ScriptedReply(content="second try"))
        response = await manager.complete(prompt="two", model=MODEL)
        assert server.connections == 2
    assert response.content == "second try"
    assert [r.json["messages"][-1]["content"] for r in server.completions] == ["one", "two", "two"]


@pytest.mark.anyio
async def test_a_new_socket_that_dies_on_the_request_is_not_retried() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedClose(1001, "going away", head=False))
        with pytest.raises(SwarmgateError) as info:
            await manager.complete(prompt="one", model=MODEL)
    error = attempt_error(info.value)
    assert type(error) is ProviderConnectionError
    assert "1001" in str(error)
    assert len(server.completions) == 1


@pytest.mark.anyio
async def test_stale_messages_on_an_idle_socket_are_dropped() -> None:
    """A message that arrives after the done marker (here a late usage
    report) belongs to no request: it must not leak into the next answer."""
    late = ScriptedReply(body=b'{"choices":[{"index":0,"delta":{"content":"first"},"finish_reason":"stop"}]}\n[DONE]\n')
    async with FakeWebSocketUpstream() as server, manager_for(server.url, connection="keep-open") as manager:
        server.enqueue(late)
        first = await manager.complete(prompt="one", model=MODEL)
        conn = next(iter(manager.provider("ws")._idle.values()))[0]  # type: ignore[attr-defined]
        # Push an unsolicited message to the idle client through the fake's own connection.
        (server_conn,) = server._open
        await server_conn.send_message(b'{"choices":[{"index":0,"delta":{"content":"STALE"}}]}')
        for _ in range(100):  # until the stale message has reached the client's socket
            if conn._pending_input():
                break
            await anyio.sleep(0.01)
        else:
            raise AssertionError("the stale message never arrived")
        second = await manager.complete(prompt="two", model=MODEL)
        assert server.connections == 1
    assert first.content == "first"
    assert second.content == server.default.content


# -- pings ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_pings_while_waiting_for_a_slow_answer() -> None:
    async with FakeWebSocketUpstream() as server, manager_for(server.url, pingInterval=40) as manager:
        server.enqueue(ScriptedReply(content="slow but fine", delay=0.25))
        response = await manager.complete(prompt="Hi", model=MODEL)
        pings = server.pings
    assert response.content == "slow but fine"
    assert pings >= 3


@pytest.mark.anyio
async def test_idle_connection_is_pinged_before_reuse() -> None:
    async with (
        FakeWebSocketUpstream() as server,
        manager_for(server.url, connection="keep-open", pingInterval=50) as manager,
    ):
        await manager.complete(prompt="one", model=MODEL)
        assert server.pings == 0
        await anyio.sleep(0.08)
        await manager.complete(prompt="two", model=MODEL)
        assert server.pings == 1
        assert server.connections == 1


# -- the driver on its own ---------------------------------------------------------------


def driver(url: str, timeout: float, **settings: Any) -> WebSocketProvider:
    """The driver without a manager: no kernel deadline around it."""
    config = ProviderConfig(type="websocket", api_key=KEY, timeout=timeout * 1000, models={MODEL: ModelConfig()})
    parsed = parse_section(WebSocketSettings, {"url": url, "pingInterval": 0, **settings}, "providers.ws")
    return WebSocketProvider("ws", config, parsed)


def call(timeout: float, *, stream: bool = False) -> ProviderCall:
    request = CompletionRequest.create("Hello?", model=MODEL, stream=stream)
    return ProviderCall(request, MODEL, MODEL, ModelConfig(), timeout)


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["first", "middle"])
async def test_the_driver_itself_never_hangs_on_a_silent_socket(where: str) -> None:
    reply = ScriptedReply(delay=5.0) if where == "first" else ScriptedReply(content="one two three", stall_after=1)
    async with FakeWebSocketUpstream() as server:
        provider = driver(server.url, 0.3)
        await provider.start()
        server.enqueue(reply)
        events: list[ProviderEvent] = []

        async def consume() -> None:
            async with contextlib.aclosing(provider.stream(call(0.3, stream=True))) as stream:
                async for event in stream:
                    events.append(event)

        started = time.perf_counter()
        with pytest.raises(ProviderTimeoutError) as info:
            await consume()
        elapsed = time.perf_counter() - started
        await provider.aclose()
    assert 0.25 < elapsed < 0.8
    assert "within 0.3s" in str(info.value)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ([] if where == "first" else ["one"])


@pytest.mark.anyio
async def test_the_driver_streams_no_usage_when_none_is_reported() -> None:
    body = b'{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n[DONE]'
    async with FakeWebSocketUpstream() as server:
        provider = driver(server.url, 2.0)
        await provider.start()
        server.enqueue(ScriptedReply(body=body), ScriptedReply(content="counted", usage=(4, 1)))
        first = [e async for e in provider.stream(call(2.0, stream=True))]
        second = [e async for e in provider.stream(call(2.0, stream=True))]
        reply = await provider.complete(call(2.0))
        await provider.aclose()
    assert not any(isinstance(e, UsageEvent) for e in first)
    assert first[-1] == FinishEvent("stop")
    assert [e for e in second if isinstance(e, UsageEvent)] == [UsageEvent(TokenUsage.of(4, 1))]
    assert reply.content == server.default.content
    assert reply.tokens.total > 0


# -- TLS -----------------------------------------------------------------------------------


@pytest.fixture
def tls_server_context(monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """The test certificate (self-signed for 127.0.0.1) as the server's, and
    as the only CA the client trusts (``SSL_CERT_FILE``)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS / "cert.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    return context


@pytest.mark.anyio
async def test_wss(tls_server_context: ssl.SSLContext) -> None:
    async with FakeWebSocketUpstream(ssl_context=tls_server_context) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        async with manager_for(server.url, connection="keep-open") as manager:
            server.enqueue(ScriptedReply(content="over TLS", usage=(2, 2)))
            response = await manager.complete(prompt="Hi", model=MODEL)
            events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
            status = (await manager.check_health("ws"))["ws"]
            assert server.connections == 2, "the health probe opens its own connection"
    assert response.content == "over TLS"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == server.default.content
    assert status.healthy, status.detail
    assert json.loads(server.completions[0].body)["messages"][-1]["content"] == "Hi"


@pytest.mark.anyio
async def test_wss_with_an_untrusted_certificate(
    tls_server_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS / "missing.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(TLS / "missing"))
    async with FakeWebSocketUpstream(ssl_context=tls_server_context) as server, manager_for(server.url) as manager:
        with pytest.raises(SwarmgateError) as info:
            await manager.complete(prompt="Hi", model=MODEL)
    error = attempt_error(info.value)
    assert type(error) is ProviderConnectionError
    assert "certificate" in str(error).lower()


@pytest.mark.anyio
@pytest.mark.parametrize("connection", ["per-request", "keep-open"])
async def test_server_that_closes_after_each_answer(connection: str) -> None:
    """Some APIs close the socket right after the done marker: the answer
    stands, and a kept connection that the server closed is not reused."""
    reply = ScriptedReply(content="ok", usage=(1, 1))
    async with FakeWebSocketUpstream() as server, manager_for(server.url, connection=connection) as manager:
        # head, "ok", then finish, usage and [DONE]; then the close frame.
        server.enqueue(ScriptedClose(1000, after=4, reply=reply), ScriptedClose(1000, after=4, reply=reply))
        first = await manager.complete(prompt="one", model=MODEL)
        second = await manager.complete(prompt="two", model=MODEL)
        assert server.connections == 2
    assert first.content == second.content == "ok"
    assert len(server.completions) == 2


@pytest.mark.anyio
async def test_debug_logging_never_shows_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeWebSocketUpstream() as server, manager_for(server.url, connection="keep-open") as manager:
        await manager.complete(prompt="Hi", model=MODEL)
        await manager.check_health("ws")
    assert KEY not in caplog.text
    assert "Authorization" not in caplog.text
