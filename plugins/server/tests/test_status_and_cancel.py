"""The gateway's answer and the usage log agree on every failed request's
status (one mapping: ``swarmgate.errors.http_status``): 502 for an upstream
failure, 503 when no provider could take the request, 504 for an upstream
timeout; and a non-streamed request whose client goes away is cancelled,
the upstream sees the disconnect and the usage log records it as 499."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_testkit import PLUGINS, HangingUpstream, Upstreams, gateway_config, wait_for

from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import ScriptedReply
from swarmgate_server import RunningGateway, run_gateway

MESSAGES: Any = [{"role": "user", "content": "hello"}]


@pytest.fixture
def hanging() -> Iterator[HangingUpstream]:
    with HangingUpstream() as upstream:
        yield upstream


@pytest.fixture
def logged(upstreams: Upstreams, hanging: HangingUpstream, tmp_path: Path) -> Iterator[RunningGateway]:
    """The test gateway with the usage log, and a provider ``hang`` whose upstream never answers."""
    config = gateway_config(upstreams)
    config["providers"]["hang"] = {"type": "openai", "endpoint": hanging.url, "models": {"hang-model": {}}}
    config["monitoring"] = {"usageLog": {"path": str(tmp_path / "usage.db"), "commitInterval": 20}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ALLOW_ENV, PLUGINS + ",swarmgate-usage")
        with run_gateway(config) as gateway:
            yield gateway


def records(gateway: RunningGateway) -> list[dict[str, Any]]:
    return list(httpx.get(gateway.url + "/admin/usage").json()["records"])


def test_the_answer_and_the_usage_log_agree_on_the_status(logged: RunningGateway, upstreams: Upstreams) -> None:
    chat = logged.url + "/v1/chat/completions"
    answers: list[tuple[int, str]] = []

    def ask(model: str, **headers: str) -> None:
        response = httpx.post(chat, json={"model": model, "messages": MESSAGES}, headers=headers, timeout=10)
        answers.append((response.status_code, response.json()["error"]["code"]))

    # Every target failed upstream (5xx, then the gateway's own upstream key refused): 502.
    upstreams.primary.enqueue(ScriptedReply.error(500))
    upstreams.backup.enqueue(ScriptedReply.error(500))
    ask("gpt-4o-mini")
    upstreams.primary.enqueue(ScriptedReply.error(500))
    upstreams.backup.enqueue(ScriptedReply.error(401))
    ask("gpt-4o-mini")
    # No provider could take it (every target excluded): 503.
    ask("gpt-4o-mini", **{"x-swarmgate-exclude": "primary,backup"})
    # The upstream did not answer within the provider's timeout (300 ms): 504.
    upstreams.slow.enqueue(ScriptedReply(delay=1.0))
    ask("slow-model")
    assert answers == [
        (502, "upstream_error"),
        (502, "upstream_error"),
        (503, "no_provider_available"),
        (504, "upstream_timeout"),
    ]

    def four() -> list[dict[str, Any]] | None:
        found = records(logged)
        return found if len(found) == 4 else None

    logged_ = wait_for(four, what="four usage records")
    assert [(r["status"], r["ok"]) for r in logged_] == [(status, False) for status, _ in answers]
    # The kernel's error was "no provider available" each time; the status says why.
    assert [r["error_kind"] for r in logged_] == ["no_provider_available"] * 4
    # Each attempt keeps what its upstream said.
    assert [a["status"] for a in logged_[1]["attempts"]] == [500, 401]
    assert [a["error_kind"] for a in logged_[3]["attempts"]] == ["timeout"]


def test_a_client_gone_cancels_a_non_streamed_request(logged: RunningGateway, hanging: HangingUpstream) -> None:
    body = {"model": "hang-model", "messages": MESSAGES}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(logged.url + "/v1/chat/completions", json=body, timeout=0.6)  # then the client leaves
    assert hanging.requests == 1
    wait_for(lambda: hanging.disconnects == 1, what="the upstream to see the disconnect")
    (record,) = wait_for(lambda: records(logged), what="the cancelled request in the usage log")
    assert (record["status"], record["error_kind"], record["ok"]) == (499, "cancelled", False)
    assert (record["provider"], record["model"], record["stream"]) == ("hang", "hang-model", False)
    (attempt,) = record["attempts"]
    assert attempt["error_kind"] == "cancelled"
    assert logged.app.inflight == 0
    # The gateway still answers (a fresh request on another connection).
    assert httpx.get(logged.url + "/health").status_code == 200
