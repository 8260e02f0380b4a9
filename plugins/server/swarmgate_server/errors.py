"""Errors as the gateway answers them: a status, a code, and a body in the
caller's dialect (OpenAI's or Anthropic's).

:class:`GatewayError` is what the HTTP layer raises and renders. Kernel
errors are mapped once, in :func:`from_swarmgate`:

==========================================  =====================================
kernel error                                 HTTP status (code)
==========================================  =====================================
invalid request, content filtered,          400 (``invalid_request``,
context length                               ``content_filter``, ``context_length_exceeded``)
unknown model, route or provider            404 (``model_not_found``)
rate limited / budget exceeded              429 (``rate_limit_exceeded`` /
                                             ``budget_exceeded``) with ``Retry-After``
every target failed: by the last error      429 rate limited, 504 timeout,
                                             503 overloaded, 502 other upstream failures
                                             (auth, 5xx, connection, not found upstream)
no target could be tried (all filtered)     503 (``no_provider_available``)
the caller's own ``timeouts.total`` passed  408 (``request_timeout``)
==========================================  =====================================

Upstream authentication and permission failures are the gateway's problem
(its provider keys), not the caller's: they are 502, never 401/403, which a
client would read as "your key is wrong". 499 (the caller went away) is
never sent: nobody is left to read it.
"""

from __future__ import annotations

import math
from typing import Final

import orjson

from swarmgate import ErrorKind, NoProviderAvailableError, SwarmgateError, UnknownModelError

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

#: Status of a request whose every attempt failed, by the last failure's kind.
_EXHAUSTED_STATUS: Final[dict[ErrorKind, tuple[int, str]]] = {
    ErrorKind.RATE_LIMITED: (429, "rate_limit_exceeded"),
    ErrorKind.BUDGET_EXCEEDED: (429, "budget_exceeded"),
    ErrorKind.TIMEOUT: (504, "upstream_timeout"),
    ErrorKind.OVERLOADED: (503, "upstream_overloaded"),
    ErrorKind.INVALID_REQUEST: (400, "invalid_request"),
    ErrorKind.CONTEXT_LENGTH_EXCEEDED: (400, "context_length_exceeded"),
    ErrorKind.CONTENT_FILTERED: (400, "content_filter"),
}

#: Status of an error that ended the request directly, by kind.
_DIRECT_STATUS: Final[dict[ErrorKind, tuple[int, str]]] = {
    **_EXHAUSTED_STATUS,
    ErrorKind.NOT_FOUND: (502, "upstream_not_found"),
    ErrorKind.AUTHENTICATION: (502, "upstream_authentication"),
    ErrorKind.PERMISSION: (502, "upstream_permission"),
    ErrorKind.SERVER_ERROR: (502, "upstream_error"),
    ErrorKind.CONNECTION_ERROR: (502, "upstream_unreachable"),
    ErrorKind.NO_PROVIDER_AVAILABLE: (503, "no_provider_available"),
    # Only when the gateway itself cancels (shutting down): the caller is still there.
    ErrorKind.CANCELLED: (503, "request_cancelled"),
}


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
    module docstring for the mapping). ``caller_timeout_ms`` is the total
    timeout the caller set for this request: a timeout at or past it is the
    caller's deadline (408), not an upstream's (504)."""
    attempts = len(error.attempts)
    decisive: SwarmgateError = error
    if isinstance(error, UnknownModelError):
        return GatewayError(404, error.message, code="model_not_found", param="model", attempts=attempts)
    if isinstance(error, NoProviderAvailableError):
        if error.last_error is None:
            return GatewayError(
                503, str(error), code="no_provider_available", retry_after=error.retry_after, attempts=attempts
            )
        decisive = error.last_error
        status, code = _EXHAUSTED_STATUS.get(decisive.kind, (502, "upstream_error"))
    else:
        status, code = _DIRECT_STATUS.get(
            decisive.kind, (error.status_code if error.status_code < 600 else 500, "error")
        )
    if decisive.kind is ErrorKind.TIMEOUT and caller_timeout_ms is not None and elapsed_ms >= caller_timeout_ms * 0.95:
        status, code = 408, "request_timeout"
    retry_after = error.retry_after if error.retry_after is not None else decisive.retry_after
    if status not in (429, 503):
        retry_after = None
    return GatewayError(status, str(error), code=code, retry_after=retry_after, attempts=attempts)


def internal_error(exc: BaseException) -> GatewayError:
    """A 500 for a bug in the gateway or a plugin (named, never a traceback)."""
    return GatewayError(500, f"internal error: {type(exc).__name__}: {exc}", code="internal_error")
