"""The email delivery configuration (``monitoring.alerts.email``).

Durations are milliseconds. ``password`` (like every string of the config)
may be ``${ENV_VAR}``: the config loader substitutes it, and a variable
that is not set is a ConfigError naming the key.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from swarmgate import ConfigError, parse_section
from swarmgate.config import InvalidValue

#: Where the email delivery is configured.
SECTION = "monitoring.alerts.email"
#: The alert severities, least severe first.
SEVERITIES = ("info", "warning", "critical")


def _address(key: str, value: str) -> None:
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or any(c in value for c in "\r\n<>, "):
        raise InvalidValue(key, f"must be an email address like ops@example.com, got {value!r}")


@attrs.frozen
class EmailSettings:
    """``monitoring.alerts.email``.

    * ``host``, ``port``: the SMTP server (``port`` defaults to 465 with
      ``ssl``, 587 with ``starttls``, else 25).
    * ``starttls`` (default ``true``): upgrade the connection with STARTTLS
      (a server that does not offer it fails the delivery); ``ssl``: TLS
      from the first byte (SMTPS) instead. Both off: plain text, for a
      local relay only (no ``username`` then). ``caFile``: a PEM bundle of
      the certificate authorities to trust instead of the system's.
    * ``username``, ``password``: log in (AUTH) when given.
    * ``from``, ``to`` (a list): the envelope and header addresses.
    * ``subjectPrefix``: starts every subject.
    * ``types``, ``minSeverity``: which alerts are sent (default: all).
    * ``timeout``: ms for each SMTP operation; ``retries``: further
      attempts after a connection failure, a timeout or a transient (4xx)
      answer, ``backoff`` ms apart at first, doubling.
    """

    host: str
    to: tuple[str, ...]
    from_: str
    port: int | None = None
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    ssl: bool = False
    ca_file: str | None = None
    subject_prefix: str = "[swarmgate]"
    types: tuple[str, ...] | None = None
    min_severity: str = "info"
    timeout: float = 10_000.0
    retries: int = 2
    backoff: float = 1000.0
    enabled: bool = True

    def __attrs_post_init__(self) -> None:
        if not self.host or any(c in self.host for c in "/: "):
            raise InvalidValue("host", f"must be a host name or address (the port goes in 'port'), got {self.host!r}")
        if self.port is not None and not 0 < self.port < 65536:
            raise InvalidValue("port", f"must be a TCP port (1-65535), got {self.port}")
        if not self.to:
            raise InvalidValue("to", "must list at least one address")
        for i, address in enumerate(self.to):
            _address(f"to[{i}]", address)
        _address("from", self.from_)
        if self.ssl and self.starttls:
            raise InvalidValue("starttls", "'ssl' (TLS from the start) and 'starttls' exclude each other: set one")
        if self.username is not None and self.password is None:
            raise InvalidValue("password", "required with 'username'")
        if self.password is not None and self.username is None:
            raise InvalidValue("username", "required with 'password'")
        if self.username is not None and not (self.ssl or self.starttls):
            raise InvalidValue("username", "logging in needs 'starttls' or 'ssl': the password would travel in clear")
        if any(c in self.subject_prefix for c in "\r\n"):
            raise InvalidValue("subjectPrefix", "must be a single line")
        if self.types is not None:
            if not self.types:
                raise InvalidValue("types", "must list at least one alert type (leave it out for all)")
            for i, kind in enumerate(self.types):
                if not kind:
                    raise InvalidValue(f"types[{i}]", "must be an alert type, e.g. 'provider_down'")
        if self.min_severity not in SEVERITIES:
            raise InvalidValue("minSeverity", f"must be one of {', '.join(SEVERITIES)}, got {self.min_severity!r}")
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise InvalidValue("timeout", f"must be a positive number of milliseconds, got {self.timeout!r}")
        if self.retries < 0:
            raise InvalidValue("retries", f"must be 0 or more, got {self.retries}")
        if not (self.backoff >= 0 and math.isfinite(self.backoff)):
            raise InvalidValue("backoff", f"must be a non-negative number of milliseconds, got {self.backoff!r}")

    @property
    def effective_port(self) -> int:
        """``port``, else the protocol's usual one."""
        if self.port is not None:
            return self.port
        return 465 if self.ssl else 587 if self.starttls else 25


def parse_email(raw: Any) -> EmailSettings | None:
    """``monitoring.alerts.email`` as settings (``None`` when absent).
    Raises ConfigError naming bad values."""
    if raw is None:
        return None
    settings = parse_section(EmailSettings, raw, SECTION)
    if settings.ca_file is not None:
        try:
            with open(settings.ca_file, "rb"):
                pass
        except OSError as exc:
            raise ConfigError([(f"{SECTION}.caFile", f"cannot read it: {exc.strerror or exc}")]) from None
    return settings
