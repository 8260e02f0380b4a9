"""The gateway's configuration: the ``server`` section.

```json
{"server": {
  "host": "127.0.0.1", "port": 8000,
  "apiKeys": [{"key": "${TEAM_A_KEY}", "name": "team-a", "models": ["gpt-4o-mini", "fast"],
               "requestsPerMinute": 60, "dailyBudget": 5.0}],
  "adminKey": "sha256:9f86d0...",
  "maxBodySize": 4194304, "bodyTimeout": 30000, "shutdownTimeout": 30000
}}
```

Durations are milliseconds, sizes bytes. A key is written in clear (best
through ``${ENV}``, substituted when the config loads) or as
``sha256:<64 hex digits>``, the SHA-256 of the key: the gateway only ever
keeps the hash. ``dashboard`` belongs to the dashboard plugin and is not
read here.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import attrs

from swarmgate import ConfigError, parse_section
from swarmgate.config import InvalidValue

#: Default ``maxBodySize``: 4 MiB.
DEFAULT_MAX_BODY = 4 * 1024 * 1024
#: Shortest key accepted in clear (a guessable key is no key).
MIN_KEY_LENGTH = 8

_HASHED = re.compile(r"sha256:[0-9a-fA-F]{64}")


def key_digest(written: str) -> bytes:
    """The SHA-256 digest a configured key stands for: the hash itself for
    ``sha256:<hex>``, else the hash of the clear key."""
    if written.startswith("sha256:"):
        return bytes.fromhex(written[7:])
    return hashlib.sha256(written.encode()).digest()


def _check_key(key: str, value: str | None) -> None:
    if value is None:
        return
    if value.startswith("sha256:"):
        if not _HASHED.fullmatch(value):
            raise InvalidValue(key, "a hashed key is 'sha256:' followed by 64 hexadecimal digits")
    elif len(value) < MIN_KEY_LENGTH:
        raise InvalidValue(key, f"must be at least {MIN_KEY_LENGTH} characters (or 'sha256:<hex>')")


def _non_negative(key: str, value: float | None) -> None:
    if value is not None and not (value >= 0 and math.isfinite(value)):
        raise InvalidValue(key, f"must be a non-negative number, got {value}")


def _positive(key: str, value: float | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise InvalidValue(key, f"must be a positive number, got {value}")


@attrs.frozen
class ApiKeySettings:
    """One caller key (``server.apiKeys[i]``).

    ``name`` is the caller's name (``request.caller``: rate limits, budgets
    and usage are kept by it). ``models``: the models, ``provider/model``
    targets or route names the key may ask for (``*`` wildcards allowed;
    absent: any). The limits are read by the ratelimit and budget plugins
    through the caller directory the gateway registers.
    """

    key: str
    name: str
    models: tuple[str, ...] | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    burst_capacity: float | None = None
    daily_budget: float | None = None
    monthly_budget: float | None = None

    def __attrs_post_init__(self) -> None:
        _check_key("key", self.key)
        if not self.name.strip():
            raise InvalidValue("name", "must be a non-empty string")
        if self.models is not None:
            for i, model in enumerate(self.models):
                if not model:
                    raise InvalidValue(f"models[{i}]", "must be a non-empty string")
        _positive("requestsPerMinute", self.requests_per_minute)
        _positive("tokensPerMinute", self.tokens_per_minute)
        _positive("burstCapacity", self.burst_capacity)
        _non_negative("dailyBudget", self.daily_budget)
        _non_negative("monthlyBudget", self.monthly_budget)


@attrs.frozen
class ServerSettings:
    """The ``server`` section (see the module docstring).

    ``host``/``port``: where ``serve`` listens (loopback by default).
    ``apiKeys``: caller keys; when there is one (or a caller-key store is
    installed), every API request needs a key. ``adminKey``: the key of the
    ``/admin/`` API (without one, the admin API is open only while no caller
    key is configured). ``maxBodySize``: larger request bodies get 413.
    ``bodyTimeout``: a body not received within it gets 408.
    ``shutdownTimeout``: how long a shutdown waits for in-flight requests
    and streams. ``forwardFields``: OpenAI body fields with no neutral
    equivalent (``seed``, ``presence_penalty``, ...) passed to the provider
    as is (dropped otherwise, so that any provider can answer).
    ``accessLog``: uvicorn's access log (off: it costs per request).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[ApiKeySettings, ...] = ()
    admin_key: str | None = None
    max_body_size: int = DEFAULT_MAX_BODY
    body_timeout: float = 30_000.0
    shutdown_timeout: float = 30_000.0
    forward_fields: tuple[str, ...] = ()
    access_log: bool = False
    #: Owned by the dashboard plugin.
    dashboard: dict[str, Any] | None = None

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidValue("port", f"must be between 0 and 65535, got {self.port}")
        if not self.host:
            raise InvalidValue("host", "must be a non-empty string")
        _check_key("adminKey", self.admin_key)
        if self.max_body_size < 1:
            raise InvalidValue("maxBodySize", f"must be a positive number of bytes, got {self.max_body_size}")
        _positive("bodyTimeout", self.body_timeout)
        _non_negative("shutdownTimeout", self.shutdown_timeout)


def load_settings(raw: Any) -> ServerSettings:
    """Structure and validate ``server`` (``None``: the defaults). Raises
    :class:`~swarmgate.ConfigError` naming every bad path, duplicate key
    names and keys included."""
    settings = parse_section(ServerSettings, raw, "server")
    problems: list[tuple[str, str]] = []
    names: dict[str, int] = {}
    digests: dict[bytes, int] = {}
    admin = key_digest(settings.admin_key) if settings.admin_key else None
    for i, entry in enumerate(settings.api_keys):
        if entry.name in names:
            problems.append(
                (f"server.apiKeys[{i}].name", f"duplicate name {entry.name!r} (also apiKeys[{names[entry.name]}])")
            )
        names.setdefault(entry.name, i)
        digest = key_digest(entry.key)
        if digest in digests:
            problems.append((f"server.apiKeys[{i}].key", f"the same key as apiKeys[{digests[digest]}]"))
        digests.setdefault(digest, i)
        if digest == admin:
            problems.append((f"server.apiKeys[{i}].key", "the same key as server.adminKey"))
    if problems:
        raise ConfigError(problems)
    return settings
