"""swarmgate-cost: the ``cost-optimized`` routing strategy and its budget guard.

* :class:`CostOptimizedStrategy` -- entry point ``cost-optimized`` in
  ``swarmgate.strategies``: ranks candidates by a score weighted towards
  expected cost (defaults ``costWeight`` 0.8, ``performanceWeight`` 0.2,
  ``reliabilityWeight`` 0) over the shared predictions of swarmgate-predict.
* :class:`CostPlugin` -- entry point ``cost`` in ``swarmgate``: when the
  request is routed ``cost-optimized``, ``routing.budgetLimits`` sets a
  ``daily`` and/or ``monthly`` limit and a budget plugin publishes its spend
  counters, rules out every target whose worst-case predicted cost exceeds
  what remains of the tighter budget (``filter_targets``, which can read the
  StateStore; a strategy's synchronous ``rank`` cannot).
* :func:`spend_key` -- the StateStore counter keys a budget plugin keeps.

The public API is exactly ``__all__``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from swarmgate import BudgetExceededError, hookimpl
from swarmgate.config import InvalidValue, parse_section
from swarmgate.logs import get_logger
from swarmgate.models import CompletionRequest, Target
from swarmgate_predict import WeightedStrategy, Weights, acquire

if TYPE_CHECKING:
    from swarmgate.manager import ProviderManager, RequestContext

__all__ = ["BUDGET_EXTENSION", "NAME", "BudgetLimits", "CostOptimizedStrategy", "CostPlugin", "Period", "spend_key"]

log = get_logger("swarmgate.cost")

#: The strategy's entry-point name.
NAME = "cost-optimized"
#: The ``manager.extensions`` key a budget plugin publishes itself under.
BUDGET_EXTENSION = "budget"
LIMITS = "routing.budgetLimits"

Period = Literal["daily", "monthly"]


def spend_key(period: Period, when: float) -> str:
    """The StateStore counter holding the spend of the ``period`` that
    contains ``when`` (epoch seconds), in the currency of the model prices:
    ``budget:spend:daily:YYYY-MM-DD`` or ``budget:spend:monthly:YYYY-MM``
    (UTC). A budget plugin adds each answer's cost to both with
    ``StateStore.incr``."""
    day = datetime.fromtimestamp(when, UTC)
    return f"budget:spend:daily:{day:%Y-%m-%d}" if period == "daily" else f"budget:spend:monthly:{day:%Y-%m}"


def _resets(period: Period, when: float) -> datetime:
    day = datetime.fromtimestamp(when, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return datetime.fromtimestamp(day.timestamp() + 86_400, UTC)
    if day.month == 12:
        return day.replace(year=day.year + 1, month=1, day=1)
    return day.replace(month=day.month + 1, day=1)


def _limit(key: str, value: float | None) -> None:
    if value is not None and not (value >= 0 and math.isfinite(value)):
        raise InvalidValue(key, f"must be a non-negative amount, got {value!r}")


@attrs.frozen
class BudgetLimits:
    """The ``daily`` and ``monthly`` keys of ``routing.budgetLimits`` (in the
    currency of the model prices). Other keys of that section belong to the
    budget plugin and are not read here."""

    daily: float | None = None
    monthly: float | None = None

    def __attrs_post_init__(self) -> None:
        _limit("daily", self.daily)
        _limit("monthly", self.monthly)

    @classmethod
    def from_manager(cls, manager: ProviderManager) -> BudgetLimits | None:
        """The limits of ``manager``'s config; ``None`` when neither is set.
        Raises :class:`~swarmgate.errors.ConfigError` naming a bad value."""
        raw: Any = manager.config.section(LIMITS)
        if raw is None:
            return None
        if not isinstance(raw, dict):
            return parse_section(cls, raw, LIMITS)  # reports "expected an object"
        limits = parse_section(cls, {k: raw[k] for k in ("daily", "monthly") if k in raw}, LIMITS)
        return None if limits.daily is None and limits.monthly is None else limits


class CostOptimizedStrategy(WeightedStrategy):
    """Cheapest first: expected cost weighs 0.8, latency 0.2 (reliability 0)
    unless ``routing.parameters`` says otherwise. Candidates whose scores
    are within ``tolerance`` (0.05) share a tier. Budget limits are applied
    by :class:`CostPlugin` before ranking."""

    name: ClassVar[str] = NAME
    default_weights: ClassVar[Weights] = Weights(cost=0.8, performance=0.2, reliability=0.0)

    def __init__(self, manager: ProviderManager) -> None:
        super().__init__(manager)
        if BudgetLimits.from_manager(manager) is not None and not any(
            isinstance(p, CostPlugin) for p in manager.plugins.pm.get_plugins()
        ):
            log.warning(
                "budget_guard_inactive",
                detail=f"{LIMITS} is set but the 'cost' plugin's hooks are not active: "
                "targets are not checked against the remaining budget",
            )


class CostPlugin:
    """The budget guard of ``cost-optimized`` routing (see the module docstring).

    The contract with a budget plugin: it publishes any object as
    ``manager.extensions["budget"]`` (its presence says the counters are
    kept) and adds every answer's cost to the StateStore counters
    :func:`spend_key` names. Without it the guard does nothing: no spend
    is known. ``clock`` (epoch seconds) picks the current day and month.
    """

    def __init__(self) -> None:
        self.clock: Callable[[], float] = time.time
        self.limits: BudgetLimits | None = None

    @hookimpl
    def plugin_setup(self, manager: ProviderManager) -> None:
        """Read the ``daily``/``monthly`` keys of ``routing.budgetLimits``;
        without limits the plugin unregisters itself (its hooks would cost
        every request for nothing)."""
        self.limits = BudgetLimits.from_manager(manager)
        if self.limits is None:
            manager.plugins.discard(self)

    async def remaining(self, manager: ProviderManager) -> tuple[float, Period, float, float] | None:
        """What remains of the tighter budget: ``(remaining, period, limit,
        spent)``, or ``None`` without limits or a budget plugin."""
        limits = self.limits
        if limits is None or BUDGET_EXTENSION not in manager.extensions:
            return None
        now = self.clock()
        best: tuple[float, Period, float, float] | None = None
        periods: tuple[tuple[Period, float | None], ...] = (("daily", limits.daily), ("monthly", limits.monthly))
        for period, limit in periods:
            if limit is None:
                continue
            key = spend_key(period, now)
            raw = await manager.state.get(key)
            try:
                spent = float(raw) if raw is not None else 0.0
            except ValueError:
                log.warning("budget_counter_unreadable", key=key, value=repr(raw))
                continue
            left = limit - spent
            if best is None or left < best[0]:
                best = (left, period, limit, spent)
        return best

    @hookimpl
    async def filter_targets(
        self, request: CompletionRequest, candidates: Sequence[Target], context: RequestContext
    ) -> list[tuple[Target, str]] | None:
        """Rule out targets whose worst-case predicted cost (``cost_max``:
        the prompt plus ``maxTokens`` of output) exceeds the remaining
        budget, for ``cost-optimized`` requests only. When that leaves no
        candidate, raise :class:`~swarmgate.BudgetExceededError` naming the
        budget, what is left and when it resets (``retry_after``)."""
        if self.limits is None:
            return None
        manager = context.manager
        if (request.strategy or manager.config.routing.strategy) != NAME:
            return None
        budget = await self.remaining(manager)
        if budget is None:
            return None
        left, period, limit, spent = budget
        left = max(left, 0.0)
        predictions = acquire(manager).predict_many(candidates, request)
        over = [p for p in predictions if p.cost_max > left]
        if not over:
            return None
        if len(over) == len(predictions):
            now = self.clock()
            resets = _resets(period, now)
            cheapest = min(over, key=lambda p: p.cost_max)
            raise BudgetExceededError(
                f"{period} budget {limit:g} has {left:.6f} left ({spent:.6f} spent); "
                f"every candidate may cost more (cheapest: {cheapest.target} up to {cheapest.cost_max:.6f}); "
                f"it resets at {resets:%Y-%m-%dT%H:%M:%SZ}",
                retry_after=max(resets.timestamp() - now, 0.0),
            )
        return [
            (p.target, f"predicted cost up to {p.cost_max:.6f} exceeds the {period} budget left ({left:.6f})")
            for p in over
        ]
