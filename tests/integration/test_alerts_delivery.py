"""Alerts end to end, with the plugins loaded from their entry points: a
provider that slows down and then fails trips the latency and error-rate
watchers (swarmgate-alerts) and opens its circuit (swarmgate-breaker); the
alerts reach an ``on_alert`` callback, a real webhook receiver on loopback
that checks every signature (swarmgate-webhook) and a real SMTP server on
loopback (aiosmtpd; swarmgate-email)."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import anyio
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from swarmgate import Alert, ProviderManager, ServerError
from swarmgate.alerts import BREAKER_OPENED, ERROR_RATE_SPIKE, LATENCY_SLA, PROVIDER_DOWN
from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV
from swarmgate.testing import Outcome, ScriptedProvider
from swarmgate_webhook.testing import WebhookReceiver

pytestmark = pytest.mark.anyio

SECRET = "e2e-webhook-secret"
PLUGINS = "swarmgate,swarmgate-breaker,swarmgate-alerts,swarmgate-webhook,swarmgate-email"


@pytest.fixture(autouse=True)
def _alert_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel and the four plugins under test, from their entry points; nothing else."""
    monkeypatch.setenv(ALLOW_ENV, PLUGINS)
    monkeypatch.delenv(BLOCK_ENV, raising=False)


class Mailbox:
    """An aiosmtpd handler that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[tuple[str, ...], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((tuple(envelope.rcpt_tos), parsed))
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Mailbox]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


def config(webhook_url: str, smtp_port: int) -> dict[str, Any]:
    return {
        "providers": {
            "primary": {"type": "scripted", "priority": 1, "models": {"p": {}}},
            "spare": {"type": "scripted", "priority": 2, "models": {"s": {}}},
        },
        "routing": {
            "fallbackChains": [["primary", "spare"]],
            "circuitBreaker": {"failureThreshold": 3, "timeout": 60_000},
        },
        "monitoring": {
            "alerts": {
                "latencySla": 15,
                "latencyMinSamples": 3,
                "errorRate": {"threshold": 0.5, "minRequests": 6},
                "webhook": {"url": webhook_url, "secret": SECRET, "backoff": 5},
                "email": {
                    "host": "127.0.0.1",
                    "port": smtp_port,
                    "starttls": False,
                    "from": "gateway@example.com",
                    "to": ["oncall@example.com"],
                    "types": [BREAKER_OPENED],
                },
            }
        },
    }


def signed(headers: dict[str, str], body: bytes) -> bool:
    timestamp = headers["x-swarmgate-timestamp"]
    digest = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-swarmgate-signature"], f"sha256={digest}")


async def test_a_failing_provider_alerts_every_channel(smtp: tuple[int, Mailbox]) -> None:
    smtp_port, mailbox = smtp
    seen: list[Alert] = []
    async with WebhookReceiver() as receiver:
        drivers = {"swarmgate.providers": {"scripted": ScriptedProvider}}
        async with ProviderManager(config(receiver.url, smtp_port), drivers=drivers) as manager:
            loaded = {info.name for info in manager.plugins.plugins()}
            assert {"breaker", "alerts", "webhook", "email"} <= loaded
            manager.on_alert(seen.append)
            primary = manager.provider("primary")
            assert isinstance(primary, ScriptedProvider)
            # Slow answers: p95 over 15 ms.
            primary.push(*[Outcome("slow", delay=0.03)] * 3)
            for _ in range(3):
                assert (await manager.complete(prompt="hi", model="primary/p")).provider == "primary"
            # Then it fails: the spare answers, the error rate reaches 3 of 6, the circuit opens.
            primary.push(*[ServerError("upstream exploded", provider="primary")] * 3)
            for _ in range(3):
                assert (await manager.complete(prompt="hi", model="primary/p")).provider == "spare"
            assert manager.extensions["breaker"].counters()["opened"] == 1
            hub = manager.alerts
            assert hub is not None
            with anyio.fail_after(10):
                await hub.drain()
            counters = manager.extensions["alerts"].counters()
            webhook_counters = manager.extensions["webhook"].counters()
            email_counters = manager.extensions["email"].counters()

    types = [alert.type for alert in seen]
    assert types.count(LATENCY_SLA) == 1
    assert types.count(ERROR_RATE_SPIKE) == 1
    assert types.count(BREAKER_OPENED) == 1
    assert PROVIDER_DOWN in types  # the breaker marks the provider unhealthy: the kernel raises it
    assert all(alert.provider == "primary" for alert in seen)
    assert counters["raised"] == 2

    # The webhook receiver got every alert, in order, each signed.
    assert [r.json["type"] for r in receiver.requests] == types
    for request in receiver.requests:
        assert signed(request.headers, request.body)
    [opened] = [r for r in receiver.requests if r.json["type"] == BREAKER_OPENED]
    assert opened.json["provider"] == "primary"
    assert opened.json["model"] == "p"
    assert opened.json["data"]["reason"] == "3 consecutive failures"
    [hook_counters] = webhook_counters.values()
    assert hook_counters["delivered"] == len(types)

    # The mail: only breaker_opened (its filter).
    [(recipients, mail)] = mailbox.messages
    assert recipients == ("oncall@example.com",)
    assert mail["Subject"].startswith("[swarmgate] WARNING breaker_opened: circuit of primary/p opened")
    text = str(mail.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert "provider: primary" in text
    assert "reason: 3 consecutive failures" in text
    assert email_counters["sent"] == 1
    assert email_counters["skipped"] == len(types) - 1


async def test_turned_off_channels_still_count_as_served(smtp: tuple[int, Mailbox]) -> None:
    """A webhook and an email section turned off keep their plugins
    registered and idle: the alerts plugin's check that every configured
    channel has its plugin passes whatever order the plugins are set up in."""
    smtp_port, mailbox = smtp
    cfg = config("http://127.0.0.1:9/never", smtp_port)
    cfg["monitoring"]["alerts"]["webhook"]["enabled"] = False
    cfg["monitoring"]["alerts"]["email"]["enabled"] = False
    drivers = {"swarmgate.providers": {"scripted": ScriptedProvider}}
    async with ProviderManager(cfg, drivers=drivers) as manager:
        manager.emit_alert(Alert(BREAKER_OPENED, "nobody is told", provider="primary"))
        hub = manager.alerts
        assert hub is not None
        with anyio.fail_after(10):
            await hub.drain()
        assert "webhook" not in manager.extensions
        assert "email" not in manager.extensions
    assert mailbox.messages == []
