"""The gateway with the real default plugins behind it: the response cache
(hits reported in the headers, streams included), the usage log (a stream
cut by its client recorded with its partial cost), analytics, Prometheus
metrics and cache administration through the admin API."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_testkit import PLUGINS, Upstreams, gateway_config, wait_for

from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import ScriptedReply
from swarmgate_server import run_gateway

STACK = PLUGINS + ",swarmgate-cache,swarmgate-usage,swarmgate-analytics,swarmgate-prometheus"
SAME: Any = [{"role": "user", "content": "the same question"}]


@pytest.fixture
def stack(upstreams: Upstreams) -> Any:
    config = gateway_config(upstreams)
    config["optimization"] = {"caching": {"enabled": True, "ttl": 60000}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ALLOW_ENV, STACK)
        with run_gateway(config) as gateway:
            yield gateway


def test_cache_usage_analytics_and_metrics(stack: Any, upstreams: Upstreams) -> None:
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key="x", max_retries=0)
    first = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=SAME, temperature=0)
    second = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=SAME, temperature=0)
    assert first.headers["x-swarmgate-cache"] == "miss"
    assert second.headers["x-swarmgate-cache"] == "hit"
    assert float(second.headers["x-swarmgate-cost"]) == 0.0
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    streamed = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=SAME, temperature=0, stream=True
    )
    assert streamed.headers["x-swarmgate-cache"] == "hit"
    assert (
        "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
        == "Hello from the fake upstream"
    )
    assert len(upstreams.primary.completions) == 1

    # A stream its client abandons: recorded as cancelled, with its partial cost.
    upstreams.primary.enqueue(ScriptedReply(content="alpha beta gamma delta", stall_after=2))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "cut me off"}], "stream": True}
    with httpx.stream("POST", stack.url + "/v1/chat/completions", json=body) as response:
        pieces = 0
        for line in response.iter_lines():
            pieces += '"content":"' in line and '"content":""' not in line
            if pieces == 2:
                break
    wait_for(lambda: upstreams.primary.disconnects, what="the upstream to see the disconnect")
    admin = httpx.Client(base_url=stack.url)

    def cancelled() -> list[dict[str, Any]]:
        records = admin.get("/admin/usage").json()["records"]
        return [r for r in records if r["error_kind"] == "cancelled"]

    (record,) = wait_for(cancelled, what="the cancelled stream in the usage log")
    assert record["status"] == 499
    assert record["stream"] is True
    assert record["cost"] > 0
    assert record["output_tokens"] > 0
    hits = [r for r in admin.get("/admin/usage").json()["records"] if r["cache_hit"]]
    assert len(hits) == 2

    analytics = admin.get("/admin/analytics", params={"window": "1h"})
    assert analytics.status_code == 200
    assert any(p["name"] == "primary" for p in analytics.json()["providers"])
    metrics = admin.get("/metrics")
    assert metrics.status_code == 200
    names = {family.name for family in text_string_to_metric_families(metrics.text)}
    assert "swarmgate_requests" in names

    stats = admin.get("/admin/cache/stats").json()
    assert stats["hits"] == 2
    assert admin.post("/admin/cache/invalidate", json={"provider": "primary"}).json()["invalidated"] >= 1
    third = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=SAME, temperature=0)
    assert third.headers["x-swarmgate-cache"] == "miss"
