"""The pure parts: kernel errors to HTTP answers, settings defaults, the
dialect parsers and encoders."""

from __future__ import annotations

from typing import ClassVar

import orjson
import pytest

from swarmgate import (
    Attempt,
    AuthenticationError,
    BudgetExceededError,
    CompletionResponse,
    ContentFilteredError,
    ErrorKind,
    InvalidRequestError,
    NoProviderAvailableError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderTimeoutError,
    RateLimitedError,
    RequestCancelledError,
    ServerError,
    StreamStart,
    SwarmgateError,
    TokenUsage,
    ToolCallDelta,
    UnknownModelError,
)
from swarmgate.errors import http_status
from swarmgate_server import GatewayError, ServerSettings, from_swarmgate, load_settings
from swarmgate_server.anthropic_api import MessagesStream, message_fields
from swarmgate_server.openai_api import ChatStream, chat_fields, completion_fields


def exhausted(last: object) -> NoProviderAvailableError:
    attempt = Attempt("p", "m", False, 1.0, error_kind="x")
    return NoProviderAvailableError("all failed", attempts=[attempt, attempt], last_error=last)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidRequestError("bad"), 400, "invalid_request"),
        (ContentFilteredError("no"), 400, "content_filter"),
        (UnknownModelError("who"), 404, "model_not_found"),
        (RateLimitedError("wait", retry_after=2.5), 429, "rate_limit_exceeded"),
        (BudgetExceededError("spent"), 429, "budget_exceeded"),
        (ProviderTimeoutError("slow"), 504, "upstream_timeout"),
        (OverloadedError("busy"), 503, "upstream_overloaded"),
        (ServerError("boom"), 502, "upstream_error"),
        (AuthenticationError("upstream key"), 502, "upstream_authentication"),
        (RequestCancelledError("gone"), 503, "request_cancelled"),
        (exhausted(ServerError("boom")), 502, "upstream_error"),
        (exhausted(RateLimitedError("wait")), 429, "rate_limit_exceeded"),
        (exhausted(ProviderTimeoutError("slow")), 504, "upstream_timeout"),
        (exhausted(AuthenticationError("key")), 502, "upstream_error"),
        (NoProviderAvailableError("nothing passed the filters"), 503, "no_provider_available"),
    ],
)
def test_error_mapping(error: Exception, status: int, code: str) -> None:
    mapped = from_swarmgate(error)  # type: ignore[arg-type]
    assert (mapped.status, mapped.code) == (status, code)
    assert mapped.status != 499
    # The same status the usage and audit logs record (a cancellation: 499 there,
    # while a client still there to read the answer gets 503).
    recorded = http_status(error)  # type: ignore[arg-type]
    assert recorded == (499 if isinstance(error, RequestCancelledError) else status)


class StateDown(SwarmgateError):
    """A plugin's error with a status of its own (like the Redis backend's 503)."""

    kind: ClassVar[ErrorKind] = ErrorKind.SERVER_ERROR
    status_code: ClassVar[int] = 503


class Odd(SwarmgateError):
    status_code: ClassVar[int] = 700


def test_one_status_mapping_for_answers_and_logs() -> None:
    refused = NoProviderAvailableError("outside the allowed regions")  # a refusal as the last error
    cases: list[tuple[SwarmgateError, int, str]] = [
        (StateDown("redis is gone"), 503, "server_error"),
        (exhausted(StateDown("redis is gone")), 503, "server_error"),
        (exhausted(refused), 503, "no_provider_available"),
        (exhausted(NotFoundError("no such upstream model")), 502, "upstream_error"),
        (PermissionDeniedError("upstream says no"), 502, "upstream_permission"),
        (Odd("?"), 500, "server_error"),
    ]
    for error, status, code in cases:
        mapped = from_swarmgate(error)
        assert (mapped.status, mapped.code) == (status, code), error
        assert http_status(error) == status, error
    late = exhausted(ProviderTimeoutError("slow"))
    assert http_status(late, caller_timeout_ms=100.0, elapsed_ms=99.0) == 408
    assert http_status(late, caller_timeout_ms=100.0, elapsed_ms=50.0) == 504
    assert http_status(late, caller_timeout_ms=100.0) == 504  # elapsed unknown: not the caller's deadline
    assert from_swarmgate(late, caller_timeout_ms=100.0, elapsed_ms=99.0).code == "request_timeout"


def test_retry_after_and_the_callers_deadline() -> None:
    mapped = from_swarmgate(RateLimitedError("wait", retry_after=2.2))
    assert dict(mapped.headers())[b"retry-after"] == b"3"
    assert dict(mapped.headers())[b"retry-after-ms"] == b"2200"
    late = from_swarmgate(ProviderTimeoutError("slow"), caller_timeout_ms=100.0, elapsed_ms=101.0)
    assert late.status == 408
    early = from_swarmgate(ProviderTimeoutError("slow"), caller_timeout_ms=10_000.0, elapsed_ms=101.0)
    assert early.status == 504
    assert from_swarmgate(ServerError("x", retry_after=5)).retry_after is None  # only on 429/503


def test_error_bodies() -> None:
    error = GatewayError(413, "too big", code="request_too_large")
    assert orjson.loads(error.openai_body()) == {
        "error": {"message": "too big", "type": "invalid_request_error", "param": None, "code": "request_too_large"}
    }
    assert orjson.loads(error.anthropic_body()) == {
        "type": "error",
        "error": {"type": "request_too_large", "message": "too big"},
    }


def test_settings_defaults() -> None:
    settings = load_settings(None)
    assert settings == ServerSettings()
    assert settings.host == "127.0.0.1"
    assert settings.max_body_size == 4 * 1024 * 1024
    assert settings.api_keys == ()


def test_chat_fields() -> None:
    fields, stream, usage = chat_fields(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 5,
            "max_completion_tokens": 7,
            "stop": "END",
            "stream": True,
            "stream_options": {"include_usage": True},
            "seed": 4,
        },
        frozenset({"seed"}),
    )
    assert (stream, usage) == (True, True)
    assert fields["max_tokens"] == 7  # max_completion_tokens wins
    assert fields["stop"] == ("END",)
    assert fields["extra"] == {"seed": 4}
    fields, _, _ = completion_fields({"prompt": ["once"], "model": "m"}, frozenset())
    assert fields["messages"][0].content == "once"


def test_messages_fields() -> None:
    fields, stream = message_fields(
        {
            "model": "m",
            "max_tokens": 9,
            "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "ok"}],
                },
            ],
            "tool_choice": {"type": "any"},
            "metadata": {"user_id": "u1"},
        }
    )
    assert stream is False
    system, user, assistant = fields["messages"]
    assert (system.role, system.content) == ("system", "a\nb")
    assert user.content[1] == {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}}
    assert (assistant.role, assistant.content) == ("assistant", "ok")
    assert fields["tool_choice"] == "required"
    assert fields["user"] == "u1"


def response(**changes: object) -> CompletionResponse:
    base = {
        "content": "",
        "provider": "p",
        "model": "m",
        "cost": 0.5,
        "latency": 12.0,
        "tokens": TokenUsage.of(3, 4),
        "finish_reason": "tool_calls",
        "id": "sg-1",
    }
    base.update(changes)
    return CompletionResponse(**base)  # type: ignore[arg-type]


def test_chat_stream_encoding() -> None:
    stream = ChatStream(StreamStart("p", "m", "sg-1"), 123, include_usage=True)
    first = orjson.loads(stream.start()[6:])
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert first["usage"] is None
    assert orjson.loads(stream.text('say "hi"\n')[6:])["choices"][0]["delta"] == {"content": 'say "hi"\n'}
    opening = orjson.loads(stream.tool(ToolCallDelta(0, None, "f", '{"a"'))[6:])["choices"][0]["delta"]["tool_calls"][0]
    assert opening["id"].startswith("call_")
    assert opening["function"] == {"name": "f", "arguments": '{"a"'}
    more = orjson.loads(stream.tool(ToolCallDelta(0, None, None, ": 1}"))[6:])["choices"][0]["delta"]["tool_calls"][0]
    assert more == {"index": 0, "function": {"arguments": ": 1}"}}
    tail = stream.finish(response()).split(b"\n\n")
    assert orjson.loads(tail[0][6:])["choices"][0]["finish_reason"] == "tool_calls"
    usage_chunk = orjson.loads(tail[1][6:])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert usage_chunk["swarmgate"]["cost"] == 0.5
    assert tail[2] == b"data: [DONE]"


def test_messages_stream_blocks() -> None:
    stream = MessagesStream(StreamStart("p", "m", "sg-2"), 0, include_usage=True)
    out = (
        stream.start()
        + stream.text("a")
        + stream.tool(ToolCallDelta(0, "t1", "f", '{"x":'))
        + stream.tool(ToolCallDelta(0, None, None, "1}"))
    )
    out += stream.text("b") + stream.finish(response(finish_reason="stop"))
    events = [block.split(b"\n")[0][7:].decode() for block in out.split(b"\n\n") if block]
    assert events == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    indexes = [orjson.loads(b.split(b"\ndata: ")[1]).get("index") for b in out.split(b"\n\n") if b"content_block" in b]
    assert indexes == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]


def test_public_api() -> None:
    import swarmgate_server

    assert sorted(swarmgate_server.__all__) == [
        "AUTHENTICATOR_EXTENSION",
        "AdminAPIError",
        "ApiKeySettings",
        "Caller",
        "GATEWAY_EXTENSION",
        "Gateway",
        "GatewayError",
        "GatewayService",
        "KeyAuthenticator",
        "KeyRing",
        "ModelFilter",
        "RunningGateway",
        "ServerPlugin",
        "ServerSettings",
        "aadmin_request",
        "admin_options",
        "admin_request",
        "app_from_env",
        "create_app",
        "from_swarmgate",
        "key_digest",
        "load_settings",
        "run_gateway",
        "serve",
    ]
    for name in swarmgate_server.__all__:
        assert getattr(swarmgate_server, name) is not None
    with pytest.raises(AttributeError):
        swarmgate_server.nothing_here  # noqa: B018


def test_loading_the_plugin_leaves_the_web_stack_out() -> None:
    """Every ProviderManager loads the entry point; a library user must not
    pay for Starlette and uvicorn."""
    import subprocess
    import sys

    code = "import sys, swarmgate_server; print('starlette' in sys.modules or 'uvicorn' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
