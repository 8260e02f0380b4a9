"""``UsagePlugin``: records every request in the usage log (entry point
``usage`` in the ``swarmgate`` group).

``plugin_setup`` (``tryfirst``: the log is open before other plugins' setup,
so a budget plugin can read past spend from it) reads
``monitoring.usageLog``, opens the log, starts its writer thread and
publishes it as ``manager.extensions["usage"]``; with ``enabled: false`` the
plugin unregisters itself. ``after_response`` and ``request_failed`` are
synchronous and only queue a tuple of references (a few µs, no I/O);
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
from swarmgate_usage.log import UsageLog, UsageLogError
from swarmgate_usage.settings import SECTION, UsageLogSettings

#: The ``manager.extensions`` key the log is published under.
EXTENSION = "usage"


class UsagePlugin:
    """The usage log's hooks; see the module docstring."""

    def __init__(self) -> None:
        self.log: UsageLog | None = None
        self.settings = UsageLogSettings()
        self._routes: dict[str, Any] = {}

    @hookimpl(tryfirst=True)
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Open the log and publish it; unregister when disabled. Raises
        ConfigError for a bad section or a path that is not a usable log."""
        config = manager.config
        settings = UsageLogSettings.from_config(config)
        if not settings.enabled:
            manager.plugins.discard(self)  # inactive: its hooks would cost every request
            return
        usage = UsageLog.from_settings(settings)
        try:
            await anyio.to_thread.run_sync(usage.start)
        except UsageLogError as exc:
            raise ConfigError([(f"{SECTION}.path", str(exc))], source=config.source) from None
        self.settings = settings
        self.log = usage
        self._routes = config.routes
        manager.extensions[EXTENSION] = usage

    @hookimpl
    async def plugin_shutdown(self, manager: ProviderManager) -> None:
        """Commit what is pending, stop the writer thread, close the file."""
        usage = self.log
        if usage is None:
            return
        self.log = None
        await usage.aclose()
        if manager.extensions.get(EXTENSION) is usage:
            del manager.extensions[EXTENSION]

    @hookimpl
    def provider_changed(self, manager: ProviderManager) -> None:
        """Follow the live configuration's routes (a provider change rebuilds it)."""
        self._routes = manager.config.routes

    @hookimpl
    def after_response(self, request: CompletionRequest, response: CompletionResponse, context: RequestContext) -> None:
        """Queue the answered request (cache hits included)."""
        usage = self.log
        if usage is None:
            return
        now = time.perf_counter()
        model = request.model
        usage.enqueue_success(
            context.id,
            time.time() - (now - context.started),
            request,
            response,
            model if model in self._routes else None,
            context.stream,
        )

    @hookimpl
    def request_failed(self, request: CompletionRequest, error: SwarmgateError, context: RequestContext) -> None:
        """Queue the request that ended without an answer, with its attempts."""
        usage = self.log
        if usage is None:
            return
        elapsed = time.perf_counter() - context.started
        model = request.model
        usage.enqueue_failure(
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
        """``usage tail`` and ``usage purge``."""
        from swarmgate_usage.cli import usage_group

        cli.add_command(usage_group)
