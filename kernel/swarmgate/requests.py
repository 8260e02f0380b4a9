"""Building a :class:`~swarmgate.models.CompletionRequest` from what callers pass.

The manager accepts a request object, a mapping in the feature guide's
format (camelCase, ``options`` for generation settings), or keyword
arguments (snake_case). Both spellings are accepted in mappings. Every bad
field is an :class:`~swarmgate.errors.InvalidRequestError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from swarmgate.config import snake
from swarmgate.errors import InvalidRequestError
from swarmgate.models import CacheControl, CompletionRequest, Constraints, Message, Preferences, RequestTimeouts

_FIELDS = frozenset(a.name for a in attrs.fields(CompletionRequest))
_OPTION_FIELDS = frozenset(
    {"temperature", "max_tokens", "top_p", "stop", "stream", "tools", "tool_choice", "response_format"}
)


def _number(name: str, value: Any, *, integer: bool = False) -> Any:
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if not ok or isinstance(value, bool):
        kind = "an integer" if integer else "a number"
        raise InvalidRequestError(f"'{name}' must be {kind}, got {value!r}")
    return value


def _names(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidRequestError(f"'{name}' must be a list of strings, got {value!r}")
    return tuple(value)


def parse_timeouts(data: Any) -> RequestTimeouts:
    """``{"firstToken": ms, "streamIdle": ms, "total": ms}`` as :class:`RequestTimeouts`."""
    if not isinstance(data, Mapping):
        raise InvalidRequestError(f"'timeouts' must be an object, got {data!r}")
    norm = {snake(k): v for k, v in data.items()}
    unknown = set(norm) - {"first_token", "stream_idle", "total"}
    if unknown:
        raise InvalidRequestError(
            f"unknown key(s) in 'timeouts': {sorted(unknown)} (known: firstToken, streamIdle, total)"
        )
    for key, value in norm.items():
        if _number(f"timeouts.{key}", value) is not None and value <= 0:
            raise InvalidRequestError(f"'timeouts.{key}' must be a positive number of milliseconds, got {value}")
    return RequestTimeouts(**norm)


def parse_cache_control(data: Any) -> CacheControl:
    """``{"bypass": bool, "refresh": bool, "ttl": seconds, "allow": bool}`` as
    :class:`CacheControl` (``noCache`` is accepted for ``bypass``)."""
    if isinstance(data, CacheControl):
        return data
    if not isinstance(data, Mapping):
        raise InvalidRequestError(f"'cache' must be an object, got {data!r}")
    norm = {snake(k): v for k, v in data.items()}
    if "no_cache" in norm:
        norm["bypass"] = norm.pop("no_cache")
    unknown = set(norm) - {"bypass", "refresh", "ttl", "allow"}
    if unknown:
        raise InvalidRequestError(f"unknown key(s) in 'cache': {sorted(unknown)} (known: bypass, refresh, ttl, allow)")
    for key in ("bypass", "refresh", "allow"):
        if key in norm and not isinstance(norm[key], bool):
            raise InvalidRequestError(f"'cache.{key}' must be true or false, got {norm[key]!r}")
    ttl = _number("cache.ttl", norm.get("ttl"))
    if ttl is not None and ttl <= 0:
        raise InvalidRequestError(f"'cache.ttl' must be a positive number of seconds, got {ttl}")
    return CacheControl(**norm)


def parse_preferences(data: Any) -> Preferences:
    """``{"providers": [...], "exclude": [...], "constraints": {...}}`` as :class:`Preferences`."""
    if data is None:
        return Preferences()
    if isinstance(data, Preferences):
        return data
    if not isinstance(data, Mapping):
        raise InvalidRequestError(f"'preferences' must be an object, got {data!r}")
    unknown = set(data) - {"providers", "exclude", "constraints"}
    if unknown:
        raise InvalidRequestError(f"unknown key(s) in 'preferences': {sorted(unknown)}")
    raw = data.get("constraints") or {}
    if not isinstance(raw, Mapping):
        raise InvalidRequestError(f"'preferences.constraints' must be an object, got {raw!r}")
    norm = {snake(k): v for k, v in raw.items()}
    unknown = set(norm) - {"max_cost", "max_latency", "min_reliability"}
    if unknown:
        raise InvalidRequestError(f"unknown key(s) in 'preferences.constraints': {sorted(unknown)}")
    constraints = Constraints(
        max_cost=_number("preferences.constraints.maxCost", norm.get("max_cost")),
        max_latency=_number("preferences.constraints.maxLatency", norm.get("max_latency")),
        min_reliability=_number("preferences.constraints.minReliability", norm.get("min_reliability")),
    )
    return Preferences(
        providers=_names("preferences.providers", data.get("providers")),
        exclude=_names("preferences.exclude", data.get("exclude")),
        constraints=constraints,
    )


def build_request(source: CompletionRequest | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> CompletionRequest:
    """The request described by ``source`` (object or mapping) with ``fields`` applied on top."""
    if isinstance(source, CompletionRequest):
        if not fields:
            return source
        return parse_request({**_as_fields(source), **fields})
    data: dict[str, Any] = {}
    if source is not None:
        if not isinstance(source, Mapping):
            raise InvalidRequestError(
                f"a request must be a CompletionRequest or a mapping, got {type(source).__name__}"
            )
        data.update(source)
    data.update(fields)
    return parse_request(data)


def _as_fields(request: CompletionRequest) -> dict[str, Any]:
    return {a.name: getattr(request, a.name) for a in attrs.fields(CompletionRequest)}


def parse_request(data: Mapping[str, Any]) -> CompletionRequest:
    """Validate and build a request from a mapping (camelCase or snake_case)."""
    norm: dict[str, Any] = {snake(k): v for k, v in data.items()}
    options = norm.pop("options", None)
    if options is not None:
        if not isinstance(options, Mapping):
            raise InvalidRequestError(f"'options' must be an object, got {options!r}")
        for key, value in options.items():
            name = snake(key)
            if name not in _OPTION_FIELDS:
                raise InvalidRequestError(f"unknown option {key!r} (known: {sorted(_OPTION_FIELDS)})")
            norm.setdefault(name, value)
    prompt = norm.pop("prompt", None)
    system = norm.pop("system", None)
    raw_messages = norm.pop("messages", None)
    unknown = set(norm) - _FIELDS
    if unknown:
        raise InvalidRequestError(f"unknown request field(s): {sorted(unknown)}")
    if prompt is not None and not isinstance(prompt, str):
        raise InvalidRequestError(f"'prompt' must be a string, got {type(prompt).__name__}")
    if system is not None and not isinstance(system, str):
        raise InvalidRequestError(f"'system' must be a string, got {type(system).__name__}")
    if raw_messages is not None and not isinstance(raw_messages, list | tuple):
        raise InvalidRequestError(f"'messages' must be a list, got {type(raw_messages).__name__}")
    model = norm.get("model", "auto")
    if model is None:
        model = "auto"
    if not isinstance(model, str) or not model:
        raise InvalidRequestError(f"'model' must be a non-empty string, got {model!r}")
    norm["model"] = model
    provider = norm.get("provider")
    if provider is not None and not isinstance(provider, str):
        raise InvalidRequestError(f"'provider' must be a string, got {provider!r}")
    norm["preferences"] = parse_preferences(norm.get("preferences"))
    _number("temperature", norm.get("temperature"))
    _number("top_p", norm.get("top_p"))
    max_tokens = _number("max_tokens", norm.get("max_tokens"), integer=True)
    if max_tokens is not None and max_tokens <= 0:
        raise InvalidRequestError(f"'max_tokens' must be positive, got {max_tokens}")
    stop = norm.get("stop")
    if stop is not None:
        norm["stop"] = _names("stop", stop)
    for key in ("tools",):
        if norm.get(key) is not None:
            if not isinstance(norm[key], list | tuple):
                raise InvalidRequestError(f"'{key}' must be a list")
            norm[key] = tuple(norm[key])
    if "tags" in norm:
        norm["tags"] = _names("tags", norm["tags"])
    for key in ("metadata", "extra"):
        if norm.get(key) is None:
            norm.pop(key, None)
        elif not isinstance(norm[key], Mapping):
            raise InvalidRequestError(f"'{key}' must be an object")
    if norm.get("timeouts") is not None and not isinstance(norm["timeouts"], RequestTimeouts):
        norm["timeouts"] = parse_timeouts(norm["timeouts"])
    if norm.get("cache") is not None:
        norm["cache"] = parse_cache_control(norm["cache"])
    caller = norm.get("caller")
    if caller is not None and (not isinstance(caller, str) or not caller):
        raise InvalidRequestError(f"'caller' must be a non-empty string, got {caller!r}")
    if "stream" in norm and not isinstance(norm["stream"], bool):
        raise InvalidRequestError(f"'stream' must be true or false, got {norm['stream']!r}")
    messages: list[Message | Mapping[str, Any]] = []
    if raw_messages:
        for i, m in enumerate(raw_messages):
            if not isinstance(m, Message | Mapping):
                raise InvalidRequestError(f"messages[{i}] must be an object, got {type(m).__name__}")
            messages.append(m)
    return CompletionRequest.create(prompt, messages=messages or None, system=system, **norm)
