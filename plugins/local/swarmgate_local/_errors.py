"""Local servers' errors mapped to the swarmgate taxonomy.

Ollama's errors are ``{"error": "<text>"}`` with an HTTP status and no code;
the OpenAI-compatible servers (vLLM, llama.cpp, LM Studio) send OpenAI-style
bodies with codes of their own. So the status decides, except where only
the text tells what happened:

* a context-length text (``context length``/``size``/``window``,
  ``maximum context``, ``prompt is too long``) on a 4xx (400, 413, 422, ...;
  not the statuses listed last), a 500 or in a stream:
  ContextLengthExceededError;
* a content-policy text (``content filter``/``policy``, ``safety system``,
  ``moderation``, ``flagged``) on the same: ContentFilteredError (and so is
  ``done_reason: "content_filter"``, checked by the driver);
* ``server busy``/``overloaded`` on a 500 or in a stream: OverloadedError;
  ``rate limit``/``too many requests`` there: RateLimitedError;
* anything else: the status (:func:`~swarmgate.errors.error_for_status`:
  429 RateLimitedError with ``retry_after``, 503/529 OverloadedError --
  Ollama's ``server busy, please try again.  maximum pending requests
  exceeded``, llama.cpp's ``Loading model`` --, 401/403/404 authentication,
  permission, not found -- Ollama's ``model "x" not found, try pulling it
  first`` --, other 4xx/5xx invalid request/server error); an error inside a
  stream that no text explains is ServerError.

401, 403, 404, 408, 429, 503, 504 and 529 keep their meaning whatever the
text says (a 429 about "too many tokens per minute" is a rate limit).

Ollama itself never filters content and by default truncates an over-long
prompt to ``num_ctx`` instead of failing; the text rules catch the servers,
runners and gateways (guardrail proxies, authenticating reverse proxies) that
do refuse.
"""

from __future__ import annotations

import re

from swarmgate.errors import (
    ContentFilteredError,
    ContextLengthExceededError,
    InvalidRequestError,
    OverloadedError,
    RateLimitedError,
    ServerError,
    SwarmgateError,
    error_for_status,
)

_CONTEXT_RE = re.compile(
    r"context[ _-]?(length|size|window)|maximum context|exceeds? the (available )?context|prompt is too long",
    re.IGNORECASE,
)
_FILTER_RE = re.compile(
    r"content[ _-]?(filter|policy|management policy|safety)|safety (system|policy|filter)|moderation|flagged",
    re.IGNORECASE,
)
_RATE_RE = re.compile(r"rate[ _-]?limit|too many requests", re.IGNORECASE)
_OVERLOAD_RE = re.compile(r"server busy|server is busy|overloaded|maximum pending requests", re.IGNORECASE)

#: Statuses whose meaning a text cannot change (a 429 "too many tokens per
#: minute" is a rate limit, not a context-length error).
_STATUS_DECIDES = frozenset({401, 403, 404, 408, 429, 503, 504, 529})


def text_kind(status: int | None, text: str) -> type[SwarmgateError] | None:
    """The error class the text of an error implies for ``status`` (``None``:
    an error inside a stream), or ``None`` when the status alone decides.

    Only a stream error, a 500 or a 4xx whose status says little (400, 413,
    422, ...) is read; 401/403/404/408/429/503/504/529 keep their meaning.
    """
    if status is not None and (status in _STATUS_DECIDES or not 400 <= status <= 500):
        return None
    if _CONTEXT_RE.search(text):
        return ContextLengthExceededError
    if _FILTER_RE.search(text):
        return ContentFilteredError
    if status is None or status == 500:
        if _OVERLOAD_RE.search(text):
            return OverloadedError
        if _RATE_RE.search(text):
            return RateLimitedError
    return None


def classify(
    status: int | None,
    message: str,
    *,
    provider: str,
    model: str | None,
    retry_after: float | None = None,
) -> SwarmgateError:
    """The taxonomy error for an upstream error ``message`` that came with
    HTTP ``status`` (``None``: an error object inside a stream). The message
    is used as is: scrub secrets first."""
    cls = text_kind(status, message)
    if cls is None:
        if status is None:
            cls = ServerError
        else:
            return error_for_status(status, message, provider=provider, model=model, retry_after=retry_after)
    return cls(message, provider=provider, model=model, retry_after=retry_after, upstream_status=status)


def refine(error: SwarmgateError) -> SwarmgateError:
    """``error`` (from the ``openai`` driver) retyped where its text says
    more than the status did: llama.cpp's ``exceed_context_size_error``, LM
    Studio's context overflow and guardrail refusals arrive as plain 400s or
    500s. Other errors are returned unchanged."""
    if type(error) not in (InvalidRequestError, ServerError):
        return error
    cls = text_kind(error.upstream_status, error.message)
    if cls is None:
        return error
    refined = cls(
        error.message,
        provider=error.provider,
        model=error.model,
        retry_after=error.retry_after,
        upstream_status=error.upstream_status,
    )
    refined.__cause__ = error.__cause__
    return refined
