"""DashScope's error codes mapped to the swarmgate error taxonomy.

DashScope names every failure with a ``code`` (``Throttling.RateQuota``,
``DataInspectionFailed``, ``Arrearage``, ...) besides the HTTP status, and
the code is what decides: ``Arrearage`` (an account in arrears) comes with
HTTP 400 but is a permission problem, ``Throttling.AllocationQuota`` is a
rate limit (tokens per minute) in the text APIs, and an in-stream
``event:error`` frame has no HTTP status at all. The table follows
DashScope's error-code reference (Model Studio, "Error messages"); a code it
does not know leaves the decision to the HTTP status
(:func:`swarmgate.errors.error_for_status`).
"""

from __future__ import annotations

import re

import attrs

from swarmgate.errors import (
    AuthenticationError,
    ContentFilteredError,
    ContextLengthExceededError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    SwarmgateError,
    error_for_status,
)

#: The content-safety ("green net") refusals and custom-policy blocks.
_FILTER_CODES = frozenset(
    {
        "datainspectionfailed",
        "data_inspection_failed",
        "customroleblocked",
        "faqruleblocked",
        "ipinfringementsuspect",
        "content_filter",
    }
)
#: Rate limits: requests or tokens per time window (waiting helps).
_RATE_CODES = frozenset({"limitrequests", "limit_requests", "limit_burst_rate", "insufficient_quota"})
#: Account, billing and access problems (waiting does not help).
_PERMISSION_CODES = frozenset(
    {
        "arrearage",
        "access_denied",
        "commoditynotpurchased",
        "prepaidbilloverdue",
        "postpaidbilloverdue",
        "allocationquota.freetieronly",
    }
)
_AUTH_CODES = frozenset({"invalidapikey", "invalid_api_key", "not authorized"})
_NOT_FOUND_CODES = frozenset(
    {"modelnotfound", "model_not_found", "model_not_supported", "workspacenotfound", "notfound"}
)
_OVERLOAD_CODES = frozenset({"modelservingerror", "modelunavailable", "serviceunavailable"})
_TIMEOUT_CODES = frozenset({"requesttimeout", "internalerror.timeout"})
_SERVER_CODES = frozenset({"internal_error", "systemerror", "modelservicefailed"})
_INVALID_CODES = frozenset({"invalid_request_error", "invalid_parameter_error", "invalid_value", "badrequest"})

#: Messages that mean the prompt does not fit the model (DashScope sends them as InvalidParameter).
_CONTEXT_RE = re.compile(
    r"range of input length should be|input length (?:should|must|exceed)|"
    r"total message token length exceed|maximum context length|context length exceed",
    re.IGNORECASE,
)
#: A quota message that waiting does not cure (free quota used up, no paid use).
_SPENT_RE = re.compile(r"free allocated quota exceeded|free tier of the model has been exhausted", re.IGNORECASE)
_NOT_EXIST_RE = re.compile(r"\bmodel not exist\b", re.IGNORECASE)

#: The classes that say more than an HTTP status can (used to refine another driver's errors).
SPECIFIC_CLASSES: tuple[type[SwarmgateError], ...] = (
    ContentFilteredError,
    ContextLengthExceededError,
    RateLimitedError,
    AuthenticationError,
    PermissionDeniedError,
    NotFoundError,
    OverloadedError,
    ProviderTimeoutError,
)


@attrs.frozen
class DashScopeError:
    """What a DashScope error says: ``message``, ``code`` and ``request_id``
    (each as sent; ``code``/``request_id`` may be absent)."""

    message: str
    code: str | None = None
    request_id: str | None = None


def error_class(code: str | None, message: str) -> type[SwarmgateError] | None:
    """The taxonomy class for DashScope's ``code`` (and ``message``), or
    ``None`` when they say nothing the HTTP status does not.

    Content-safety codes are :class:`ContentFilteredError`; an input-length
    message (``Range of input length should be [1, N]``, whatever the code)
    is :class:`ContextLengthExceededError`; ``Throttling*``,
    ``limit_requests`` and ``insufficient_quota`` are
    :class:`RateLimitedError`, except a spent free quota, which is
    :class:`PermissionDeniedError` like ``Arrearage``, ``*AccessDenied*``
    and overdue bills; ``InvalidApiKey`` is :class:`AuthenticationError`;
    ``ModelNotFound`` (or "Model not exist.") :class:`NotFoundError`;
    ``ModelServingError``/``ModelUnavailable``/``ServiceUnavailable``
    :class:`OverloadedError`; ``RequestTimeOut`` :class:`ProviderTimeoutError`;
    ``InternalError*`` :class:`ServerError`; ``InvalidParameter*`` and
    ``BadRequest*`` :class:`InvalidRequestError`.
    """
    lowered = (code or "").strip().lower()
    if lowered in _FILTER_CODES:
        return ContentFilteredError
    if _CONTEXT_RE.search(message):
        return ContextLengthExceededError
    if lowered.startswith("throttling") or lowered in _RATE_CODES:
        return PermissionDeniedError if _SPENT_RE.search(message) else RateLimitedError
    if lowered in _AUTH_CODES:
        return AuthenticationError
    if lowered in _PERMISSION_CODES or "accessdenied" in lowered:
        return PermissionDeniedError
    if lowered in _NOT_FOUND_CODES or _NOT_EXIST_RE.search(message):
        return NotFoundError
    if lowered in _OVERLOAD_CODES:
        return OverloadedError
    if lowered in _TIMEOUT_CODES:
        return ProviderTimeoutError
    if lowered.startswith("internalerror") or lowered in _SERVER_CODES:
        return ServerError
    if lowered.startswith(("invalidparameter", "badrequest")) or lowered in _INVALID_CODES:
        return InvalidRequestError
    return None


def describe(status: int | None, info: DashScopeError, *, where: str | None = None) -> str:
    """The error message: where it happened (``upstream HTTP <status>``, or
    ``where``, default ``error in stream``), DashScope's message, its code
    and request id (``upstream HTTP 429: Requests rate limit exceeded...
    [Throttling.RateQuota] (request_id ...)``)."""
    if status is not None:
        where = f"upstream HTTP {status}"
    text = f"{where or 'error in stream'}: {info.message}"
    if info.code:
        text += f" [{info.code}]"
    if info.request_id:
        text += f" (request_id {info.request_id})"
    return text


def classify(
    status: int | None,
    info: DashScopeError,
    *,
    provider: str,
    model: str | None,
    retry_after: float | None = None,
    message: str | None = None,
) -> SwarmgateError:
    """The typed error for a DashScope failure: :func:`error_class` first,
    then the HTTP ``status`` (:func:`~swarmgate.errors.error_for_status`);
    an in-stream error (``status`` ``None``) with an unknown code is a
    :class:`ServerError`. ``message`` defaults to :func:`describe`; callers
    pass a scrubbed one."""
    text = message if message is not None else describe(status, info)
    cls = error_class(info.code, info.message)
    if cls is None:
        if status is not None:
            return error_for_status(status, text, provider=provider, model=model, retry_after=retry_after)
        cls = ServerError
    return cls(text, provider=provider, model=model, retry_after=retry_after, upstream_status=status)


_LABEL_RE = re.compile(r"\[([^\[\]]+)\]\s*$")


def refine(error: SwarmgateError, *, retry_after: float | None = None) -> SwarmgateError:
    """``error`` from the ``openai`` driver (compatible mode), re-typed where
    DashScope's code or message in it means something more specific than
    that driver knows (``data_inspection_failed``, ``Range of input length``,
    ``Arrearage``, DashScope's ``insufficient_quota`` rate limit, ...).

    Reads the upstream code from the ``[code]`` label the ``openai`` driver
    ends its messages with, and the message text itself; everything else
    (message, target, ``upstream_status``) is kept, and ``retry_after``
    (the error's own, else the one given: the ``openai`` driver drops it
    for errors it does not consider rate limits). Returns ``error`` itself
    when there is nothing to refine.
    """
    label = _LABEL_RE.search(error.message)
    cls = error_class(label.group(1) if label else None, error.message)
    if cls is None or cls not in SPECIFIC_CLASSES or type(error) is cls:
        return error
    refined = cls(
        error.message,
        provider=error.provider,
        model=error.model,
        retry_after=error.retry_after if error.retry_after is not None else retry_after,
        upstream_status=error.upstream_status,
    )
    refined.__cause__ = error.__cause__
    return refined
