"""Per-request routing control: ``x-swarmgate-*`` headers and the body's
``swarmgate`` object.

Headers (each optional; a bad value is a 400 naming the header):

============================  ================================================
``x-swarmgate-strategy``      routing strategy for this request (``cost-optimized``, ...)
``x-swarmgate-provider``      preferred providers, comma-separated, tried first
``x-swarmgate-exclude``       providers never to try, comma-separated
``x-swarmgate-max-cost``      max predicted cost of the request (currency units)
``x-swarmgate-max-latency``   max latency, milliseconds
``x-swarmgate-min-reliability``  min reliability, 0..1
``x-swarmgate-cache``         ``bypass``, ``refresh``, ``ttl=N`` (seconds), ``allow``;
                              comma-separated to combine (``refresh,ttl=60``)
============================  ================================================

Body (OpenAI SDKs send it with ``extra_body``): ``"swarmgate": {"strategy",
"preferences": {"providers", "exclude", "constraints": {"maxCost",
"maxLatency", "minReliability"}}, "cache": {"bypass", "refresh", "ttl",
"allow"}, "tags": [...], "timeouts": {"firstToken", "streamIdle", "total"},
"provider", "metadata": {...}, "extra": {...}}``. ``provider`` forces one
provider (no failover); ``extra`` fields are sent to the provider as they
are. Headers win over the body for the same setting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import attrs

from swarmgate import CacheControl, InvalidRequestError, Preferences
from swarmgate.requests import parse_cache_control, parse_preferences, parse_timeouts
from swarmgate_server.errors import GatewayError

#: The request headers read here (lower case, as ASGI gives them).
STRATEGY: Final = b"x-swarmgate-strategy"
PROVIDER: Final = b"x-swarmgate-provider"
EXCLUDE: Final = b"x-swarmgate-exclude"
MAX_COST: Final = b"x-swarmgate-max-cost"
MAX_LATENCY: Final = b"x-swarmgate-max-latency"
MIN_RELIABILITY: Final = b"x-swarmgate-min-reliability"
CACHE: Final = b"x-swarmgate-cache"
HEADERS: Final = frozenset({STRATEGY, PROVIDER, EXCLUDE, MAX_COST, MAX_LATENCY, MIN_RELIABILITY, CACHE})

_BODY_KEYS: Final = frozenset({"strategy", "preferences", "cache", "tags", "timeouts", "provider", "metadata", "extra"})


def _bad(header: bytes, message: str) -> GatewayError:
    return GatewayError(400, f"header {header.decode()}: {message}", code="invalid_header", param=header.decode())


def _names(header: bytes, value: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    if not names:
        raise _bad(header, "expected a comma-separated list of provider names")
    return names


def _number(header: bytes, value: str, *, low: float = 0.0, high: float = math.inf) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _bad(header, f"expected a number, got {value!r}") from None
    if not (low <= number <= high) or math.isnan(number):
        upper = "" if high == math.inf else f" and {high:g}"
        raise _bad(header, f"must be between {low:g}{upper}, got {value!r}")
    return number


def cache_header(value: str) -> CacheControl:
    """``bypass``, ``refresh``, ``allow``, ``ttl=N`` (seconds), comma-separated."""
    fields: dict[str, Any] = {}
    for raw in value.split(","):
        part = raw.strip().lower()
        if part in ("bypass", "no-cache", "no-store"):
            fields["bypass"] = True
        elif part == "refresh":
            fields["refresh"] = True
        elif part == "allow":
            fields["allow"] = True
        elif part.startswith("ttl="):
            ttl = _number(CACHE, part[4:])
            if ttl <= 0:
                raise _bad(CACHE, f"ttl must be a positive number of seconds, got {part[4:]!r}")
            fields["ttl"] = ttl
        elif part:
            raise _bad(CACHE, f"unknown directive {part!r} (known: bypass, refresh, allow, ttl=N)")
    return CacheControl(**fields)


def apply(fields: dict[str, Any], body: Any, headers: list[tuple[bytes, bytes]] | None) -> None:
    """Lay the body's ``swarmgate`` object (``body``; ``None`` when absent),
    then the steering ``headers``, onto ``fields`` (the keyword arguments of
    a :class:`~swarmgate.CompletionRequest` being built). Raises
    :class:`GatewayError` (400) naming the bad field or header."""
    preferences: Preferences | None = None
    if body is not None:
        if not isinstance(body, Mapping):
            raise GatewayError(400, "'swarmgate' must be an object", code="invalid_type", param="swarmgate")
        unknown = set(body) - _BODY_KEYS
        if unknown:
            raise GatewayError(
                400,
                f"unknown key(s) in 'swarmgate': {sorted(unknown)} (known: {sorted(_BODY_KEYS)})",
                code="invalid_request",
                param="swarmgate",
            )
        try:
            if body.get("preferences") is not None:
                preferences = parse_preferences(body["preferences"])
            if body.get("cache") is not None:
                fields["cache"] = parse_cache_control(body["cache"])
            if body.get("timeouts") is not None:
                fields["timeouts"] = parse_timeouts(body["timeouts"])
        except InvalidRequestError as error:
            raise GatewayError(400, f"swarmgate: {error.message}", code="invalid_request", param="swarmgate") from None
        strategy = body.get("strategy")
        if strategy is not None:
            if not isinstance(strategy, str) or not strategy:
                raise GatewayError(400, "'swarmgate.strategy' must be a non-empty string", param="swarmgate.strategy")
            fields["strategy"] = strategy
        provider = body.get("provider")
        if provider is not None:
            if not isinstance(provider, str) or not provider:
                raise GatewayError(400, "'swarmgate.provider' must be a non-empty string", param="swarmgate.provider")
            fields["provider"] = provider
        tags = body.get("tags")
        if tags is not None:
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise GatewayError(400, "'swarmgate.tags' must be a list of strings", param="swarmgate.tags")
            fields["tags"] = tuple(tags)
        for key in ("metadata", "extra"):
            value = body.get(key)
            if value is not None:
                if not isinstance(value, Mapping):
                    raise GatewayError(400, f"'swarmgate.{key}' must be an object", param=f"swarmgate.{key}")
                fields[key] = {**fields.get(key, {}), **value}
    if headers:
        providers: tuple[str, ...] | None = None
        exclude: tuple[str, ...] | None = None
        limits: dict[str, float] = {}
        for name, raw in headers:
            value = raw.decode("latin-1").strip()
            if name == STRATEGY:
                if not value:
                    raise _bad(name, "must name a strategy")
                fields["strategy"] = value
            elif name == PROVIDER:
                providers = _names(name, value)
            elif name == EXCLUDE:
                exclude = _names(name, value)
            elif name == MAX_COST:
                limits["max_cost"] = _number(name, value)
            elif name == MAX_LATENCY:
                limits["max_latency"] = _number(name, value)
            elif name == MIN_RELIABILITY:
                limits["min_reliability"] = _number(name, value, high=1.0)
            elif name == CACHE:
                fields["cache"] = cache_header(value)
        if providers is not None or exclude is not None or limits:
            base = preferences or Preferences()
            preferences = Preferences(
                providers=base.providers if providers is None else providers,
                exclude=base.exclude if exclude is None else exclude,
                constraints=attrs.evolve(base.constraints, **limits) if limits else base.constraints,
            )
    if preferences is not None:
        fields["preferences"] = preferences
