"""The error taxonomy."""

from __future__ import annotations

import pytest

from swarmgate import errors
from swarmgate.errors import ERROR_CLASSES, ErrorKind, error_for_status


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.InvalidRequestError),
        (401, errors.AuthenticationError),
        (407, errors.AuthenticationError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (408, errors.ProviderTimeoutError),
        (413, errors.ContextLengthExceededError),
        (429, errors.RateLimitedError),
        (500, errors.ServerError),
        (502, errors.ServerError),
        (503, errors.OverloadedError),
        (504, errors.ProviderTimeoutError),
        (529, errors.OverloadedError),
    ],
)
def test_status_mapping(status: int, cls: type[errors.SwarmgateError]) -> None:
    error = error_for_status(status, "m", provider="p", retry_after=2)
    assert type(error) is cls
    assert error.upstream_status == status
    assert error.retry_after == 2


def test_every_kind_has_a_class_and_sensible_flags() -> None:
    assert set(ERROR_CLASSES) == set(ErrorKind)
    retryable = {k for k, c in ERROR_CLASSES.items() if c.retryable}
    assert retryable == {"timeout", "rate_limited", "overloaded", "server_error", "connection_error"}
    assert not errors.InvalidRequestError.failover
    assert errors.ContextLengthExceededError.failover
    assert errors.AuthenticationError.failover
    assert not errors.UnknownModelError.failover
    assert errors.BudgetExceededError.status_code == 429


def test_string_form_names_the_target() -> None:
    error = errors.RateLimitedError("slow down", provider="openai", model="gpt-4", retry_after=1.5)
    assert str(error) == "[openai/gpt-4] slow down"
    assert error.to_dict()["retry_after"] == 1.5
