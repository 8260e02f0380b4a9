"""``EmailPlugin``: alerts sent as plain-text email (entry point ``email``
in the ``swarmgate`` group), configured by ``monitoring.alerts.email``.

It implements the kernel's ``deliver_alert`` hook, which the manager's
background alert task calls in order of emission, never on the request
path. Each alert the filters admit (``types``, ``minSeverity``) becomes one
message, sent with the standard library's ``smtplib`` in a worker thread
(``anyio.to_thread``: it runs under asyncio and trio alike, and a slow
SMTP server never blocks the event loop). A connection is opened per
message: alerts are rare, and a pooled SMTP session would go stale between
them.

Retried (``retries``, exponential backoff): connection failures, timeouts,
a dropped session and transient 4xx answers. Not retried (logged and
counted): permanent 5xx answers (a refused login, refused recipients), TLS
failures (an untrusted certificate, a server without STARTTLS).
"""

from __future__ import annotations

import json
import random
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import anyio
import anyio.to_thread
import attrs

from swarmgate import Alert, ConfigError, ProviderManager, hookimpl
from swarmgate.logs import get_logger
from swarmgate_email.settings import SEVERITIES, EmailSettings, parse_email

log = get_logger("swarmgate.email")

#: Subjects longer than this are cut (with an ellipsis).
SUBJECT_LIMIT = 200


def severity_rank(severity: str) -> int:
    """``info`` 0, ``warning`` 1, ``critical`` 2; an unknown severity counts as ``warning``."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        return 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


def subject(alert: Alert, prefix: str) -> str:
    """``<prefix> <SEVERITY> <type>: <message>``, on one line, at most
    :data:`SUBJECT_LIMIT` characters."""
    text = _one_line(f"{prefix} {alert.severity.upper()} {alert.type}: {alert.message}")
    return text if len(text) <= SUBJECT_LIMIT else text[: SUBJECT_LIMIT - 1] + "…"


def body(alert: Alert) -> str:
    """The plain-text body: every field of the alert, then its data."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(alert.at))
    lines = [
        "swarmgate alert",
        "",
        f"type:     {alert.type}",
        f"severity: {alert.severity}",
        f"provider: {alert.provider or '-'}",
        f"model:    {alert.model or '-'}",
        f"time:     {when}",
        "",
        alert.message,
    ]
    if alert.data:
        lines += ["", "data:"]
        for key, value in alert.data.items():
            shown = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
            lines.append(f"  {key}: {shown}")
    return "\n".join(lines) + "\n"


def message(alert: Alert, settings: EmailSettings) -> EmailMessage:
    """The email of ``alert``."""
    msg = EmailMessage()
    msg["Subject"] = subject(alert, settings.subject_prefix)
    msg["From"] = settings.from_
    msg["To"] = ", ".join(settings.to)
    msg["Date"] = formatdate(alert.at, usegmt=True)
    # The sender's domain: make_msgid's default looks the host name up (slow, and leaks it).
    msg["Message-ID"] = make_msgid("swarmgate", domain=settings.from_.rpartition("@")[2])
    msg["X-Swarmgate-Event"] = alert.type
    msg["X-Swarmgate-Severity"] = alert.severity
    msg.set_content(body(alert))
    return msg


class _Permanent(Exception):
    """A failure that retrying would not cure."""


def _send_sync(settings: EmailSettings, msg: EmailMessage) -> dict[str, tuple[int, bytes]]:
    """Send ``msg`` (blocking; run in a worker thread). Returns the
    recipients the server refused (the others got it). Raises
    :class:`_Permanent` for failures retrying would not cure, anything else
    (``OSError``, ``smtplib.SMTPException``) for transient ones."""
    timeout = settings.timeout / 1000.0
    context = ssl.create_default_context(cafile=settings.ca_file)
    try:
        smtp: smtplib.SMTP
        if settings.ssl:
            smtp = smtplib.SMTP_SSL(settings.host, settings.effective_port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(settings.host, settings.effective_port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if settings.starttls:
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings.username is not None and settings.password is not None:
                smtp.login(settings.username, settings.password)
            return smtp.send_message(msg)
    except ssl.SSLError as exc:
        raise _Permanent(f"TLS failed: {exc}") from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise _Permanent(f"the server does not support it: {exc}") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(f"{who} ({code})" for who, (code, _text) in exc.recipients.items())
        if all(400 <= code < 500 for code, _text in exc.recipients.values()):
            raise  # every refusal is temporary: retry
        raise _Permanent(f"every recipient refused: {refused}") from exc
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:
            raise
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise _Permanent(f"{type(exc).__name__} {exc.smtp_code}: {text}") from exc


def _problem(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{type(exc).__name__} {exc.smtp_code}: {text}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@attrs.define
class EmailCounters:
    """Per-process counts."""

    sent: int = 0  # messages the server accepted (for at least one recipient)
    failed: int = 0  # messages given up on
    retried: int = 0  # attempts repeated after a transient failure
    skipped: int = 0  # alerts the filters left out


class EmailService:
    """What the plugin publishes as ``manager.extensions["email"]``."""

    def __init__(self, plugin: EmailPlugin) -> None:
        self._plugin = plugin

    def counters(self) -> dict[str, Any]:
        """``sent``, ``failed``, ``retried``, ``skipped`` and ``last_error``."""
        plugin = self._plugin
        return {**attrs.asdict(plugin.counters), "last_error": plugin.last_error}


class EmailPlugin:
    """See the module docstring. ``jitter`` returns a number in [0, 1)."""

    #: The delivery channel this plugin serves (the alerts plugin checks
    #: that a configured channel has a plugin).
    alert_channel = "email"

    def __init__(self, *, jitter: Callable[[], float] | None = None) -> None:
        self._jitter = jitter if jitter is not None else random.random
        self.settings: EmailSettings | None = None
        self.counters = EmailCounters()
        self.last_error: str | None = None
        self._types: frozenset[str] | None = None
        self._min_rank = 0

    @hookimpl
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Read ``monitoring.alerts.email``; publish ``extensions["email"]``.
        Unregisters itself when the section is absent. A section that is
        present but turned off (``enabled: false`` here or on
        ``monitoring.alerts``) leaves it registered and idle, so that the
        alerts plugin sees the channel served whatever order the plugins
        are set up in (``deliver_alert`` is off the request path). Raises
        ConfigError naming bad values."""
        section = manager.config.section("monitoring.alerts")
        if not isinstance(section, Mapping) or section.get("email") is None:
            manager.plugins.discard(self)
            return
        enabled = section.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError([("monitoring.alerts.enabled", f"expected true or false, got {enabled!r}")])
        settings = parse_email(section.get("email"))
        if not enabled or settings is None or not settings.enabled:
            return  # idle: deliver_alert has no settings
        self.settings = settings
        self._types = frozenset(settings.types) if settings.types is not None else None
        self._min_rank = SEVERITIES.index(settings.min_severity)
        manager.extensions["email"] = EmailService(self)

    def wants(self, alert: Alert) -> bool:
        """Whether the filters admit ``alert``."""
        return (self._types is None or alert.type in self._types) and severity_rank(alert.severity) >= self._min_rank

    @hookimpl
    async def deliver_alert(self, alert: Alert) -> None:
        """Mail ``alert`` to ``to``; return once the server took it or it
        was given up on. Never raises for a delivery failure (logged and
        counted)."""
        settings = self.settings
        if settings is None:
            return
        if not self.wants(alert):
            self.counters.skipped += 1
            return
        msg = message(alert, settings)
        attempts = settings.retries + 1
        problem = ""
        for attempt in range(attempts):
            try:
                refused = await anyio.to_thread.run_sync(_send_sync, settings, msg, abandon_on_cancel=True)
            except _Permanent as exc:
                self._fail(alert, f"refused: {exc}")
                return
            except (OSError, smtplib.SMTPException) as exc:
                problem = _problem(exc)
            else:
                self.counters.sent += 1
                if refused:
                    who = ", ".join(sorted(refused))
                    log.warning("email_recipients_refused", type=alert.type, refused=who)
                log.info("email_sent", type=alert.type, to=len(settings.to) - len(refused), attempts=attempt + 1)
                return
            if attempt + 1 < attempts:
                base = settings.backoff / 1000.0 * float(2**attempt)
                delay = base / 2 + base / 2 * self._jitter()
                self.counters.retried += 1
                log.warning("email_retry", type=alert.type, problem=problem, attempt=attempt + 1, delay=round(delay, 3))
                await anyio.sleep(delay)
        self._fail(alert, f"gave up after {attempts} attempt(s): {problem}")

    def _fail(self, alert: Alert, why: str) -> None:
        self.counters.failed += 1
        self.last_error = why
        log.error("email_failed", type=alert.type, problem=why)
