"""The ASGI application in-process, on asyncio and on trio: the gateway's
code uses anyio only, so any ASGI server on either loop can run it."""

from __future__ import annotations

from typing import Any

import anyio
import orjson
import pytest
from server_testkit import HangingUpstream, Recorder

from swarmgate import RequestCancelledError
from swarmgate.testing import FakeUpstream, ScriptedReply
from swarmgate_server import create_app

pytestmark = pytest.mark.anyio

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def config(url: str) -> dict[str, Any]:
    return {
        "providers": {"up": {"type": "openai", "endpoint": url, "models": {"gpt-4o-mini": {"costPerToken": 0.000001}}}},
        "server": {"bodyTimeout": 400},
    }


async def eventually(condition: Any) -> None:
    """Poll ``condition`` every 10 ms until it holds (at most 5 s)."""
    for _ in range(500):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError("the condition never held")


class Client:
    """Calls the ASGI app like a server would; ``disconnect`` is set to make
    ``receive`` report that the client went away."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.disconnect = anyio.Event()
        self.messages: list[dict[str, Any]] = []
        self.body_chunks = 0

    async def call(self, path: str, body: bytes | None, *, chunks: list[bytes] | None = None) -> None:
        pieces = list(chunks) if chunks is not None else [body or b""]

        async def receive() -> dict[str, Any]:
            if pieces:
                piece = pieces.pop(0)
                if piece == b"<stall>":
                    await anyio.sleep(10)
                return {"type": "http.request", "body": piece, "more_body": bool(pieces)}
            await self.disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            self.messages.append(message)
            if message["type"] == "http.response.body":
                self.body_chunks += 1
                if not message.get("more_body"):
                    self.disconnect.set()

        headers = [(b"content-type", b"application/json")]
        if body is not None:
            headers.append((b"content-length", str(len(body)).encode()))
        scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "query_string": b""}
        await self.app(scope, receive, send)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")


async def test_json_and_stream_in_process(anyio_backend: str) -> None:
    async with FakeUpstream() as upstream:
        app = create_app(config(upstream.url))
        async with app.running():
            client = Client(app)
            await client.call("/v1/chat/completions", orjson.dumps(BODY))
            assert client.status == 200
            assert orjson.loads(client.body())["choices"][0]["message"]["content"] == "Hello from the fake upstream"
            headers = dict(client.messages[0]["headers"])
            assert headers[b"x-swarmgate-provider"] == b"up"
            streamed = Client(app)
            await streamed.call("/v1/messages", orjson.dumps({**BODY, "max_tokens": 9, "stream": True}))
            assert streamed.status == 200
            assert streamed.body().endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
            assert streamed.body_chunks > 3  # sent piece by piece


async def test_disconnect_cancels_the_upstream_in_process(anyio_backend: str) -> None:
    recorder = Recorder()
    async with FakeUpstream() as upstream:
        upstream.enqueue(ScriptedReply(content="one two three four", stall_after=2))
        app = create_app(config(upstream.url), plugins=[recorder])
        async with app.running():
            client = Client(app)
            with anyio.fail_after(5):
                async with anyio.create_task_group() as group:
                    group.start_soon(client.call, "/v1/chat/completions", orjson.dumps({**BODY, "stream": True}))
                    await eventually(lambda: b"two" in client.body())
                    client.disconnect.set()
                await eventually(lambda: upstream.disconnects)
            ((_, error, attempts),) = recorder.failed
            assert isinstance(error, RequestCancelledError)
            assert attempts[-1].error_kind == "cancelled"
            assert attempts[-1].cost > 0
            assert app.inflight == 0


async def test_disconnect_cancels_a_non_streamed_request_in_process(anyio_backend: str) -> None:
    recorder = Recorder()
    with HangingUpstream() as upstream:
        app = create_app(config(upstream.url), plugins=[recorder])
        async with app.running():
            client = Client(app)
            with anyio.fail_after(5):
                async with anyio.create_task_group() as group:
                    group.start_soon(client.call, "/v1/chat/completions", orjson.dumps(BODY))
                    await eventually(lambda: upstream.requests == 1)
                    client.disconnect.set()
                await eventually(lambda: upstream.disconnects == 1)  # the upstream call was cancelled
            assert client.messages == []  # nobody left to answer
            ((request, error, attempts),) = recorder.failed
            assert not request.stream
            assert isinstance(error, RequestCancelledError)
            assert attempts[-1].error_kind == "cancelled"
            assert app.inflight == 0
            assert not app._unwatched


async def test_body_limits_in_process(anyio_backend: str) -> None:
    async with FakeUpstream() as upstream:
        app = create_app(config(upstream.url))
        async with app.running():
            slow = Client(app)
            with anyio.fail_after(5):
                await slow.call("/v1/chat/completions", None, chunks=[b'{"model":', b"<stall>", b"}"])
            assert slow.status == 408
            big = Client(app)
            await big.call("/v1/chat/completions", None, chunks=[b"x" * 3_000_000, b"x" * 3_000_000])
            assert big.status == 413
            assert not upstream.requests
