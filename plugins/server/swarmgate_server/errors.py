"""Errors as the gateway answers them: a status, a code, and a body in the
caller's dialect (OpenAI's or Anthropic's).

:class:`GatewayError` is what the HTTP layer raises and renders. Kernel
errors are mapped once, in :func:`from_swarmgate`; the status comes from
the kernel's :func:`swarmgate.errors.http_status`, the same mapping the
usage and audit logs record, so a client's answer and the logged status
always agree:

==========================================  =====================================
kernel error                                 HTTP status (code)
==========================================  =====================================
invalid request, content filtered,          400 (``invalid_request``,
context length                               ``content_filter``, ``context_length_exceeded``)
unknown model, route or provider            404 (``model_not_found``)
rate limited / budget exceeded              429 (``rate_limit_exceeded`` /
                                             ``budget_exceeded``) with ``Retry-After``
every target failed: by the last error      429 rate limited, 504 timeout,
                                             503 overloaded or refused, 502 other upstream
                                             failures (auth, 5xx, connection, not found upstream)
no target could be tried (all filtered)     503 (``no_provider_available``)
the caller's own ``timeouts.total`` passed  408 (``request_timeout``)
==========================================  =====================================

Upstream authentication and permission failures are the gateway's problem
(its provider keys), not the caller's: they are 502, never 401/403, which a
client would read as "your key is wrong". 499 (the caller went away) is
never sent: nobody is left to read it. A cancelled request the gateway can
still answer was cancelled by something else (the gateway stopping): 503.
"""

from __future__ import annotations

import math
from typing import Final

import orjson

from swarmgate import ErrorKind, NoProviderAvailableError, SwarmgateError, UnknownModelError
from swarmgate.errors import ERROR_CLASSES, http_status

#: OpenAI's ``error.type`` for each status the gateway sends.
OPENAI_TYPES: Final[dict[int, str]] = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "timeout_error",
}

#: Anthropic's ``error.type`` for each status the gateway sends.
ANTHROPIC_TYPES: Final[dict[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}

#: Code of a request whose every attempt failed, by the last failure's kind.
_EXHAUSTED_CODE: Final[dict[ErrorKind, str]] = {
    ErrorKind.RATE_LIMITED: "rate_limit_exceeded",
    ErrorKind.BUDGET_EXCEEDED: "budget_exceeded",
    ErrorKind.TIMEOUT: "upstream_timeout",
    ErrorKind.OVERLOADED: "upstream_overloaded",
    ErrorKind.INVALID_REQUEST: "invalid_request",
    ErrorKind.CONTEXT_LENGTH_EXCEEDED: "context_length_exceeded",
    ErrorKind.CONTENT_FILTERED: "content_filter",
    ErrorKind.NO_PROVIDER_AVAILABLE: "no_provider_available",
}

#: Code of an error that ended the request directly, by kind.
_DIRECT_CODE: Final[dict[ErrorKind, str]] = {
    **_EXHAUSTED_CODE,
    ErrorKind.NOT_FOUND: "upstream_not_found",
    ErrorKind.AUTHENTICATION: "upstream_authentication",
    ErrorKind.PERMISSION: "upstream_permission",
    ErrorKind.SERVER_ERROR: "upstream_error",
    ErrorKind.CONNECTION_ERROR: "upstream_unreachable",
    ErrorKind.CANCELLED: "request_cancelled",
}

#: The status of each kind's own class: a plugin's subclass that sets another
#: status (a state backend's 503) gets its kind's name as the code instead.
_KIND_STATUS: Final[dict[ErrorKind, int]] = {kind: cls.status_code for kind, cls in ERROR_CLASSES.items()}


class GatewayError(Exception):
    """An HTTP error answer: ``status``, a human ``message``, OpenAI-style
    ``code`` and ``param``, and ``retry_after`` seconds (sent as
    ``Retry-After`` and ``retry-after-ms``). ``attempts`` is how many
    upstream attempts were made (the ``x-swarmgate-attempts`` header)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        attempts: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after
        self.attempts = attempts

    def openai_body(self) -> bytes:
        """``{"error": {"message", "type", "param", "code"}}``."""
        kind = OPENAI_TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return orjson.dumps({"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}})

    def anthropic_body(self) -> bytes:
        """``{"type": "error", "error": {"type", "message"}}``."""
        kind = ANTHROPIC_TYPES.get(self.status, "api_error" if self.status >= 500 else "invalid_request_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": self.message}})

    def headers(self) -> list[tuple[bytes, bytes]]:
        """``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms``
        when a wait is known; ``WWW-Authenticate`` on 401; the attempt count."""
        out: list[tuple[bytes, bytes]] = []
        if self.retry_after is not None and self.retry_after >= 0:
            out.append((b"retry-after", str(max(1, math.ceil(self.retry_after))).encode()))
            out.append((b"retry-after-ms", str(max(1, math.ceil(self.retry_after * 1000.0))).encode()))
        if self.status == 401:
            out.append((b"www-authenticate", b'Bearer realm="swarmgate"'))
        if self.attempts is not None:
            out.append((b"x-swarmgate-attempts", str(self.attempts).encode()))
        return out


def from_swarmgate(
    error: SwarmgateError, *, caller_timeout_ms: float | None = None, elapsed_ms: float = 0.0
) -> GatewayError:
    """The HTTP answer for a request that ended with ``error`` (see the
    module docstring for the mapping; the status is
    :func:`~swarmgate.errors.http_status`'s). ``caller_timeout_ms`` is the
    total timeout the caller set for this request: a timeout at or past it
    is the caller's deadline (408), not an upstream's (504)."""
    attempts = len(error.attempts)
    status = http_status(error, caller_timeout_ms=caller_timeout_ms, elapsed_ms=elapsed_ms)
    if isinstance(error, UnknownModelError):
        return GatewayError(status, error.message, code="model_not_found", param="model", attempts=attempts)
    decisive: SwarmgateError = error
    if isinstance(error, NoProviderAvailableError) and error.last_error is not None:
        while isinstance(decisive, NoProviderAvailableError) and decisive.last_error is not None:
            decisive = decisive.last_error
        code = _EXHAUSTED_CODE.get(decisive.kind, "upstream_error")
    else:
        code = _DIRECT_CODE.get(decisive.kind, "error")
    if status == 408:
        code = "request_timeout"
    elif status == 499:
        # The caller is still there to read this: something else cancelled it.
        status = 503
    elif status != 502 and status != _KIND_STATUS.get(decisive.kind, status):
        code = decisive.kind.value  # a plugin's error class with a status of its own
    retry_after = error.retry_after if error.retry_after is not None else decisive.retry_after
    if status not in (429, 503):
        retry_after = None
    return GatewayError(status, str(error), code=code, retry_after=retry_after, attempts=attempts)


def internal_error(exc: BaseException) -> GatewayError:
    """A 500 for a bug in the gateway or a plugin (named, never a traceback)."""
    return GatewayError(500, f"internal error: {type(exc).__name__}: {exc}", code="internal_error")
