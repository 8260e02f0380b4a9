"""structlog set-up with secret redaction that is always on.

:func:`redact_secrets` is a structlog processor. It masks (to a short
fingerprint) every value whose key looks like a credential (``api_key``,
``authorization``, ``x-api-key``, ``password``, ``secret``, ``token``),
any ``Bearer ...`` string, strings that look like provider keys
(``sk-...``), and every secret registered with :func:`register_secret`
(the manager registers each provider API key it loads), wherever it
appears inside an event, nested mappings and lists included.

:func:`ensure_redaction` puts the processor at the front of structlog's
chain: our default chain when structlog is unconfigured, or the
application's own chain otherwise. The kernel calls it whenever a
``ProviderManager`` or the CLI starts.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import structlog

_SECRET_KEY = re.compile(r"(api[_-]?key|authorization|password|secret|token(?!s)|credential)", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"(Bearer\s+[A-Za-z0-9._~+/=-]{4,}|sk-[A-Za-z0-9_-]{8,}|sk-ant-[A-Za-z0-9_-]{8,})")
_secrets: set[str] = set()
#: ``_secrets`` longest first (a secret containing another is masked whole), with fingerprints.
_ordered: tuple[tuple[str, str], ...] = ()


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible label for a secret: ``key:`` and the
    first 8 hex digits of its SHA-256 (``key:1a2b3c4d``). The only form in
    which a key may be shown anywhere (logs, errors, admin answers)."""
    return "key:" + hashlib.sha256(secret.encode()).hexdigest()[:8]


def register_secret(secret: str | None) -> None:
    """Make :func:`redact_secrets` (and :func:`scrub_secrets`) mask this exact
    value wherever it appears. For a URL with credentials (a proxy), the
    password is registered too. Values shorter than 4 characters are ignored
    (masking them would mangle ordinary text). Secrets stay registered for
    the life of the process, so a rotated-out key is still masked."""
    global _ordered
    if not secret or len(secret) < 4:
        return
    added = {secret}
    if "://" in secret and "@" in secret:
        password = urlsplit(secret).password
        if password and len(password) >= 4:
            added.add(password)
    if added <= _secrets:
        return
    _secrets.update(added)
    _ordered = tuple((s, fingerprint(s)) for s in sorted(_secrets, key=len, reverse=True))


def scrub_secrets(text: str) -> str:
    """``text`` with every registered secret replaced by its fingerprint
    (exact values only: no heuristics, so ordinary text is never altered).
    Error messages pass through this before anyone sees them."""
    for secret, label in _ordered:
        if secret in text:
            text = text.replace(secret, label)
    return text


def redact_text(text: str) -> str:
    """``text`` with registered secrets and key-looking strings masked."""
    return _SECRET_VALUE.sub(lambda m: "[REDACTED]", scrub_secrets(text))


def looks_secret(name: str) -> bool:
    """Whether a field called ``name`` holds a credential (``apiKey``,
    ``authorization``, ``password``, ``token``, ...): its value is masked."""
    return _SECRET_KEY.search(name) is not None


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: ("[REDACTED]" if isinstance(k, str) and _SECRET_KEY.search(k) and v else _redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact(v) for v in value)
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask credentials anywhere in the event."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEY.search(key) and value:
            event_dict[key] = "[REDACTED]"
        elif isinstance(value, str | Mapping | list | tuple):
            event_dict[key] = _redact(value)
        elif isinstance(value, BaseException):
            event_dict[key] = redact_text(f"{type(value).__name__}: {value}")
    return event_dict


def configure_logging(level: str | int = "WARNING", *, json: bool = False) -> None:
    """Our default structlog chain to stderr, filtered at ``level``, redaction first."""
    if isinstance(level, str):
        level = logging.getLevelNamesMapping().get(level.upper(), logging.WARNING)
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            redact_secrets,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


#: Loggers (and their children) of the libraries under the providers, which
#: log through stdlib logging: headers, URLs, proxy credentials at DEBUG.
LIBRARY_LOGGERS = ("httpx", "httpcore", "websockets", "hpack", "h11")
_PREFIXES = tuple(f"{name}." for name in LIBRARY_LOGGERS)
_installed_factory: Any = None


def _install_record_factory() -> None:
    """Wrap the stdlib log-record factory so records from :data:`LIBRARY_LOGGERS`
    have secrets masked when created (a logger filter would miss child
    loggers such as ``httpcore.connection``). Records only exist for enabled
    levels, so this costs nothing when those loggers are quiet."""
    global _installed_factory
    current = logging.getLogRecordFactory()
    if current is _installed_factory:
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        if record.name in LIBRARY_LOGGERS or record.name.startswith(_PREFIXES):
            message = record.getMessage()
            redacted = redact_text(message)
            if redacted != message:
                record.msg, record.args = redacted, ()
        return record

    logging.setLogRecordFactory(factory)
    _installed_factory = factory


def ensure_redaction() -> None:
    """Make sure :func:`redact_secrets` runs first in structlog's chain, and
    that the HTTP libraries' stdlib loggers mask secrets too."""
    _install_record_factory()
    if not structlog.is_configured():
        configure_logging()
        return
    processors = list(structlog.get_config()["processors"])
    if redact_secrets not in processors:
        structlog.configure(processors=[redact_secrets, *processors])


def get_logger(name: str) -> Any:
    """A structlog logger bound to ``component=name``."""
    return structlog.get_logger(component=name)
