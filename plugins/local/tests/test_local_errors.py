"""The error mapping of ``swarmgate_local._errors``, rule by rule."""

from __future__ import annotations

import pytest

from swarmgate import (
    AuthenticationError,
    ContentFilteredError,
    ContextLengthExceededError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    SwarmgateError,
)
from swarmgate_local._errors import classify, refine, text_kind


@pytest.mark.parametrize(
    ("status", "text", "expected"),
    [
        (None, "input length exceeds the context length", ContextLengthExceededError),
        (400, "the request exceeds the available context size", ContextLengthExceededError),
        (422, "prompt is too long: 9000 tokens", ContextLengthExceededError),
        (500, "maximum context length is 2048", ContextLengthExceededError),
        (400, "blocked by content filter", ContentFilteredError),
        (None, "output flagged by moderation", ContentFilteredError),
        (None, "server busy, please try again", OverloadedError),
        (500, "model is overloaded", OverloadedError),
        (None, "Rate limit exceeded", RateLimitedError),
        (500, "too many requests", RateLimitedError),
        # The status decides: these texts change nothing.
        (429, "too many tokens per minute; context window 8k", None),
        (404, 'model "context-size-7b" not found, try pulling it first', None),
        (401, "content policy requires a valid key", None),
        (503, "context size too big to load", None),
        (400, "server busy", None),
        (502, "upstream overloaded", None),
        (None, "llama runner process has terminated", None),
        (400, "invalid option: num_ctx must be positive", None),
    ],
)
def test_text_kind(status: int | None, text: str, expected: type[SwarmgateError] | None) -> None:
    assert text_kind(status, text) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, ServerError),
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (404, NotFoundError),
        (408, ProviderTimeoutError),
        (413, ContextLengthExceededError),
        (429, RateLimitedError),
        (500, ServerError),
        (503, OverloadedError),
    ],
)
def test_classify_falls_back_to_the_status(status: int | None, expected: type[SwarmgateError]) -> None:
    error = classify(status, "upstream says no", provider="ol", model="m", retry_after=4.0)
    assert type(error) is expected
    assert (error.provider, error.model, error.message) == ("ol", "m", "upstream says no")
    assert error.upstream_status == status
    assert error.retry_after == 4.0


def test_refine_retypes_only_what_the_text_explains() -> None:
    plain = InvalidRequestError(
        "upstream HTTP 400: context size exceeded", provider="vl", model="m", upstream_status=400
    )
    refined = refine(plain)
    assert type(refined) is ContextLengthExceededError
    assert (refined.message, refined.provider, refined.model, refined.upstream_status) == (
        plain.message,
        "vl",
        "m",
        400,
    )
    untouched = [
        InvalidRequestError("upstream HTTP 400: bad temperature", upstream_status=400),
        RateLimitedError("upstream HTTP 429: too many tokens, context window full", upstream_status=429),
        ContentFilteredError("upstream HTTP 400: context length and content filter", upstream_status=400),
        NotFoundError("upstream HTTP 404: no model with a long context window", upstream_status=404),
    ]
    for error in untouched:
        assert refine(error) is error
