"""The ``websocket`` provider type's settings: the keys at the top level of a
provider's config that the kernel structures into :class:`WebSocketSettings`
(camelCase in JSON), validated here so that a bad value is a start-up
:class:`~swarmgate.errors.ConfigError` naming its path.

Placeholders are written ``{{name}}`` (not ``${NAME}``, which the config
loader substitutes from the environment). JMESPath expressions are compiled
once, here, at validation time (:func:`compile_path` caches them), so a bad
expression names its path (``providers.x.paths.text``) before any request.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import jmespath
import jmespath.exceptions
import jmespath.parser

from swarmgate.config import InvalidValue, camel
from swarmgate.errors import ErrorKind

__all__ = [
    "CONNECT_PLACEHOLDERS",
    "DEFAULT_ERROR_CODES",
    "DEFAULT_FINISH_REASONS",
    "DEFAULT_MESSAGE",
    "ERROR_KINDS",
    "MESSAGE_PLACEHOLDERS",
    "DoneMarker",
    "MessagePaths",
    "WebSocketSettings",
    "compile_path",
    "placeholders",
]

PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9]*)\s*\}\}")
"""A ``{{name}}`` placeholder."""

MESSAGE_PLACEHOLDERS = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "system",
        "maxTokens",
        "temperature",
        "topP",
        "stop",
        "stream",
        "tools",
        "toolChoice",
        "responseFormat",
        "user",
        "requestId",
        "apiKey",
    }
)
"""The placeholders a request ``message`` template may use."""

CONNECT_PLACEHOLDERS = frozenset({"apiKey", "model"})
"""The placeholders ``url``, ``connectHeaders``, ``headers`` and ``subprotocols`` may use."""

DEFAULT_MESSAGE: dict[str, Any] = {
    "model": "{{model}}",
    "messages": "{{messages}}",
    "temperature": "{{temperature}}",
    "max_tokens": "{{maxTokens}}",
    "top_p": "{{topP}}",
    "stop": "{{stop}}",
    "stream": "{{stream}}",
    "stream_options": {"include_usage": True},
    "tools": "{{tools}}",
    "tool_choice": "{{toolChoice}}",
    "response_format": "{{responseFormat}}",
    "user": "{{user}}",
}
"""The request message sent when ``message`` is not set: an OpenAI Chat
Completions request body (unset fields are left out)."""

#: Error kinds a provider may report (the request-level ones are the kernel's).
ERROR_KINDS = frozenset(ErrorKind) - {ErrorKind.BUDGET_EXCEEDED, ErrorKind.NO_PROVIDER_AVAILABLE}

DEFAULT_ERROR_CODES: dict[str, str] = {
    "rate_limit_exceeded": "rate_limited",
    "rate_limit_error": "rate_limited",
    "context_length_exceeded": "context_length_exceeded",
    "string_above_max_length": "context_length_exceeded",
    "content_filter": "content_filtered",
    "content_policy_violation": "content_filtered",
    "insufficient_quota": "permission",
    "permission_error": "permission",
    "invalid_api_key": "authentication",
    "authentication_error": "authentication",
    "model_not_found": "not_found",
    "not_found_error": "not_found",
    "overloaded_error": "overloaded",
    "invalid_request_error": "invalid_request",
}
"""Error codes (and types) mapped to error kinds unless ``errorCodes`` says
otherwise: OpenAI's and Anthropic's names, which many APIs reuse."""

DEFAULT_FINISH_REASONS: dict[str, str] = {
    "completed": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "STOP": "stop",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "MAX_TOKENS": "length",
    "tool_use": "tool_calls",
    "function_call": "tool_calls",
    "SAFETY": "content_filter",
}
"""Finish reasons renamed to the OpenAI vocabulary unless ``finishReasons`` says otherwise."""


def placeholders(template: Any) -> Iterator[str]:
    """Every placeholder name in ``template`` (strings, keys excluded, at any depth)."""
    if isinstance(template, str):
        yield from PLACEHOLDER_RE.findall(template)
    elif isinstance(template, Mapping):
        for value in template.values():
            yield from placeholders(value)
    elif isinstance(template, list | tuple):
        for value in template:
            yield from placeholders(value)


def _check_placeholders(key: str, template: Any, allowed: frozenset[str]) -> None:
    unknown = sorted(set(placeholders(template)) - allowed)
    if unknown:
        names = ", ".join("{{" + name + "}}" for name in unknown)
        raise InvalidValue(key, f"unknown placeholder {names} (known: {', '.join(sorted(allowed))})")


@functools.lru_cache(maxsize=512)
def compile_path(expression: str) -> jmespath.parser.ParsedResult:
    """``expression`` compiled (once per distinct expression, process-wide).

    Raises ``ValueError`` with the parser's explanation when it is not valid JMESPath.
    """
    try:
        return jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(str(exc).replace("\n", " ")) from None


def _jmespath(_instance: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    if not value.strip():
        raise InvalidValue(camel(attribute.name), "an empty expression matches nothing; use null to turn it off")
    try:
        compile_path(value)
    except ValueError as exc:
        raise InvalidValue(camel(attribute.name), f"invalid JMESPath expression {value!r}: {exc}") from None


@attrs.frozen
class MessagePaths:
    """Where each piece of information is in a received message: JMESPath
    expressions evaluated against every JSON message (``null`` turns one
    off). The defaults read OpenAI Chat Completions chunks and objects.

    ``text`` (a string: a text delta), ``tool_calls`` (OpenAI-style tool-call
    fragments: a list, or one object; ``index``, ``id``, ``function.name``,
    ``function.arguments``, or ``name``/``arguments`` at the top),
    ``finish_reason``, ``input_tokens``/``output_tokens`` (integers; the last
    values seen win), ``model`` (the model the upstream reports); ``error``
    (a message whose value here is not null, false, 0 or empty is an error),
    then ``error_message``, ``error_code`` (looked up in ``errorCodes``),
    ``error_status`` (an HTTP-like status) and ``retry_after`` (seconds).
    """

    text: str | None = attrs.field(
        default="choices[0].delta.content || choices[0].message.content", validator=_jmespath
    )
    tool_calls: str | None = attrs.field(
        default="choices[0].delta.tool_calls || choices[0].message.tool_calls", validator=_jmespath
    )
    finish_reason: str | None = attrs.field(default="choices[0].finish_reason", validator=_jmespath)
    input_tokens: str | None = attrs.field(default="usage.prompt_tokens", validator=_jmespath)
    output_tokens: str | None = attrs.field(default="usage.completion_tokens", validator=_jmespath)
    model: str | None = attrs.field(default="model", validator=_jmespath)
    error: str | None = attrs.field(default="error", validator=_jmespath)
    error_message: str | None = attrs.field(default="error.message", validator=_jmespath)
    error_code: str | None = attrs.field(default="error.code || error.type", validator=_jmespath)
    error_status: str | None = attrs.field(default="error.status", validator=_jmespath)
    retry_after: str | None = attrs.field(default="error.retry_after", validator=_jmespath)


@attrs.frozen
class DoneMarker:
    """How the end of an answer is recognised: a literal ``message`` (the
    whole message, e.g. ``[DONE]``), or a JMESPath ``path`` whose value
    equals ``value`` (or, without ``value``, is not null, false, 0 or
    empty). Besides, a normal close (1000) after a finish reason ends an
    answer too."""

    message: str | None = None
    path: str | None = attrs.field(default=None, validator=_jmespath)
    value: Any = None

    def __attrs_post_init__(self) -> None:
        if (self.message is None) == (self.path is None):
            raise InvalidValue("", "set exactly one of 'message' (a literal message) or 'path' (a JMESPath expression)")
        if self.value is not None and self.path is None:
            raise InvalidValue("value", "only applies with 'path'")


def _default_connect_headers() -> dict[str, str]:
    return {"Authorization": "Bearer {{apiKey}}"}


def _check_url(_instance: Any, _attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    _check_placeholders("url", value, CONNECT_PLACEHOLDERS)
    if not value.startswith(("ws://", "wss://")):
        raise InvalidValue("url", f"must be a ws:// or wss:// URL, got {value!r}")


def _check_connect_headers(_instance: Any, _attribute: attrs.Attribute[Any], value: dict[str, str]) -> None:
    _check_placeholders("connectHeaders", value, CONNECT_PLACEHOLDERS)


def _check_subprotocols(_instance: Any, _attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    _check_placeholders("subprotocols", value, CONNECT_PLACEHOLDERS)


def _check_message(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _check_placeholders("message", value, MESSAGE_PLACEHOLDERS)


def _check_error_codes(_instance: Any, _attribute: attrs.Attribute[Any], value: dict[str, str]) -> None:
    kinds = sorted(kind.value for kind in ERROR_KINDS)
    for code, kind in value.items():
        if kind not in kinds:
            raise InvalidValue(f"errorCodes.{code}", f"unknown error kind {kind!r} (kinds: {', '.join(kinds)})")


def _check_connection(_instance: Any, _attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in ("per-request", "keep-open"):
        raise InvalidValue("connection", f"must be 'per-request' or 'keep-open', got {value!r}")


def _positive(_instance: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise InvalidValue(camel(attribute.name), "must be positive")


def _not_negative(_instance: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value < 0:
        raise InvalidValue(camel(attribute.name), "must not be negative (0 or null turns it off)")


@attrs.frozen
class WebSocketSettings:
    """The ``websocket`` type's own config keys (see the package README).

    ``url``: the ``ws://``/``wss://`` URL (``{{apiKey}}`` and ``{{model}}``
    allowed, URL-encoded); without it, ``endpoint`` with ``http``/``https``
    turned into ``ws``/``wss``. ``connect_headers``: handshake headers
    (``{{apiKey}}``; a header that uses it is left out when no key is
    configured); the provider's ``headers`` are applied over them.
    ``subprotocols``: offered in ``Sec-WebSocket-Protocol``. ``message``:
    the request message template (any JSON value; a string renders to a text
    message as is, anything else is sent as JSON), default
    :data:`DEFAULT_MESSAGE`. ``paths``, ``done``: how answers are read.
    ``error_codes``: error code (or close code, as a string) to error kind,
    over :data:`DEFAULT_ERROR_CODES`. ``finish_reasons``: finish reasons
    renamed, over :data:`DEFAULT_FINISH_REASONS`. ``connection``:
    ``per-request`` (a new connection per request, closed after it) or
    ``keep-open`` (connections kept open between requests, at most
    ``max_idle_connections`` idle per URL). ``ping_interval``: milliseconds
    of silence after which a ping is sent (0 or null: never).
    ``max_message_size``: bytes per received message.
    """

    url: str | None = attrs.field(default=None, validator=_check_url)
    connect_headers: dict[str, str] = attrs.field(factory=_default_connect_headers, validator=_check_connect_headers)
    subprotocols: tuple[str, ...] = attrs.field(default=(), validator=_check_subprotocols)
    message: Any = attrs.field(default=None, validator=_check_message)
    paths: MessagePaths = attrs.field(factory=MessagePaths)
    done: DoneMarker = attrs.field(factory=lambda: DoneMarker(message="[DONE]"))
    error_codes: dict[str, str] = attrs.field(factory=dict, validator=_check_error_codes)
    finish_reasons: dict[str, str] = attrs.field(factory=dict)
    connection: str = attrs.field(default="per-request", validator=_check_connection)
    max_idle_connections: int = attrs.field(default=1, validator=_positive)
    ping_interval: float | None = attrs.field(default=20_000.0, validator=_not_negative)
    max_message_size: int = attrs.field(default=16 * 1024 * 1024, validator=_positive)

    @property
    def template(self) -> Any:
        """The request message template in effect."""
        return DEFAULT_MESSAGE if self.message is None else self.message

    @property
    def keep_open(self) -> bool:
        """Are connections kept open between requests?"""
        return self.connection == "keep-open"

    @property
    def ping_seconds(self) -> float | None:
        """The ping interval in seconds, ``None`` when pings are off."""
        return self.ping_interval / 1000.0 if self.ping_interval else None
