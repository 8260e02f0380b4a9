"""The Redis state backend's options (``state.options`` with ``state.backend: "redis"``).

``url`` may use ``${ENV}`` (the kernel substitutes it while loading the
config), so a password need not be written in the file. Durations are
milliseconds, as everywhere in the config.
"""

from __future__ import annotations

import math
from urllib.parse import parse_qs, urlsplit, urlunsplit

import attrs

from swarmgate.config import InvalidValue

#: Where the backend looks when ``url`` is not given.
DEFAULT_URL = "redis://127.0.0.1:6379/0"
#: The namespace of every key the backend writes when ``prefix`` is not given.
DEFAULT_PREFIX = "swarmgate:"
SCHEMES = ("redis", "rediss", "unix")
#: URL query parameters passed on to redis-py (the TLS ones with ``rediss://`` only).
#: Others (timeouts, pool size, retries, protocol) are the backend's to set.
QUERY_PARAMETERS = frozenset({"db", "client_name"})
TLS_PARAMETERS = frozenset(
    {
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "ssl_min_version",
    }
)


def password_of(url: str) -> str | None:
    """The password in ``url``, if any (``None`` for an unparsable URL)."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: the only form
    in which the backend ever shows a URL (errors, logs, ``redis status``)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable Redis URL>"
    if password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@attrs.frozen
class RedisOptions:
    """``state.options`` for the ``redis`` backend.

    ``url``: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://``
    (TLS; ``?ssl_ca_certs=/path/ca.pem`` and the other ``ssl_*`` parameters
    of redis-py) or ``unix:///path/to/socket?db=0``. ``prefix``: the namespace of
    every key (several deployments may share one Redis with different
    prefixes). ``socketTimeout``: ms to connect and to wait for any reply;
    an operation that takes longer fails. ``maxConnections``: connections
    per gateway process (an operation waits for a free one up to
    ``socketTimeout``).
    """

    url: str = DEFAULT_URL
    prefix: str = DEFAULT_PREFIX
    socket_timeout: float = 5000.0
    max_connections: int = 50

    def __attrs_post_init__(self) -> None:
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018 - parsing the port validates it
        except ValueError as exc:
            raise InvalidValue("url", f"not a valid URL ({mask_url(self.url)}): {exc}") from None
        if parts.scheme not in SCHEMES:
            raise InvalidValue(
                "url",
                f"expected a redis://, rediss:// or unix:// URL, got {mask_url(self.url)!r} "
                "(e.g. redis://127.0.0.1:6379/0)",
            )
        if parts.scheme == "unix":
            if not parts.path:
                raise InvalidValue("url", f"a unix:// URL needs a socket path, got {mask_url(self.url)!r}")
        elif not parts.hostname:
            raise InvalidValue("url", f"the URL names no host: {mask_url(self.url)!r}")
        elif parts.path not in ("", "/") and not parts.path.lstrip("/").isdigit():
            raise InvalidValue("url", f"the database must be a number (redis://host:6379/0), got {parts.path!r}")
        for name in parse_qs(parts.query, keep_blank_values=True):
            if name in TLS_PARAMETERS and parts.scheme != "rediss":
                raise InvalidValue("url", f"{name} needs a rediss:// (TLS) URL")
            if name not in QUERY_PARAMETERS | TLS_PARAMETERS:
                allowed = ", ".join(sorted(QUERY_PARAMETERS | TLS_PARAMETERS))
                raise InvalidValue(
                    "url",
                    f"unsupported URL parameter {name!r} (allowed: {allowed}; "
                    "timeouts and the pool size are socketTimeout and maxConnections)",
                )
        if not self.prefix:
            raise InvalidValue("prefix", "must not be empty (it keeps the gateway's keys apart from others)")
        if not (self.socket_timeout > 0 and math.isfinite(self.socket_timeout)):
            raise InvalidValue("socketTimeout", f"must be a positive number of milliseconds, got {self.socket_timeout}")
        if self.max_connections < 1:
            raise InvalidValue("maxConnections", f"must be at least 1, got {self.max_connections}")

    @property
    def timeout_seconds(self) -> float:
        """``socketTimeout`` in seconds (what redis-py takes)."""
        return self.socket_timeout / 1000.0
