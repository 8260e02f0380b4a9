"""The dashboard's routes on a real gateway (uvicorn on loopback, fake
upstreams): the page and its assets, the feed against the analytics API,
and access control like the admin API's."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_helpers import ADMIN_KEY, CALLER_KEY, Upstreams, chat, gateway_config, wait_for

from swarmgate.testing import ScriptedReply
from swarmgate_server import RunningGateway, run_gateway

STATIC = Path(__file__).resolve().parents[1] / "swarmgate_dashboard" / "static"


@pytest.fixture
def gateway(upstreams: Upstreams, tmp_path: Path) -> Iterator[RunningGateway]:
    with run_gateway(gateway_config(upstreams, tmp_path / "usage.db")) as running:
        yield running


@pytest.fixture
def client(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        yield client


def summary(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.get("/dashboard/api/summary", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    document: dict[str, Any] = response.json()
    return document


def test_the_page_and_every_asset_it_loads(client: httpx.Client) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-cache"
    assets = re.findall(r'(?:src|href)="(dashboard/static/[^"]+)"', page.text)
    assert sorted(assets) == [
        "dashboard/static/dashboard.css",
        "dashboard/static/dashboard.js",
        "dashboard/static/vendor/uplot/uPlot.iife.min.js",
        "dashboard/static/vendor/uplot/uPlot.min.css",
    ]
    for asset in assets:
        response = client.get("/" + asset)
        assert response.status_code == 200, asset
        kind = "text/css" if asset.endswith(".css") else "text/javascript"
        assert response.headers["content-type"].startswith(kind), asset
        assert response.content == (STATIC / asset.removeprefix("dashboard/static/")).read_bytes()
    assert client.get("/dashboard/static/vendor/uplot/LICENSE").text.startswith("The MIT License")
    assert client.get("/dashboard/static/nothing.js").status_code == 404


def test_nothing_is_loaded_from_elsewhere() -> None:
    """No CDN: the page, the script and the styles name no other origin."""
    for name in ("index.html", "dashboard.js", "dashboard.css"):
        text = (STATIC / name).read_text()
        assert not re.search(r"https?://", text), name
    assert not re.search(r"(?:src|href)=[\"']?//", (STATIC / "index.html").read_text())


def test_a_trailing_slash_redirects_to_the_page(client: httpx.Client) -> None:
    response = client.get("/dashboard/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/dashboard"


def test_the_feed_reports_what_the_analytics_api_reports(upstreams: Upstreams, client: httpx.Client) -> None:
    for i in range(6):
        assert chat(client, f"question {i % 4}").status_code == 200  # two of them cache hits
    assert chat(client, "streamed", stream=True).status_code == 200
    analytics = client.get("/admin/analytics").json()
    document = summary(client)
    assert document["window"] is None
    mine = document["analytics"]
    assert mine["totals"] == analytics["totals"]
    assert mine["totals"]["requests"] == 7
    assert mine["totals"]["cacheHits"] == 2
    assert mine["cache"] == analytics["cache"]
    for row, expected in zip(mine["providers"], analytics["providers"], strict=True):
        for key in ("name", "totalRequests", "successes", "failures", "totalCost", "p50Latency", "p95Latency"):
            assert row[key] == expected[key], key
    assert [b["name"] for b in mine["budgets"]] == ["global:daily"]

    # The chart points add up to the same traffic: differences of cumulative counters lose nothing.
    def caught_up() -> list[dict[str, Any]] | None:
        points: list[dict[str, Any]] = summary(client)["series"]["points"]
        return points if sum(p["requests"] for p in points) == 7 else None

    points = wait_for(caught_up, what="the chart points to add up to the traffic")
    assert sum(p["cacheHits"] for p in points) == 2
    assert math.isclose(sum(p["cost"] for p in points), analytics["totals"]["totalCost"], rel_tol=1e-9)
    primary = [p["providers"]["primary"] for p in points]
    assert sum(p["requests"] for p in primary) == analytics["providers"][0]["totalRequests"] == 5
    assert primary[-1]["spent"] == analytics["providers"][0]["totalCost"]
    assert any(p["ttft95"] is not None for p in primary)  # the streamed answer
    last = points[-1]["t"]
    assert summary(client, since=last)["series"]["points"] == []
    assert [p["t"] for p in summary(client, since=points[-2]["t"])["series"]["points"]][:1] == [last]


def test_a_window_is_passed_to_the_analytics(client: httpx.Client) -> None:
    chat(client, "hello")
    document = summary(client, window="5m")
    assert document["window"] == "5m"
    assert document["analytics"]["window"] == "5m"
    assert document["analytics"]["totals"]["requests"] == 1
    assert summary(client, window="all")["window"] is None
    bad = client.get("/dashboard/api/summary", params={"window": "soon"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "window"
    bad = client.get("/dashboard/api/summary", params={"since": "yesterday"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "since"


def test_provider_states_failovers_errors_and_alerts(upstreams: Upstreams, client: httpx.Client) -> None:
    assert chat(client, "all is well").headers["x-swarmgate-provider"] == "primary"
    upstreams.primary.default = ScriptedReply.error(503)
    for i in range(2):
        response = chat(client, f"primary is down {i}")
        assert response.headers["x-swarmgate-provider"] == "backup"
    document = summary(client)
    primary, backup = document["providers"]
    assert (primary["name"], primary["status"], primary["healthy"]) == ("primary", "down", False)
    assert primary["circuits"]["gpt-4o-mini"]["state"] == "open"
    assert primary["circuits"]["gpt-4o-mini"]["openUntil"] > document["generatedAt"]
    assert (backup["status"], backup["circuits"]["gpt-4o-mini"]["state"]) == ("up", "closed")

    upstreams.backup.default = ScriptedReply.error(500)
    assert chat(client, "everything is down").status_code == 502

    def kinds() -> list[str] | None:
        events = summary(client)["events"]
        found = [e["kind"] for e in events if e["kind"] != "alert"]
        return found if found.count("failover") == 2 and "error" in found else None

    wait_for(kinds, what="two failovers and an error in the feed")
    events = summary(client)["events"]
    assert [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)
    failover = next(e for e in events if e["kind"] == "failover")
    assert failover["message"] == "gpt-4o-mini: primary ✗ overloaded → backup answered"
    error = next(e for e in events if e["kind"] == "error")
    assert error["provider"] == "backup"
    assert error["status"] >= 500  # as the usage log records it
    assert error["severity"] == "critical"
    assert "backup ✗ server_error" in error["message"]
    alerts = {e["type"] for e in events if e["kind"] == "alert"}
    assert {"breaker_opened", "provider_down"} <= alerts


@pytest.fixture
def keyed(upstreams: Upstreams, tmp_path: Path) -> Iterator[httpx.Client]:
    config = gateway_config(
        upstreams, tmp_path / "usage.db", adminKey=ADMIN_KEY, apiKeys=[{"key": CALLER_KEY, "name": "team"}]
    )
    with run_gateway(config) as running, httpx.Client(base_url=running.url, timeout=10) as client:
        yield client


def test_the_feed_needs_the_admin_key_when_one_is_set(keyed: httpx.Client) -> None:
    assert keyed.get("/dashboard").status_code == 200  # the page holds no data
    assert keyed.get("/dashboard/static/dashboard.js").status_code == 200
    missing = keyed.get("/dashboard/api/summary")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    wrong = keyed.get("/dashboard/api/summary", headers={"Authorization": "Bearer sk-not-a-key-at-all"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_api_key")
    caller = keyed.get("/dashboard/api/summary", headers={"Authorization": f"Bearer {CALLER_KEY}"})
    assert (caller.status_code, caller.json()["error"]["code"]) == (403, "admin_only")
    assert keyed.get("/dashboard/api/summary", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
    assert keyed.get("/dashboard/api/summary", headers={"x-api-key": ADMIN_KEY}).status_code == 200


def test_without_an_admin_key_caller_keys_close_the_feed(upstreams: Upstreams, tmp_path: Path) -> None:
    config = gateway_config(upstreams, tmp_path / "usage.db", apiKeys=[{"key": CALLER_KEY, "name": "team"}])
    with run_gateway(config) as running, httpx.Client(base_url=running.url) as client:
        response = client.get("/dashboard/api/summary", headers={"Authorization": f"Bearer {CALLER_KEY}"})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "admin_disabled"
        # The admin API answers the same.
        assert client.get("/admin/status", headers={"Authorization": f"Bearer {CALLER_KEY}"}).status_code == 403


def test_disabled_mounts_nothing(upstreams: Upstreams, tmp_path: Path) -> None:
    config = gateway_config(upstreams, tmp_path / "usage.db", dashboard={"enabled": False})
    with run_gateway(config) as running, httpx.Client(base_url=running.url) as client:
        assert client.get("/dashboard").status_code == 404
        assert client.get("/dashboard/api/summary").status_code == 404
        assert "dashboard" not in client.get("/admin/status").json()["plugins"]
