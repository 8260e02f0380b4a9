"""``HealthPlugin``: the health distribution's hooks (entry point ``health``
in ``swarmgate``).

* ``plugin_setup`` reads the config (:func:`~swarmgate_health.settings.load_settings`,
  so a bad section fails ``initialize()`` even when monitoring is off);
  when it activates monitoring, builds a :class:`~swarmgate_health.HealthMonitor`,
  publishes it as ``manager.extensions["health"]`` and starts the background
  checks in a task group the plugin owns. When ``extensions["health"]`` is
  already set (another monitor; ``debug providers`` reserving it), it stays
  inert;
* ``plugin_shutdown`` stops the checks and closes that task group (async
  transition callbacks still under way get :data:`SHUTDOWN_GRACE` seconds);
* ``after_response`` / ``on_failure`` feed passive monitoring (never
  deciding anything: ``on_failure`` always returns ``None``);
* ``provider_changed`` restarts a provider's checks with its new config;
* ``register_commands`` adds ``debug providers [--health]``.

The task group is entered in ``initialize()`` and left in ``aclose()``, so
both must run in the same task with properly nested cancel scopes: use
``async with ProviderManager(...)`` (or call both from the same task, not
from inside a scope that ends in between).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import anyio
import anyio.abc

from swarmgate import (
    CompletionRequest,
    CompletionResponse,
    ProviderConfig,
    SwarmgateError,
    Target,
    hookimpl,
)
from swarmgate.logs import get_logger
from swarmgate_health.monitor import PROBE_METADATA, HealthMonitor
from swarmgate_health.settings import load_settings

if TYPE_CHECKING:
    import click

    from swarmgate import ProviderManager

#: Seconds ``plugin_shutdown`` waits for async transition callbacks still running.
SHUTDOWN_GRACE: Final = 5.0

log = get_logger("swarmgate.health")


class HealthPlugin:
    """Active and passive health monitoring; see the module docstring.

    The keyword arguments are for embedding and tests: ``clock`` (monotonic
    seconds, for uptime), ``wall`` (epoch seconds, for timestamps), ``rng``
    (interval jitter) and ``background=False`` (build the monitor but run no
    checks on their own; call ``check_now``/``probe_round`` yourself).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        background: bool = True,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._rng = rng
        self._background = background
        self._task_group: anyio.abc.TaskGroup | None = None
        #: The active monitor, or ``None`` while the config does not activate one.
        self.monitor: HealthMonitor | None = None

    @hookimpl
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Build and start the monitor when the config activates it, unless
        something already published ``manager.extensions["health"]`` (another
        health monitor, or ``debug providers`` running its own round)."""
        settings = load_settings(manager.config, manager.providers())
        if not settings.active:
            return
        if manager.extensions.get("health") is not None:
            log.info("health_monitor_already_present", present=repr(manager.extensions["health"])[:80])
            return
        monitor = HealthMonitor(
            manager,
            settings,
            clock=self._clock or time.monotonic,
            wall=self._wall or time.time,
            rng=self._rng,
        )
        self.monitor = monitor
        manager.extensions["health"] = monitor
        if self._background:
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
            self._task_group = task_group
            monitor.start(task_group)

    @hookimpl
    async def plugin_shutdown(self, manager: ProviderManager) -> None:
        """Stop the checks; close the task group."""
        monitor, task_group = self.monitor, self._task_group
        if monitor is not None:
            monitor.stop()
        if task_group is not None:
            self._task_group = None
            task_group.cancel_scope.deadline = anyio.current_time() + SHUTDOWN_GRACE
            await task_group.__aexit__(None, None, None)
        if monitor is not None:
            monitor.detach()

    @hookimpl
    def after_response(self, request: CompletionRequest, response: CompletionResponse) -> None:
        """A success ends the answering provider's run of live failures."""
        monitor = self.monitor
        if monitor is not None and PROBE_METADATA not in request.metadata:
            monitor.live_success(response.provider)

    @hookimpl(tryfirst=True)
    async def on_failure(self, request: CompletionRequest, target: Target, error: SwarmgateError) -> None:
        """Count a provider-fault failure; mark the provider unhealthy after a run.

        ``tryfirst``: ``on_failure`` stops at the first decision, so an
        observer must run before the plugins that decide (retry, ...); this
        one always returns ``None``."""
        monitor = self.monitor
        if monitor is None or PROBE_METADATA in request.metadata:
            return
        transition = monitor.live_failure(target.provider, error)
        if transition is not None:
            await monitor.dispatch(transition, wait=False)

    @hookimpl
    def provider_changed(self, name: str, new: ProviderConfig | None) -> None:
        """Restart provider ``name``'s monitoring with its new config."""
        if self.monitor is not None:
            self.monitor.provider_changed(name, new)

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        """Add ``debug providers [--health] [--config PATH] [--json]``."""
        from swarmgate_health.cli import add_commands

        add_commands(cli)
