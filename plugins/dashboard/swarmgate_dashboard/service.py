"""``DashboardService``: what the page's feed is built from
(``manager.extensions["dashboard"]``).

It owns the charts' :class:`~swarmgate_dashboard.history.History` and the
:class:`~swarmgate_dashboard.events.EventLog`, fed by :meth:`sample` (run
every ``sampleInterval`` by the plugin's background task), and builds the
summary document the page polls (:meth:`summary`): analytics over the
chosen window, each provider's health and circuits, the history points
the page has not seen yet, and the recent events.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

import anyio

from swarmgate import PluginError, Target
from swarmgate.logs import get_logger
from swarmgate_analytics import parse_window
from swarmgate_dashboard.events import EventLog
from swarmgate_dashboard.history import History
from swarmgate_dashboard.settings import DashboardSettings

if TYPE_CHECKING:
    from swarmgate import ProviderManager

log = get_logger("swarmgate.dashboard")

try:
    __version__ = metadata.version("swarmgate-dashboard")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

#: Circuit states that make a provider ``degraded`` while it is healthy.
TRIPPED: Final = frozenset({"open", "half_open"})
#: Most events the event log keeps (the page shows ``recentEvents`` of them).
EVENT_LOG_SIZE: Final = 200


def provider_status(enabled: bool, live: bool, healthy: bool, circuits: Mapping[str, str] | None) -> str:
    """The badge of a provider: ``disabled`` (configured off), ``down`` (not
    serving, or marked unhealthy), ``degraded`` (healthy but a model's
    circuit is open or half-open) or ``up``."""
    if not enabled:
        return "disabled"
    if not live or not healthy:
        return "down"
    if circuits and any(state in TRIPPED for state in circuits.values()):
        return "degraded"
    return "up"


class DashboardService:
    """See the module docstring. ``clock`` is wall-clock seconds."""

    def __init__(
        self, manager: ProviderManager, settings: DashboardSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.manager = manager
        self.settings = settings
        self._clock = clock
        self.history = History(settings.points)
        self.events = EventLog(EVENT_LOG_SIZE, settings.history / 1000.0)
        #: Changes when the process (and so its history) is new: the page drops what it holds.
        self.instance = secrets.token_hex(8)
        self.started = clock()
        #: Why the last sample could not read the analytics counters (``None``: it could).
        self.metrics_problem: str | None = None
        self._usage_problem: str | None = None
        self._sampling = anyio.Lock()

    # -- sampling ----------------------------------------------------------------------

    async def sample(self) -> None:
        """Read the analytics counters into the history, and the usage log's
        newest records into the event log. Never raises for a missing or
        failing analytics service or usage log: it notes why and goes on."""
        async with self._sampling:
            now = self._clock()
            try:
                metrics = await self.manager.get_metrics()
            except PluginError as exc:
                self.metrics_problem = str(exc)
            except Exception as exc:  # noqa: BLE001 - the dashboard must not take the gateway down
                self.metrics_problem = f"{type(exc).__name__}: {exc}"
                log.warning("dashboard_metrics_failed", error=self.metrics_problem)
            else:
                self.metrics_problem = None
                self.history.add(metrics, at=now)
            usage: Any = self.manager.extensions.get("usage")
            if usage is not None and hasattr(usage, "records"):
                try:
                    await self.events.poll(usage, now)
                except Exception as exc:  # noqa: BLE001 - e.g. no log file before the first record
                    problem = f"{type(exc).__name__}: {exc}"
                    if problem != self._usage_problem:
                        log.info("dashboard_usage_log_unreadable", error=problem)
                    self._usage_problem = problem
                else:
                    self._usage_problem = None

    async def run(self) -> None:
        """Sample every ``sampleInterval`` until cancelled (the first reading
        at once: it is the baseline of the first point)."""
        interval = self.settings.sample_interval / 1000.0
        while True:
            started = anyio.current_time()
            await self.sample()
            await anyio.sleep(max(0.0, interval - (anyio.current_time() - started)))

    # -- what the page shows --------------------------------------------------------------

    def providers(self) -> list[dict[str, Any]]:
        """Each configured provider's state now (in memory, no I/O):
        ``name``, ``type``, ``enabled``, ``live``, ``healthy``, ``status``
        (:func:`provider_status`), ``detail``, ``inflight``, ``priority``,
        ``since`` / ``uptime`` / ``lastError`` (from the health monitor when
        one runs), and ``circuits``: each model's circuit state (with
        ``openUntil``, wall clock) when the breaker runs, else ``None``."""
        manager = self.manager
        monitor: Any = manager.extensions.get("health")  # may be a marker string while 'debug providers' runs
        snapshot: Mapping[str, Any] = monitor.snapshot() if hasattr(monitor, "snapshot") else {}
        breaker: Any = manager.extensions.get("breaker")
        has_breaker = breaker is not None and hasattr(breaker, "state")
        rows = []
        for name, config in manager.config.providers.items():
            handle = manager.handle(name)
            health = snapshot.get(name) if isinstance(snapshot, Mapping) else None
            circuits: dict[str, dict[str, Any]] | None = None
            if has_breaker:
                circuits = {}
                for model in config.models:
                    target = Target(name, model)
                    until = breaker.open_until(target) if hasattr(breaker, "open_until") else None
                    circuits[model] = {"state": str(breaker.state(target)), "openUntil": until}
            live = handle is not None
            healthy = handle.healthy if handle is not None else False
            states = {model: c["state"] for model, c in (circuits or {}).items()}
            rows.append(
                {
                    "name": name,
                    "type": config.type,
                    "enabled": config.enabled,
                    "live": live,
                    "healthy": healthy,
                    "status": provider_status(config.enabled, live, healthy, states),
                    "detail": handle.health_detail
                    if handle is not None
                    else ("disabled" if not config.enabled else ""),
                    "inflight": handle.inflight if handle is not None else 0,
                    "priority": config.priority,
                    "since": health.get("since") if isinstance(health, Mapping) else None,
                    "uptime": health.get("uptime") if isinstance(health, Mapping) else None,
                    "lastError": health.get("last_error") if isinstance(health, Mapping) else None,
                    "circuits": circuits,
                }
            )
        return rows

    async def summary(self, window: str | None = None, since: float | None = None) -> dict[str, Any]:
        """The page's feed (JSON-ready): ``generatedAt``, ``instance``,
        ``version``, ``settings`` (what the page needs of the config),
        ``window``, ``analytics`` (``manager.get_analytics(window)``, or
        ``None`` with the reason in ``problems``), ``providers``
        (:meth:`providers`), ``series`` (``step`` in seconds, ``points``
        after ``since``, see :class:`~swarmgate_dashboard.history.History`),
        ``events`` (newest first, ``recentEvents`` of them) and ``problems``
        (sentences for the page: what is missing and what to install).
        Raises :class:`~swarmgate.InvalidRequestError` for a bad window."""
        if window is not None:
            parse_window(window)
        problems: list[str] = []
        analytics: Mapping[str, Any] | None
        try:
            analytics = await self.manager.get_analytics(window)
        except PluginError as exc:
            analytics = None
            problems.append(str(exc))
        if self.metrics_problem is not None and analytics is not None:
            problems.append(f"charts: {self.metrics_problem}")
        if self.manager.extensions.get("usage") is None:
            problems.append(
                "failovers and errors are read from the usage log: install 'swarmgate-usage' "
                "and keep monitoring.usageLog enabled to list them"
            )
        elif self._usage_problem is not None:
            problems.append(f"usage log: {self._usage_problem}")
        hub = self.manager.alerts
        alerts = list(hub.recent) if hub is not None else []
        settings = self.settings
        return {
            "generatedAt": self._clock(),
            "instance": self.instance,
            "version": __version__,
            "started": self.started,
            "settings": {
                "refreshInterval": settings.refresh_interval,
                "sampleInterval": settings.sample_interval,
                "history": settings.history,
                "window": settings.window,
            },
            "window": window,
            "analytics": analytics,
            "providers": self.providers(),
            "series": {
                "step": settings.sample_interval / 1000.0,
                "providers": list(self.history.providers()),
                "points": self.history.since(since),
            },
            "events": self.events.recent(alerts, settings.recent_events),
            "problems": problems,
        }
