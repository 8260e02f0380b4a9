"""``DashboardPlugin``: the entry point ``dashboard`` in the ``swarmgate`` group.

* ``plugin_setup`` reads ``server.dashboard`` (a bad section fails
  ``initialize()``); when it is enabled, builds the
  :class:`~swarmgate_dashboard.service.DashboardService`, publishes it as
  ``manager.extensions["dashboard"]`` and starts its sampler (one
  ``get_metrics()`` and one read of the usage log's newest records every
  ``sampleInterval``) as a background task. Disabled, the plugin
  unregisters itself;
* ``gateway_routes`` gives the gateway the page, its assets and its feed
  (:mod:`swarmgate_dashboard.routes`);
* ``plugin_shutdown`` stops the sampler and waits until it has ended.

The plugin has no request hooks: it costs the request path nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import anyio
import sniffio

from swarmgate import hookimpl
from swarmgate.logs import get_logger
from swarmgate_dashboard.service import DashboardService
from swarmgate_dashboard.settings import SECTION, load_settings

if TYPE_CHECKING:
    from swarmgate import ProviderManager

log = get_logger("swarmgate.dashboard")

#: Where the service is published.
EXTENSION: Final = "dashboard"


class Sampler:
    """Runs ``service.run()`` as a detached task of the event loop until
    :meth:`stop`.

    Detached (like the kernel's alert hub) rather than in a task group:
    a task group entered by ``initialize()`` would have to be left by
    ``aclose()`` in the same task with every cancel scope opened in
    between already closed, which neither library users nor the gateway's
    own shutdown (it closes the manager inside a shielded scope) can be
    asked to guarantee. anyio has no detached spawn, so asyncio gets a
    plain task and trio a system task."""

    def __init__(self, service: DashboardService) -> None:
        self._service = service
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()
        self._task: object = None  # keeps the asyncio task referenced

    def start(self) -> None:
        """Start sampling (call from within the event loop)."""
        if sniffio.current_async_library() == "trio":
            import trio

            trio.lowlevel.spawn_system_task(self._run, name="swarmgate:dashboard-sampler")
        else:
            import asyncio

            self._task = asyncio.get_running_loop().create_task(self._run(), name="swarmgate:dashboard-sampler")

    async def _run(self) -> None:
        try:
            with self._scope:
                await self._service.run()
        except Exception as exc:  # noqa: BLE001 - a trio system task must not raise
            log.error("dashboard_sampler_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Stop sampling and wait until the task has ended (idempotent)."""
        self._scope.cancel()
        await self._done.wait()


class DashboardPlugin:
    """The dashboard; see the module docstring. ``background=False`` builds
    the service without the sampler (call ``service.sample()`` yourself)."""

    def __init__(self, *, background: bool = True) -> None:
        self._background = background
        self._sampler: Sampler | None = None
        #: The service, or ``None`` while the config disables the dashboard.
        self.service: DashboardService | None = None

    @hookimpl
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Read ``server.dashboard``; publish the service and start sampling,
        or unregister when disabled."""
        settings = load_settings(manager.config.section(SECTION))
        if not settings.enabled:
            manager.plugins.discard(self)
            return
        service = DashboardService(manager, settings)
        self.service = service
        manager.extensions[EXTENSION] = service
        if self._background:
            sampler = Sampler(service)
            sampler.start()
            self._sampler = sampler

    @hookimpl
    async def plugin_shutdown(self, manager: ProviderManager) -> None:
        """Stop the sampler."""
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            await sampler.stop()
        if manager.extensions.get(EXTENSION) is self.service:
            manager.extensions.pop(EXTENSION, None)

    @hookimpl
    def gateway_routes(self, manager: ProviderManager) -> list[Any] | None:
        """``/dashboard``, ``/dashboard/static/...`` and ``/dashboard/api/summary``."""
        if self.service is None:
            return None
        from swarmgate_dashboard.routes import build_routes

        return build_routes(self.service)
