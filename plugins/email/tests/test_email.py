"""Email delivery against a real SMTP server (aiosmtpd) on loopback: the
message itself, STARTTLS with login, implicit TLS, an untrusted
certificate, transient and permanent refusals, a server that is not
there, filters, and the configuration."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from swarmgate import Alert, ConfigError, ProviderManager
from swarmgate.alerts import BREAKER_OPENED, PROVIDER_DOWN, PROVIDER_RECOVERED
from swarmgate.testing import ScriptedProvider
from swarmgate_email import EmailPlugin, subject

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}
TO = ["oncall@example.com", "lead@example.com"]


def config(email: Any, **alerts: Any) -> dict[str, Any]:
    return {
        "providers": {"a": {"type": "scripted", "models": {"m": {}}}},
        "monitoring": {"alerts": {"email": email, **alerts}},
    }


def relay(port: int, **settings: Any) -> dict[str, Any]:
    """A plain local relay (no TLS), quick retries."""
    return {
        "host": "127.0.0.1",
        "port": port,
        "starttls": False,
        "from": "gateway@example.com",
        "to": TO,
        "backoff": 10,
        "timeout": 5000,
        **settings,
    }


def breaker_alert() -> Alert:
    return Alert(
        BREAKER_OPENED,
        "circuit of a/m opened (3 consecutive failures); open until 21:40:00",
        "warning",
        "a",
        "m",
        {"reason": "3 consecutive failures", "open_until": 1764106800.5},
        at=1764106740.0,
    )


async def send(cfg: dict[str, Any], *alerts: Alert, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Deliver ``alerts`` through a manager; returns the plugin's counters."""
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(EmailPlugin(),), env=env or {}) as manager:
        for alert in alerts:
            manager.emit_alert(alert)
        hub = manager.alerts
        assert hub is not None
        with anyio.fail_after(20):
            await hub.drain()
        counters: dict[str, Any] = manager.extensions["email"].counters()
        return counters


async def test_an_alert_becomes_a_plain_text_mail(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    counters = await send(config(relay(server.port, subjectPrefix="[gw-eu]")), breaker_alert())
    [mail] = server.capture.mails
    assert mail.mail_from == "gateway@example.com"
    assert mail.rcpt_tos == tuple(TO)
    msg = mail.message
    assert msg["Subject"] == (
        "[gw-eu] WARNING breaker_opened: circuit of a/m opened (3 consecutive failures); open until 21:40:00"
    )
    assert msg["From"] == "gateway@example.com"
    assert msg["To"] == "oncall@example.com, lead@example.com"
    assert msg["X-Swarmgate-Event"] == BREAKER_OPENED
    assert msg["Message-ID"].endswith("@example.com>")
    assert msg.get_content_type() == "text/plain"
    assert mail.text == (
        "swarmgate alert\n"
        "\n"
        "type:     breaker_opened\n"
        "severity: warning\n"
        "provider: a\n"
        "model:    m\n"
        "time:     2025-11-25 21:39:00 UTC\n"
        "\n"
        "circuit of a/m opened (3 consecutive failures); open until 21:40:00\n"
        "\n"
        "data:\n"
        "  reason: 3 consecutive failures\n"
        "  open_until: 1764106800.5\n"
    )
    assert counters == {"sent": 1, "failed": 0, "retried": 0, "skipped": 0, "last_error": None}


async def test_starttls_and_login(smtp_server: Callable[..., Any], server_tls: ssl.SSLContext, ca_file: str) -> None:
    server = smtp_server(tls_context=server_tls, require_starttls=True, auth=True)
    cfg = config(relay(server.port, starttls=True, caFile=ca_file, username="alerts", password="${SMTP_PASSWORD}"))
    counters = await send(cfg, breaker_alert(), env={"SMTP_PASSWORD": "hunter2"})
    assert server.capture.logins == [("alerts", "hunter2")]
    [mail] = server.capture.mails
    assert mail.message["X-Swarmgate-Event"] == BREAKER_OPENED
    assert counters["sent"] == 1


async def test_a_wrong_password_is_not_retried(
    smtp_server: Callable[..., Any], server_tls: ssl.SSLContext, ca_file: str
) -> None:
    server = smtp_server(tls_context=server_tls, require_starttls=True, auth=True)
    cfg = config(relay(server.port, starttls=True, caFile=ca_file, username="alerts", password="wrong"))
    counters = await send(cfg, breaker_alert())
    assert server.capture.logins == [("alerts", "wrong")] * 2  # smtplib tries PLAIN, then LOGIN: one attempt
    assert server.capture.mails == []
    assert counters["failed"] == 1
    assert counters["retried"] == 0
    assert counters["last_error"].startswith("refused: SMTPAuthenticationError 535")
    assert "wrong" not in counters["last_error"]


async def test_implicit_tls(smtp_server: Callable[..., Any], server_tls: ssl.SSLContext, ca_file: str) -> None:
    server = smtp_server(ssl_context=server_tls)
    counters = await send(config(relay(server.port, starttls=False, ssl=True, caFile=ca_file)), breaker_alert())
    assert len(server.capture.mails) == 1
    assert counters["sent"] == 1


async def test_an_untrusted_certificate_is_refused(smtp_server: Callable[..., Any], server_tls: ssl.SSLContext) -> None:
    server = smtp_server(tls_context=server_tls, require_starttls=True)
    counters = await send(config(relay(server.port, starttls=True)), breaker_alert())  # the system's CAs
    assert server.capture.mails == []
    assert counters["failed"] == 1
    assert counters["retried"] == 0
    assert counters["last_error"].startswith("refused: TLS failed: [SSL: CERTIFICATE_VERIFY_FAILED]")


async def test_a_transient_refusal_is_retried(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    server.capture.fail_data.extend(["451 4.3.0 try again later", "421 4.3.2 shutting down"])
    counters = await send(config(relay(server.port, retries=2)), breaker_alert())
    assert len(server.capture.mails) == 1
    assert counters == {"sent": 1, "failed": 0, "retried": 2, "skipped": 0, "last_error": None}


async def test_refused_recipients(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    server.capture.refuse.add("lead@example.com")
    counters = await send(config(relay(server.port)), breaker_alert())
    [mail] = server.capture.mails
    assert mail.rcpt_tos == ("oncall@example.com",)  # the others still get it
    assert counters["sent"] == 1
    server.capture.refuse.add("oncall@example.com")
    counters = await send(config(relay(server.port)), breaker_alert())
    assert counters["failed"] == 1
    assert counters["retried"] == 0
    assert counters["last_error"].startswith("refused: every recipient refused: ")


async def test_no_server_gives_up_after_the_retries(closed_port: int) -> None:
    counters = await send(config(relay(closed_port, retries=1)), breaker_alert())
    assert counters["failed"] == 1
    assert counters["retried"] == 1
    assert counters["last_error"].startswith("gave up after 2 attempt(s): ConnectionRefusedError")


async def test_filters(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    cfg = config(relay(server.port, minSeverity="warning", types=[PROVIDER_DOWN, PROVIDER_RECOVERED]))
    down = Alert(PROVIDER_DOWN, "provider 'a' is down", "critical", "a")
    recovered = Alert(PROVIDER_RECOVERED, "provider 'a' recovered", "info", "a")
    counters = await send(cfg, breaker_alert(), down, recovered)
    assert [m.message["X-Swarmgate-Event"] for m in server.capture.mails] == [PROVIDER_DOWN]
    assert counters["skipped"] == 2


def test_a_long_message_makes_a_short_one_line_subject() -> None:
    alert = Alert("custom", "line one\nline two " + "x" * 300)
    text = subject(alert, "[swarmgate]")
    assert text.startswith("[swarmgate] WARNING custom: line one line two xxx")
    assert len(text) == 200
    assert text.endswith("…")


@pytest.mark.parametrize(
    ("email", "path", "reason"),
    [
        ({"to": TO, "from": "g@example.com"}, "monitoring.alerts.email.host", "required key missing"),
        (
            {"host": "smtp.example.com:587", "to": TO, "from": "g@example.com"},
            "monitoring.alerts.email.host",
            "the port goes in 'port'",
        ),
        ({"host": "h", "to": [], "from": "g@example.com"}, "monitoring.alerts.email.to", "at least one address"),
        ({"host": "h", "to": ["nobody"], "from": "g@example.com"}, "monitoring.alerts.email.to[0]", "email address"),
        ({"host": "h", "to": "a@b.c", "from": "g@example.com"}, "monitoring.alerts.email.to", "expected a list"),
        ({"host": "h", "to": TO, "from": "g"}, "monitoring.alerts.email.from", "email address"),
        (
            {"host": "h", "to": TO, "from": "g@e.com", "ssl": True},
            "monitoring.alerts.email.starttls",
            "exclude each other",
        ),
        (
            {"host": "h", "to": TO, "from": "g@e.com", "username": "u"},
            "monitoring.alerts.email.password",
            "required with 'username'",
        ),
        (
            {"host": "h", "to": TO, "from": "g@e.com", "starttls": False, "username": "u", "password": "p"},
            "monitoring.alerts.email.username",
            "the password would travel in clear",
        ),
        ({"host": "h", "to": TO, "from": "g@e.com", "port": 70000}, "monitoring.alerts.email.port", "TCP port"),
        (
            {"host": "h", "to": TO, "from": "g@e.com", "minSeverity": "x"},
            "monitoring.alerts.email.minSeverity",
            "one of",
        ),
        (
            {"host": "h", "to": TO, "from": "g@e.com", "caFile": "/nonexistent/ca.pem"},
            "monitoring.alerts.email.caFile",
            "cannot read it",
        ),
        ({"host": "h", "to": TO, "from": "g@e.com", "sender": "x"}, "monitoring.alerts.email.sender", "unknown key"),
        (
            {"host": "h", "to": TO, "from": "g@e.com", "password": "${NOPE}", "username": "u"},
            "monitoring.alerts.email.password",
            "${NOPE} is not set",
        ),
    ],
)
async def test_bad_values_are_named(email: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        async with ProviderManager(config(email), drivers=DRIVERS, plugins=(EmailPlugin(),), env={}):
            pass
    [(where, message)] = caught.value.problems
    assert where == path
    assert reason in message


@pytest.mark.parametrize(
    "cfg",
    [{"providers": {"a": {"type": "scripted", "models": {"m": {}}}}}, config(None)],
    ids=["no-section", "no-email"],
)
async def test_unregistered_without_an_email_section(cfg: dict[str, Any]) -> None:
    plugin = EmailPlugin()
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(plugin,)) as manager:
        assert plugin not in manager.plugins.pm.get_plugins()
        assert "email" not in manager.extensions


@pytest.mark.parametrize(
    "cfg",
    [config(relay(25), enabled=False), config(relay(25, enabled=False))],
    ids=["alerts-disabled", "email-disabled"],
)
async def test_idle_when_turned_off(cfg: dict[str, Any]) -> None:
    """Registered (a configured channel is served) but sending nothing."""
    plugin = EmailPlugin()
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(plugin,)) as manager:
        assert plugin in manager.plugins.pm.get_plugins()
        assert "email" not in manager.extensions
        await plugin.deliver_alert(breaker_alert())  # port 25 on loopback is never tried
        assert plugin.counters.sent == plugin.counters.failed == 0
