"""The webhook delivery configuration (``monitoring.alerts.webhook``): one
object, or a list of them for several receivers. Durations are
milliseconds. ``secret`` (like every string of the config) may be
``${ENV_VAR}``: the config loader substitutes it, and a variable that is not
set is a ConfigError naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from swarmgate import ConfigError, parse_section
from swarmgate.config import InvalidValue

#: Where the webhooks are configured.
SECTION = "monitoring.alerts.webhook"
#: The alert severities, least severe first.
SEVERITIES = ("info", "warning", "critical")
#: Headers the plugin sets itself; ``headers`` may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "x-swarmgate-signature",
        "x-swarmgate-timestamp",
        "x-swarmgate-delivery",
        "x-swarmgate-event",
    }
)


def _ms(key: str, value: float, *, zero: bool = False) -> None:
    ok = (value >= 0 if zero else value > 0) and math.isfinite(value)
    if not ok:
        what = "non-negative" if zero else "positive"
        raise InvalidValue(key, f"must be a {what} number of milliseconds, got {value!r}")


@attrs.frozen
class WebhookSettings:
    """One receiver.

    * ``url``: ``http://`` or ``https://``; the alert is POSTed to it as JSON.
    * ``secret``: the HMAC-SHA256 key of ``X-Swarmgate-Signature``
      (none: the request is not signed).
    * ``timeout``: ms allowed for one attempt (connect, send, answer).
    * ``retries``: further attempts after a 5xx, 408, 429, a connection
      error or a timeout, ``backoff`` ms apart at first, doubling up to
      ``maxBackoff``, with jitter; a ``Retry-After`` is honoured up to
      ``maxBackoff``. Any other answer ends the delivery.
    * ``headers``: added to every request (e.g. ``Authorization``).
    * ``types``: only these alert types (none: all); ``minSeverity``:
      only alerts at least this severe.
    * ``name``: how logs and counters call it (default: the URL's host).
    """

    url: str
    secret: str | None = None
    timeout: float = 10_000.0
    retries: int = 3
    backoff: float = 500.0
    max_backoff: float = 30_000.0
    headers: dict[str, str] = attrs.field(factory=dict)
    types: tuple[str, ...] | None = None
    min_severity: str = "info"
    name: str | None = None
    enabled: bool = True

    def __attrs_post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidValue("url", f"must be an http:// or https:// URL, got {self.url!r}")
        if self.secret is not None and not self.secret:
            raise InvalidValue("secret", "must not be empty (leave it out to send unsigned requests)")
        _ms("timeout", self.timeout)
        if self.retries < 0:
            raise InvalidValue("retries", f"must be 0 or more, got {self.retries}")
        _ms("backoff", self.backoff, zero=True)
        _ms("maxBackoff", self.max_backoff, zero=True)
        for header in self.headers:
            if header.lower() in RESERVED_HEADERS:
                raise InvalidValue(f"headers.{header}", "is set by the webhook plugin and cannot be replaced")
        if self.types is not None:
            if not self.types:
                raise InvalidValue("types", "must list at least one alert type (leave it out for all)")
            for i, kind in enumerate(self.types):
                if not kind:
                    raise InvalidValue(f"types[{i}]", "must be an alert type, e.g. 'breaker_opened'")
        if self.min_severity not in SEVERITIES:
            raise InvalidValue("minSeverity", f"must be one of {', '.join(SEVERITIES)}, got {self.min_severity!r}")

    @property
    def label(self) -> str:
        """``name``, else the URL's host and port (never its path or query,
        which may hold a token)."""
        return self.name or (urlsplit(self.url).netloc.rpartition("@")[2])


def parse_webhooks(raw: Any) -> list[WebhookSettings]:
    """``monitoring.alerts.webhook`` (an object or a list of objects) as
    settings; ``None`` gives none. Raises ConfigError naming bad values."""
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        return [parse_section(WebhookSettings, raw, SECTION)]
    if isinstance(raw, list):
        out = [parse_section(WebhookSettings, item, f"{SECTION}[{i}]") for i, item in enumerate(raw)]
        labels = [hook.label for hook in out]
        for i, label in enumerate(labels):
            if label in labels[:i]:
                raise ConfigError(
                    [(f"{SECTION}[{i}].name", f"two webhooks are called {label!r}: give each a distinct 'name'")]
                )
        return out
    raise ConfigError([(SECTION, f"expected an object or a list of objects, got {type(raw).__name__}")])
