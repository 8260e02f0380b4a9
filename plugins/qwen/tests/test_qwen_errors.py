"""DashScope's error codes come out as the right taxonomy errors, with
DashScope's own message, in answers, streams and in-stream error frames."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from swarmgate import (
    AuthenticationError,
    ContentFilteredError,
    ContextLengthExceededError,
    ErrorEvent,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderManager,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    SwarmgateError,
    TextDelta,
)
from swarmgate.testing import FakeUpstream, ScriptedReply
from swarmgate.testing.dashscope_wire import DashScopeWire
from swarmgate_qwen import DashScopeError, classify, error_class

MODEL = "qwen-plus"  # the model and key conftest.py's manager_for configures
KEY = "sk-qwen-test-0123456789abcdef"
ManagerFactory = Callable[..., ProviderManager]
FailureRunner = Callable[..., Awaitable[SwarmgateError]]
STREAM = pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])

#: (HTTP status, DashScope code, DashScope message, expected error), from DashScope's error-code reference.
DOCUMENTED: list[tuple[int, str, str, type[SwarmgateError]]] = [
    (429, "Throttling", "Requests throttling triggered.", RateLimitedError),
    (429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.", RateLimitedError),
    (
        429,
        "Throttling.AllocationQuota",
        "Allocated quota exceeded, please increase your quota limit.",
        RateLimitedError,
    ),
    (429, "Throttling.BurstRate", "Request rate increased too quickly.", RateLimitedError),
    (
        503,
        "ModelServingError",
        "Too many requests. Your requests are being throttled due to system capacity limits.",
        OverloadedError,
    ),
    (503, "ModelUnavailable", "Model is unavailable, please try again later.", OverloadedError),
    (500, "ServiceUnavailable", "The service is temporarily unavailable.", OverloadedError),
    (401, "InvalidApiKey", "Invalid API-key provided.", AuthenticationError),
    (400, "InvalidParameter", "Range of input length should be [1, 30720]", ContextLengthExceededError),
    (
        400,
        "InvalidParameter",
        "Total message token length exceed model limit (10000000 tokens).",
        ContextLengthExceededError,
    ),
    (400, "DataInspectionFailed", "Input data may contain inappropriate content.", ContentFilteredError),
    (400, "data_inspection_failed", "Output data may contain inappropriate content.", ContentFilteredError),
    (
        400,
        "CustomRoleBlocked",
        "Input or output data may contain inappropriate content with custom rule.",
        ContentFilteredError,
    ),
    (400, "Arrearage", "Access denied, please make sure your account is in good standing.", PermissionDeniedError),
    (
        403,
        "AccessDenied.Unpurchased",
        "Access to model denied. Please make sure you are eligible for using the model.",
        PermissionDeniedError,
    ),
    (403, "Model.AccessDenied", "Model access denied.", PermissionDeniedError),
    (429, "Throttling.AllocationQuota", "Free allocated quota exceeded.", PermissionDeniedError),
    (429, "PrepaidBillOverdue", "The prepaid bill is overdue.", PermissionDeniedError),
    (404, "ModelNotFound", "Model can not be found.", NotFoundError),
    (400, "InvalidParameter", "Model not exist.", NotFoundError),
    (500, "RequestTimeOut", "Request timed out, please try again later.", ProviderTimeoutError),
    (500, "InternalError.Algo", "inference internal error.", ServerError),
    (400, "InvalidParameter", "Temperature should be in [0.0, 2.0)", InvalidRequestError),
    (
        400,
        "InvalidParameter.DataInspection",
        "Unable to download the media resource during the data inspection process.",
        InvalidRequestError,
    ),
    (418, "SomethingNew", "A code nobody documented.", InvalidRequestError),
]


def serve() -> FakeUpstream:
    return FakeUpstream(DashScopeWire())


# -- the five every provider must get right -------------------------------------------------


@pytest.mark.anyio
@STREAM
async def test_rate_limit(manager_for: ManagerFactory, failure: FailureRunner, stream: bool) -> None:
    message = "Requests rate limit exceeded, please try again later."
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(429, message, code="Throttling.RateQuota", headers={"Retry-After": "3"}))
        error = await failure(manager, stream=stream)
    assert type(error) is RateLimitedError
    assert error.retryable
    assert error.retry_after == pytest.approx(3.0)
    assert error.upstream_status == 429
    assert message in str(error)
    assert "[Throttling.RateQuota]" in str(error)
    assert "request_id" in str(error), "DashScope's request id is kept for support tickets"


@pytest.mark.anyio
@STREAM
async def test_overload(manager_for: ManagerFactory, failure: FailureRunner, stream: bool) -> None:
    message = "Too many requests. Your requests are being throttled due to system capacity limits."
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(503, message, code="ModelServingError"))
        error = await failure(manager, stream=stream)
    assert type(error) is OverloadedError
    assert error.upstream_status == 503
    assert message in str(error)


@pytest.mark.anyio
@STREAM
async def test_auth_failure(manager_for: ManagerFactory, failure: FailureRunner, stream: bool) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(401, f"Invalid API-key provided: {KEY}", code="InvalidApiKey"))
        error = await failure(manager, stream=stream)
    assert type(error) is AuthenticationError
    assert error.provider == "qw"
    assert "Invalid API-key provided" in str(error)
    assert KEY not in str(error), "an echoed key is scrubbed"


@pytest.mark.anyio
@STREAM
async def test_context_length(manager_for: ManagerFactory, failure: FailureRunner, stream: bool) -> None:
    message = "<400> InternalError.Algo.InvalidParameter: Range of input length should be [1, 129024]"
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(400, message, code="InvalidParameter"))
        error = await failure(manager, stream=stream)
    assert type(error) is ContextLengthExceededError
    assert error.failover, "a model with a larger window may take it"
    assert "Range of input length should be [1, 129024]" in str(error)


@pytest.mark.anyio
@STREAM
async def test_content_filter(manager_for: ManagerFactory, failure: FailureRunner, stream: bool) -> None:
    message = "Input data may contain inappropriate content."
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(400, message, code="DataInspectionFailed"))
        error = await failure(manager, stream=stream)
    assert type(error) is ContentFilteredError
    assert not error.failover
    assert message in str(error)


# -- every documented code ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "code", "message", "expected"), DOCUMENTED)
async def test_documented_codes(
    manager_for: ManagerFactory,
    failure: FailureRunner,
    status: int,
    code: str,
    message: str,
    expected: type[SwarmgateError],
) -> None:
    """Each documented code end to end (streams share the error path; the
    five above run both ways)."""
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply.error(status, message, code=code))
        error = await failure(manager)
    assert type(error) is expected, f"{status} {code} gave {type(error).__name__}: {error}"
    assert error.upstream_status == status
    assert message in str(error)
    assert f"[{code}]" in str(error)


# -- errors inside a stream ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_output_moderation_mid_stream(manager_for: ManagerFactory) -> None:
    """DashScope stops a streamed answer whose output fails moderation with an
    ``event:error`` frame: the partial text is delivered, then the typed error."""
    reply = ScriptedReply(
        content="Here is how to",
        error_code="DataInspectionFailed",
        error_message="Output data may contain inappropriate content.",
    )
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(reply)
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL, errors="event")]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Here is how to"
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert type(error.error) is ContentFilteredError
    assert "Output data may contain inappropriate content." in str(error.error)
    assert "error in stream" in str(error.error)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("Throttling.AllocationQuota", RateLimitedError),
        ("InternalError", ServerError),
        ("ModelServingError", OverloadedError),
        ("SomethingNew", ServerError),
    ],
)
async def test_error_frame_before_any_output(
    manager_for: ManagerFactory, failure: FailureRunner, code: str, expected: type[SwarmgateError]
) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(content="", error_code=code, error_message="scripted in-stream failure"))
        error = await failure(manager, stream=True)
    assert type(error) is expected
    assert error.upstream_status is None, "an in-stream error has no HTTP status"
    assert "scripted in-stream failure" in str(error)


@pytest.mark.anyio
async def test_sse_error_body_on_an_error_status(manager_for: ManagerFactory, failure: FailureRunner) -> None:
    """DashScope may answer a streamed request's failure as an SSE body."""
    body = (
        b"id:1\nevent:error\n:HTTP_STATUS/429\n"
        b'data:{"request_id":"566e3621","code":"Throttling.AllocationQuota","message":"Allocated quota exceeded"}\n\n'
    )
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(status=429, body=body, headers={"content-type": "text/event-stream"}))
        error = await failure(manager, stream=True)
    assert type(error) is RateLimitedError
    assert error.upstream_status == 429
    assert "Allocated quota exceeded [Throttling.AllocationQuota] (request_id 566e3621)" in str(error)


@pytest.mark.anyio
async def test_error_object_in_a_200_answer(manager_for: ManagerFactory, failure: FailureRunner) -> None:
    body = (
        b'{"request_id":"r-2","code":"DataInspectionFailed","message":"Input data may contain inappropriate content."}'
    )
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(body=body))
        error = await failure(manager)
    assert type(error) is ContentFilteredError
    assert "error in answer: Input data may contain inappropriate content." in str(error)


@pytest.mark.anyio
async def test_non_json_error_body(manager_for: ManagerFactory, failure: FailureRunner) -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1>\n<p>Tengine</p></body></html>"
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(status=502, body=html, headers={"content-type": "text/html"}))
        error = await failure(manager)
    assert type(error) is ServerError
    assert error.upstream_status == 502
    assert "502 Bad Gateway" in str(error)


@pytest.mark.anyio
async def test_empty_error_body(manager_for: ManagerFactory, failure: FailureRunner) -> None:
    async with serve() as server, manager_for(server.url) as manager:
        server.enqueue(ScriptedReply(status=500, body=b""))
        error = await failure(manager)
    assert type(error) is ServerError
    assert "(empty body)" in str(error)


# -- the table itself ------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "code", "message", "expected"), DOCUMENTED)
def test_classify_documented_codes(status: int, code: str, message: str, expected: type[SwarmgateError]) -> None:
    error = classify(status, DashScopeError(message, code, "req-9"), provider="qw", model=MODEL, retry_after=1.5)
    assert type(error) is expected
    assert (error.provider, error.model, error.upstream_status) == ("qw", MODEL, status)
    assert error.retry_after == pytest.approx(1.5)
    assert error.message == f"upstream HTTP {status}: {message} [{code}] (request_id req-9)"


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (None, "Range of input length should be [1, 6000]", ContextLengthExceededError),
        ("limit_requests", "You have exceeded your request limit.", RateLimitedError),
        (
            "insufficient_quota",
            "You exceeded your current quota, please check your plan and billing details.",
            RateLimitedError,
        ),
        ("invalid_api_key", "Incorrect API key provided.", AuthenticationError),
        ("access_denied", "Access denied.", PermissionDeniedError),
        ("model_not_found", "The model `qwen-x` does not exist or you do not have access to it.", NotFoundError),
        ("internal_error", "An internal error has occured.", ServerError),
        ("invalid_request_error", "you must provide a model parameter.", InvalidRequestError),
        (None, "Some message", None),
        ("ServiceUnavailableError", "Role must be user or assistant and Content length must be greater than 0", None),
    ],
)
def test_error_class(code: str | None, message: str, expected: type[SwarmgateError] | None) -> None:
    assert error_class(code, message) is expected


def test_in_stream_errors_without_a_known_code_are_server_errors() -> None:
    error = classify(None, DashScopeError("odd"), provider="qw", model=None)
    assert type(error) is ServerError
    assert error.message == "error in stream: odd"
