"""swarmgate-email: alerts sent as plain-text email over SMTP.

* :class:`EmailPlugin` -- the hook plugin (entry point ``email`` in the
  ``swarmgate`` group), configured by ``monitoring.alerts.email``:
  implements ``deliver_alert`` with the standard library's ``smtplib`` in a
  worker thread (STARTTLS or implicit TLS, AUTH, retries); publishes
  ``manager.extensions["email"]`` (:class:`EmailService`);
* :func:`message`, :func:`subject`, :func:`body` -- how an alert is written;
* :class:`EmailSettings` -- the configuration.

The public API is exactly ``__all__``.
"""

from swarmgate_email.plugin import EmailCounters, EmailPlugin, EmailService, body, message, subject
from swarmgate_email.settings import EmailSettings, parse_email

__all__ = [
    "EmailCounters",
    "EmailPlugin",
    "EmailService",
    "EmailSettings",
    "body",
    "message",
    "parse_email",
    "subject",
]
