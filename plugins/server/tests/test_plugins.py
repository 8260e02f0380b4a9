"""What other plugins bring to the gateway: routes mounted through the
``gateway_routes`` hook (the dashboard's way in), and answers produced by a
``before_request`` hook (a cache hit) reported as such in the headers."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import httpx
import openai
import pytest
from server_testkit import ADMIN_KEY, Upstreams, gateway_config
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from swarmgate import (
    CompletionRequest,
    CompletionResponse,
    PluginError,
    ProviderManager,
    RequestContext,
    TokenUsage,
    hookimpl,
)
from swarmgate_server import create_app, run_gateway

MESSAGES: Any = [{"role": "user", "content": "cached please"}]


class Dashboard:
    """A plugin adding a page, as the dashboard does."""

    def __init__(self, path: str = "/dashboard") -> None:
        self.path = path

    @hookimpl
    def gateway_routes(self, manager: ProviderManager) -> list[Any]:
        async def page(request: Request) -> PlainTextResponse:
            return PlainTextResponse(f"{len(manager.providers())} providers")

        return [Route(self.path, page)]


class AnswerFromCache:
    """Answers "cached please" itself, as a cache plugin's hit does."""

    @hookimpl
    def before_request(self, request: CompletionRequest, context: RequestContext) -> CompletionResponse | None:
        if request.messages[-1].content != "cached please":
            return None
        return CompletionResponse(
            content="from the cache",
            provider="primary",
            model="gpt-4o-mini",
            cost=0.0,
            latency=0.1,
            tokens=TokenUsage.of(2, 3),
            finish_reason="stop",
            id=context.id,
            cached=True,
        )


def test_plugin_routes_are_mounted(upstreams: Upstreams) -> None:
    with run_gateway(gateway_config(upstreams), plugins=[Dashboard()]) as gateway:
        response = httpx.get(gateway.url + "/dashboard")
        assert response.status_code == 200
        assert response.text == "4 providers"


def test_a_plugin_route_may_not_take_the_gateways_paths(upstreams: Upstreams) -> None:
    for path in ("/admin/providers", "/v1/embeddings", "/health/extra", "/admin"):
        with (
            pytest.raises(PluginError, match="collides"),
            run_gateway(gateway_config(upstreams), plugins=[Dashboard(path)]),
        ):
            pass


def test_plugin_admin_routes_are_behind_the_admin_key(upstreams: Upstreams) -> None:
    config = gateway_config(upstreams, adminKey=ADMIN_KEY)
    with run_gateway(config, plugins=[Dashboard("/admin/keys")]) as gateway:
        assert httpx.get(gateway.url + "/admin/keys").status_code == 401
        allowed = httpx.get(gateway.url + "/admin/keys", headers={"authorization": "Bearer " + ADMIN_KEY})
        assert allowed.status_code == 200
        assert allowed.text == "4 providers"


def test_cache_hits_are_reported(upstreams: Upstreams) -> None:
    with run_gateway(gateway_config(upstreams), plugins=[AnswerFromCache()]) as gateway:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        assert raw.parse().choices[0].message.content == "from the cache"
        assert raw.headers["x-swarmgate-cache"] == "hit"
        assert raw.headers["x-swarmgate-attempts"] == "0"
        assert raw.headers["x-swarmgate-cost"] == "0.0000000000"
        raw_stream = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        assert raw_stream.headers["x-swarmgate-cache"] == "hit"
        assert raw_stream.headers["x-swarmgate-attempts"] == "0"
        text = "".join(c.choices[0].delta.content or "" for c in raw_stream.parse() if c.choices)
        assert text == "from the cache"
        assert not upstreams.primary.completions
        live = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "live"}], stream=True
        )
        assert live.headers["x-swarmgate-cache"] == "miss"
        assert live.headers["x-swarmgate-attempts"] == "1"


class OwnsATaskGroup:
    """Enters a task group in plugin_setup and leaves it in plugin_shutdown,
    as the health plugin does: the gateway must start and stop the manager
    so that these nest."""

    def __init__(self) -> None:
        self.group: anyio.abc.TaskGroup | None = None
        self.closed = False
        self.error: BaseException | None = None

    @hookimpl
    async def plugin_setup(self, manager: ProviderManager) -> None:
        self.group = anyio.create_task_group()
        await self.group.__aenter__()
        self.group.start_soon(anyio.sleep_forever)

    @hookimpl
    async def plugin_shutdown(self, manager: ProviderManager) -> None:
        assert self.group is not None
        self.group.cancel_scope.cancel()
        try:
            await self.group.__aexit__(None, None, None)
            self.closed = True
        except BaseException as exc:  # noqa: BLE001 - recorded for the test
            self.error = exc


def test_plugins_with_task_groups_start_and_stop_cleanly(upstreams: Upstreams) -> None:
    plugin = OwnsATaskGroup()
    with run_gateway(gateway_config(upstreams), plugins=[plugin]) as gateway:
        assert httpx.get(gateway.url + "/health").status_code == 200
    assert plugin.error is None
    assert plugin.closed


class TextExporter:
    """A metrics exporter as the prometheus plugin provides one."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    async def render(self, manager: ProviderManager) -> str:
        return f"swarmgate_providers {len(manager.providers())}\n"


def test_metrics_through_an_exporter(upstreams: Upstreams) -> None:
    manager = ProviderManager(gateway_config(upstreams), drivers={"swarmgate.exporters": {"prometheus": TextExporter}})
    with run_gateway(app=create_app(manager=manager)) as gateway:
        response = httpx.get(gateway.url + "/metrics")
        assert response.status_code == 200
        assert response.text == "swarmgate_providers 4\n"
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        exported = httpx.get(gateway.url + "/admin/export", params={"format": "prometheus"})
        assert exported.text == "swarmgate_providers 4\n"
    assert manager.providers() == []  # initialized by the gateway, so closed by it on its own loop
