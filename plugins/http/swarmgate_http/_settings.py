"""The ``http`` provider type's config keys, as attrs classes.

The kernel structures a provider's type-specific keys into
:class:`HttpSettings` (camelCase keys at the top level of the provider's
config) and reports every bad value with its path. The validators here go
further than types: every JMESPath expression is compiled, every template
parsed, every error kind and HTTP method checked, so that a config that
starts is a config that can run (``providers.x.response.text: invalid
JMESPath expression 'result.': ...``).

``headers`` and ``healthCheck`` are keys of the kernel's
:class:`~swarmgate.config.ProviderConfig`, not of these classes; the
driver checks them when it is built (:class:`HealthCheckRequest` is the
part of ``healthCheck`` it reads).
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from swarmgate.config import InvalidValue, camel
from swarmgate.errors import ErrorKind
from swarmgate_http._paths import PathError, compile_path
from swarmgate_http._template import StringTemplate, TemplateError, compile_body

__all__ = [
    "BODY_VARIABLES",
    "DEFAULT_ERROR_CODE",
    "DEFAULT_ERROR_MESSAGE",
    "ERROR_KINDS",
    "HEADER_VARIABLES",
    "METHODS",
    "URL_VARIABLES",
    "DoneMarker",
    "ErrorRule",
    "HealthCheckRequest",
    "HttpSettings",
    "ResponsePaths",
    "StreamSettings",
]

#: The placeholders of a body template (and the variables a ``$jmespath`` expression sees).
BODY_VARIABLES: Final = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "system",
        "temperature",
        "maxTokens",
        "topP",
        "stop",
        "stream",
        "tools",
        "toolChoice",
        "responseFormat",
        "user",
    }
)
#: The placeholders of a header value: only the API key.
HEADER_VARIABLES: Final = frozenset({"apiKey"})
#: The placeholders of a URL: only the upstream model name (percent-encoded, slashes kept).
URL_VARIABLES: Final = frozenset({"model"})
#: The HTTP methods a completion or health request may use.
METHODS: Final = ("GET", "POST", "PUT", "PATCH")
#: The error kinds an error rule may name (the request-failure kinds of the taxonomy).
ERROR_KINDS: Final = tuple(
    k.value for k in ErrorKind if k not in (ErrorKind.BUDGET_EXCEEDED, ErrorKind.NO_PROVIDER_AVAILABLE)
)
#: Where the error message is looked for when ``response.errorMessage`` is not set.
DEFAULT_ERROR_MESSAGE: Final = "error.message || error"
#: Where the error code is looked for when ``response.errorCode`` is not set.
DEFAULT_ERROR_CODE: Final = "error.code || error.type"


def _expression(_instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    """attrs validator: ``value`` (unless ``None``) is a usable JMESPath expression."""
    if value is None:
        return
    try:
        compile_path(value)
    except PathError as exc:
        raise InvalidValue(camel(attribute.name), f"invalid JMESPath expression {value!r}: {exc}") from None


def _url(_instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    """attrs validator: an ``http(s)://`` URL or a path, with only ``{model}`` placeholders."""
    if value is None:
        return
    key = camel(attribute.name)
    if "://" in value and not value.startswith(("http://", "https://")):
        raise InvalidValue(
            key, f"expected an http:// or https:// URL, or a path relative to the endpoint, got {value!r}"
        )
    try:
        StringTemplate.parse(value, URL_VARIABLES)
    except TemplateError as exc:
        raise InvalidValue(key, exc.reason) from None


def _method(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in METHODS:
        raise InvalidValue(camel(attribute.name), f"expected one of {', '.join(METHODS)}, got {value!r}")


def _body(_instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a JSON body template whose placeholders are request variables."""
    if value is None:
        return
    try:
        compile_body(value, BODY_VARIABLES)
    except TemplateError as exc:
        raise InvalidValue(camel(attribute.name) + exc.where, exc.reason) from None


def _upper(value: str) -> str:
    """attrs converter: HTTP methods in upper case (``"post"`` is ``POST``)."""
    return value.upper()


def _stream_format(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in ("sse", "ndjson"):
        raise InvalidValue(camel(attribute.name), f'expected "sse" or "ndjson", got {value!r}')


def _kind(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in ERROR_KINDS:
        raise InvalidValue(camel(attribute.name), f"unknown error kind {value!r} (kinds: {', '.join(ERROR_KINDS)})")


def _status(_instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and not 100 <= value <= 599:
        raise InvalidValue(camel(attribute.name), f"expected an HTTP status (100-599), got {value}")


@attrs.frozen(kw_only=True)
class ResponsePaths:
    """Where the parts of an answer are (``response``), as JMESPath expressions.

    ``text`` (required) selects the generated text: a string, or a list of
    strings that are joined. ``finishReason``, ``inputTokens``,
    ``outputTokens``, ``model`` and ``toolCalls`` are optional; tool calls
    are a list (or one object) of OpenAI-style calls
    (``{"id", "function": {"name", "arguments"}}``) or flat
    ``{"id", "name", "arguments"}`` objects (``arguments`` may be a JSON
    object; ``input``/``args`` are accepted for it). ``errorMessage`` and
    ``errorCode`` read error bodies (and errors inside a 2xx answer or a
    stream event). ``finishReasons`` maps the upstream's finish reasons to
    swarmgate's (``stop``, ``length``, ``tool_calls``, ``content_filter``);
    it applies to streams too.
    """

    text: str = attrs.field(validator=_expression)
    finish_reason: str | None = attrs.field(default=None, validator=_expression)
    input_tokens: str | None = attrs.field(default=None, validator=_expression)
    output_tokens: str | None = attrs.field(default=None, validator=_expression)
    tool_calls: str | None = attrs.field(default=None, validator=_expression)
    model: str | None = attrs.field(default=None, validator=_expression)
    error_message: str = attrs.field(default=DEFAULT_ERROR_MESSAGE, validator=_expression)
    error_code: str = attrs.field(default=DEFAULT_ERROR_CODE, validator=_expression)
    finish_reasons: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class DoneMarker:
    """What ends a stream (``stream.done``): a frame whose raw data (an SSE
    event's data, an NDJSON line) equals ``data`` (``"[DONE]"``), or an
    event where ``path`` selects ``equals`` (any JSON value; without
    ``equals``, any truthy value). The event that matches ``path`` is
    still read for text, finish reason and usage."""

    data: str | None = None
    path: str | None = attrs.field(default=None, validator=_expression)
    equals: Any = None

    def __attrs_post_init__(self) -> None:
        if self.data is None and self.path is None:
            raise InvalidValue("", 'needs "data" (the raw frame that ends the stream) or "path" (with "equals")')
        if self.equals is not None and self.path is None:
            raise InvalidValue("equals", '"equals" needs a "path"')


@attrs.frozen(kw_only=True)
class StreamSettings:
    """How streamed answers are read (``stream``); without this section,
    ``stream()`` makes a normal request and delivers the answer as one delta.

    ``format`` is ``sse`` (server-sent events) or ``ndjson`` (one JSON object
    per line). The paths are applied to every event; each one left unset
    uses the ``response`` path of the same name (so an API whose events look
    like its answers needs none). ``text`` selects a text *delta*; the token
    paths are read from every event and the last values seen are the usage.
    ``toolCalls`` selects tool-call fragments (OpenAI-style deltas
    ``{"index", "id", "function": {"name", "arguments"}}``, or flat
    ``{"index", "id", "name", "arguments"}``). ``done`` marks the end; without
    it the end of the body ends the stream. ``body`` is laid over the
    request body template for streamed requests (objects merge, ``null``
    removes a key), ``url`` replaces ``url`` for them.
    """

    format: str = attrs.field(default="sse", validator=_stream_format)
    text: str | None = attrs.field(default=None, validator=_expression)
    finish_reason: str | None = attrs.field(default=None, validator=_expression)
    input_tokens: str | None = attrs.field(default=None, validator=_expression)
    output_tokens: str | None = attrs.field(default=None, validator=_expression)
    tool_calls: str | None = attrs.field(default=None, validator=_expression)
    error_message: str | None = attrs.field(default=None, validator=_expression)
    error_code: str | None = attrs.field(default=None, validator=_expression)
    done: DoneMarker | None = None
    body: dict[str, Any] | None = attrs.field(default=None, validator=_body)
    url: str | None = attrs.field(default=None, validator=_url)


@attrs.frozen(kw_only=True)
class ErrorRule:
    """One row of the error table (``errors``): an upstream error that
    matches every matcher given (``status``: the HTTP status; ``code``: the
    value at ``response.errorCode``, compared as text; ``messageContains``:
    a case-insensitive substring of the message) becomes an error of
    ``kind``. Rules are tried in order, before the default status mapping.
    Errors inside a stream or a 2xx answer have no status: only rules
    without ``status`` match them."""

    kind: str = attrs.field(validator=_kind)
    status: int | None = attrs.field(default=None, validator=_status)
    code: str | None = None
    message_contains: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.status is None and self.code is None and self.message_contains is None:
            raise InvalidValue("", 'needs at least one of "status", "code" and "messageContains"')

    def matches(self, status: int | None, code: str | None, message: str) -> bool:
        """Does an error with this status, code and message match?"""
        if self.status is not None and status != self.status:
            return False
        if self.code is not None and code != self.code:
            return False
        return self.message_contains is None or self.message_contains.lower() in message.lower()


@attrs.frozen(kw_only=True)
class HttpSettings:
    """The ``http`` type's keys (see the README for a full example).

    ``url``: where completions go, a path relative to ``endpoint`` or an
    absolute URL, with an optional ``{model}`` placeholder. ``method``:
    default ``POST``. ``body``: the JSON body template (placeholders are
    described in :mod:`swarmgate_http._template`); ``None`` sends no body.
    ``response``: where the answer's parts are. ``stream``: how streams are
    read (optional). ``errors``: the error table, tried before the default
    status mapping.
    """

    response: ResponsePaths
    url: str = attrs.field(default="", validator=_url)
    method: str = attrs.field(default="POST", converter=_upper, validator=_method)
    body: Any = attrs.field(default=None, validator=_body)
    stream: StreamSettings | None = None
    errors: tuple[ErrorRule, ...] = ()


@attrs.frozen(kw_only=True)
class HealthCheckRequest:
    """The request the health probe sends: the ``method``, ``path`` and
    ``expectedStatus`` keys of the provider's ``healthCheck`` (its other
    keys belong to the health-monitoring plugin). ``path`` is relative to
    ``endpoint`` or absolute; without ``expectedStatus`` any 2xx is healthy."""

    method: str = attrs.field(default="GET", converter=_upper, validator=_method)
    path: str | None = attrs.field(default=None, validator=_url)
    expected_status: int | None = attrs.field(default=None, validator=_status)
