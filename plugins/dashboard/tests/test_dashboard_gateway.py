"""The feed follows the gateway it is served by (``manager.extensions["gateway"]``):
the admin key in force after a config reload, and 503 while the gateway drains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from dashboard_helpers import ADMIN_KEY, CALLER_KEY, MODEL, Upstreams, gateway_config

from swarmgate.testing import ScriptedReply
from swarmgate_server import GATEWAY_EXTENSION, create_app, run_gateway

NEW_ADMIN_KEY = "sk-admin-dashboard-rotated-42"
FEED = "/dashboard/api/summary"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_feed_takes_the_admin_key_of_a_reloaded_config(upstreams: Upstreams, tmp_path: Path) -> None:
    config = gateway_config(
        upstreams, tmp_path / "usage.db", adminKey=ADMIN_KEY, apiKeys=[{"key": CALLER_KEY, "name": "team"}]
    )
    path = tmp_path / "swarmgate.json"
    path.write_text(json.dumps(config))
    with run_gateway(path) as running, httpx.Client(base_url=running.url, timeout=10) as client:
        assert client.get(FEED, headers=bearer(ADMIN_KEY)).status_code == 200
        config["server"]["adminKey"] = NEW_ADMIN_KEY
        path.write_text(json.dumps(config))
        assert client.post("/admin/config/reload", headers=bearer(ADMIN_KEY)).status_code == 200
        old = client.get(FEED, headers=bearer(ADMIN_KEY))
        assert (old.status_code, old.json()["error"]["code"]) == (401, "invalid_api_key")
        assert client.get(FEED, headers=bearer(NEW_ADMIN_KEY)).status_code == 200
        caller = client.get(FEED, headers=bearer(CALLER_KEY))
        assert (caller.status_code, caller.json()["error"]["code"]) == (403, "admin_only")
        assert "the dashboard needs the admin key" in client.get(FEED).json()["error"]["message"]


async def asgi_get(app: Any, path: str) -> tuple[int, dict[str, Any]]:
    """``GET path`` straight into the ASGI app."""
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "http_version": "1.1",
    }
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return int(messages[0]["status"]), orjson.loads(body)


async def eventually(condition: Any) -> None:
    """Poll ``condition`` every 10 ms until it holds (at most 5 s)."""
    for _ in range(500):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError("the condition never held")


@pytest.mark.anyio
async def test_the_feed_answers_503_while_the_gateway_drains(
    anyio_backend: str, upstreams: Upstreams, tmp_path: Path
) -> None:
    upstreams.primary.enqueue(ScriptedReply(content="one two three four", stall_after=1))
    app = create_app(gateway_config(upstreams, tmp_path / "usage.db"))
    stop = anyio.Event()
    client_gone = anyio.Event()
    chunks: list[bytes] = []

    async def serve() -> None:
        async with app.running():
            await stop.wait()

    async def stream() -> None:
        """A stream that stays in flight (the upstream stalls) until its client leaves."""
        body = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True})
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await client_gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            chunks.append(message.get("body", b""))

        await app({"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}, receive, send)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(serve)
            await eventually(lambda: app.ready)
            status, document = await asgi_get(app, FEED)
            assert status == 200
            assert document["providers"]
            group.start_soon(stream)
            await eventually(lambda: any(b"one" in c for c in chunks))
            stop.set()  # the gateway starts shutting down: it drains the stream in flight
            gateway = app.manager.extensions[GATEWAY_EXTENSION]
            await eventually(lambda: gateway.draining)
            status, document = await asgi_get(app, FEED)
            assert (status, document["error"]["code"]) == (503, "unavailable")
            client_gone.set()
