"""What the gateway publishes for plugin routes (``manager.extensions["gateway"]``):
the admin-key rule with the keys in force after a config reload, the admin
actor, readiness while starting and draining, OpenAPI entries; and the clear
404 of a plugin endpoint whose plugin is not installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from openapi_spec_validator import validate
from server_testkit import ADMIN_KEY, TEAM_A_KEY, Upstreams, gateway_config
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from swarmgate import PluginError, ProviderManager, hookimpl
from swarmgate.logs import fingerprint
from swarmgate.testing import FakeUpstream, ScriptedReply
from swarmgate_server import GATEWAY_EXTENSION, GatewayError, GatewayService, create_app, run_gateway

NEW_ADMIN_KEY = "sk-admin-rotated-9876543210fedcba"
PROBE_DOC = {"get": {"summary": "A plugin's probe", "tags": ["admin"], "responses": {"200": {"description": "OK"}}}}


class ProbeRoutes:
    """A plugin with a route under /admin/ (guarded by the gateway) and one
    outside it that applies the gateway's rules itself, as the dashboard does."""

    def __init__(self) -> None:
        self.seen: list[GatewayService] = []

    @hookimpl
    def gateway_routes(self, manager: ProviderManager) -> list[Any]:
        gateway = manager.extensions[GATEWAY_EXTENSION]
        assert isinstance(gateway, GatewayService)
        self.seen.append(gateway)

        async def admin_probe(request: Request) -> Response:
            return JSONResponse({"actor": gateway.admin_actor(request), "draining": gateway.draining})

        async def open_probe(request: Request) -> Response:
            try:
                gateway.require_ready()
                gateway.require_admin(request, what="the probe")
            except GatewayError as error:
                return gateway.error_response(error)
            return JSONResponse({"ok": True})

        gateway.document("/admin/probe", PROBE_DOC)
        return [Route("/admin/probe", admin_probe), Route("/probe", open_probe)]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_plugin_routes_follow_the_keys_in_force_after_a_reload(upstreams: Upstreams, tmp_path: Path) -> None:
    config = gateway_config(upstreams, adminKey=ADMIN_KEY, apiKeys=[{"key": TEAM_A_KEY, "name": "team-a"}])
    path = tmp_path / "swarmgate.json"
    path.write_text(json.dumps(config))
    probe = ProbeRoutes()
    with run_gateway(path, plugins=[probe]) as gateway, httpx.Client(base_url=gateway.url, timeout=10) as http:
        (service,) = probe.seen
        assert gateway.app.manager.extensions[GATEWAY_EXTENSION] is service
        assert (service.ready, service.draining) == (True, False)
        for route in ("/probe", "/admin/probe"):
            assert code(http.get(route)) == (401, "missing_api_key")
            assert code(http.get(route, headers=bearer("sk-unknown-key-000000"))) == (401, "invalid_api_key")
            assert code(http.get(route, headers=bearer(TEAM_A_KEY))) == (403, "admin_only")
            assert http.get(route, headers={"x-api-key": ADMIN_KEY}).status_code == 200
        assert http.get("/admin/probe", headers=bearer(ADMIN_KEY)).json() == {
            "actor": fingerprint(ADMIN_KEY),
            "draining": False,
        }
        assert "needs the admin key" in http.get("/probe").json()["error"]["message"]

        config["server"]["adminKey"] = NEW_ADMIN_KEY
        path.write_text(json.dumps(config))
        assert http.post("/admin/config/reload", headers=bearer(ADMIN_KEY)).status_code == 200
        for route in ("/probe", "/admin/probe", "/admin/status"):
            assert code(http.get(route, headers=bearer(ADMIN_KEY))) == (401, "invalid_api_key"), route
            assert http.get(route, headers=bearer(NEW_ADMIN_KEY)).status_code == 200, route
        assert http.get("/admin/probe", headers=bearer(NEW_ADMIN_KEY)).json()["actor"] == fingerprint(NEW_ADMIN_KEY)

        # Without an admin key, caller keys close the admin routes (the admin API's rule).
        del config["server"]["adminKey"]
        path.write_text(json.dumps(config))
        assert http.post("/admin/config/reload", headers=bearer(NEW_ADMIN_KEY)).status_code == 200
        assert code(http.get("/probe", headers=bearer(TEAM_A_KEY))) == (403, "admin_disabled")
        assert code(http.get("/admin/probe")) == (403, "admin_disabled")

        document = http.get("/openapi.json").json()
        assert document["paths"]["/admin/probe"] == PROBE_DOC
        validate(document)
    assert GATEWAY_EXTENSION not in gateway.app.manager.extensions


def test_a_plugin_endpoint_without_its_plugin_is_a_clear_404(keyed_gateway: Any) -> None:
    with httpx.Client(base_url=keyed_gateway.url) as http:
        assert code(http.delete("/admin/callers/alice/records")) == (401, "missing_api_key")  # behind the admin key
        missing = http.delete("/admin/callers/alice/records", headers=bearer(ADMIN_KEY))
        assert code(missing) == (404, "plugin_not_installed")
        assert "swarmgate-compliance" in missing.json()["error"]["message"]
        assert "/admin/callers/{caller}/records" not in http.get("/openapi.json").json()["paths"]


async def eventually(condition: Any) -> None:
    """Poll ``condition`` every 10 ms until it holds (at most 5 s)."""
    for _ in range(500):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError("the condition never held")


class Asgi:
    """Requests straight into the ASGI app (no server)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        done = anyio.Event()

        async def receive() -> dict[str, Any]:
            if not messages:
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "scheme": "http",
            "query_string": b"",
            "headers": raw,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "http_version": "1.1",
        }
        await self.app(scope, receive, send)
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        return int(messages[0]["status"]), orjson.loads(body)


@pytest.mark.anyio
async def test_plugin_routes_answer_503_while_the_gateway_drains(anyio_backend: str) -> None:
    probe = ProbeRoutes()
    async with FakeUpstream() as upstream:
        upstream.enqueue(ScriptedReply(content="one two three four", stall_after=1))
        config = {
            "providers": {"up": {"type": "openai", "endpoint": upstream.url, "models": {"gpt-4o-mini": {}}}},
            "server": {"shutdownTimeout": 5000},
        }
        app = create_app(config, plugins=[probe])
        asgi = Asgi(app)
        stop = anyio.Event()
        stream_gone = anyio.Event()
        chunks: list[bytes] = []

        async def serve() -> None:
            async with app.running():
                await stop.wait()

        async def stream() -> None:
            # A stream that stays in flight (the upstream stalls) until its client leaves.
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if not sent:
                    sent = True
                    body = orjson.dumps(
                        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
                    )
                    return {"type": "http.request", "body": body, "more_body": False}
                await stream_gone.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                chunks.append(message.get("body", b""))

            scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
            await app(scope, receive, send)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(serve)
                await eventually(lambda: app.ready)
                (service,) = probe.seen
                assert app.manager.extensions[GATEWAY_EXTENSION] is service
                assert await asgi.get("/probe") == (200, {"ok": True})  # open: no key configured
                group.start_soon(stream)
                await eventually(lambda: any(b"one" in c for c in chunks))
                stop.set()  # leave running(): the gateway drains the stream in flight
                await eventually(lambda: service.draining)
                assert (service.ready, service.inflight) == (False, 1)
                for route in ("/probe", "/admin/probe", "/admin/status"):
                    status, body = await asgi.get(route)
                    assert (status, body["error"]["code"]) == (503, "unavailable"), route
                stream_gone.set()  # the client leaves; the drain ends
        assert GATEWAY_EXTENSION not in app.manager.extensions


def test_document_refuses_bad_items() -> None:
    app = create_app()
    service = app.service
    with pytest.raises(PluginError, match="must start with '/'"):
        service.document("admin/x", PROBE_DOC)
    with pytest.raises(PluginError, match="unknown key"):
        service.document("/admin/x", {"fetch": {}})
    with pytest.raises(PluginError, match="already has the path"):
        service.document("/admin/status", PROBE_DOC)
    service.document("/admin/x", PROBE_DOC)
    with pytest.raises(PluginError, match="already has the path"):
        service.document("/admin/x", PROBE_DOC)
    assert dict(service.documented) == {"/admin/x": PROBE_DOC}
