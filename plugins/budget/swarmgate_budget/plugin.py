"""``BudgetPlugin``: daily and monthly spend budgets (entry point ``budget`` in
the ``swarmgate`` group).

Budgets (each a limit for a UTC day or a UTC month):

* global: ``routing.budgetLimits.daily`` / ``.monthly`` (all spend);
* per provider: ``providers.<name>.budget`` (spend at that provider);
* per caller: ``routing.budgetLimits.perCaller`` for every caller,
  ``routing.budgetLimits.callers.<id>`` for named ones, and a caller policy's
  ``daily_budget`` / ``monthly_budget`` (``manager.caller_policy``) over both.

The request path:

* ``filter_targets`` (when ``routeAround`` and provider budgets exist) rules
  out targets whose provider budget cannot take the request's worst case
  (their committed counters read in one ``get_many``), so routing avoids them (unless that would rule out every candidate: then the
  attempt's refusal below names the budget);
* ``before_attempt`` reserves the attempt's worst-case cost at the target's
  prices (``manager.estimate_cost``, once per request and target) against
  every applicable budget: the period's committed counters (spent +
  reserved) are incremented in one atomic StateStore call (``incr_many``,
  each budget's limit its ceiling); if one would pass its limit none is
  changed and the attempt is refused (:class:`BudgetExhaustedError` for the
  global and caller budgets: the request fails;
  :class:`ProviderBudgetExhaustedError` for a provider's: it fails over);
* settlement replaces each reservation with the attempt's actual cost
  (``Attempt.cost``: a partial stream's, a cancelled stream's partial usage
  included), as soon as the attempt is over: at the request's next
  ``before_attempt`` and, for the rest, in ``after_response`` /
  ``request_failed``, every counter in one ``incr_many``. A request holds
  its reservations in ``context.state["budget"]``.

Since every admitted attempt's worst case is counted before the provider is
called, concurrent requests (in one process or in several sharing a
StateStore) never commit more than the limit; spend can pass the limit only
by what an attempt cost beyond its own estimate (a prompt longer than
estimated, a provider reporting its own cost).

Shared state (``manager.state``), per budget and period (``<label>`` is
``day:YYYY-MM-DD`` or ``month:YYYY-MM``), each expiring two days after the
period ends:

* ``budget:global:<label>``, ``budget:provider:<name>:<label>``,
  ``budget:caller:<id>:<label>``: committed (spent + reserved);
* the spent counter: ``<committed key>:spent``, except the global budget's,
  ``budget:spend:daily:YYYY-MM-DD`` / ``budget:spend:monthly:YYYY-MM`` (the
  counters ``swarmgate-cost``'s budget guard reads);
* ``<committed key>:seeded``: who seeded the period from the usage log;
* ``<committed key>:alert:<threshold>`` / ``:alert:exhausted``: alerts raised.

Restart: the first time a process touches a budget's period (a request, or
``status()``), it seeds the counters from the durable usage log
(``manager.extensions["usage"].spend(since=period start, ...)``) unless the
StateStore already has them (a shared Redis); without the usage plugin it
says so in a log line and starts from the StateStore's values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio
import attrs

from swarmgate import (
    Alert,
    Attempt,
    CompletionRequest,
    MemoryStateStore,
    ProviderConfig,
    ProviderManager,
    RequestContext,
    StateStore,
    Target,
    hookimpl,
)
from swarmgate.alerts import BUDGET_THRESHOLD
from swarmgate.errors import ConfigError
from swarmgate.logs import get_logger
from swarmgate.state import BatchOps, CounterOp, batch_ops
from swarmgate_budget.errors import BudgetExhaustedError, ProviderBudgetExhaustedError
from swarmgate_budget.periods import KINDS, Period, PeriodKind, iso, period_of
from swarmgate_budget.settings import (
    SECTION,
    BudgetSettings,
    Limits,
    all_provider_limits,
    load_settings,
    provider_limits,
)

if TYPE_CHECKING:
    import click

log = get_logger("swarmgate.budget")

#: ``context.state`` key of a request's reservations.
STATE_KEY = "budget"
#: The alert raised the first time (per budget and period) a budget refuses an attempt.
BUDGET_EXHAUSTED = "budget_exhausted"
#: Seconds a period's counters outlive the period (late settlements, status of the last period).
GRACE = 2 * 86_400.0

Scope = Literal["global", "provider", "caller"]


def money(amount: float) -> str:
    """An amount for messages: up to 6 decimals, trailing zeros dropped."""
    text = f"{amount:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _number(raw: bytes | None, key: str) -> float:
    """A counter's value (0 when absent or unreadable, the latter logged)."""
    if raw is None:
        return 0.0
    try:
        return float(raw)
    except ValueError:
        log.warning("budget_counter_unreadable", key=key, value=repr(raw))
        return 0.0


def _slack(limit: float) -> float:
    """Tolerance on sums of float amounts."""
    return limit * 1e-9 + 1e-12


@attrs.frozen
class Budget:
    """One budget: a ``limit`` on the spend of one ``scope`` (and
    ``subject``: a provider or caller) over one ``period``."""

    scope: Scope
    subject: str | None
    period: PeriodKind
    limit: float
    #: The config path of the limit (``routing.budgetLimits.daily``,
    #: ``providers.a.budget.monthly`` ...); ``None`` when a caller policy set it.
    source: str | None = None

    @property
    def name(self) -> str:
        """``global:daily``, ``provider:<name>:monthly``, ``caller:<id>:daily``."""
        return f"global:{self.period}" if self.subject is None else f"{self.scope}:{self.subject}:{self.period}"

    def describe(self) -> str:
        """``global daily budget``, ``daily budget of provider 'openai'``."""
        if self.scope == "global":
            return f"global {self.period} budget"
        return f"{self.period} budget of {self.scope} {self.subject!r}"

    def keys(self, period: Period) -> tuple[str, str]:
        """The committed and spent counter keys of ``period``."""
        if self.scope == "global":
            return f"budget:global:{period.label}", f"budget:spend:{self.period}:{period.date}"
        committed = f"budget:{self.scope}:{self.subject}:{period.label}"
        return committed, committed + ":spent"


def budgets_of(scope: Scope, subject: str | None, limits: Limits, source: str) -> tuple[Budget, ...]:
    """The daily and monthly budgets ``limits`` (configured at ``source``)
    sets (none for unset periods)."""
    out = []
    if limits.daily is not None:
        out.append(Budget(scope, subject, "daily", limits.daily, f"{source}.daily"))
    if limits.monthly is not None:
        out.append(Budget(scope, subject, "monthly", limits.monthly, f"{source}.monthly"))
    return tuple(out)


@attrs.define(eq=False)
class _Counter:
    """A budget's counters in one period, and whether this process seeded them."""

    budget: Budget
    period: Period
    committed: str
    spent: str
    ready: bool = False
    seeding: anyio.Event | None = None
    #: The spend at which the next alert threshold is crossed (-inf: to be
    #: computed), so that settling checks one number, not every threshold.
    next_mark: float = -math.inf
    #: The most the committed counter may reach: the limit and its float slack.
    ceiling: float = math.inf

    @classmethod
    def of(cls, budget: Budget, period: Period) -> _Counter:
        committed, spent = budget.keys(period)
        return cls(budget, period, committed, spent, ceiling=budget.limit + _slack(budget.limit))

    @property
    def marker(self) -> str:
        return self.committed + ":seeded"

    def alert_key(self, tag: str) -> str:
        return f"{self.committed}:alert:{tag}"

    def ttl(self, now: float) -> float:
        left = self.period.end - now
        return (left if left > 0 else 0.0) + GRACE


@attrs.define(eq=False)
class _Reservation:
    """What one attempt reserved: ``amount`` against each of ``counters``."""

    provider: str
    model: str
    amount: float
    counters: tuple[_Counter, ...]


class _Hold:
    """A request's reservations (``context.state["budget"]``): those not yet
    settled, and how many of ``context.attempts`` have been settled (a
    plain slotted class: one is made per request)."""

    __slots__ = ("caller", "costs", "open", "seen")

    def __init__(self, caller: str | None) -> None:
        self.caller = caller
        self.open: list[_Reservation] = []
        self.seen = 0
        #: Worst-case cost by target, estimated once per request.
        self.costs: dict[Target, float] = {}

    def take(self, provider: str, model: str) -> _Reservation | None:
        """Remove and return the oldest open reservation for this target."""
        for i, reservation in enumerate(self.open):
            if reservation.provider == provider and reservation.model == model:
                return self.open.pop(i)
        return None


class BudgetService:
    """What the plugin publishes as ``manager.extensions["budget"]``."""

    def __init__(self, plugin: BudgetPlugin) -> None:
        self._plugin = plugin

    @property
    def settings(self) -> BudgetSettings:
        """The parsed ``routing.budgetLimits``."""
        return self._plugin.settings

    def budgets(self) -> list[Budget]:
        """The configured global and provider budgets, and the caller budgets
        of the callers named in the config (no StateStore access)."""
        return self._plugin.known_budgets(())

    async def status(self) -> list[dict[str, Any]]:
        """Every budget's figures now (read from the StateStore; async for
        that reason): the global and provider budgets, and the budgets of
        every caller named in the config or with spend this period. Each is
        a JSON-ready dict: ``name``, ``scope``, ``subject``, ``period``
        (``daily``/``monthly``), ``limit``, ``spent``, ``reserved`` (by
        attempts in flight), ``remaining`` (limit - spent - reserved, at
        least 0), ``used`` (spent / limit), ``period_start``, ``resets_at``
        (ISO 8601 UTC; as unix seconds in ``period_start_ts`` and
        ``resets_at_ts``), ``config_path`` (where the limit is configured;
        ``None`` for a caller policy's), ``burn_rate_per_hour`` (spent per hour since the
        period started), ``projected_spend`` (at that rate, over the whole
        period) and ``exhausts_at`` (when that rate reaches the limit, if
        before the reset; ``None`` otherwise)."""
        return await self._plugin.status()


class BudgetPlugin:
    """Spend budgets; see the module docstring. ``clock`` returns wall-clock
    seconds (``time.time``): it decides the current day and month."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock if clock is not None else time.time
        self.manager: ProviderManager | None = None
        self.active = False
        self.settings = BudgetSettings()
        self._thresholds: tuple[float, ...] = ()
        self._route_around = True
        self._global: tuple[Budget, ...] = ()
        self._providers: dict[str, tuple[Budget, ...]] = {}
        self._caller_cache: dict[tuple[str, float | None, float | None], tuple[Budget, ...]] = {}
        self._periods: dict[PeriodKind, Period] = {}
        self._window = (math.inf, -math.inf)  # [start, end) where self._periods hold
        self._counters: dict[tuple[str, str], _Counter] = {}
        # The counters an attempt at a provider for a caller's budgets reserves on,
        # by (provider, id(caller budgets)); the caller budgets tuple is kept to check the id.
        self._plans: dict[tuple[str, int], tuple[tuple[Budget, ...], tuple[_Counter, ...]]] = {}
        # Each provider's own budget counters this period (for filter_targets).
        self._provider_counters: dict[str, tuple[_Counter, ...]] = {}
        self._batch: BatchOps | None = None
        #: Whether reservations and settlements run shielded from cancellation (see plugin_setup).
        self.shielded = True
        self._fired: set[str] = set()  # alert keys known to be raised this period
        self._seen_callers: set[str] = set()
        self._usage_warned = False

    # -- configuration ----------------------------------------------------------

    @hookimpl(trylast=True)
    def plugin_setup(self, manager: ProviderManager) -> None:
        """Read ``routing.budgetLimits`` and every ``providers.<name>.budget``;
        publish ``extensions["budget"]``. Inactive (unregistered) when
        ``enabled`` is false, or when none of these is there:
        ``routing.budgetLimits``, a provider budget, a caller key with a
        budget (``server.apiKeys``), a caller directory registered by a
        plugin (the caller-key store of ``security.callerKeys``: any key it
        issues may carry a budget). Runs ``trylast`` so that the directories
        other plugins register in their setup are there. Raises ConfigError
        naming every bad value."""
        self.manager = manager
        raw = manager.config.section(SECTION)
        problems: list[tuple[str, str]] = []
        settings = self.settings
        providers: dict[str, Limits] = {}
        try:
            settings = load_settings(raw)
        except ConfigError as exc:
            problems.extend(exc.problems)
        try:
            providers = all_provider_limits(manager.config.providers)
        except ConfigError as exc:
            problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems)
        configured = (
            raw is not None
            or bool(providers)
            or _keys_with_budgets(manager.config.section("server.apiKeys"))
            or bool(manager.caller_directories)
        )
        if not settings.enabled or not configured:
            manager.plugins.discard(self)  # inactive: its hooks would cost every request
            return
        self.settings = settings
        self._thresholds = settings.thresholds()
        self._route_around = settings.route_around
        self._global = budgets_of("global", None, settings.global_limits, SECTION)
        self._providers = {
            name: budgets_of("provider", name, limits, f"providers.{name}.budget") for name, limits in providers.items()
        }
        self.active = True
        # Reservations and settlements run shielded from cancellation (a request
        # cancelled between two incr calls would leave a reservation nobody
        # settles), except on the in-memory store: its coroutines finish without
        # a checkpoint, so no cancellation can land between two calls, and a
        # shield would only cost every request a cancel scope.
        self.shielded = not isinstance(manager.state, MemoryStateStore)
        self._batch = batch_ops(manager.state)
        manager.extensions["budget"] = BudgetService(self)

    @hookimpl
    def provider_changed(self, name: str, new: ProviderConfig | None) -> None:
        """Follow a provider's budget through add/update/remove (a bad budget
        is logged and leaves the provider without one)."""
        if not self.active:
            return
        self._providers.pop(name, None)
        self._plans.clear()
        self._provider_counters.clear()
        if new is None or new.budget is None:
            return
        try:
            limits = provider_limits(name, new.budget)
        except ConfigError as exc:
            log.error("budget_config_invalid", provider=name, problems=[f"{p}: {m}" for p, m in exc.problems])
            return
        if limits:
            self._providers[name] = budgets_of("provider", name, limits, f"providers.{name}.budget")

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        """Add ``budget status [--config PATH] [--json]``."""
        from swarmgate_budget.cli import add_commands

        add_commands(cli)

    # -- budgets and periods -----------------------------------------------------

    @property
    def _store(self) -> StateStore:
        assert self.manager is not None
        return self.manager.state

    @property
    def _ops(self) -> BatchOps:
        if self._batch is None:
            self._batch = batch_ops(self._store)
        return self._batch

    def _current(self, now: float) -> dict[PeriodKind, Period]:
        """The current day and month; on a rollover, forget the last period's
        per-process bookkeeping."""
        start, end = self._window
        if start <= now < end:
            return self._periods
        periods = {kind: period_of(kind, now) for kind in KINDS}
        self._periods = periods
        self._window = (max(p.start for p in periods.values()), min(p.end for p in periods.values()))
        labels = {p.label for p in periods.values()}
        self._counters = {key: c for key, c in self._counters.items() if c.period.label in labels}
        self._plans.clear()
        self._provider_counters.clear()
        self._fired.clear()
        self._seen_callers.clear()
        return periods

    def _counter(self, budget: Budget, period: Period) -> _Counter:
        key = (budget.name, period.label)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = _Counter.of(budget, period)
        elif counter.budget != budget:
            counter.budget = budget  # the caller's limit changed (a policy update)
            counter.next_mark = -math.inf
            counter.ceiling = budget.limit + _slack(budget.limit)
        return counter

    def _plan(self, provider: str, caller: str | None, now: float) -> tuple[_Counter, ...]:
        """The counters an attempt at ``provider`` for ``caller`` reserves on
        now: global first, then the caller's, then the provider's (the first
        that cannot take the attempt names the refusal). Cached per period."""
        start, end = self._window
        if not start <= now < end:
            self._current(now)
        mine = self.caller_budgets(caller) if caller is not None else ()
        key = (provider, id(mine))
        plan = self._plans.get(key)
        if plan is not None and plan[0] is mine:
            return plan[1]
        periods = self._periods
        budgets = self.budgets_for(provider, caller)
        counters = tuple(self._counter(budget, periods[budget.period]) for budget in budgets)
        if len(self._plans) > 10_000:
            self._plans.clear()
        self._plans[key] = (mine, counters)
        return counters

    def caller_budgets(self, caller: str) -> tuple[Budget, ...]:
        """``caller``'s budgets: its policy's limits, else ``callers.<id>``,
        else ``perCaller``, period by period."""
        assert self.manager is not None
        policy = self.manager.caller_policy(caller)
        key = (caller, policy.daily_budget, policy.monthly_budget)
        budgets = self._caller_cache.get(key)
        if budgets is None:
            if len(self._caller_cache) > 10_000:
                self._caller_cache.clear()
            settings = self.settings
            named = settings.callers.get(caller)
            found = []
            periods: tuple[tuple[PeriodKind, float | None], ...] = (
                ("daily", policy.daily_budget),
                ("monthly", policy.monthly_budget),
            )
            for period, from_policy in periods:
                limit, source = from_policy, None
                if limit is None and named is not None:
                    limit, source = getattr(named, period), f"{SECTION}.callers.{caller}.{period}"
                if limit is None:
                    limit, source = getattr(settings.per_caller, period), f"{SECTION}.perCaller.{period}"
                if limit is not None:
                    found.append(Budget("caller", caller, period, limit, source))
            budgets = self._caller_cache[key] = tuple(found)
        if budgets:
            self._seen_callers.add(caller)
        return budgets

    def budgets_for(self, provider: str, caller: str | None) -> tuple[Budget, ...]:
        """Every budget an attempt at ``provider`` for ``caller`` counts
        against: global first, then the caller's, then the provider's (the
        first that cannot take the attempt names the refusal)."""
        budgets = self._global
        if caller is not None:
            mine = self.caller_budgets(caller)
            if mine:
                budgets = budgets + mine
        at_provider = self._providers.get(provider)
        if at_provider:
            budgets = budgets + at_provider
        return budgets

    def known_budgets(self, callers: Iterable[str]) -> list[Budget]:
        """The global and provider budgets, and those of the named callers
        and of ``callers``."""
        out = list(self._global)
        for name in sorted(self._providers):
            out.extend(self._providers[name])
        for caller in sorted(set(self.settings.callers) | set(callers)):
            out.extend(self.caller_budgets(caller))
        return out

    # -- seeding from the usage log ------------------------------------------------

    async def _ensure_seeded(self, counter: _Counter) -> None:
        """Seed ``counter`` once per process (concurrent requests wait for the first)."""
        if counter.ready:
            return
        if counter.seeding is not None:
            await counter.seeding.wait()
            return
        event = counter.seeding = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):  # a half-done seed would be lost for good
                await self._seed(counter)
        except Exception as exc:  # noqa: BLE001 - an unreadable log must not stop the gateway
            log.error("budget_seed_failed", budget=counter.budget.name, error=f"{type(exc).__name__}: {exc}")
        finally:
            counter.ready = True
            counter.seeding = None
            event.set()

    async def _seed(self, counter: _Counter) -> None:
        """Set a period's counters from the usage log, unless the StateStore
        already has them (another instance or an earlier run seeded or
        counted this period)."""
        assert self.manager is not None
        usage = self.manager.extensions.get("usage")
        if usage is None:
            if not self._usage_warned:
                self._usage_warned = True
                log.warning(
                    "budget_usage_log_absent",
                    detail="the usage plugin (swarmgate-usage) is not active: budgets start from the "
                    "StateStore's counters, so with the in-memory state backend a restart forgets the spend so far",
                )
            return
        store = self._store
        now = self._clock()
        ttl = counter.ttl(now)
        if await store.incr(counter.marker, 1.0, ttl) > 1.0:
            return
        if await store.get(counter.spent) is not None:
            return
        budget = counter.budget
        spent = float(
            await usage.spend(
                since=counter.period.start,
                provider=budget.subject if budget.scope == "provider" else None,
                caller=budget.subject if budget.scope == "caller" else None,
            )
        )
        if spent > 0:
            await store.incr(counter.committed, spent, ttl)
            await store.incr(counter.spent, spent, ttl)
            for threshold in self._thresholds:  # crossed before the restart: alerted then
                if budget.limit > 0 and threshold * budget.limit <= spent + _slack(budget.limit):
                    key = counter.alert_key(f"{threshold:g}")
                    await store.incr(key, 1.0, ttl)
                    self._fired.add(key)
        log.info("budget_seeded", budget=budget.name, period=counter.period.label, spent=spent)

    # -- the request path ----------------------------------------------------------

    @hookimpl
    async def filter_targets(
        self, request: CompletionRequest, candidates: Sequence[Target], context: RequestContext
    ) -> list[tuple[Target, str]] | None:
        """Rule out targets whose provider budget cannot take this request's
        worst case at their prices; rule out nothing when that would be every
        candidate (the attempts' refusals then name the budget)."""
        providers = self._providers
        if not providers or not self._route_around:
            return None
        now = self._clock()
        start, end = self._window
        if not start <= now < end:
            self._current(now)
        hold = self._hold(request, context)
        # The candidates with provider budgets, their worst cases, and every
        # counter to read, read in one StateStore call.
        checks: list[tuple[Target, float, tuple[_Counter, ...]]] = []
        keys: list[str] = []
        for target in candidates:
            counters = self._provider_counters.get(target.provider)
            if counters is None:
                budgets = providers.get(target.provider)
                if not budgets:
                    continue
                counters = self._provider_counters[target.provider] = tuple(
                    self._counter(budget, self._periods[budget.period]) for budget in budgets
                )
            for counter in counters:
                if not counter.ready:
                    await self._ensure_seeded(counter)
                if counter.committed not in keys:
                    keys.append(counter.committed)
            checks.append((target, self._cost(hold, target, request, context), counters))
        if not checks:
            return None
        committed = dict(zip(keys, await self._ops.get_many(keys), strict=True))
        ruled: list[tuple[Target, str]] | None = None
        for target, amount, counters in checks:
            for counter in counters:
                value = _number(committed[counter.committed], counter.committed)
                budget = counter.budget
                if value + amount > counter.ceiling:
                    left = max(budget.limit - value, 0.0)
                    reason = (
                        f"{budget.describe()} has {money(left)} of {money(budget.limit)} left, "
                        f"this request may cost up to {money(amount)}; resets at {counter.period.resets_at}"
                    )
                    if ruled is None:
                        ruled = []
                    ruled.append((target, reason))
                    break
        if ruled is None or len(ruled) == len(candidates):
            return None
        return ruled

    @staticmethod
    def _hold(request: CompletionRequest, context: RequestContext) -> _Hold:
        hold: _Hold | None = context.state.get(STATE_KEY)
        if hold is None:
            hold = context.state[STATE_KEY] = _Hold(request.caller)
        return hold

    @staticmethod
    def _cost(hold: _Hold, target: Target, request: CompletionRequest, context: RequestContext) -> float:
        """The worst-case cost of ``request`` at ``target`` (``manager.estimate_cost``), once per request."""
        amount = hold.costs.get(target)
        if amount is None:
            amount = hold.costs[target] = context.manager.estimate_cost(target, request)
        return amount

    @hookimpl
    async def before_attempt(self, request: CompletionRequest, target: Target, context: RequestContext) -> None:
        """Settle the request's finished attempts, then reserve this
        attempt's worst case against every applicable budget, or refuse it."""
        hold = self._hold(request, context)
        if hold.seen < len(context.attempts):
            await self._settle(hold, context.attempts, final=False)
        now = self._clock()
        counters = self._plan(target.provider, request.caller, now)
        if not counters:
            return
        amount = self._cost(hold, target, request, context)
        for counter in counters:
            if not counter.ready:
                await self._ensure_seeded(counter)
        if self.shielded:
            with anyio.CancelScope(shield=True):
                over = await self._reserve(hold, target, counters, amount, now)
        else:
            over = await self._reserve(hold, target, counters, amount, now)
        if over is not None:
            raise await self._refusal(over[0], over[1], amount, target, now)

    async def _reserve(
        self, hold: _Hold, target: Target, counters: tuple[_Counter, ...], amount: float, now: float
    ) -> tuple[_Counter, float] | None:
        """Reserve ``amount`` on every counter, or on none, in one StateStore
        call: the counter that cannot take it, with what was committed on it
        before, else ``None``."""
        result = await self._ops.incr_many(
            [(counter.committed, amount, counter.ttl(now)) for counter in counters],
            [counter.ceiling for counter in counters],
        )
        if result.refused >= 0:
            return counters[result.refused], result.values[result.refused] - amount
        hold.open.append(_Reservation(target.provider, target.model, amount, counters))
        return None

    @hookimpl
    async def after_response(self, context: RequestContext) -> None:
        """Settle every attempt of an answered request."""
        hold: _Hold | None = context.state.get(STATE_KEY)
        if hold is not None:
            await self._settle(hold, context.attempts, final=True)

    @hookimpl
    async def request_failed(self, context: RequestContext) -> None:
        """Settle every attempt of a failed or cancelled request (a cancelled
        stream's partial cost included)."""
        hold: _Hold | None = context.state.get(STATE_KEY)
        if hold is not None:
            await self._settle(hold, context.attempts, final=True)

    async def _refusal(
        self, counter: _Counter, committed: float, amount: float, target: Target, now: float
    ) -> BudgetExhaustedError:
        """The error refusing an attempt on ``counter``'s budget (and the
        once-per-period ``budget_exhausted`` alert)."""
        budget, period = counter.budget, counter.period
        spent = _number(await self._store.get(counter.spent), counter.spent)
        reserved = max(committed - spent, 0.0)
        in_flight = f", {money(reserved)} reserved by requests in flight" if reserved > _slack(budget.limit) else ""
        message = (
            f"{budget.describe()} exceeded: limit {money(budget.limit)}, spent {money(spent)}{in_flight}; "
            f"this attempt at {target} may cost up to {money(amount)}; resets at {period.resets_at}"
        )
        cls = ProviderBudgetExhaustedError if budget.scope == "provider" else BudgetExhaustedError
        error = cls(
            message,
            budget=budget.name,
            scope=budget.scope,
            subject=budget.subject,
            period=budget.period,
            limit=budget.limit,
            spent=spent,
            reserved=reserved,
            requested=amount,
            resets_at=period.resets_at,
            retry_after=max(period.end - now, 0.0),
            provider=target.provider if budget.scope == "provider" else None,
            model=target.model if budget.scope == "provider" else None,
        )
        if await self._once(counter, "exhausted", now):
            self._alert(
                BUDGET_EXHAUSTED,
                f"{budget.describe()} exhausted: an attempt needing up to {money(amount)} was refused "
                f"({money(spent)} of {money(budget.limit)} spent{in_flight}); resets at {period.resets_at}",
                "critical",
                counter,
                {"spent": spent, "reserved": reserved, "requested": amount},
            )
        return error

    # -- settlement ------------------------------------------------------------------

    async def _settle(self, hold: _Hold, attempts: Sequence[Attempt], *, final: bool) -> None:
        """Replace the reservations of finished attempts with their actual
        cost; with ``final``, release whatever is left (attempts that never
        reached their provider)."""
        settlements = self._settlements(hold, attempts, final=final)
        if not settlements:
            return
        if self.shielded:
            with anyio.CancelScope(shield=True):  # settle fully even if the caller is going away
                await self._apply(settlements)
        else:
            await self._apply(settlements)

    def _settlements(
        self, hold: _Hold, attempts: Sequence[Attempt], *, final: bool
    ) -> list[tuple[Sequence[_Counter], float, float]]:
        """(counters, reserved, cost) for each finished attempt not yet
        settled (and with ``final``, each reservation left)."""
        settlements: list[tuple[Sequence[_Counter], float, float]] = []
        while hold.seen < len(attempts):
            attempt = attempts[hold.seen]
            hold.seen += 1
            reservation = hold.take(attempt.provider, attempt.model)
            if reservation is not None:
                settlements.append((reservation.counters, reservation.amount, attempt.cost))
            elif attempt.cost:  # an attempt nothing was reserved for
                counters = self._plan(attempt.provider, hold.caller, self._clock())
                if counters:
                    settlements.append((counters, 0.0, attempt.cost))
        if final:
            while hold.open:
                reservation = hold.open.pop(0)
                settlements.append((reservation.counters, reservation.amount, 0.0))
        return settlements

    async def _apply(self, settlements: Sequence[tuple[Sequence[_Counter], float, float]]) -> None:
        """Turn each ``reserved`` into ``cost`` on each of its counters, in
        one StateStore call; raise the thresholds the spend crossed."""
        now = self._clock()
        ops: list[CounterOp] = []
        spent: list[tuple[_Counter, float, int]] = []  # (counter, cost, index of its spent counter's op)
        for counters, reserved, cost in settlements:
            delta = cost - reserved
            for counter in counters:
                ttl = counter.ttl(now)
                if delta:
                    ops.append((counter.committed, delta, ttl))
                if cost:
                    spent.append((counter, cost, len(ops)))
                    ops.append((counter.spent, cost, ttl))
        if not ops:
            return
        values = (await self._ops.incr_many(ops, None)).values
        for counter, cost, index in spent:
            after = values[index]
            if after + _slack(counter.budget.limit) >= counter.next_mark:
                await self._crossed(counter, after - cost, after, now)

    async def _crossed(self, counter: _Counter, before: float, after: float, now: float) -> None:
        """Raise the thresholds the spend crossed from ``before`` to ``after``
        (each once per period across instances); update ``next_mark``."""
        limit = counter.budget.limit
        slack = _slack(limit)
        marks = [t * limit for t in self._thresholds if t * limit > after + slack] if limit > 0 else []
        counter.next_mark = min(marks, default=math.inf)
        if limit <= 0:
            return
        for threshold in self._thresholds:
            mark = threshold * limit
            if before + slack < mark <= after + slack and await self._once(counter, f"{threshold:g}", now):
                severity = "critical" if threshold >= 1.0 else "warning" if threshold >= 0.8 else "info"
                self._alert(
                    BUDGET_THRESHOLD,
                    f"{counter.budget.describe()}: {threshold:.0%} reached ({money(after)} of {money(limit)} spent); "
                    f"resets at {counter.period.resets_at}",
                    severity,
                    counter,
                    {"spent": after, "threshold": threshold},
                )

    async def _once(self, counter: _Counter, tag: str, now: float) -> bool:
        """Whether this is the first time (per period, across every instance
        sharing the StateStore) ``tag`` is raised for ``counter``'s budget."""
        key = counter.alert_key(tag)
        if key in self._fired:
            return False
        self._fired.add(key)
        return await self._store.incr(key, 1.0, counter.ttl(now)) == 1.0

    def _alert(self, kind: str, message: str, severity: str, counter: _Counter, data: Mapping[str, Any]) -> None:
        assert self.manager is not None
        budget = counter.budget
        self.manager.emit_alert(
            Alert(
                kind,
                message,
                severity,
                provider=budget.subject if budget.scope == "provider" else None,
                data={
                    "budget": budget.name,
                    "scope": budget.scope,
                    "subject": budget.subject,
                    "period": budget.period,
                    "limit": budget.limit,
                    "resets_at": counter.period.resets_at,
                    **data,
                },
            )
        )

    # -- status --------------------------------------------------------------------

    async def _callers_with_spend(self, periods: Mapping[PeriodKind, Period]) -> set[str]:
        """Callers with a counter in the StateStore this period (any instance)."""
        prefix = "budget:caller:"
        suffixes = tuple(f":{p.label}" for p in periods.values())
        found = set()
        for key in await self._store.keys(prefix):
            for suffix in suffixes:
                if key.endswith(suffix) and len(key) > len(prefix) + len(suffix):
                    found.add(key[len(prefix) : -len(suffix)])
        return found

    async def status(self) -> list[dict[str, Any]]:
        """See :meth:`BudgetService.status`."""
        if not self.active:
            return []
        store = self._store
        now = self._clock()
        periods = self._current(now)
        callers = self._seen_callers | await self._callers_with_spend(periods)
        rows = []
        for budget in self.known_budgets(callers):
            period = periods[budget.period]
            counter = self._counter(budget, period)
            await self._ensure_seeded(counter)
            committed = _number(await store.get(counter.committed), counter.committed)
            spent = _number(await store.get(counter.spent), counter.spent)
            limit = budget.limit
            hours = max((now - period.start) / 3600.0, 1.0 / 60.0)
            burn = spent / hours
            exhausts_at = None
            if spent >= limit:
                exhausts_at = iso(now)
            elif burn > 0:
                when = now + (limit - spent) / burn * 3600.0
                exhausts_at = iso(when) if when < period.end else None
            rows.append(
                {
                    "name": budget.name,
                    "config_path": budget.source,
                    "scope": budget.scope,
                    "subject": budget.subject,
                    "period": budget.period,
                    "limit": limit,
                    "spent": spent,
                    "reserved": max(committed - spent, 0.0),
                    "remaining": max(limit - committed, 0.0),
                    "used": spent / limit if limit > 0 else None,
                    "period_start": iso(period.start),
                    "resets_at": period.resets_at,
                    "period_start_ts": period.start,
                    "resets_at_ts": period.end,
                    "burn_rate_per_hour": burn,
                    "projected_spend": burn * period.hours,
                    "exhausts_at": exhausts_at,
                }
            )
        return rows


def _keys_with_budgets(keys: Any) -> bool:
    """Whether the gateway's configured caller keys (``server.apiKeys``, a
    list of objects) give any caller a ``dailyBudget`` or ``monthlyBudget``."""
    if not isinstance(keys, list):
        return False
    return any(
        isinstance(entry, Mapping) and (entry.get("dailyBudget") is not None or entry.get("monthlyBudget") is not None)
        for entry in keys
    )
