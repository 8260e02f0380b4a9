"""The analytics services: :class:`AnalyticsService` (live, published as
``manager.extensions["analytics"]``) and :class:`RecordsSource` (the same
documents computed from a recorded usage log, for the CLI).

Both are :class:`MetricsSource` objects: ``await analytics(window)`` and
``await metrics()``; the exporters render either.

Which data answers ``analytics(window)`` on a live gateway:

* ``None`` -- the process-lifetime counters;
* a span up to a day -- the live rings, unless the process has been up for
  less than the span and a usage log is active: then the log (it also
  holds what earlier processes served);
* a longer span -- the usage log (``manager.extensions["usage"]``), read in
  pages and aggregated in a worker thread; without a usage log that is an
  :class:`~swarmgate.InvalidRequestError`.

The document says which in ``source`` (``live`` or ``usage-log``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio

from swarmgate import InvalidRequestError, PluginError, SwarmgateConfig, Target
from swarmgate.logs import get_logger
from swarmgate_analytics.aggregate import LiveAggregate, RecordLike, RecordsAggregate, TargetKey
from swarmgate_analytics.report import (
    LiveFacts,
    ProviderFacts,
    build_metrics,
    build_report,
    cache_from_service,
)
from swarmgate_analytics.tally import Tally
from swarmgate_analytics.uptime import UptimeTracker
from swarmgate_analytics.windows import LIVE_SPAN, parse_window

if TYPE_CHECKING:
    from swarmgate import ProviderManager

log = get_logger("swarmgate.analytics")

#: Records read from the usage log per page.
PAGE: Final = 5000


class MetricsSource(Protocol):
    """What the exporters render: the analytics and metrics documents."""

    async def analytics(self, window: str | None = None) -> dict[str, Any]:
        """The analytics document over ``window``."""
        ...

    async def metrics(self) -> dict[str, Any]:
        """The raw counters document."""
        ...


class RecordReader(Protocol):
    """The part of ``swarmgate_usage.UsageLog`` analytics reads."""

    async def records(
        self, *, since: float | None = None, until: float | None = None, limit: int | None = None
    ) -> Sequence[RecordLike]:
        """Records of requests that started in ``[since, until)``, oldest first."""
        ...


async def aggregate_log(reader: RecordReader, since: float | None, until: float | None) -> RecordsAggregate:
    """The tallies of every record in ``[since, until)``, read in pages of
    :data:`PAGE` and aggregated in a worker thread (memory stays bounded
    by a page)."""
    aggregate = RecordsAggregate()
    cursor = since
    limit = PAGE
    seen: set[str] = set()  # ids already counted whose ts equals ``cursor``
    while True:
        page = await reader.records(since=cursor, until=until, limit=limit)
        fresh = [r for r in page if not (r.ts == cursor and r.id in seen)]
        if fresh:
            await anyio.to_thread.run_sync(_add_all, aggregate, fresh)
        if len(page) < limit:
            return aggregate
        last = page[-1].ts
        if last != cursor:
            seen = set()
            cursor = last
        elif not fresh:
            limit *= 2  # a full page of one timestamp, all counted: read wider
        seen.update(r.id for r in page if r.ts == last)


def _add_all(aggregate: RecordsAggregate, records: Sequence[RecordLike]) -> None:
    for record in records:
        aggregate.add(record)


def configured_models(config: SwarmgateConfig | None, live: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Provider name -> configured model names, for the providers that are
    live (``live``) or else enabled in ``config``."""
    if config is None:
        return {}
    names = live if live is not None else [n for n, p in config.providers.items() if p.enabled]
    return {name: list(config.providers[name].models) if name in config.providers else [] for name in names}


async def _call(method: Callable[[], Any]) -> Any:
    result = method()
    if inspect.isawaitable(result):
        result = await result
    return result


class AnalyticsService:
    """The live analytics of one manager; see the module docstring.
    ``clock`` is wall-clock seconds (``time.time``)."""

    def __init__(
        self,
        manager: ProviderManager,
        aggregate: LiveAggregate,
        uptime: UptimeTracker,
        *,
        clock: Callable[[], float] = time.time,
        started: float | None = None,
    ) -> None:
        self._manager = manager
        self._aggregate = aggregate
        self._uptime = uptime
        self._clock = clock
        self.started = clock() if started is None else started

    # -- the documents -------------------------------------------------------------

    async def analytics(self, window: str | None = None) -> dict[str, Any]:
        """The analytics document (the guide's shape) over ``window``:
        ``None`` since start, ``<n>[smhd]`` the last span. Raises
        :class:`~swarmgate.InvalidRequestError` for a bad window, or a long
        one without a usage log."""
        span = parse_window(window)
        now = self._clock()
        usage: Any = self._manager.extensions.get("usage")
        from_log = span is not None and usage is not None and (span > LIVE_SPAN or span > now - self.started)
        if span is not None and span > LIVE_SPAN and usage is None:
            raise InvalidRequestError(
                f"window {window!r} is longer than the live windows (1d): it needs the usage log "
                "(install 'swarmgate-usage' and keep monitoring.usageLog enabled)"
            )
        if from_log:
            assert span is not None
            await usage.flush()  # what was just served is in the log too
            records = await aggregate_log(usage, now - span, None)
            targets, requests, source, since = records.targets, records.requests, "usage-log", now - span
        else:
            live_targets, requests = self._aggregate.window(now, span)
            targets = dict(live_targets)
            source = "live"
            since = self.started if span is None else max(self.started, now - span)
        cache = await self._cache_stats() if span is None else None
        return build_report(
            window=window,
            generated_at=now,
            source=source,
            since=since,
            targets=targets,
            requests=requests,
            configured=self._configured(),
            facts=self._facts(now, span, targets),
            cache=cache,
            budgets=await self._extension_call("budget", "status"),
            rate_limits=await self._extension_call("ratelimit", "snapshot"),
        )

    async def metrics(self) -> dict[str, Any]:
        """The raw process-lifetime counters (see
        :func:`~swarmgate_analytics.report.build_metrics`)."""
        now = self._clock()
        targets, requests = self._aggregate.window(now, None)
        return build_metrics(
            generated_at=now,
            source="live",
            since=self.started,
            targets=targets,
            requests=requests,
            configured=self._configured(),
            facts=self._facts(now, None, targets),
            cache=await self._cache_stats(),
        )

    async def recommendations(self) -> list[dict[str, Any]]:
        """The advisor's recommendations (``manager.extensions["advisor"]``,
        from ``swarmgate-advisor``), or ``[]`` without an advisor."""
        advisor = self._manager.extensions.get("advisor")
        if advisor is None:
            return []
        result: list[dict[str, Any]] = list(await _call(advisor.recommendations))
        return result

    # -- live facts --------------------------------------------------------------------

    def _configured(self) -> dict[str, list[str]]:
        manager = self._manager
        return configured_models(manager.config, manager.providers())

    def reconcile(self, now: float) -> None:
        """Note the current health of every live provider (catches a
        transition whose alert has not been delivered yet)."""
        manager = self._manager
        for name in manager.providers():
            handle = manager.handle(name)
            if handle is not None:
                if self._uptime.known(name):
                    self._uptime.note(name, handle.healthy, now)
                else:
                    self._uptime.start(name, handle.healthy, now)

    def _facts(self, now: float, span: float | None, targets: Mapping[TargetKey, Tally]) -> LiveFacts:
        manager = self._manager
        self.reconcile(now)
        health: Any = manager.extensions.get("health")  # a reserved marker string while 'debug providers' runs
        snapshot: Mapping[str, Mapping[str, Any]] = health.snapshot() if hasattr(health, "snapshot") else {}
        breaker = manager.extensions.get("breaker")
        configured = self._configured()
        keys = set(targets) | {(p, m) for p, models in configured.items() for m in models}
        breakers: dict[TargetKey, str] = {}
        if breaker is not None:
            breakers = {key: str(breaker.state(Target(*key))) for key in keys}
        providers: dict[str, ProviderFacts] = {}
        for name in set(configured) | {p for p, _ in keys}:
            handle = manager.handle(name)
            providers[name] = ProviderFacts(
                uptime=self._uptime_of(name, now, span, snapshot.get(name)),
                inflight=None if handle is None else handle.inflight,
                healthy=None if handle is None else handle.healthy,
            )
        return LiveFacts(providers, breakers)

    def _uptime_of(self, name: str, now: float, span: float | None, health: Mapping[str, Any] | None) -> float | None:
        """The health monitor's figure when it covers the span (``uptime``
        since start, ``uptime_window`` for a span equal to its window), else
        this plugin's own record of health transitions."""
        if health is not None:
            if span is None and health.get("uptime") is not None:
                return float(health["uptime"])
            if (
                span is not None
                and health.get("uptime_window") is not None
                and health.get("window_seconds") is not None
                and abs(float(health["window_seconds"]) - span) < 1e-6
            ):
                return float(health["uptime_window"])
        return self._uptime.uptime(name, now, span)

    async def _cache_stats(self) -> dict[str, Any] | None:
        stats = await self._extension_call("cache", "stats")
        return cache_from_service(stats) if isinstance(stats, Mapping) else None

    async def _extension_call(self, name: str, method: str) -> Any:
        """``manager.extensions[name].<method>()`` (sync or async), or
        ``None`` when absent; a failure is logged and gives ``None``."""
        service = self._manager.extensions.get(name)
        function = getattr(service, method, None)
        if function is None:
            return None
        try:
            return await _call(function)
        except Exception as exc:  # noqa: BLE001 - another plugin's failure must not break analytics
            log.warning(
                "analytics_extension_failed", extension=name, method=method, error=f"{type(exc).__name__}: {exc}"
            )
            return None


class RecordsSource:
    """The analytics and metrics documents computed from a usage log
    (without a manager): what the CLI prints and exports. Windows end at
    ``now`` (default: the time of each call). ``config`` supplies the
    configured providers and models (shown even without traffic)."""

    def __init__(
        self,
        reader: RecordReader,
        config: SwarmgateConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reader = reader
        self._config = config
        self._clock = clock

    async def aggregate(self, window: str | None) -> tuple[RecordsAggregate, float | None, float]:
        """The tallies over ``window``, its start (``None``: whole log) and the time it ends."""
        span = parse_window(window)
        now = self._clock()
        since = None if span is None else now - span
        return await aggregate_log(self._reader, since, None), since, now

    async def analytics(self, window: str | None = None) -> dict[str, Any]:
        """The analytics document over ``window`` (``None``: the whole log)."""
        aggregate, since, now = await self.aggregate(window)
        return build_report(
            window=window,
            generated_at=now,
            source="usage-log",
            since=since,
            targets=aggregate.targets,
            requests=aggregate.requests,
            configured=configured_models(self._config),
        )

    async def metrics(self) -> dict[str, Any]:
        """The raw counters over the whole log."""
        aggregate, _, now = await self.aggregate(None)
        return build_metrics(
            generated_at=now,
            source="usage-log",
            since=None,
            targets=aggregate.targets,
            requests=aggregate.requests,
            configured=configured_models(self._config),
        )


def analytics_source(manager: ProviderManager) -> MetricsSource:
    """``manager.extensions["analytics"]``, or a PluginError saying what to install."""
    service = manager.extensions.get("analytics")
    if service is None:
        raise PluginError(
            "no analytics service is active: install 'swarmgate-analytics' (or 'qwen-swarm-enhanced') "
            "and make sure monitoring.analytics does not disable it",
            namespace="swarmgate",
            name="analytics",
            distribution="swarmgate-analytics",
        )
    source: MetricsSource = service
    return source
