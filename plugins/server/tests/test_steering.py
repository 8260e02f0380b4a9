"""Per-request routing control by headers and by the body's ``swarmgate``
object, and what reaches the pipeline."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from server_testkit import Recorder, Upstreams

from swarmgate import CacheControl
from swarmgate.testing import ScriptedReply
from swarmgate_server.errors import GatewayError
from swarmgate_server.steering import cache_header

MESSAGES: Any = [{"role": "user", "content": "hello"}]


def client(gateway: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)


def test_headers_steer_the_request(gateway: Any, upstreams: Upstreams, recorder: Recorder) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers={
            "x-swarmgate-strategy": "priority",
            "x-swarmgate-provider": "backup",
            "x-swarmgate-exclude": "claude, slow",
            "x-swarmgate-max-cost": "0.5",
            "x-swarmgate-max-latency": "2500",
            "x-swarmgate-min-reliability": "0.2",
            "x-swarmgate-cache": "refresh, ttl=60",
        },
    )
    assert raw.headers["x-swarmgate-provider"] == "backup"  # preferred first
    (request,) = recorder.requests
    assert request.strategy == "priority"
    assert request.preferences.providers == ("backup",)
    assert request.preferences.exclude == ("claude", "slow")
    constraints = request.preferences.constraints
    assert (constraints.max_cost, constraints.max_latency, constraints.min_reliability) == (0.5, 2500.0, 0.2)
    assert request.cache == CacheControl(refresh=True, ttl=60.0)
    assert len(upstreams.primary.completions) == 0


def test_body_steering_and_headers_win(gateway: Any, upstreams: Upstreams, recorder: Recorder) -> None:
    client(gateway).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers={"x-swarmgate-max-cost": "0.25", "x-swarmgate-cache": "bypass"},
        extra_body={
            "swarmgate": {
                "strategy": "priority",
                "preferences": {"providers": ["backup"], "constraints": {"maxCost": 1.0, "maxLatency": 900}},
                "cache": {"allow": True, "ttl": 5},
                "tags": ["team-x", "nightly"],
                "timeouts": {"total": 20000, "firstToken": 5000},
                "metadata": {"trace": "t-1"},
                "extra": {"seed": 11},
            }
        },
    )
    (request,) = recorder.requests
    assert request.strategy == "priority"
    assert request.preferences.providers == ("backup",)
    assert request.preferences.constraints.max_cost == 0.25  # the header wins
    assert request.preferences.constraints.max_latency == 900
    assert request.cache == CacheControl(bypass=True)  # the header replaces the body's cache control
    assert request.tags == ("team-x", "nightly")
    assert request.timeouts is not None
    assert request.timeouts.total == 20000
    assert request.metadata == {"trace": "t-1", "client": "127.0.0.1"}  # where it came from, for the audit log
    assert upstreams.backup.completions[-1].json["seed"] == 11  # extra fields pass through


def test_forced_provider(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.backup.enqueue(ScriptedReply.error(500))
    with pytest.raises(openai.InternalServerError):
        client(gateway).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_body={"swarmgate": {"provider": "backup"}}
        )
    assert len(upstreams.primary.completions) == 0  # forced: no failover elsewhere


def test_max_cost_rules_out_expensive_targets(gateway: Any) -> None:
    with pytest.raises(openai.InternalServerError) as raised:
        client(gateway).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=1000, extra_headers={"x-swarmgate-max-cost": "0.0000001"}
        )
    assert raised.value.status_code == 503
    assert "maxCost" in raised.value.response.json()["error"]["message"]


def test_bad_headers_are_400(gateway: Any) -> None:
    url = gateway.url + "/v1/chat/completions"
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    for header, value in (
        ("x-swarmgate-max-cost", "cheap"),
        ("x-swarmgate-min-reliability", "1.5"),
        ("x-swarmgate-max-latency", "-1"),
        ("x-swarmgate-cache", "forever"),
        ("x-swarmgate-cache", "ttl=0"),
        ("x-swarmgate-provider", ",,"),
    ):
        response = httpx.post(url, json=body, headers={header: value})
        assert response.status_code == 400, (header, value)
        error = response.json()["error"]
        assert error["param"] == header
        assert error["code"] == "invalid_header"


def test_unknown_strategy_is_400(gateway: Any) -> None:
    with pytest.raises(openai.BadRequestError, match="no-such-strategy"):
        client(gateway).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-swarmgate-strategy": "no-such-strategy"}
        )


def test_cache_header_parsing() -> None:
    assert cache_header("bypass") == CacheControl(bypass=True)
    assert cache_header("no-cache") == CacheControl(bypass=True)
    assert cache_header("refresh,ttl=2.5") == CacheControl(refresh=True, ttl=2.5)
    assert cache_header("ALLOW") == CacheControl(allow=True)
    with pytest.raises(GatewayError):
        cache_header("ttl=abc")
