"""``AuditPlugin``: records every request and admin action in the audit log
(entry point ``audit`` in the ``swarmgate`` group).

``plugin_setup`` (``tryfirst``: the log is open, and published as
``manager.extensions["audit"]``, before other plugins' setup, so the
compliance plugin can check it is there) reads ``security.audit``, opens the
log and starts its writer thread; with ``enabled: false`` the plugin
unregisters itself. Bodies are redacted when ``security.compliance.gdpr``
(or ``hipaa``) is on, and encrypted when ``manager.extensions["encryption"]``
exists when they are written (looked up by the writer thread for each
record, so the encryption plugin's set-up order does not matter).

``after_response`` and ``request_failed`` are synchronous and only queue a
tuple of references (a few µs, no I/O), after the ``logLevel`` check;
``plugin_shutdown`` commits what is pending and stops the writer.
"""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
import click

from swarmgate import (
    CompletionRequest,
    CompletionResponse,
    ConfigError,
    ProviderManager,
    RequestContext,
    SwarmgateError,
    hookimpl,
)
from swarmgate_audit.log import AuditLog, AuditLogError
from swarmgate_audit.records import Encryptor
from swarmgate_audit.settings import SECTION, AuditSettings, redaction_required

#: The ``manager.extensions`` key the log is published under.
EXTENSION = "audit"
#: The ``manager.extensions`` key of the encryption service.
ENCRYPTION = "encryption"


class AuditPlugin:
    """The audit log's hooks; see the module docstring."""

    def __init__(self) -> None:
        self.log: AuditLog | None = None
        self.settings = AuditSettings()
        self._routes: dict[str, Any] = {}
        self._answered = True  # record answered requests (logLevel info/debug)
        self._min_failed_status = 0  # record failures with at least this status

    @hookimpl(tryfirst=True)
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Open the log and publish it; unregister when disabled. Raises
        ConfigError for a bad section or a path that is not a usable audit log."""
        config = manager.config
        settings = AuditSettings.from_config(config)
        if not settings.enabled:
            manager.plugins.discard(self)  # inactive: its hooks would cost every request
            return
        extensions = manager.extensions

        def encryption() -> Encryptor | None:
            service: Encryptor | None = extensions.get(ENCRYPTION)
            return service

        audit = AuditLog.from_settings(settings, redact=redaction_required(config), encryption=encryption)
        try:
            await anyio.to_thread.run_sync(audit.start)
        except AuditLogError as exc:
            raise ConfigError([(f"{SECTION}.path", str(exc))], source=config.source) from None
        self.settings = settings
        self.log = audit
        self._routes = config.routes
        self._answered = settings.log_level in ("debug", "info")
        self._min_failed_status = 500 if settings.log_level == "error" else 0
        extensions[EXTENSION] = audit

    @hookimpl
    async def plugin_shutdown(self, manager: ProviderManager) -> None:
        """Commit what is pending, stop the writer thread, close the file."""
        audit = self.log
        if audit is None:
            return
        self.log = None
        await audit.aclose()
        if manager.extensions.get(EXTENSION) is audit:
            del manager.extensions[EXTENSION]

    @hookimpl
    def provider_changed(self, manager: ProviderManager) -> None:
        """Follow the live configuration's routes."""
        self._routes = manager.config.routes

    @hookimpl
    def after_response(self, request: CompletionRequest, response: CompletionResponse, context: RequestContext) -> None:
        """Queue the answered request (cache hits included) unless ``logLevel`` skips it."""
        audit = self.log
        if audit is None or not self._answered:
            return
        model = request.model
        audit.enqueue_success(
            context.id,
            time.time() - (time.perf_counter() - context.started),
            request,
            response,
            model if model in self._routes else None,
            context.stream,
        )

    @hookimpl
    def request_failed(self, request: CompletionRequest, error: SwarmgateError, context: RequestContext) -> None:
        """Queue the request that ended without an answer unless ``logLevel`` skips it."""
        audit = self.log
        if audit is None or error.status_code < self._min_failed_status:
            return
        elapsed = time.perf_counter() - context.started
        model = request.model
        audit.enqueue_failure(
            context.id,
            time.time() - elapsed,
            elapsed * 1000.0,
            request,
            error,
            error.attempts or tuple(context.attempts),
            model if model in self._routes else None,
            context.stream,
        )

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        """``audit verify``, ``audit tail`` and ``audit purge``."""
        from swarmgate_audit.cli import audit_group

        cli.add_command(audit_group)
