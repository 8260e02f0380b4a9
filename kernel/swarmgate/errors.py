"""The error taxonomy.

Every failure the gateway reports is a :class:`SwarmgateError` with a stable
:class:`ErrorKind`. The kind decides three things, once, here:

* ``retryable`` -- trying the *same* target again later may succeed
  (timeouts, rate limits, overload, 5xx, connection failures);
* ``failover`` -- trying a *different* target may succeed (everything that is
  specific to one provider: the retryable kinds plus authentication,
  permission, not-found and context-length errors);
* ``status_code`` -- the HTTP status of the error on its own (an attempt's).

What a request that ended with an error is answered with, and recorded as,
is :func:`http_status`: one mapping for the gateway's answer and the usage
and audit logs (an upstream's 401 is the gateway's problem: 502).

Configuration and plugin-loading problems are :class:`ConfigError` and
:class:`PluginError`: they happen at start-up, never per request.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from swarmgate.models import Attempt


class ErrorKind(enum.StrEnum):
    """The stable, machine-readable class of a request failure."""

    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    CONNECTION_ERROR = "connection_error"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    INVALID_REQUEST = "invalid_request"
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    CONTENT_FILTERED = "content_filtered"
    NOT_FOUND = "not_found"
    BUDGET_EXCEEDED = "budget_exceeded"
    NO_PROVIDER_AVAILABLE = "no_provider_available"
    CANCELLED = "cancelled"


class SwarmgateError(Exception):
    """Base of every error swarmgate raises on purpose.

    Attributes:
        kind: the :class:`ErrorKind`.
        message: a human-readable sentence naming what went wrong and where.
        provider, model: the target the error came from, when there is one.
        retry_after: seconds the caller should wait before trying again, if known.
        status_code: the HTTP status of this error on its own (an attempt's);
            a request ending with it is answered with :func:`http_status`.
        upstream_status: the HTTP status the upstream answered with, if any.
        upstream_code: the provider's own error code, if any.
        cost: what the failed call still cost (set by meta-providers).
    """

    kind: ClassVar[ErrorKind] = ErrorKind.SERVER_ERROR
    retryable: ClassVar[bool] = False
    failover: ClassVar[bool] = False
    status_code: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        retry_after: float | None = None,
        upstream_status: int | None = None,
        upstream_code: str | None = None,
        cost: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.retry_after = retry_after
        self.upstream_status = upstream_status
        #: The provider's own error code (``Throttling``, ``rate_limit_error``, ...), if any.
        self.upstream_code = upstream_code
        #: What the failed call still cost (a meta-provider's inner calls); 0 for plain drivers.
        self.cost = cost
        #: Every attempt made for the request, when raised by the pipeline.
        self.attempts: tuple[Attempt, ...] = ()

    def __str__(self) -> str:
        where = ""
        if self.provider:
            where = f"[{self.provider}/{self.model}] " if self.model else f"[{self.provider}] "
        return f"{where}{self.message}"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description (never contains secrets)."""
        return {
            "kind": self.kind.value,
            "message": self.message,
            "provider": self.provider,
            "model": self.model,
            "retryable": self.retryable,
            "retry_after": self.retry_after,
            "upstream_status": self.upstream_status,
            "upstream_code": self.upstream_code,
        }


class ProviderTimeoutError(SwarmgateError):
    """The upstream did not answer (or stopped streaming) within the timeout."""

    kind = ErrorKind.TIMEOUT
    retryable = True
    failover = True
    status_code = 504


class RateLimitedError(SwarmgateError):
    """A rate limit refused the request; ``retry_after`` says when to try again."""

    kind = ErrorKind.RATE_LIMITED
    retryable = True
    failover = True
    status_code = 429


class OverloadedError(SwarmgateError):
    """The upstream is temporarily overloaded (e.g. HTTP 529 or 503)."""

    kind = ErrorKind.OVERLOADED
    retryable = True
    failover = True
    status_code = 503


class ServerError(SwarmgateError):
    """The upstream failed with a 5xx or answered something unparseable."""

    kind = ErrorKind.SERVER_ERROR
    retryable = True
    failover = True
    status_code = 502


class ProviderConnectionError(SwarmgateError):
    """The upstream could not be reached, or the connection broke."""

    kind = ErrorKind.CONNECTION_ERROR
    retryable = True
    failover = True
    status_code = 502


class AuthenticationError(SwarmgateError):
    """The upstream rejected the credentials (HTTP 401)."""

    kind = ErrorKind.AUTHENTICATION
    failover = True
    status_code = 401


class PermissionDeniedError(SwarmgateError):
    """The credentials are valid but not allowed to do this (HTTP 403)."""

    kind = ErrorKind.PERMISSION
    failover = True
    status_code = 403


class InvalidRequestError(SwarmgateError):
    """The request itself is malformed; no provider will accept it (HTTP 400)."""

    kind = ErrorKind.INVALID_REQUEST
    status_code = 400


class ContextLengthExceededError(InvalidRequestError):
    """The prompt plus requested output exceeds the model's context window.

    A model with a larger window may still accept it, so it fails over.
    """

    kind = ErrorKind.CONTEXT_LENGTH_EXCEEDED
    failover = True


class ContentFilteredError(SwarmgateError):
    """The provider's content policy refused the prompt or the completion."""

    kind = ErrorKind.CONTENT_FILTERED
    status_code = 400


class NotFoundError(SwarmgateError):
    """The provider, model or route does not exist (HTTP 404)."""

    kind = ErrorKind.NOT_FOUND
    failover = True
    status_code = 404


class UnknownModelError(NotFoundError):
    """The requested model, route or provider is not configured anywhere.

    Raised before any attempt, so it does not fail over.
    """

    failover = False


class BudgetExceededError(SwarmgateError):
    """A budget would be exceeded; names the budget, its limit and when it resets."""

    kind = ErrorKind.BUDGET_EXCEEDED
    status_code = 429


class RequestCancelledError(SwarmgateError):
    """The caller gave up (a client that disconnected, a stream closed
    early, a cancelled task) before the request was answered. Only seen by
    ``request_failed`` hooks and usage records; status 499 (client closed
    request) by the nginx convention."""

    kind = ErrorKind.CANCELLED
    status_code = 499


class NoProviderAvailableError(SwarmgateError):
    """No target could answer. ``attempts`` lists every attempt made, in order.

    ``last_error`` is the error of the final attempt (``None`` when no target
    passed the filters, in which case the message says why each was dropped).
    """

    kind = ErrorKind.NO_PROVIDER_AVAILABLE
    status_code = 503

    def __init__(
        self,
        message: str,
        *,
        attempts: Sequence[Attempt] = (),
        last_error: SwarmgateError | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.attempts = tuple(attempts)
        self.last_error = last_error

    def to_dict(self) -> dict[str, object]:
        data = super().to_dict()
        data["attempts"] = [a.to_dict() for a in self.attempts]
        return data


#: Every request-failure class, by kind (the most general class for each kind).
ERROR_CLASSES: dict[ErrorKind, type[SwarmgateError]] = {
    ErrorKind.TIMEOUT: ProviderTimeoutError,
    ErrorKind.RATE_LIMITED: RateLimitedError,
    ErrorKind.OVERLOADED: OverloadedError,
    ErrorKind.SERVER_ERROR: ServerError,
    ErrorKind.CONNECTION_ERROR: ProviderConnectionError,
    ErrorKind.AUTHENTICATION: AuthenticationError,
    ErrorKind.PERMISSION: PermissionDeniedError,
    ErrorKind.INVALID_REQUEST: InvalidRequestError,
    ErrorKind.CONTEXT_LENGTH_EXCEEDED: ContextLengthExceededError,
    ErrorKind.CONTENT_FILTERED: ContentFilteredError,
    ErrorKind.NOT_FOUND: NotFoundError,
    ErrorKind.BUDGET_EXCEEDED: BudgetExceededError,
    ErrorKind.NO_PROVIDER_AVAILABLE: NoProviderAvailableError,
    ErrorKind.CANCELLED: RequestCancelledError,
}


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str | None = None,
    model: str | None = None,
    retry_after: float | None = None,
    upstream_code: str | None = None,
) -> SwarmgateError:
    """Map an upstream HTTP status to the matching error (the default mapping).

    Provider plugins refine this with the error body (e.g. a 400 whose code is
    ``context_length_exceeded``); this function only knows the status.
    """
    cls: type[SwarmgateError]
    if status in (401, 407):  # 407: the proxy in between wants credentials
        cls = AuthenticationError
    elif status == 403:
        cls = PermissionDeniedError
    elif status == 404:
        cls = NotFoundError
    elif status in (408, 504):
        cls = ProviderTimeoutError
    elif status == 413:
        cls = ContextLengthExceededError
    elif status == 429:
        cls = RateLimitedError
    elif status in (503, 529):
        cls = OverloadedError
    elif status >= 500:
        cls = ServerError
    elif status >= 400:
        cls = InvalidRequestError
    else:
        cls = ServerError
    return cls(
        message,
        provider=provider,
        model=model,
        retry_after=retry_after,
        upstream_status=status,
        upstream_code=upstream_code,
    )


#: Upstream complaints about the gateway's own credentials or configuration:
#: a request ending with one is the gateway's failure (502), never the
#: caller's 401/403/404 (which a client would read as "your key is wrong").
_GATEWAY_FAULTS: frozenset[ErrorKind] = frozenset({ErrorKind.AUTHENTICATION, ErrorKind.PERMISSION, ErrorKind.NOT_FOUND})
#: Share of the caller's own total timeout past which a timeout is the caller's deadline (408).
CALLER_DEADLINE_SHARE = 0.95


#: The HTTP-style status of each error kind's value (for attempts without an upstream status).
_KIND_STATUS: dict[str, int] = {kind.value: cls.status_code for kind, cls in ERROR_CLASSES.items()}


def attempt_status(attempt: Attempt) -> int:
    """The status the usage and audit logs record for one attempt: 200 when
    it answered, else the upstream's status, else its error kind's (500 for
    a kind without one)."""
    if attempt.ok:
        return 200
    if attempt.status is not None:
        return attempt.status
    return _KIND_STATUS.get(attempt.error_kind or "", 500)


def http_status(
    error: SwarmgateError, *, caller_timeout_ms: float | None = None, elapsed_ms: float | None = None
) -> int:
    """The HTTP status of a request that ended with ``error``: what a gateway
    answers and what the usage and audit logs record (one mapping for all).

    * :class:`NoProviderAvailableError` with a ``last_error`` (every target
      was tried and failed): the status of that last error, by the rules
      below; without one (no target could be tried): 503;
    * :class:`UnknownModelError` (the caller named something not configured): 404;
    * an upstream's authentication, permission or not-found error: 502 (the
      gateway's keys or configuration are at fault, not the caller's);
    * anything else: the error's own ``status_code`` (timeout 504, rate
      limited and budget 429, overloaded 503, other upstream failures 502,
      invalid request 400, cancelled by the caller 499, a plugin's own
      status), 500 when that is not an HTTP status;
    * a timeout once ``elapsed_ms`` reached :data:`CALLER_DEADLINE_SHARE` of
      ``caller_timeout_ms`` (the total timeout the caller set for this
      request): 408, the caller's own deadline rather than an upstream's.

    Pure and cheap: no I/O, a few attribute reads."""
    decisive = error
    while isinstance(decisive, NoProviderAvailableError) and decisive.last_error is not None:
        decisive = decisive.last_error
    kind = decisive.kind
    if kind in _GATEWAY_FAULTS and not isinstance(decisive, UnknownModelError):
        return 502
    if (
        kind is ErrorKind.TIMEOUT
        and caller_timeout_ms is not None
        and elapsed_ms is not None
        and elapsed_ms >= caller_timeout_ms * CALLER_DEADLINE_SHARE
    ):
        return 408
    status = decisive.status_code
    return status if 100 <= status <= 599 else 500


class ConfigError(ValueError):
    """The configuration is invalid. ``problems`` holds one ``(path, message)`` per bad value.

    The string form lists every problem as ``path: message`` so that one run
    shows everything there is to fix.
    """

    def __init__(self, problems: Sequence[tuple[str, str]], *, source: str | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        origin = f" in {source}" if source else ""
        lines = [f"  {path or '<root>'}: {msg}" for path, msg in self.problems]
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"invalid swarmgate config{origin} ({len(self.problems)} {noun}):\n" + "\n".join(lines))


class PluginError(RuntimeError):
    """A plugin is missing, blocked or broken. The message names the distribution to install."""

    def __init__(self, message: str, *, namespace: str, name: str, distribution: str | None = None) -> None:
        super().__init__(message)
        self.namespace = namespace
        self.name = name
        self.distribution = distribution
