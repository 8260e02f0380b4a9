"""Helpers of the dashboard's tests: the gateway config over two fake
upstreams, traffic, polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import httpx

from swarmgate.testing import FakeUpstream

#: The plugins loaded from entry points (the others would change what the tests see).
PLUGINS = ",".join(
    [
        "swarmgate-openai",
        "swarmgate-server",
        "swarmgate-dashboard",
        "swarmgate-analytics",
        "swarmgate-usage",
        "swarmgate-breaker",
        "swarmgate-cache",
        "swarmgate-budget",
    ]
)
#: The repository's root (scripts/, tests-artifacts/).
REPO = Path(__file__).resolve().parents[3]
#: Debian's chromium.
CHROMIUM = Path("/usr/bin/chromium")
ADMIN_KEY = "sk-admin-dashboard-0123456789"
CALLER_KEY = "sk-team-dashboard-0123456789"
MODEL = "gpt-4o-mini"

T = TypeVar("T")


@attrs.frozen
class Upstreams:
    """``primary`` and ``backup``: OpenAI-wire fakes."""

    primary: FakeUpstream
    backup: FakeUpstream


def gateway_config(up: Upstreams, usage_db: Path, **server: Any) -> dict[str, Any]:
    """Providers ``primary`` (priority 1) and ``backup`` (priority 2), both
    serving ``gpt-4o-mini`` at different prices; a breaker that opens after
    two failures; the response cache; a daily budget; the usage log at
    ``usage_db``; the dashboard sampling every 250 ms. ``server`` adds keys
    to the ``server`` section (``dashboard`` merges into the defaults)."""
    dashboard = {"refreshInterval": 300, "sampleInterval": 250, **server.pop("dashboard", {})}
    return {
        "providers": {
            "primary": {
                "type": "openai",
                "endpoint": up.primary.url,
                "apiKey": "sk-upstream-primary-000",
                "priority": 1,
                "models": {MODEL: {"inputCostPerToken": 0.000001, "outputCostPerToken": 0.000002}},
            },
            "backup": {
                "type": "openai",
                "endpoint": up.backup.url,
                "apiKey": "sk-upstream-backup-000",
                "priority": 2,
                "models": {MODEL: {"costPerToken": 0.000003}},
            },
        },
        "routing": {
            "circuitBreaker": {"failureThreshold": 2, "timeout": 60000},
            "budgetLimits": {"daily": 5.0},
        },
        "optimization": {"caching": {"enabled": True}},
        "monitoring": {"usageLog": {"path": str(usage_db), "commitInterval": 20}},
        "server": {"shutdownTimeout": 2000, "dashboard": dashboard, **server},
    }


def chat(client: httpx.Client, text: str, *, stream: bool = False) -> httpx.Response:
    """One chat completion through the gateway (temperature 0: cacheable)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "temperature": 0}
    if not stream:
        return client.post("/v1/chat/completions", json=body)
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.read()
    return response


def wait_for(condition: Callable[[], T | None], timeout: float = 5.0, what: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy (returned), or
    fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
