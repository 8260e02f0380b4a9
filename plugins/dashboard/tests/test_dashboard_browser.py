"""End to end in a real headless Chromium (Debian's ``chromium``, driven by
Playwright's Python package through ``executable_path``; never
``playwright install``).

The gateway runs under uvicorn on loopback with two providers behind fake
upstreams and an admin key. Real traffic goes through it; the page, after
the admin key is typed into its login form, must show the numbers the
analytics API reports. Then one provider goes down (its upstream answers
503) and the page must show it -- health badge down, circuit open, the
failovers listed, the new request count -- without a reload. Screenshots
(light and dark) are kept in ``tests-artifacts/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_helpers import ADMIN_KEY, REPO, Upstreams, chat, gateway_config
from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright

from swarmgate.testing import ScriptedReply
from swarmgate_server import RunningGateway, run_gateway

#: The flags the machines need: no sandbox (root in a container), no GPU, and
#: nothing that reaches the internet on its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Where the screenshots go (a directory git ignores: it holds its own .gitignore).
ARTIFACTS = REPO / "tests-artifacts"
#: The most any single wait of the page may take (ms); the page polls every 300 ms.
WAIT_MS = 8000


def cost_text(value: float) -> str:
    """The page's cost format (``fmtCost`` in dashboard.js)."""
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:.2f}"
    if abs(value) >= 0.01:
        return f"${value:.4f}"
    return "$" + f"{value:.8f}".rstrip("0")


def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    ignore = ARTIFACTS / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return ARTIFACTS


@pytest.fixture
def gateway(upstreams: Upstreams, tmp_path: Path) -> Iterator[RunningGateway]:
    with run_gateway(gateway_config(upstreams, tmp_path / "usage.db", adminKey=ADMIN_KEY)) as running:
        yield running


@pytest.fixture
def page(chromium: str) -> Iterator[tuple[Page, list[str]]]:
    """A 1366x768 page and the errors it logs (console errors, uncaught exceptions)."""
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 768}, color_scheme="light")
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)

            def on_console(message: ConsoleMessage) -> None:
                url = message.location.get("url", "")
                expected = "status of 401" in message.text and "/dashboard/api/summary" in url  # before the login
                if message.type == "error" and not expected:
                    errors.append(f"console: {message.text} ({url})")

            page.on("console", on_console)
            page.on("pageerror", lambda exc: errors.append(f"page: {exc}"))
            yield page, errors
        finally:
            browser.close()


def admin_analytics(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/admin/analytics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def expect_figures(page: Page, analytics: dict[str, Any]) -> None:
    """The page shows ``analytics``' totals and per-provider figures."""
    totals = analytics["totals"]
    requests = page.locator("#kpi-requests .value")
    expect(requests).to_have_attribute("data-value", str(totals["requests"]), timeout=WAIT_MS)
    expect(requests).to_have_text(f"{totals['requests']:,}")
    cost = page.locator("#kpi-cost .value")
    assert float(cost.get_attribute("data-value") or "nan") == totals["totalCost"]
    expect(cost).to_have_text(cost_text(totals["totalCost"]))
    assert float(page.locator("#kpi-p95").get_attribute("data-value") or "nan") == totals["p95Latency"]
    ratio = analytics["cache"]["hitRatio"]
    expect(page.locator("#kpi-cache .value")).to_have_text(f"{ratio * 100:.1f}%")
    for row in analytics["providers"]:
        line = page.locator(f'#providers-table tr[data-provider="{row["name"]}"]')
        expect(line.locator("td.requests")).to_have_attribute("data-value", str(row["totalRequests"]))
        expect(line.locator("td.requests")).to_have_text(f"{row['totalRequests']:,}")
        assert float(line.locator("td.cost").get_attribute("data-value") or "nan") == row["totalCost"]
        expect(line.locator("td.cost")).to_have_text(cost_text(row["totalCost"]))


def test_the_dashboard_in_chromium(upstreams: Upstreams, gateway: RunningGateway, page: tuple[Page, list[str]]) -> None:
    tab, errors = page
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for i in range(12):
            assert chat(client, f"question {i % 8}").status_code == 200  # 4 answered from the cache
        for i in range(3):
            assert chat(client, f"streamed {i}", stream=True).status_code == 200

        tab.goto(gateway.url + "/dashboard")
        # The feed needs the admin key: the page asks for it.
        expect(tab.locator("#login")).to_be_visible()
        tab.fill("#login-key", ADMIN_KEY)
        tab.click("#login-form button[type=submit]")
        expect(tab.locator("#login")).to_be_hidden()
        expect(tab.locator("#feed-status")).to_have_attribute("data-state", "live")

        before = admin_analytics(client)
        assert before["totals"]["requests"] == 15
        assert before["totals"]["cacheHits"] == 4
        expect_figures(tab, before)
        for name in ("primary", "backup"):
            health = tab.locator(f'#providers-table tr[data-provider="{name}"] td.health .badge')
            expect(health).to_have_attribute("data-status", "up")
        expect(tab.locator('#budget-list li[data-budget="global:daily"]')).to_be_visible()
        expect(tab.locator("#chart-rate canvas")).to_have_count(1)
        expect(tab.locator("#chart-latency .u-legend")).to_contain_text("primary")
        tab.evaluate("window.__sameDocument = true")

        # The primary goes down: its upstream answers 503; requests fail over to the backup.
        upstreams.primary.default = ScriptedReply.error(503)
        for i in range(4):
            response = chat(client, f"while primary is down {i}")
            assert response.headers["x-swarmgate-provider"] == "backup"

        primary = tab.locator('#providers-table tr[data-provider="primary"]')
        expect(primary.locator("td.health .badge")).to_have_attribute("data-status", "down")
        expect(primary.locator("td.health .badge")).to_have_text("down")
        expect(primary.locator('td.circuits .circuit[data-model="gpt-4o-mini"]')).to_have_attribute(
            "data-state", "open"
        )
        backup = tab.locator('#providers-table tr[data-provider="backup"]')
        expect(backup.locator("td.health .badge")).to_have_attribute("data-status", "up")
        expect(tab.locator('#event-list li[data-kind="failover"]').first).to_contain_text(
            "primary ✗ overloaded → backup answered"
        )
        expect(tab.locator("#event-list li[data-kind='alert']").first).to_be_visible()
        after = admin_analytics(client)
        assert after["totals"]["requests"] == 19
        expect_figures(tab, after)
        assert tab.evaluate("window.__sameDocument") is True  # updated live, never reloaded

        expect(tab.locator("#feed-status")).to_have_attribute("data-state", "live")
        folder = artifacts()
        tab.screenshot(path=str(folder / "dashboard.png"))
        tab.emulate_media(color_scheme="dark")
        tab.wait_for_timeout(400)  # one refresh: the charts are redrawn in the dark palette
        tab.screenshot(path=str(folder / "dashboard-dark.png"))
    assert errors == []
