"""The :class:`Advisor`: recommendations, routing replay and bottleneck
analysis over a window of the usage log.

It runs in two settings:

* live, published by the plugin as ``manager.extensions["advisor"]``: the
  window is the last ``lookback`` up to now, the config is the manager's
  current one, budgets come from ``extensions["budget"]`` when the budget
  plugin runs, queue depths from the live providers;
* offline, over a recorded usage log (the CLI's ``--log``): the window is
  the last ``lookback`` up to now when the log has requests that recent,
  else up to the log's newest request ("as of the end of the log"); budgets
  are computed from the config's limits and the log's spend.

Reading and computing happen in worker threads; the event loop only awaits.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio.to_thread

from swarmgate import SwarmgateConfig
from swarmgate.logs import get_logger
from swarmgate_advisor import rules
from swarmgate_advisor.bottlenecks import analyse
from swarmgate_advisor.duplicates import DuplicateTotals, DuplicateTracker, read_totals
from swarmgate_advisor.figures import Figures, compute
from swarmgate_advisor.replay import TARGETS, ReplayReport, replay, strategy_models
from swarmgate_advisor.rules import BudgetStatus, limit_path, period_bounds
from swarmgate_advisor.settings import AdvisorSettings, CacheModel

if TYPE_CHECKING:
    from swarmgate import ProviderManager
    from swarmgate_usage import UsageRecord

log = get_logger("swarmgate.advisor")


class UsageSource(Protocol):
    """What the advisor reads from a usage log (``swarmgate_usage.UsageLog``)."""

    path: Path

    async def records(
        self, *, since: float | None = None, until: float | None = None, limit: int | None = None, latest: bool = False
    ) -> list[UsageRecord]: ...

    async def spend(self, *, since: float, provider: str | None = None, caller: str | None = None) -> float: ...


class Advisor:
    """Recommendations, replay and bottlenecks over the usage log; see the
    module docstring.

    ``config`` and ``usage`` are callables so that a live advisor follows
    the manager (a reloaded config, a usage log published late).
    ``duplicates`` is the fingerprint tracker of a live gateway, else
    ``duplicates_path`` the fingerprint database to read (offline). With
    ``anchor_to_log`` an old log is analysed as of its newest request.
    ``clock`` returns wall-clock seconds.
    """

    def __init__(
        self,
        config: Callable[[], SwarmgateConfig],
        settings: AdvisorSettings,
        *,
        usage: Callable[[], UsageSource | None],
        duplicates: DuplicateTracker | None = None,
        duplicates_path: Path | None = None,
        manager: ProviderManager | None = None,
        anchor_to_log: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self.settings = settings
        self._usage = usage
        self.duplicates = duplicates
        self.duplicates_path = duplicates.path if duplicates is not None else duplicates_path
        self._manager = manager
        self._anchor = anchor_to_log
        self._clock = clock

    # -- the window -----------------------------------------------------------------

    async def window(self, lookback_ms: float | None = None) -> tuple[list[UsageRecord], Figures]:
        """The records of the analysis window and their figures (committing
        what the live log has pending first). ``lookback_ms`` overrides the
        configured ``lookback``."""
        lookback = (lookback_ms if lookback_ms is not None else self.settings.lookback) / 1000.0
        end = self._clock()
        usage = self._usage()
        if usage is None:
            return [], Figures(since=end - lookback, until=end)
        flush = getattr(usage, "flush", None)
        if flush is not None:
            await flush()
        records = await usage.records(since=end - lookback)
        if not records and self._anchor:
            newest = await usage.records(limit=1, latest=True)
            if newest:
                end = newest[-1].ts
                records = await usage.records(since=end - lookback)
        until = max([end, *(r.ts for r in records[-1:])])
        figures = await anyio.to_thread.run_sync(compute, records, end - lookback, until)
        return records, figures

    # -- recommendations --------------------------------------------------------------

    async def recommendations(self, lookback_ms: float | None = None) -> list[dict[str, Any]]:
        """Every recommendation the data supports now, most pressing first
        (see :mod:`swarmgate_advisor.rules` for the shape and the rules)."""
        config = self._config()
        settings = self.settings
        records, figures = await self.window(lookback_ms)
        found: list[dict[str, Any]] = []
        found += await anyio.to_thread.run_sync(rules.cheaper_targets, figures, config, settings)
        found += await anyio.to_thread.run_sync(rules.latency_sla, figures, config, settings)
        found += await anyio.to_thread.run_sync(rules.error_rate, figures, config, settings)
        totals = await self.duplicate_totals(figures.since, figures.until)
        found += rules.caching(totals, figures, CacheModel.from_config(config), settings, figures.until - figures.since)
        now = figures.until if self._anchor else self._clock()
        budgets = await self.budget_statuses(now)
        ratio: float | None = None
        if budgets and _projected_over(budgets, settings, now) and config.routing.strategy != "cost-optimized":
            ratio = await self._cost_ratio(records, figures, config)
        strategies = [m.name for m in strategy_models(config)[0]]
        found += rules.budget_burn(budgets, config, settings, now, ratio, strategies)
        return rules.rank(found)

    async def duplicate_totals(self, since: float, until: float) -> DuplicateTotals:
        """The fingerprint counts of ``[since, until]`` (after committing the
        tracker's pending ones); none without a fingerprint database."""
        if self.duplicates is not None:
            return await self.duplicates.totals(since, until)
        if self.duplicates_path is not None:
            return await anyio.to_thread.run_sync(read_totals, self.duplicates_path, since, until)
        return DuplicateTotals()

    async def _cost_ratio(
        self, records: Sequence[UsageRecord], figures: Figures, config: SwarmgateConfig
    ) -> float | None:
        report = await anyio.to_thread.run_sync(
            lambda: replay(records, figures, config, "cost", min_samples=self.settings.min_samples)
        )
        candidate = next((c for c in report.candidates if c.name == "cost-optimized"), None)
        if candidate is None or report.actual.cost <= 0:
            return None
        return candidate.outcome.cost / report.actual.cost

    async def budget_statuses(self, now: float) -> list[BudgetStatus]:
        """Every budget with its spend this period: from the budget plugin's
        ``status()`` when it runs, else from the config's limits
        (``routing.budgetLimits`` daily/monthly and ``callers``, each
        provider's ``budget``) and the usage log's spend."""
        service = self._manager.extensions.get("budget") if self._manager is not None else None
        status = getattr(service, "status", None)
        if status is not None:
            rows = status()
            if inspect.isawaitable(rows):
                rows = await rows
            return [b for row in rows if (b := _from_status(row, now)) is not None]
        usage = self._usage()
        if usage is None:
            return []
        out = []
        for scope, subject, period, limit in _configured_budgets(self._config()):
            start, end = period_bounds(period, now)
            spent = await usage.spend(
                since=start,
                provider=subject if scope == "provider" else None,
                caller=subject if scope == "caller" else None,
            )
            name = f"global:{period}" if subject is None else f"{scope}:{subject}:{period}"
            out.append(
                BudgetStatus(name, scope, subject, period, limit, spent, start, end, limit_path(scope, subject, period))
            )
        return out

    # -- replay and bottlenecks -----------------------------------------------------------

    async def replay(self, target: str, lookback_ms: float | None = None) -> ReplayReport:
        """Replay the window's traffic under the candidate policies for
        ``target`` (``cost``, ``performance`` or ``reliability``); see
        :mod:`swarmgate_advisor.replay`. Raises ValueError for another target."""
        if target not in TARGETS:
            raise ValueError(f"unknown replay target {target!r} (expected one of {', '.join(TARGETS)})")
        config = self._config()
        records, figures = await self.window(lookback_ms)
        return await anyio.to_thread.run_sync(
            lambda: replay(records, figures, config, target, min_samples=self.settings.min_samples)
        )

    async def bottlenecks(self, lookback_ms: float | None = None) -> dict[str, Any]:
        """The bottleneck findings of the window (see
        :mod:`swarmgate_advisor.bottlenecks`); with a live manager, the
        providers' in-flight requests too."""
        _, figures = await self.window(lookback_ms)
        inflight: dict[str, int] | None = None
        manager = self._manager
        if manager is not None:
            inflight = {}
            for name in manager.providers():
                handle = manager.handle(name)
                if handle is not None:
                    inflight[name] = handle.inflight
        return await anyio.to_thread.run_sync(
            lambda: analyse(figures, min_samples=self.settings.min_samples, inflight=inflight)
        )


def _projected_over(budgets: Sequence[BudgetStatus], settings: AdvisorSettings, now: float) -> bool:
    for b in budgets:
        if b.limit <= 0 or b.spent < settings.budget_min_spent * b.limit:
            continue
        burn = b.spent / max(now - b.start, 60.0)
        if b.spent + burn * max(b.end - now, 0.0) > b.limit:
            return True
    return False


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _timestamp(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _from_status(row: Mapping[str, Any], now: float) -> BudgetStatus | None:
    """A row of the budget plugin's ``status()`` as a :class:`BudgetStatus`
    (``None`` when it lacks a limit, spend or period)."""
    limit, spent = _number(row.get("limit")), _number(row.get("spent"))
    period = row.get("period")
    if limit is None or spent is None or period not in ("daily", "monthly"):
        return None
    start, end = period_bounds(period, now)
    start = _timestamp(row.get("period_start")) or start
    end = _timestamp(row.get("resets_at")) or end
    scope = str(row.get("scope", "global"))
    subject = row.get("subject")
    subject = str(subject) if subject is not None else None
    name = str(row.get("name") or (f"global:{period}" if subject is None else f"{scope}:{subject}:{period}"))
    return BudgetStatus(name, scope, subject, period, limit, spent, start, end, limit_path(scope, subject, period))


def _configured_budgets(config: SwarmgateConfig) -> list[tuple[str, str | None, str, float]]:
    """``(scope, subject, period, limit)`` of every limit written in the config."""
    out: list[tuple[str, str | None, str, float]] = []
    limits = config.section("routing.budgetLimits")
    if isinstance(limits, Mapping) and limits.get("enabled", True) is not False:
        for period in ("daily", "monthly"):
            if (value := _number(limits.get(period))) is not None:
                out.append(("global", None, period, value))
        callers = limits.get("callers")
        if isinstance(callers, Mapping):
            for caller, caller_limits in sorted(callers.items()):
                if isinstance(caller_limits, Mapping):
                    for period in ("daily", "monthly"):
                        if (value := _number(caller_limits.get(period))) is not None:
                            out.append(("caller", str(caller), period, value))
    elif isinstance(limits, Mapping):
        return []
    for name, provider in sorted(config.providers.items()):
        if isinstance(provider.budget, Mapping) and provider.enabled:
            for period in ("daily", "monthly"):
                if (value := _number(provider.budget.get(period))) is not None:
                    out.append(("provider", name, period, value))
    return out
