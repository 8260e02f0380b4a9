"""``RetryPlugin``: what happens after a failed attempt (entry point
``retry`` in the ``swarmgate`` group).

The decision is taken in ``on_failure`` from the error's kind and the
provider's resolved :class:`~swarmgate_retry.settings.Policy`:

* ``retry`` -- the same target again after ``min(maxDelay, initialDelay x
  backoffMultiplier^n)`` scaled by the jitter (full jitter: uniform in
  ``[0, that]``), at least ``error.retry_after``; after ``maxAttempts``
  attempts on the target, when the retry budget is spent, when the
  target's circuit is open, or when the wait would pass the request's total
  deadline (``context.deadline``), fail over instead. A ``Retry-After`` above
  ``maxDelay`` fails over at once when another target is left; with no
  other target the plugin waits it out up to ``maxRetryAfter``, beyond
  which the request fails and the caller gets the error's ``retry_after``.
* ``switch_model`` -- (context length exceeded) switch to the smallest
  configured model whose ``contextWindow`` is larger than the failed
  model's and fits the estimated prompt plus ``max_tokens`` (else the
  largest larger one); none: fail over.
* ``refresh_credentials`` -- (authentication) ``manager.refresh_credentials``
  once per request and target; retry at once when the key changed (here
  or, while the attempt ran, by another request), else fail over.
* ``switch_provider`` / ``increase_timeout`` -- fail over at once.
* ``abort`` -- the caller gets the error (content filtered and invalid
  request errors always abort, so their reason reaches the caller).

The kernel does the sleeping: the plugin only returns the delay.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import attrs

from swarmgate import (
    CompletionRequest,
    ConfigError,
    FailureDecision,
    ProviderConfig,
    ProviderManager,
    RequestContext,
    StateStore,
    SwarmgateError,
    Target,
    estimate_tokens,
    hookimpl,
    parse_section,
)
from swarmgate.logs import get_logger
from swarmgate_retry.settings import Action, Policy, RetryBudgetSection, RetrySection, resolve

log = get_logger("swarmgate.retry")

#: ``context.state`` keys: the request's candidate targets (set in
#: ``filter_targets``) and its :class:`RequestRetries` (created on the first failure).
CANDIDATES_KEY = "retry.candidates"
STATE_KEY = "retry"

_FAILOVER = FailureDecision.failover()
_ABORT = FailureDecision.abort()
_RETRY_NOW = FailureDecision.retry(0.0)

#: The sections read, in increasing precedence.
GLOBAL_SECTIONS = ("optimization.retry", "routing.retry")


@attrs.define
class RequestRetries:
    """What the plugin did for one request (``context.state["retry"]``):
    the delay of each retry it scheduled, in seconds, and the targets whose
    credentials it refreshed."""

    delays: list[float] = attrs.field(factory=list)
    refreshed: set[Target] = attrs.field(factory=set)


@attrs.define
class RetryCounters:
    """Per-process counts of the plugin's decisions."""

    retries: int = 0
    budget_denied: int = 0
    failovers: int = 0
    aborts: int = 0
    model_switches: int = 0
    credential_refreshes: int = 0


class RetryBudget:
    """A Finagle-style retry budget kept in the StateStore, so that every
    gateway instance sharing a backend shares one budget.

    Requests deposit, retries withdraw: within the last ``window`` seconds,
    ``retries <= ratio x requests + minPerSecond x window``. Deposits are
    counted in memory and written in batches (at most every
    ``min(1 s, window / 10)``), so a request costs no StateStore call; this
    instance's unwritten deposits count in its own withdrawals at once,
    other instances see them late by at most that batching interval. Withdrawals never overspend, even concurrent ones
    from several instances (see :meth:`withdraw`).
    """

    REQUESTS_KEY = "retry:budget:requests"
    RETRIES_KEY = "retry:budget:retries"

    def __init__(self, settings: RetryBudgetSection, clock: Callable[[], float]) -> None:
        self.ratio = settings.ratio
        self.min_per_second = settings.min_per_second
        self.window = settings.window / 1000.0
        self.floor = self.min_per_second * self.window
        self.flush_every = min(1.0, self.window / 10.0)
        self._clock = clock
        self._pending = 0
        self._flush_due = 0.0

    def deposit(self) -> bool:
        """Count one request; ``True`` when the batched deposits are due to be written."""
        self._pending += 1
        return self._clock() >= self._flush_due

    async def flush(self, store: StateStore) -> None:
        """Write the batched deposits to ``store``."""
        pending, self._pending = self._pending, 0
        self._flush_due = self._clock() + self.flush_every
        if pending:
            await store.window_add(self.REQUESTS_KEY, float(pending), self.window)

    async def withdraw(self, store: StateStore) -> bool:
        """Take one retry from the budget; ``False`` (and nothing taken) when it is spent.

        A spent budget is detected by reading alone, so a storm of refused
        retries writes nothing. An allowed retry is recorded and the total
        the store returns is checked again: a concurrent withdrawal (from
        any instance) that took the last retry first makes this one give
        its retry back and refuse.
        """
        requests = await store.window_total(self.REQUESTS_KEY, self.window) + self._pending
        allowance = self.ratio * requests + self.floor
        if await store.window_total(self.RETRIES_KEY, self.window) + 1.0 > allowance:
            return False
        if await store.window_add(self.RETRIES_KEY, 1.0, self.window) <= allowance:
            return True
        await store.window_add(self.RETRIES_KEY, -1.0, self.window)
        return False

    async def snapshot(self, store: StateStore) -> dict[str, float]:
        """Requests, retries and the allowance in the current window."""
        await self.flush(store)
        requests = await store.window_total(self.REQUESTS_KEY, self.window)
        retries = await store.window_total(self.RETRIES_KEY, self.window)
        return {
            "requests": requests,
            "retries": retries,
            "allowance": self.ratio * requests + self.floor,
            "window_s": self.window,
        }


class RetryService:
    """What the plugin publishes as ``manager.extensions["retry"]``."""

    def __init__(self, plugin: RetryPlugin) -> None:
        self._plugin = plugin

    def policy(self, provider: str) -> Policy:
        """The resolved policy for ``provider``."""
        return self._plugin.policy(provider)

    def counters(self) -> dict[str, int]:
        """Per-process counts of retries, budget denials, fail-overs, aborts,
        model switches and credential refreshes."""
        return attrs.asdict(self._plugin.counters)

    async def budget(self) -> dict[str, float] | None:
        """The retry budget's current window (``None`` when disabled)."""
        plugin = self._plugin
        if plugin.budget is None or plugin.manager is None:
            return None
        return await plugin.budget.snapshot(plugin.manager.state)


class RetryPlugin:
    """Retries with exponential backoff and full jitter, a shared retry
    budget, context-window switching and credential refresh; see the
    module docstring. ``rng`` and ``clock`` (monotonic seconds, used to
    batch budget deposits) are injectable for tests."""

    def __init__(self, *, rng: random.Random | None = None, clock: Callable[[], float] | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock if clock is not None else time.monotonic
        self.manager: ProviderManager | None = None
        self.active = False
        self.budget: RetryBudget | None = None
        self.counters = RetryCounters()
        self._global: list[RetrySection] = []
        self._default: Policy = resolve([])
        self._policies: dict[str, Policy] = {}
        self._windows: tuple[tuple[int, Target], ...] = ()
        self._key_changed: dict[str, float] = {}

    # -- configuration ----------------------------------------------------------

    def policy(self, provider: str) -> Policy:
        """The policy that applies to ``provider``."""
        return self._policies.get(provider, self._default)

    @hookimpl
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Read and validate the sections; publish ``extensions["retry"]``
        when any section is present. Raises ConfigError naming bad values."""
        self.manager = manager
        config = manager.config
        problems: list[tuple[str, str]] = []
        layers: list[RetrySection] = []
        for path in GLOBAL_SECTIONS:
            raw = config.section(path)
            if raw is None:
                continue
            try:
                layers.append(parse_section(RetrySection, raw, path))
            except ConfigError as exc:
                problems.extend(exc.problems)
        policies: dict[str, Policy] = {}
        for name, provider in config.providers.items():
            try:
                policy = self._provider_policy(name, provider, layers)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            if policy is not None:
                policies[name] = policy
        if problems:
            raise ConfigError(problems)
        self._global = layers
        self._default = resolve(layers) if layers else attrs.evolve(resolve([]), enabled=False)
        self._policies = policies
        self._apply()

    def _apply(self) -> None:
        """Activate (budget, context-window index, ``extensions["retry"]``)
        when some policy is enabled."""
        self.active = self._default.enabled or any(p.enabled for p in self._policies.values())
        if not self.active:
            return
        if self.budget is None:
            budget = RetryBudgetSection()
            for layer in self._global:
                if layer.retry_budget is not None:
                    budget = layer.retry_budget
            if budget.enabled:
                self.budget = RetryBudget(budget, self._clock)
        self._index_windows()
        assert self.manager is not None
        self.manager.extensions["retry"] = RetryService(self)

    @staticmethod
    def _provider_policy(name: str, provider: ProviderConfig, layers: list[RetrySection]) -> Policy | None:
        """The policy of a provider with its own ``retry`` section layered
        over the global ones (a provider section alone activates the plugin
        for that provider), or ``None`` without one."""
        if provider.retry is None:
            return None
        path = f"providers.{name}.retry"
        section = parse_section(RetrySection, provider.retry, path)
        if section.retry_budget is not None:
            raise ConfigError([(f"{path}.retryBudget", "the retry budget is global: set it in optimization.retry")])
        return resolve([*layers, section])

    def _index_windows(self) -> None:
        """Every live model with a configured ``contextWindow``, smallest
        window first (then by provider priority): the switch candidates."""
        manager = self.manager
        assert manager is not None
        found: list[tuple[int, int, Target]] = []
        for name in manager.providers():
            handle = manager.handle(name)
            if handle is None:
                continue
            for model, model_config in handle.config.models.items():
                if model_config.context_window:
                    found.append((model_config.context_window, handle.config.priority, Target(name, model)))
        found.sort(key=lambda item: (item[0], item[1]))
        self._windows = tuple((window, target) for window, _, target in found)

    @hookimpl
    async def provider_changed(
        self, manager: ProviderManager, name: str, old: ProviderConfig | None, new: ProviderConfig | None
    ) -> None:
        """Re-resolve the provider's policy and the context-window index;
        remember when its key changed (see credential refresh). A bad
        ``retry`` section in the new config raises (the kernel logs it) and
        leaves the previous policy in place."""
        if old is not None and new is not None and old.api_key != new.api_key:
            self._key_changed[name] = time.perf_counter()
        policy = self._provider_policy(name, new, self._global) if new is not None else None
        if policy is None:
            self._policies.pop(name, None)
        else:
            self._policies[name] = policy
        self._apply()

    @hookimpl
    async def plugin_shutdown(self, manager: ProviderManager) -> None:
        """Write the batched budget deposits."""
        if self.budget is not None:
            await self.budget.flush(manager.state)

    # -- the request path -------------------------------------------------------

    @hookimpl
    async def filter_targets(self, candidates: Sequence[Target], context: RequestContext) -> None:
        """Rules nothing out: remembers the request's candidates (to know
        whether another target is left) and deposits into the retry budget."""
        if not self.active:
            return
        context.state[CANDIDATES_KEY] = candidates
        budget = self.budget
        if budget is not None and budget.deposit():
            assert self.manager is not None
            await budget.flush(self.manager.state)

    @hookimpl
    async def on_failure(
        self, request: CompletionRequest, target: Target, error: SwarmgateError, context: RequestContext
    ) -> FailureDecision | None:
        """Decide after a failed attempt (see the module docstring).
        ``None`` when the plugin is inactive for the target's provider."""
        if not self.active:
            return None
        policy = self._policies.get(target.provider, self._default)
        if not policy.enabled:
            return None
        action = policy.actions.get(error.kind)
        if action is None:
            return None
        if action is Action.RETRY:
            return await self._retry(policy, target, error, context)
        if action is Action.ABORT:
            self.counters.aborts += 1
            return _ABORT
        if action is Action.SWITCH_MODEL:
            decision = self._larger_context(request, target, context)
            if decision is not None:
                self.counters.model_switches += 1
                log.info("retry_switch_model", request_id=context.id, target=str(target), to=str(decision.target))
                return decision
        elif action is Action.REFRESH_CREDENTIALS:
            return await self._refresh(target, error, context)
        self.counters.failovers += 1
        return _FAILOVER

    def _state(self, context: RequestContext) -> RequestRetries:
        state = context.state.get(STATE_KEY)
        if state is None:
            state = context.state[STATE_KEY] = RequestRetries()
        return state

    async def _retry(
        self, policy: Policy, target: Target, error: SwarmgateError, context: RequestContext
    ) -> FailureDecision:
        attempts = 0
        for attempt in context.attempts:
            if attempt.provider == target.provider and attempt.model == target.model:
                attempts += 1
        if attempts >= policy.max_attempts or self._circuit_open(target):
            self.counters.failovers += 1
            return _FAILOVER
        delay = policy.backoff(attempts - 1, self._rng)
        retry_after = error.retry_after
        if retry_after is not None and retry_after > delay:
            limit = policy.max_delay if self._has_alternative(target, context) else policy.max_retry_after
            if retry_after > limit:
                self.counters.failovers += 1
                log.info("retry_after_too_long", request_id=context.id, target=str(target), retry_after=retry_after)
                return _FAILOVER
            delay = retry_after
        if anyio.current_time() + delay >= context.deadline:
            self.counters.failovers += 1  # the request's total deadline would pass while waiting
            return _FAILOVER
        budget = self.budget
        if budget is not None:
            assert self.manager is not None
            if not await budget.withdraw(self.manager.state):
                self.counters.budget_denied += 1
                self.counters.failovers += 1
                log.info("retry_budget_spent", request_id=context.id, target=str(target))
                return _FAILOVER
        self.counters.retries += 1
        self._state(context).delays.append(delay)
        log.info(
            "retry_scheduled",
            request_id=context.id,
            target=str(target),
            kind=error.kind.value,
            attempt=attempts,
            delay=round(delay, 4),
        )
        return FailureDecision.retry(delay)

    def _circuit_open(self, target: Target) -> bool:
        """Whether the ``breaker`` extension (if any) reports ``target`` open."""
        assert self.manager is not None
        breaker: Any = self.manager.extensions.get("breaker")
        return breaker is not None and breaker.state(target) == "open"

    def _has_alternative(self, target: Target, context: RequestContext) -> bool:
        """Whether a candidate other than ``target`` is still untried (and not
        behind an open circuit)."""
        candidates: Sequence[Target] = context.state.get(CANDIDATES_KEY, ())
        if len(candidates) < 2:
            return False
        tried = {(a.provider, a.model) for a in context.attempts}
        return any(t != target and (t.provider, t.model) not in tried and not self._circuit_open(t) for t in candidates)

    def _larger_context(
        self, request: CompletionRequest, target: Target, context: RequestContext
    ) -> FailureDecision | None:
        """A switch to a model with a larger context window, or ``None``."""
        manager = self.manager
        assert manager is not None
        current = manager.model_config(target).context_window
        need = estimate_tokens(request.prompt_text()) + (request.max_tokens or 0)
        tried = {(a.provider, a.model) for a in context.attempts}
        exclude = request.preferences.exclude
        forced = request.provider
        best: Target | None = None
        for window, candidate in self._windows:
            if current is not None and window <= current:
                continue
            if candidate == target or (candidate.provider, candidate.model) in tried:
                continue
            if (forced is not None and candidate.provider != forced) or candidate.provider in exclude:
                continue
            if manager.handle(candidate.provider) is None or self._circuit_open(candidate):
                continue
            if window >= need:
                return FailureDecision.switch(candidate)
            best = candidate  # the windows ascend: the largest one seen so far
        return FailureDecision.switch(best) if best is not None else None

    async def _refresh(self, target: Target, error: SwarmgateError, context: RequestContext) -> FailureDecision:
        """Refresh the provider's credentials once per request and target."""
        state = self._state(context)
        if target in state.refreshed:
            self.counters.failovers += 1
            return _FAILOVER
        state.refreshed.add(target)
        manager = self.manager
        assert manager is not None
        last = context.attempts[-1] if context.attempts else None
        attempt_started = time.perf_counter() - (last.latency / 1000.0 if last is not None else 0.0)
        self.counters.credential_refreshes += 1
        changed = await manager.refresh_credentials(target.provider)
        if changed or self._key_changed.get(target.provider, -1.0) >= attempt_started:
            log.info("retry_after_credential_refresh", request_id=context.id, target=str(target))
            self.counters.retries += 1
            return _RETRY_NOW
        self.counters.failovers += 1
        return _FAILOVER
