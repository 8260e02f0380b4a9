"""``AdvisorPlugin``: the advisor's hooks (entry point ``advisor`` in the
``swarmgate`` group).

* ``plugin_setup`` reads ``monitoring.advisor`` and publishes an
  :class:`~swarmgate_advisor.advisor.Advisor` as ``manager.extensions["advisor"]``
  (the analytics plugin's ``recommendations()`` delegates to it). When
  response caching is off and ``fingerprints`` is on, it starts the
  duplicate tracker (:mod:`swarmgate_advisor.duplicates`), whose database
  sits next to the usage log; otherwise it unregisters its request hooks
  (they would cost every request for nothing).
* ``after_response`` fingerprints each answered request and counts what a
  cache would have answered: in memory, no I/O (a few microseconds).
* ``plugin_shutdown`` commits the counts and stops the writer thread.
* ``register_commands`` adds ``recommendations``, ``optimize routing`` and
  ``analyze bottlenecks``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from swarmgate import CompletionRequest, CompletionResponse, hookimpl
from swarmgate.logs import get_logger
from swarmgate.paths import data_path
from swarmgate_advisor.advisor import Advisor, UsageSource
from swarmgate_advisor.duplicates import DuplicateTracker, default_path
from swarmgate_advisor.settings import AdvisorSettings, CacheModel

if TYPE_CHECKING:
    import click

    from swarmgate import ProviderManager

log = get_logger("swarmgate.advisor")

#: The ``manager.extensions`` key the advisor is published under.
EXTENSION = "advisor"


class AdvisorPlugin:
    """See the module docstring. ``clock`` returns wall-clock seconds
    (``time.time``): it places fingerprints in hours and ends the window."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock if clock is not None else time.time
        self.advisor: Advisor | None = None
        self.tracker: DuplicateTracker | None = None

    @hookimpl
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Publish the advisor; start fingerprinting while caching is off.
        Raises ConfigError naming bad ``monitoring.advisor`` values."""
        config = manager.config
        settings = AdvisorSettings.from_config(config)
        if not settings.enabled:
            manager.plugins.discard(self)
            return

        def usage() -> UsageSource | None:
            source: Any = manager.extensions.get("usage")
            return source if source is not None and hasattr(source, "records") else None

        cache = CacheModel.from_config(config)
        tracker: DuplicateTracker | None = None
        if settings.fingerprints and not cache.enabled:
            source = usage()
            path = data_path(settings.path) if settings.path else default_path(source.path if source else None)
            tracker = DuplicateTracker(
                path,
                ttl_ms=cache.ttl_ms,
                max_size=cache.max_size,
                non_deterministic=cache.non_deterministic,
                flush_interval_ms=settings.flush_interval,
                retention_ms=settings.lookback,
                clock=self._clock,
            )
            tracker.start()
        self.tracker = tracker
        self.advisor = Advisor(
            lambda: manager.config,
            settings,
            usage=usage,
            duplicates=tracker,
            manager=manager,
            clock=self._clock,
        )
        manager.extensions[EXTENSION] = self.advisor
        if tracker is None:
            manager.plugins.discard(self)  # nothing to do per request

    @hookimpl
    def after_response(self, request: CompletionRequest, response: CompletionResponse) -> None:
        """Count the answered request in the simulated cache (skipping
        answers a cache already gave)."""
        tracker = self.tracker
        if tracker is not None and not response.cached:
            tracker.observe(request, response.total_cost)

    @hookimpl
    async def plugin_shutdown(self, manager: ProviderManager) -> None:
        """Commit the fingerprint counts and stop their writer."""
        tracker, self.tracker = self.tracker, None
        if tracker is not None:
            await tracker.aclose()
        if self.advisor is not None and manager.extensions.get(EXTENSION) is self.advisor:
            del manager.extensions[EXTENSION]

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        """``recommendations``, ``optimize routing`` and ``analyze bottlenecks``."""
        from swarmgate_advisor.cli import add_commands

        add_commands(cli)
