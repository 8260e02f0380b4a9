"""The admin endpoints behind the CLI's ``--url`` mode: the advisor's
bottlenecks, routing replay and windowed recommendations, what a cache
invalidation reports, and the admin client's one-line reasons."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from server_testkit import Upstreams, gateway_config

from swarmgate import ProviderManager, hookimpl
from swarmgate_server import run_gateway
from swarmgate_server.client import AdminAPIError, admin_request


class FakeReplay:
    def __init__(self, target: str, lookback: float | None) -> None:
        self.target = target
        self.lookback = lookback

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "lookback": self.lookback, "candidates": []}


class FakeAdvisor:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def bottlenecks(self, lookback_ms: float | None = None) -> dict[str, Any]:
        self.calls.append(("bottlenecks", lookback_ms))
        return {"requests": 7, "findings": []}

    async def replay(self, target: str, lookback_ms: float | None = None) -> FakeReplay:
        self.calls.append(("replay", (target, lookback_ms)))
        return FakeReplay(target, lookback_ms)

    async def recommendations(self, lookback_ms: float | None = None) -> list[dict[str, Any]]:
        self.calls.append(("recommendations", lookback_ms))
        return [{"type": "caching", "description": "turn the cache on"}]


class FakeCache:
    backend = "redis"

    class settings:  # mirrors ResponseCache.settings
        namespace = "team-a"

    async def invalidate(self, **selectors: Any) -> int:
        return 3


class Publish:
    def __init__(self, advisor: FakeAdvisor) -> None:
        self.advisor = advisor

    @hookimpl
    def plugin_setup(self, manager: ProviderManager) -> None:
        manager.extensions["advisor"] = self.advisor
        manager.extensions["cache"] = FakeCache()


def test_bottlenecks_replay_and_windowed_recommendations(upstreams: Upstreams) -> None:
    advisor = FakeAdvisor()
    with run_gateway(gateway_config(upstreams), plugins=[Publish(advisor)]) as gateway:
        admin = httpx.Client(base_url=gateway.url)
        assert admin.get("/admin/analyze/bottlenecks").json() == {"requests": 7, "findings": []}
        assert admin.get("/admin/analyze/bottlenecks", params={"window": "6h"}).status_code == 200
        replay = admin.get("/admin/optimize/routing", params={"target": "cost", "window": "2d"}).json()
        assert replay == {"target": "cost", "lookback": 2 * 86_400_000.0, "candidates": []}
        refused = admin.get("/admin/optimize/routing", params={"target": "speed"})
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "target"
        bad = admin.get("/admin/analyze/bottlenecks", params={"window": "a week"})
        assert bad.status_code == 400
        assert "'window' must be <n>[smhd]" in bad.json()["error"]["message"]
        answer = admin.get("/admin/recommendations", params={"window": "30m"}).json()
        assert answer == {"recommendations": [{"type": "caching", "description": "turn the cache on"}]}
        assert advisor.calls == [
            ("bottlenecks", None),
            ("bottlenecks", 6 * 3_600_000.0),
            ("replay", ("cost", 2 * 86_400_000.0)),
            ("recommendations", 30 * 60_000.0),
        ]
        cleared = admin.post("/admin/cache/invalidate", json={"all": True}).json()
        assert cleared == {"invalidated": 3, "backend": "redis", "namespace": "team-a"}


def test_without_an_advisor_the_answer_says_what_to_install(gateway: Any) -> None:
    admin = httpx.Client(base_url=gateway.url)
    for path, params in (
        ("/admin/analyze/bottlenecks", {}),
        ("/admin/optimize/routing", {"target": "reliability"}),
        ("/admin/recommendations", {"window": "1d"}),
    ):
        response = admin.get(path, params=params)
        assert response.status_code == 404, path
        assert "swarmgate-advisor" in response.json()["error"]["message"], path
    document = admin.get("/openapi.json").json()
    assert {"/admin/analyze/bottlenecks", "/admin/optimize/routing"} <= set(document["paths"])


def test_an_unreachable_gateway_is_one_short_reason() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(AdminAPIError) as caught:
        admin_request("GET", "/admin/status", url=url)
    assert str(caught.value) == f"cannot reach the gateway at {url}: connection refused"
    assert caught.value.status is None
