"""Shared set-up of the email plugin's tests: a real SMTP server (aiosmtpd,
on its own asyncio loop in a thread) on loopback, with a handler that
captures messages and can be told to fail; a private certificate authority
(trustme) for the TLS tests."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
from collections import deque
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import attrs
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _kernel_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kernel's own plugins load from entry points: the tests pass
    their EmailPlugin in code, and another installed plugin must not change
    what they observe."""
    monkeypatch.setenv(ALLOW_ENV, "swarmgate")
    monkeypatch.delenv(BLOCK_ENV, raising=False)


@attrs.frozen
class Mail:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content()).replace("\r\n", "\n")  # CRLF on the wire


class Capture:
    """The aiosmtpd handler: accepts mail and keeps it; ``fail_data``
    answers queued for the next DATA commands instead; ``refuse`` the
    recipients to refuse permanently."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.fail_data: deque[str] = deque()
        self.refuse: set[str] = set()
        self.logins: list[tuple[str, str]] = []

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.fail_data:
            return self.fail_data.popleft()
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.mails.append(Mail(str(envelope.mail_from), tuple(envelope.rcpt_tos), parsed))
        return "250 Message accepted"

    def authenticate(self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        self.logins.append((login, password))
        return AuthResult(success=(login, password) == ("alerts", "hunter2"), handled=False)


@attrs.define
class SMTPServer:
    """A running server: where it listens and what it captured."""

    port: int
    capture: Capture
    controller: Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    return free_port()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    """The private CA's certificate, as a PEM file for ``caFile``."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A server-side TLS context with a certificate for 127.0.0.1 from the private CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., SMTPServer]]:
    """Start SMTP servers on loopback (keyword arguments go to aiosmtpd's
    ``Controller``); each is stopped at the end of the test."""
    started: list[Controller] = []

    def start(**options: Any) -> SMTPServer:
        capture = Capture()
        if options.pop("auth", False):
            options.update(authenticator=capture.authenticate, auth_required=True)
        port = free_port()
        controller = Controller(capture, hostname="127.0.0.1", port=port, **options)
        controller.start()
        started.append(controller)
        return SMTPServer(port, capture, controller)

    yield start
    for controller in started:
        controller.stop()
