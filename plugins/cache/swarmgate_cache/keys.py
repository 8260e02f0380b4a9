"""Cache keys: a stable hash of everything that changes a request's answer.

Included: the messages (role, content, name, tool calls, tool call id), the
requested model or route, the forced provider, the provider preferences
(preferred and excluded providers), the strategy override, and the
generation options (temperature, max_tokens, top_p, stop, tools,
tool_choice, response_format, extra); with ``perCaller``, the caller.
Left out: ``stream`` (a streamed and a plain request share answers),
``metadata``, ``tags``, ``user``, ``timeouts``, constraints and ``cache``
itself, which say nothing about what the answer is.

Normalisation, so that equal requests hash equally: a content that is a
single plain text part (``[{"type": "text", "text": "hi"}]``) is the string
``"hi"``; an empty content is no content; numbers of the sampling options
are floats (``0`` and ``0.0`` are the same temperature); mappings are
serialised with sorted keys. The canonical form is JSON (orjson) and the
hash is BLAKE2b (128 bits, hex): fast, stable across processes and Python
versions (unlike ``hash()``), and keyed when a codec supplies a
``hash_key`` (so keys reveal nothing about prompts to someone who can read
the store but not the key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

import orjson

from swarmgate import CompletionRequest, Message

#: Bumped when the canonical form changes, so old entries are never matched.
KEY_VERSION: Final = 1
_OPTIONS: Final = orjson.OPT_SORT_KEYS


def _default(value: Any) -> Any:
    """orjson's fallback: plain mappings and sets; anything else is not
    serialisable and makes the request uncacheable (TypeError)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"cannot use a {type(value).__name__} in a cache key")


def _content(content: Any) -> Any:
    if not content:
        return None
    if isinstance(content, str):
        return content
    if len(content) == 1:
        part = content[0]
        if isinstance(part, Mapping) and part.get("type") == "text" and part.keys() <= {"type", "text"}:
            return part.get("text")
    return content


def _message(message: Message) -> list[Any]:
    return [message.role, _content(message.content), message.name, message.tool_calls, message.tool_call_id]


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


def canonical(request: CompletionRequest, *, per_caller: bool = False) -> bytes:
    """The canonical bytes of ``request`` (see the module docstring). Raises
    ``TypeError`` when a field holds a value JSON cannot represent."""
    preferences = request.preferences
    body = [
        KEY_VERSION,
        [_message(m) for m in request.messages],
        request.model,
        request.provider,
        request.strategy,
        preferences.providers,
        preferences.exclude,
        _number(request.temperature),
        request.max_tokens,
        _number(request.top_p),
        request.stop,
        request.tools,
        request.tool_choice,
        request.response_format,
        request.extra or None,
        request.caller if per_caller else None,
    ]
    return orjson.dumps(body, default=_default, option=_OPTIONS)


def request_key(request: CompletionRequest, *, per_caller: bool = False, hash_key: bytes | None = None) -> str:
    """The cache key of ``request``: 32 hex digits of BLAKE2b over
    :func:`canonical` (keyed with ``hash_key`` when given). Raises
    ``TypeError`` for a request JSON cannot represent."""
    data = canonical(request, per_caller=per_caller)
    if hash_key:
        return hashlib.blake2b(data, digest_size=16, key=hash_key).hexdigest()
    return hashlib.blake2b(data, digest_size=16).hexdigest()
