"""``RateLimitPlugin``: token-bucket rate limits (entry point ``ratelimit``
in the ``swarmgate`` group).

Three kinds of scope, each with a request bucket, a token bucket or both:

* ``global`` -- the whole gateway (``optimization.rateLimiting``);
* ``caller:<id>`` -- each distinct ``CompletionRequest.caller``: its caller
  policy's rates when it sets any (``manager.caller_policy``), else
  ``callers.<id>``, else ``perCaller``;
* ``provider:<name>`` -- what one provider accepts (``providers.<name>.rateLimit``).

Hooks:

* ``before_request`` takes one request from the caller's and the gateway's
  request buckets and reserves tokens in their token buckets, all or
  nothing in one StateStore call (``take_many``). A bucket that is short
  refuses with :class:`~swarmgate_ratelimit.errors.RateLimitExceededError`
  (429, with ``retry_after``; the first short bucket in that order names
  it), after waiting for it to refill when ``maxWait`` allows (the batch is
  then tried again whole); a refused batch takes nothing.
* ``filter_targets`` and ``before_attempt`` live on :class:`ProviderHooks`,
  registered only while some provider has limits.
* ``filter_targets`` rules out providers whose buckets are empty, judged
  from this process's last observation of each bucket (no StateStore call);
  when that would rule out every candidate it rules out none (after waiting
  for the first to refill, if ``maxWait`` allows), so that ``before_attempt``
  refuses each and the caller gets a rate-limit error, not "no provider".
* ``before_attempt`` takes a request (and reserves tokens) from the target
  provider's buckets, both or neither in one call; a short bucket refuses
  the attempt with
  :class:`~swarmgate_ratelimit.errors.ProviderRateLimitExceededError`
  (``failover``): the request moves on to its next target.
* ``after_response`` / ``request_failed`` settle the token reservations
  against the tokens the request really used, and give back provider
  requests taken for attempts that another plugin then refused, in one call.

Tokens per minute: a request's size is known only after it is answered, so
it *reserves* its worst case up front -- the estimated prompt tokens plus
``max_tokens`` (else the model's ``maxTokens`` at a provider, else
``defaultMaxTokens``) -- and settles afterwards: unused tokens go back to the
bucket; tokens used beyond the reservation are taken from it, and what the
bucket cannot cover becomes *debt* (kept in the bucket by the StateStore:
:data:`swarmgate.state.TakeMode`) that the next reservations pay before
they pass. The bucket therefore behaves as
if it could go negative, and admitted usage exceeds the limit by at most the
excess of the requests in flight over their reservations. A reservation
larger than the whole bucket takes the whole bucket and owes the rest, so a
large request is slowed, never refused forever. Debt expires once the
bucket would have refilled completely after it.

Shared state lives in ``manager.state`` under ``ratelimit:``:
``ratelimit:<requests|tokens>:<scope>`` (the buckets, via ``take_many``:
three calls for a request answered at its first target, whatever the number
of scopes). Giving tokens back is a take of a negative amount (the bucket
caps at its capacity on the next refill).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import attrs

from swarmgate import (
    CallerPolicy,
    CompletionRequest,
    ConfigError,
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
from swarmgate.state import BatchOps, BucketOp, BucketsResult, batch_ops
from swarmgate_ratelimit.buckets import (
    GLOBAL_SCOPE,
    Bucket,
    Limits,
    caller_scope,
    provider_scope,
    seconds,
)
from swarmgate_ratelimit.errors import ProviderRateLimitExceededError, RateLimitExceededError
from swarmgate_ratelimit.settings import LimitSettings, RateLimitSettings

log = get_logger("swarmgate.ratelimit")

#: ``context.state`` key of a request's reservations.
STATE_KEY = "ratelimit"
#: Most callers (and buckets) this process keeps a local view of; the oldest are forgotten first.
MAX_TRACKED = 10_000
#: The name the provider-limit hooks are registered under.
PROVIDER_HOOKS = "ratelimit.providers"
#: Shortest sleep while waiting for a bucket (a wait of a few nanoseconds would spin).
MIN_SLEEP = 0.001
#: Buckets per StateStore call in :meth:`RateLimitService.refresh`.
REFRESH_BATCH = 500


class _Request:
    """What one request holds; in ``context.state["ratelimit"]`` (a plain
    slotted class: one is made per request)."""

    __slots__ = ("admitted", "prompt_tokens", "reserved", "reserved_tokens", "shortest", "wait_until")

    def __init__(self) -> None:
        #: The token buckets reserved in before routing, each ``reserved_tokens``.
        self.reserved: tuple[Bucket, ...] = ()
        self.reserved_tokens = 0.0
        #: Attempts admitted at a provider: (provider, took a request, tokens reserved).
        self.admitted: list[tuple[str, bool, float]] = []
        #: anyio time after which this request may not wait any more (set at its first wait).
        self.wait_until: float | None = None
        #: The estimated prompt tokens, computed once.
        self.prompt_tokens: int | None = None
        #: The shortest wait among this request's provider refusals.
        self.shortest = math.inf


@attrs.frozen
class _Plan:
    """What a request takes before routing: ``buckets`` in order (request
    buckets, caller's then gateway's, then token buckets likewise), the
    request buckets' operations prebuilt, and the token buckets."""

    buckets: tuple[Bucket, ...]
    request_ops: tuple[BucketOp, ...]
    tokens: tuple[Bucket, ...]

    @classmethod
    def of(cls, buckets: tuple[Bucket, ...]) -> _Plan:
        """The plan of ``buckets`` (request buckets first)."""
        return cls(
            buckets,
            tuple((bucket, 1.0, "take") for bucket in buckets if bucket.unit == "requests"),
            tuple(bucket for bucket in buckets if bucket.unit == "tokens"),
        )


@attrs.define
class RateLimitCounters:
    """Per-process counts: requests admitted and refused before routing,
    waits, provider attempts refused, providers ruled out in routing."""

    admitted: int = 0
    limited: int = 0
    waited: int = 0
    provider_refused: int = 0
    ruled_out: int = 0


def _remember(table: dict[str, Any], key: str, value: Any) -> None:
    """Store ``key`` as the newest entry of ``table``, forgetting the oldest beyond :data:`MAX_TRACKED`."""
    table.pop(key, None)
    table[key] = value
    if len(table) > MAX_TRACKED:
        del table[next(iter(table))]


def _keys_set_rates(keys: Any) -> bool:
    """Whether the gateway's configured caller keys (``server.apiKeys``,
    read raw: the server plugin validates them) set a request or token rate."""
    if not isinstance(keys, list):
        return False
    return any(
        isinstance(key, Mapping)
        and (key.get("requestsPerMinute") is not None or key.get("tokensPerMinute") is not None)
        for key in keys
    )


def _rate(value: float | None) -> float | None:
    """A caller policy's rate if usable (positive and finite), else ``None``."""
    return value if value is not None and value > 0 and math.isfinite(value) else None


class RateLimitService:
    """What the plugin publishes as ``manager.extensions["ratelimit"]``.

    Levels come from this process's last observation of each bucket,
    refilled to now; other gateway instances sharing the StateStore may have
    drained a bucket further (:meth:`refresh` reads the exact levels).
    """

    def __init__(self, plugin: RateLimitPlugin) -> None:
        self._plugin = plugin

    def snapshot(self) -> dict[str, Any]:
        """The limits and current levels of every known scope: the gateway,
        each provider with limits, each configured caller and each caller
        seen since start (most recent :data:`MAX_TRACKED`). Per scope and
        unit: ``per_minute``, ``capacity``, ``available`` (units left now)
        and ``limited`` (refusals counted by this process); plus
        ``max_wait_ms``, ``default_max_tokens`` and the ``counters``."""
        plugin = self._plugin
        now = plugin.now()
        scopes: dict[str, dict[str, Any]] = {}
        for limits in plugin.known_limits():
            entry: dict[str, Any] = {}
            for bucket in (limits.requests, limits.tokens):
                if bucket is not None:
                    entry[bucket.unit] = {
                        "per_minute": bucket.per_minute,
                        "capacity": bucket.capacity,
                        "available": round(plugin.available(bucket, now), 3),
                        "limited": plugin.limited.get(bucket.key, 0),
                    }
            scopes[limits.scope] = entry
        return {
            "max_wait_ms": plugin.settings.max_wait,
            "default_max_tokens": plugin.settings.default_max_tokens,
            "scopes": scopes,
            "counters": attrs.asdict(plugin.counters),
        }

    def limits(self, scope: str) -> Limits | None:
        """The limits of a scope (``global``, ``caller:<id>``, ``provider:<name>``) if known."""
        for limits in self._plugin.known_limits():
            if limits.scope == scope:
                return limits
        return None

    async def refresh(self) -> None:
        """Read the exact level of every known bucket from the StateStore
        (a take of zero tokens), so :meth:`snapshot` shows them."""
        await self._plugin.refresh()


class ProviderHooks:
    """The provider-limit hooks, registered by :class:`RateLimitPlugin` (as
    ``ratelimit.providers``) only while some provider has a ``rateLimit``,
    so that without provider limits routing and attempts pay nothing. They
    hold the implementation (one coroutine per hook call, not two); the
    plugin's methods of the same names call them."""

    def __init__(self, plugin: RateLimitPlugin) -> None:
        self._plugin = plugin

    @hookimpl
    async def filter_targets(
        self, request: CompletionRequest, candidates: Sequence[Target], context: RequestContext
    ) -> list[tuple[Target, str]] | None:
        """See :meth:`RateLimitPlugin.filter_targets`."""
        plugin = self._plugin
        ruled, soonest = plugin.rule_out(request, candidates, context)
        if ruled is None or len(ruled) < len(candidates):
            return ruled
        if plugin._max_wait > 0:
            state = plugin._state(context)
            clock = anyio.current_time()
            if state.wait_until is None:
                state.wait_until = min(clock + plugin._max_wait, context.deadline)
            if clock + soonest <= state.wait_until:
                plugin.counters.waited += 1
                await anyio.sleep(max(soonest, MIN_SLEEP))
        return None

    @hookimpl
    async def before_attempt(self, request: CompletionRequest, target: Target, context: RequestContext) -> None:
        """See :meth:`RateLimitPlugin.before_attempt`."""
        plugin = self._plugin
        limits = plugin._providers.get(target.provider)
        if limits is None:
            return
        state = plugin._state(context)
        requests, tokens = limits.requests, limits.tokens
        amount = 0.0
        ops: list[BucketOp] = []
        if requests is not None:
            ops.append((requests, 1.0, "take"))
        if tokens is not None:
            amount = plugin._reservation(request, state, target)
            ops.append((tokens, amount, "reserve"))
        result = await plugin._ops.take_many(ops)
        plugin._note(ops, result.levels)
        if result.refused >= 0:
            bucket = ops[result.refused][0]
            assert isinstance(bucket, Bucket)
            plugin._refused(bucket)
            plugin.counters.provider_refused += 1
            message = plugin._message(bucket, amount if bucket.unit == "tokens" else 1.0, result.retry_after)
            if state.shortest < result.retry_after:
                message += f" (another provider of this request in {seconds(state.shortest)})"
            state.shortest = min(state.shortest, result.retry_after)
            raise ProviderRateLimitExceededError(
                message,
                scope=bucket.scope,
                unit=bucket.unit,
                retry_after=state.shortest,
                provider=target.provider,
                model=target.model,
            )
        state.admitted.append((target.provider, requests is not None, amount))


class _ProviderHooksNoWait(ProviderHooks):
    """:class:`ProviderHooks` when ``maxWait`` is 0: ``filter_targets``
    never waits, so it is a plain function (no coroutine per request)."""

    @hookimpl
    def filter_targets(  # type: ignore[override]
        self, request: CompletionRequest, candidates: Sequence[Target], context: RequestContext
    ) -> list[tuple[Target, str]] | None:
        """See :meth:`RateLimitPlugin.filter_targets`."""
        ruled, _soonest = self._plugin.rule_out(request, candidates, context)
        return ruled if ruled is None or len(ruled) < len(candidates) else None


class RateLimitPlugin:
    """The rate limiter; see the module docstring. ``clock`` returns seconds
    (``time.monotonic``) for this process's view of the buckets; tests pass
    the same fake clock as their ``MemoryStateStore``."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self.now: Callable[[], float] = clock if clock is not None else time.monotonic
        self.manager: ProviderManager | None = None
        self.settings = RateLimitSettings()
        self.counters = RateLimitCounters()
        #: Refusals by bucket key (this process).
        self.limited: dict[str, int] = {}
        self._global: Limits | None = None
        self._global_plan: tuple[Bucket, ...] = ()
        self._named: dict[str, Limits | None] = {}
        self._per_caller: LimitSettings | None = None
        self._providers: dict[str, Limits] = {}
        self._max_wait = 0.0
        self._provider_hooks: ProviderHooks | None = None
        # caller -> (the policy it was built from, its limits, its plan); bounded.
        self._callers: dict[str, tuple[CallerPolicy | None, Limits | None, _Plan]] = {}
        self._global_ops = _Plan.of(())
        self._batch: BatchOps | None = None
        # bucket key -> (level, clock time) as last observed; bounded.
        self._levels: dict[str, tuple[float, float]] = {}

    # -- configuration ----------------------------------------------------------

    @hookimpl(trylast=True)
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Read ``optimization.rateLimiting`` and every provider's
        ``rateLimit``; publish ``extensions["ratelimit"]``. Active when the
        section is present, a provider has a ``rateLimit``, a caller key of
        the gateway (``server.apiKeys``) sets a rate, or a plugin registered
        a caller directory (the caller-key store of ``security.callerKeys``:
        any key it issues may carry a rate); otherwise, or with
        ``enabled: false``, the plugin unregisters itself. Runs ``trylast``
        so that the directories other plugins register in their setup are
        there. Raises ConfigError naming every bad value."""
        self.manager = manager
        raw = manager.config.section("optimization.rateLimiting")
        problems: list[tuple[str, str]] = []
        settings: RateLimitSettings | None = None
        if raw is not None:
            try:
                settings = parse_section(RateLimitSettings, raw, "optimization.rateLimiting")
            except ConfigError as exc:
                problems.extend(exc.problems)
        providers: dict[str, Limits] = {}
        for name, provider in manager.config.providers.items():
            try:
                limits = self._provider_limits(name, provider)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            if limits is not None:
                providers[name] = limits
        if problems:
            raise ConfigError(problems)
        wanted = (
            settings is not None
            or bool(providers)
            or _keys_set_rates(manager.config.section("server.apiKeys"))
            or bool(manager.caller_directories)
        )
        if not wanted or (settings is not None and not settings.enabled):
            manager.plugins.discard(self)  # inactive: its hooks would cost every request
            return
        self.settings = settings = settings or RateLimitSettings()
        self._global = Limits.of(GLOBAL_SCOPE, settings.global_limits)
        glob = self._global
        self._global_plan = () if glob is None else tuple(b for b in (glob.requests, glob.tokens) if b is not None)
        self._global_ops = _Plan.of(self._global_plan)
        self._batch = batch_ops(manager.state)
        self._named = {caller: Limits.of(caller_scope(caller), limits) for caller, limits in settings.callers.items()}
        self._per_caller = settings.per_caller if settings.per_caller and not settings.per_caller.empty else None
        self._providers = providers
        self._max_wait = settings.max_wait / 1000.0
        self._provider_hooks_follow()
        manager.extensions["ratelimit"] = RateLimitService(self)

    def _provider_hooks_follow(self) -> None:
        """Register :class:`ProviderHooks` while some provider has limits, and only then."""
        assert self.manager is not None
        plugins = self.manager.plugins
        if self._providers and self._provider_hooks is None:
            self._provider_hooks = ProviderHooks(self) if self._max_wait > 0 else _ProviderHooksNoWait(self)
            plugins.register(self._provider_hooks, PROVIDER_HOOKS)
        elif not self._providers and self._provider_hooks is not None:
            plugins.discard(self._provider_hooks)
            self._provider_hooks = None

    @staticmethod
    def _provider_limits(name: str, provider: ProviderConfig | None) -> Limits | None:
        if provider is None or provider.rate_limit is None:
            return None
        path = f"providers.{name}.rateLimit"
        return Limits.of(provider_scope(name), parse_section(LimitSettings, provider.rate_limit, path))

    @hookimpl
    async def provider_changed(self, name: str, new: ProviderConfig | None) -> None:
        """Follow a provider's ``rateLimit`` when it is added, updated or
        removed. A bad ``rateLimit`` is logged and the previous limits stay."""
        try:
            limits = self._provider_limits(name, new)
        except ConfigError as exc:
            log.error("rate_limit_config_rejected", provider=name, error=str(exc))
            return
        if limits is None:
            self._providers.pop(name, None)
        else:
            self._providers[name] = limits
        self._provider_hooks_follow()

    # -- buckets ----------------------------------------------------------------

    @property
    def _store(self) -> StateStore:
        assert self.manager is not None
        return self.manager.state

    def known_limits(self) -> list[Limits]:
        """Every scope with limits this process knows: the gateway, the
        providers, the configured callers, the callers seen."""
        out: list[Limits] = []
        if self._global is not None:
            out.append(self._global)
        out.extend(self._providers.values())
        seen: set[str] = set()
        for limits in self._named.values():
            if limits is not None:
                out.append(limits)
                seen.add(limits.scope)
        for _policy, limits, _plan in self._callers.values():
            if limits is not None and limits.scope not in seen:
                out.append(limits)
        return out

    def available(self, bucket: Bucket, now: float) -> float:
        """Units left in ``bucket`` at ``now`` as this process last saw it,
        refilled since (full when never seen). Other instances only take from
        a shared bucket, so this is an upper bound."""
        seen = self._levels.get(bucket.key)
        if seen is None:
            return bucket.capacity
        level, stamp = seen
        return min(bucket.capacity, level + (now - stamp) * bucket.rate)

    @property
    def _ops(self) -> BatchOps:
        if self._batch is None:
            self._batch = batch_ops(self._store)
        return self._batch

    def _note(self, ops: Sequence[BucketOp], levels: Sequence[float]) -> None:
        """Note the levels a batch reported for its buckets (this process's
        view). A bucket keeps its place in the table when noted again: past
        :data:`MAX_TRACKED` the first noted go first (a busy bucket that
        goes is noted again by its next request)."""
        now = self.now()
        table = self._levels
        for (bucket, _tokens, _mode), level in zip(ops, levels, strict=False):
            capacity = bucket.capacity
            table[bucket.key] = (level if level < capacity else capacity, now)
        if len(table) > MAX_TRACKED:
            while len(table) > MAX_TRACKED:
                del table[next(iter(table))]

    async def _apply(self, ops: Sequence[BucketOp]) -> BucketsResult:
        """One ``take_many`` (see :data:`swarmgate.state.TakeMode`), noting the levels."""
        result = await self._ops.take_many(ops)
        self._note(ops, result.levels)
        return result

    async def refresh(self) -> None:
        """Note the exact level of every known bucket (a take of nothing, in batches)."""
        ops: list[BucketOp] = [
            (bucket, 0.0, "take")
            for limits in self.known_limits()
            for bucket in (limits.requests, limits.tokens)
            if bucket is not None
        ]
        for start in range(0, len(ops), REFRESH_BATCH):
            await self._apply(ops[start : start + REFRESH_BATCH])

    def _refused(self, bucket: Bucket) -> None:
        self.limited[bucket.key] = self.limited.get(bucket.key, 0) + 1
        if len(self.limited) > MAX_TRACKED:
            del self.limited[next(iter(self.limited))]

    @staticmethod
    def _message(bucket: Bucket, amount: float, retry_after: float) -> str:
        need = f" (this request needs {amount:.0f})" if bucket.unit == "tokens" else ""
        return f"rate limit '{bucket.scope}' exceeded: {bucket.describe()}{need}; retry after {seconds(retry_after)}"

    # -- the request path -------------------------------------------------------

    @staticmethod
    def _state(context: RequestContext) -> _Request:
        state: _Request | None = context.state.get(STATE_KEY)
        if state is None:
            state = context.state[STATE_KEY] = _Request()
        return state

    def _prompt_tokens(self, request: CompletionRequest, state: _Request) -> int:
        if state.prompt_tokens is None:
            state.prompt_tokens = estimate_tokens(request.prompt_text())
        return state.prompt_tokens

    def _reservation(self, request: CompletionRequest, state: _Request, target: Target | None = None) -> float:
        """The worst-case tokens of ``request``: estimated prompt plus answer
        (``max_tokens``, else the target model's ``maxTokens``, else ``defaultMaxTokens``)."""
        answer = request.max_tokens
        if answer is None and target is not None:
            assert self.manager is not None
            answer = self.manager.model_config(target).max_tokens
        return float(self._prompt_tokens(request, state) + (answer or self.settings.default_max_tokens))

    def caller_limits(self, caller: str) -> Limits | None:
        """The limits of ``caller``: its caller policy's when that sets a
        rate, else ``callers.<caller>``, else ``perCaller`` (``None``: unlimited)."""
        return self._caller(caller)[1]

    def _caller(self, caller: str) -> tuple[CallerPolicy | None, Limits | None, _Plan]:
        """``caller``'s limits and plan, cached until its policy changes."""
        assert self.manager is not None
        policy = self.manager.caller_policy(caller)
        requests, tokens = _rate(policy.requests_per_minute), _rate(policy.tokens_per_minute)
        policy_key = None if requests is None and tokens is None else policy
        cached = self._callers.get(caller)
        if cached is not None and cached[0] == policy_key:
            return cached
        scope = caller_scope(caller)
        limits: Limits | None
        if policy_key is not None:
            burst = _rate(policy.burst_capacity) if requests is not None else None
            limits = Limits.build(scope, requests, tokens, burst)
        elif caller in self._named:
            limits = self._named[caller]
        elif self._per_caller is not None:
            limits = Limits.of(scope, self._per_caller)
        else:
            limits = None
        entry = (policy_key, limits, self._global_ops if limits is None else _Plan.of(self._plan(limits)))
        _remember(self._callers, caller, entry)
        return entry

    def _plan(self, caller: Limits | None) -> tuple[Bucket, ...]:
        """The buckets a request of a caller with these limits takes from,
        in order: requests (caller, gateway), then tokens (caller, gateway)."""
        if caller is None:
            return self._global_plan
        scopes = (caller, self._global)
        requests = [limits.requests for limits in scopes if limits is not None and limits.requests is not None]
        tokens = [limits.tokens for limits in scopes if limits is not None and limits.tokens is not None]
        return (*requests, *tokens)

    @hookimpl
    async def before_request(self, request: CompletionRequest, context: RequestContext) -> None:
        """Take a request from the caller's and the gateway's request
        buckets and reserve the request's worst-case tokens in their token
        buckets, in that order (the most specific first, so a caller over
        its own limit does not drain the gateway's), all or nothing in one
        StateStore call. Raises RateLimitExceededError naming the first
        bucket that is short, after waiting up to ``maxWait`` for it to
        refill (the batch is then tried again whole)."""
        plan = self._global_ops if request.caller is None else self._caller(request.caller)[2]
        if not plan.buckets:
            return None
        state: _Request | None = None
        ops: Sequence[BucketOp]
        amount = 0.0
        if plan.tokens:
            state = self._state(context)
            amount = self._reservation(request, state)
            ops = [*plan.request_ops, *[(bucket, amount, "reserve") for bucket in plan.tokens]]
        else:
            ops = plan.request_ops
        take_many = self._ops.take_many
        while True:
            result = await take_many(ops)
            self._note(ops, result.levels)
            if result.refused < 0:
                break
            if self._max_wait > 0:
                waiting = self._state(context)
                now = anyio.current_time()
                if waiting.wait_until is None:
                    waiting.wait_until = min(now + self._max_wait, context.deadline)
                if now + result.retry_after <= waiting.wait_until:
                    self.counters.waited += 1
                    await anyio.sleep(max(result.retry_after, MIN_SLEEP))
                    continue
            bucket = plan.buckets[result.refused]
            self._refused(bucket)
            self.counters.limited += 1
            raise RateLimitExceededError(
                self._message(bucket, amount if bucket.unit == "tokens" else 1.0, result.retry_after),
                scope=bucket.scope,
                unit=bucket.unit,
                retry_after=result.retry_after,
            )
        if state is not None:
            state.reserved, state.reserved_tokens = plan.tokens, amount
        self.counters.admitted += 1
        return None

    def rule_out(
        self, request: CompletionRequest, candidates: Sequence[Target], context: RequestContext
    ) -> tuple[list[tuple[Target, str]] | None, float]:
        """The targets whose provider's buckets, as this process last saw
        them, cannot hold this request now, each with its reason, and the
        shortest of their waits (no StateStore call). Counts them as ruled
        out unless they are every candidate."""
        providers = self._providers
        if not providers:
            return None, math.inf
        levels = self._levels
        now: float | None = None
        ruled: list[tuple[Target, str]] | None = None
        soonest = math.inf
        for target in candidates:
            limits = providers.get(target.provider)
            if limits is None:
                continue
            wait = 0.0
            bucket = limits.requests
            if bucket is not None:
                seen = levels.get(bucket.key)
                if seen is not None and seen[0] < 1.0:  # refills only add: at 1 or more it holds one request
                    now = self.now() if now is None else now
                    level = min(bucket.capacity, seen[0] + (now - seen[1]) * bucket.rate)
                    if level < 1.0:
                        wait = (1.0 - level) / bucket.rate
            bucket = limits.tokens
            if bucket is not None:
                seen = levels.get(bucket.key)
                if seen is not None:
                    need = min(self._reservation(request, self._state(context), target), bucket.capacity)
                    if seen[0] < need:
                        now = self.now() if now is None else now
                        level = min(bucket.capacity, seen[0] + (now - seen[1]) * bucket.rate)
                        if level < need:
                            wait = max(wait, (need - level) / bucket.rate)
            if wait > 0:
                soonest = min(soonest, wait)
                if ruled is None:
                    ruled = []
                ruled.append((target, f"rate limit '{limits.scope}' reached; room again in {seconds(wait)}"))
        if ruled is not None and len(ruled) < len(candidates):
            self.counters.ruled_out += len(ruled)
        return ruled, soonest

    async def filter_targets(
        self, request: CompletionRequest, candidates: Sequence[Target], context: RequestContext
    ) -> list[tuple[Target, str]] | None:
        """Rule out targets whose provider's buckets, as this process last
        saw them, cannot hold this request now (no StateStore call). When
        that is every candidate, wait for the first to refill if ``maxWait``
        allows, and rule out none: ``before_attempt`` then decides with the
        real buckets, and a request refused everywhere gets a rate-limit
        error with the shortest wait. (The hook is :class:`ProviderHooks`'.)"""
        return await ProviderHooks(self).filter_targets(request, candidates, context)

    async def before_attempt(self, request: CompletionRequest, target: Target, context: RequestContext) -> None:
        """Take a request from the target provider's request bucket and
        reserve the request's worst-case tokens (at this model) in its token
        bucket, both or neither, in one StateStore call. A short bucket
        raises ProviderRateLimitExceededError (``failover``: the next
        target is tried); its ``retry_after`` is the shortest wait among this
        request's provider refusals so far. (The hook is :class:`ProviderHooks`'.)"""
        await ProviderHooks(self).before_attempt(request, target, context)

    # -- settlement -------------------------------------------------------------

    @hookimpl
    async def after_response(self, context: RequestContext) -> None:
        """Settle the request's reservations with the tokens it used (a
        cached answer used none)."""
        ops = self._settlement(context)
        if ops:
            result = await self._ops.take_many(ops)
            self._note(ops, result.levels)

    @hookimpl
    async def request_failed(self, error: SwarmgateError, context: RequestContext) -> None:
        """Settle the reservations of a request that ended unanswered with
        the tokens its attempts used (partial streams count)."""
        ops = self._settlement(context)
        if ops:
            await self._apply(ops)

    def _settlement(self, context: RequestContext) -> list[BucketOp] | None:
        """The operations that give back a request's unused reservations
        and charge its usage beyond them, for every bucket it took from (one
        StateStore call)."""
        state: _Request | None = context.state.pop(STATE_KEY, None)
        if state is None or not (state.reserved or state.admitted):
            return None
        attempts = [a for a in context.attempts if not a.refused]
        ops: list[BucketOp] = []
        if state.reserved:
            used = 0.0
            for attempt in attempts:
                used += attempt.tokens.total
            amount = state.reserved_tokens
            for bucket in state.reserved:
                _settle(ops, bucket, amount, used)
        if state.admitted:
            self._settle_providers(ops, state.admitted, attempts)
        return ops

    def _settle_providers(
        self, ops: list[BucketOp], admitted: Sequence[tuple[str, bool, float]], attempts: list[Any]
    ) -> None:
        """Per provider: give back the requests taken for attempts that never
        reached it (refused by a later ``before_attempt``) and square the
        token reservations with the tokens its attempts used (into ``ops``)."""
        if len(admitted) == 1:  # the usual case: one admitted attempt
            provider, took_request, tokens = admitted[0]
            limits = self._providers.get(provider)
            if limits is not None:
                ran = [a for a in attempts if a.provider == provider]
                if limits.requests is not None and took_request and not ran:
                    ops.append((limits.requests, -1.0, "take"))
                if limits.tokens is not None and tokens > 0:
                    used = 0.0
                    for attempt in ran:
                        used += attempt.tokens.total
                    _settle(ops, limits.tokens, tokens, used)
            return
        took: dict[str, int] = {}
        reserved: dict[str, float] = {}
        for provider, took_request, tokens in admitted:
            took[provider] = took.get(provider, 0) + took_request
            reserved[provider] = reserved.get(provider, 0.0) + tokens
        for provider in took:
            limits = self._providers.get(provider)
            if limits is None:
                continue
            ran = [a for a in attempts if a.provider == provider]
            unused = took[provider] - len(ran)
            if limits.requests is not None and unused > 0:
                ops.append((limits.requests, -float(unused), "take"))
            if limits.tokens is not None and reserved[provider] > 0:
                _settle(ops, limits.tokens, reserved[provider], float(sum(a.tokens.total for a in ran)))


def _settle(ops: list[BucketOp], bucket: Bucket, reserved: float, used: float) -> None:
    """The operation squaring a token reservation with the tokens really
    used: unused tokens go back; tokens beyond it are charged (what the
    bucket lacks becomes debt)."""
    if used < reserved:
        ops.append((bucket, used - reserved, "take"))
    elif used > reserved:
        ops.append((bucket, used - reserved, "charge"))
