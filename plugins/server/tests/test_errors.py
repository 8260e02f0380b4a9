"""Every error status the gateway sends, through the ``openai`` SDK's
exception classes, with OpenAI's error body."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from server_testkit import TEAM_A_KEY, Upstreams

from swarmgate.testing import ScriptedReply

MESSAGES: Any = [{"role": "user", "content": "hello"}]


def client(gateway: Any, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def body_of(error: openai.APIStatusError) -> dict[str, Any]:
    body = error.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


def test_400_wrong_types(gateway: Any) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"stop": [1, 2]}, "stop"),
        ({"tools": [{"type": "function"}]}, "tools[0]"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages[0].content[0]"),
        ({"model": ""}, "model"),
        ({"swarmgate": {"strategy": 7}}, "swarmgate.strategy"),
        ({"swarmgate": {"bogus": 1}}, "swarmgate"),
    ]
    for extra, param in cases:
        payload = {"model": "gpt-4o-mini", "messages": MESSAGES, **extra}
        with pytest.raises(openai.BadRequestError) as raised:
            client(gateway).post("/chat/completions", body=payload, cast_to=object)
        error = body_of(raised.value)
        assert error["type"] == "invalid_request_error", extra
        assert error["param"] == param, extra


def test_400_malformed_json(gateway: Any) -> None:
    for body in (b"{not json", b"", b"[1, 2]", b'"text"'):
        response = httpx.post(
            gateway.url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_json"


def test_401_and_403(keyed_gateway: Any) -> None:
    with pytest.raises(openai.AuthenticationError) as missing:
        client(keyed_gateway).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"Authorization": openai.Omit()}
        )
    assert body_of(missing.value)["code"] == "missing_api_key"
    assert missing.value.response.headers["www-authenticate"].startswith("Bearer")
    with pytest.raises(openai.AuthenticationError) as wrong:
        client(keyed_gateway, key="sk-not-a-key-at-all").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert body_of(wrong.value)["code"] == "invalid_api_key"
    with pytest.raises(openai.PermissionDeniedError) as forbidden:
        client(keyed_gateway, key=TEAM_A_KEY).chat.completions.create(model="claude-3-5-haiku", messages=MESSAGES)
    assert body_of(forbidden.value)["code"] == "model_not_allowed"


def test_404_unknown_model(gateway: Any) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client(gateway).chat.completions.create(model="gpt-9-ultra", messages=MESSAGES)
    error = body_of(raised.value)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "gpt-9-ultra" in error["message"]
    with pytest.raises(openai.NotFoundError):
        client(gateway).chat.completions.create(model="nowhere/gpt-4o-mini", messages=MESSAGES)


def test_408_the_callers_own_timeout(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.primary.enqueue(ScriptedReply(delay=1.0))
    with pytest.raises(openai.APIStatusError) as raised:
        client(gateway).chat.completions.create(
            model="primary/gpt-4o-mini", messages=MESSAGES, extra_body={"swarmgate": {"timeouts": {"total": 200}}}
        )
    assert raised.value.status_code == 408
    assert body_of(raised.value)["code"] == "request_timeout"


def test_413_body_too_large(gateway: Any) -> None:
    big = [{"role": "user", "content": "x" * 70_000}]  # the test gateway's maxBodySize is 64 KiB
    with pytest.raises(openai.APIStatusError) as raised:
        client(gateway).chat.completions.create(model="gpt-4o-mini", messages=big)
    assert raised.value.status_code == 413
    assert body_of(raised.value)["code"] == "request_too_large"
    # The connection is still usable afterwards (the rest of the body was discarded).
    assert client(gateway).models.list().data


def test_422_unsupported(gateway: Any) -> None:
    for extra, param in (
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ):
        with pytest.raises(openai.UnprocessableEntityError) as raised:
            client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **extra)
        assert body_of(raised.value)["param"] == param


def test_429_with_retry_after(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.primary.enqueue(ScriptedReply.error(429, "slow down", headers={"retry-after": "7"}))
    upstreams.backup.enqueue(ScriptedReply.error(429, "slow down too", headers={"retry-after": "7"}))
    with pytest.raises(openai.RateLimitError) as raised:
        client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.response.headers["retry-after"] == "7"
    assert raised.value.response.headers["retry-after-ms"] == "7000"
    assert raised.value.response.headers["x-swarmgate-attempts"] == "2"
    error = body_of(raised.value)
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"


def test_502_every_upstream_failed(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.primary.enqueue(ScriptedReply.error(500))
    upstreams.backup.enqueue(ScriptedReply.error(500))
    with pytest.raises(openai.InternalServerError) as raised:
        client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.status_code == 502
    error = body_of(raised.value)
    assert error["type"] == "server_error"
    assert "primary/gpt-4o-mini" in error["message"]


def test_502_upstream_key_rejected_is_not_the_callers_401(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.primary.enqueue(ScriptedReply.error(401, "bad upstream key"))
    with pytest.raises(openai.InternalServerError) as raised:
        client(gateway).chat.completions.create(model="primary/gpt-4o-mini", messages=MESSAGES)
    assert raised.value.status_code == 502


def test_503_no_provider_can_take_it(gateway: Any) -> None:
    with pytest.raises(openai.InternalServerError) as raised:
        client(gateway).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-swarmgate-exclude": "primary,backup"}
        )
    assert raised.value.status_code == 503
    assert body_of(raised.value)["code"] == "no_provider_available"


def test_504_upstream_timeout(gateway: Any, upstreams: Upstreams) -> None:
    upstreams.slow.enqueue(ScriptedReply(delay=1.0))
    with pytest.raises(openai.InternalServerError) as raised:
        client(gateway).chat.completions.create(model="slow-model", messages=MESSAGES)
    assert raised.value.status_code == 504
    assert body_of(raised.value)["type"] == "timeout_error"


def test_405_and_unknown_paths(gateway: Any) -> None:
    response = httpx.get(gateway.url + "/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    response = httpx.get(gateway.url + "/v2/everything")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"
