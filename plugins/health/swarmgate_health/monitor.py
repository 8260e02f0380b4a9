"""The health monitor: checks, thresholds, uptime, transitions.

One :class:`HealthMonitor` per :class:`~swarmgate.ProviderManager` keeps, per
provider, a small state machine fed by two sources:

* **active checks** (:meth:`HealthMonitor.run_check`): ``ping`` asks the
  kernel's ``health_probe`` hook (``manager.check_health(name)``, each
  driver's cheap probe); ``request`` sends one tiny real completion forced
  to that provider and checks the answer's length. Each is bounded by its
  timeout. A check failing ``failureThreshold`` times in a row marks the
  provider unhealthy; once *every* check of the provider has succeeded
  ``successThreshold`` times in a row since, it is healthy again;
* **live traffic** (:meth:`HealthMonitor.live_failure` /
  :meth:`HealthMonitor.live_success`, fed by the plugin's ``on_failure`` and
  ``after_response`` hooks): ``passive.failureThreshold`` provider-fault
  failures in a row mark a healthy provider unhealthy. Live traffic never
  marks a provider healthy: recovery is the probes' job, and a live failure
  while unhealthy restarts the count of successful checks.

Every transition calls ``manager.set_health`` (unhealthy providers are tried
after every healthy one), emits a structured log event
(``provider_unhealthy`` at warning, ``provider_recovered`` at info), calls the
callbacks registered with :meth:`HealthMonitor.on_transition`, and is written
to the state store as the provider's *verdict*
(``health:verdict:<provider>``). Before each check a monitor reads that
verdict and adopts a newer one written by another gateway instance sharing
the store (a transition with source ``"shared"``).

Kept in memory, per process: the consecutive counts, the last results and
the uptime figures (time-weighted, from this monitor's first result on).
Shared through ``manager.state``: the verdict.
"""

from __future__ import annotations

import inspect
import json
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc
import attrs

from swarmgate import (
    CompletionRequest,
    NoProviderAvailableError,
    ProviderConfig,
    SwarmgateError,
    UnknownModelError,
)
from swarmgate.logs import get_logger
from swarmgate_health.settings import PING, Check, HealthSettings, ProviderPlan

if TYPE_CHECKING:
    from swarmgate import ProviderManager

log = get_logger("swarmgate.health")

#: Prefix of the state-store keys holding each provider's shared verdict.
VERDICT_PREFIX: Final = "health:verdict:"
#: ``request.metadata`` key set on the monitor's own ``request`` checks;
#: passive monitoring ignores such requests, and other plugins may too.
PROBE_METADATA: Final = "health_check"
#: Tag set on the monitor's own ``request`` checks.
PROBE_TAG: Final = "health-check"

TransitionCallback = Callable[["Transition"], Awaitable[None] | None]


@attrs.frozen
class CheckResult:
    """The outcome of one check. ``ok`` is ``None`` when the check could
    not reach the provider for a reason that says nothing about it (a
    ``before_request`` hook answered the probe request); such results are
    not counted. ``latency`` in milliseconds; ``at`` is wall-clock time."""

    provider: str
    check: str
    ok: bool | None
    latency: float | None
    detail: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "check": self.check,
            "ok": self.ok,
            "latency_ms": None if self.latency is None else round(self.latency, 3),
            "detail": self.detail,
            "at": self.at,
        }


@attrs.frozen
class RoundResult:
    """Every check of one provider, run once (:meth:`HealthMonitor.check_now`).
    ``healthy``: no check failed (inconclusive ones do not count)."""

    provider: str
    results: tuple[CheckResult, ...]

    @property
    def healthy(self) -> bool:
        """Whether no check of this round failed."""
        return all(r.ok is not False for r in self.results)

    @property
    def latency(self) -> float | None:
        """The first check's latency (milliseconds)."""
        return self.results[0].latency if self.results else None

    @property
    def detail(self) -> str:
        """Each check's detail, ``check: detail``, joined by ``"; "``."""
        return "; ".join(f"{r.check}: {r.detail}" for r in self.results)


@attrs.frozen
class Transition:
    """A provider changed from healthy to unhealthy or back.

    ``source`` is ``"active"`` (checks), ``"passive"`` (live traffic) or
    ``"shared"`` (adopted from another gateway instance's verdict);
    ``at`` is wall-clock time; ``uptime`` the provider's uptime fraction
    right after the change; ``notifications`` are the configured
    ``alerts.notifications`` channel names, for notifier plugins.
    """

    provider: str
    healthy: bool
    detail: str
    source: str
    at: float
    uptime: float | None
    notifications: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "provider": self.provider,
            "healthy": self.healthy,
            "detail": self.detail,
            "source": self.source,
            "at": self.at,
            "uptime": self.uptime,
            "notifications": list(self.notifications),
        }


@attrs.define
class _CheckState:
    check: Check
    request: CompletionRequest | None
    failures: int = 0
    successes: int = 0
    last: CheckResult | None = None


@attrs.define
class _ProviderState:
    plan: ProviderPlan
    checks: list[_CheckState]
    healthy: bool = True
    detail: str = ""
    source: str | None = None
    changed_at: float | None = None
    transitions: int = 0
    live_failures: int = 0
    last_check_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    verdict_id: str | None = None
    # Uptime accounting on the monotonic clock, from the first result on.
    observed_since: float | None = None
    mark: float = 0.0
    up: float = 0.0
    history: deque[tuple[float, bool]] = attrs.field(factory=deque)


def _describe(error: SwarmgateError) -> str:
    if isinstance(error, NoProviderAvailableError) and error.last_error is not None:
        error = error.last_error
    return f"{error.kind.value}: {error.message}"


def _is_async(callback: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
        getattr(callback, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


class HealthMonitor:
    """Health state of a manager's providers; see the module docstring.

    ``clock`` (monotonic seconds) drives uptime accounting, ``wall``
    (epoch seconds) stamps results and transitions, ``rng`` draws the
    interval jitter; all injectable for tests. ``log_events=False``
    silences the transition log events (callbacks still run).
    """

    def __init__(
        self,
        manager: ProviderManager,
        settings: HealthSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        log_events: bool = True,
    ) -> None:
        self._manager = manager
        self._settings = settings
        self._clock = clock
        self._wall = wall
        self._rng = rng or random.Random()
        self._log_events = log_events
        passive = settings.passive
        self._passive_kinds = frozenset(passive.kinds) if passive.enabled else frozenset()
        self._passive_threshold = passive.failure_threshold
        self._window = settings.uptime_window
        self._states: dict[str, _ProviderState] = {name: self._new_state(plan) for name, plan in settings.plans.items()}
        self._callbacks: list[tuple[TransitionCallback, bool]] = []
        self._task_group: anyio.abc.TaskGroup | None = None
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._running = False
        #: Identifies this monitor in shared verdicts.
        self.instance = uuid.uuid4().hex[:12]

    # -- what is monitored ------------------------------------------------------

    @property
    def settings(self) -> HealthSettings:
        """The resolved settings."""
        return self._settings

    @property
    def running(self) -> bool:
        """Whether the background checks are running."""
        return self._running

    def providers(self) -> list[str]:
        """Every provider the monitor keeps state for."""
        return list(self._states)

    def plan(self, name: str) -> ProviderPlan:
        """Provider ``name``'s checks and thresholds."""
        return self._state(name).plan

    def healthy(self, name: str) -> bool:
        """Whether the monitor considers provider ``name`` healthy."""
        return self._state(name).healthy

    def _state(self, name: str) -> _ProviderState:
        state = self._states.get(name)
        if state is None:
            raise UnknownModelError(
                f"provider {name!r} is not known to the health monitor (known: {sorted(self._states)})"
            )
        return state

    def _new_state(self, plan: ProviderPlan) -> _ProviderState:
        checks = []
        for check in plan.checks:
            request = None
            if check.type != PING:
                request = CompletionRequest.create(
                    check.test_prompt,
                    provider=plan.name,
                    model=check.model or "auto",
                    max_tokens=check.max_tokens,
                    metadata={PROBE_METADATA: True},
                    tags=(PROBE_TAG,),
                )
            checks.append(_CheckState(check, request))
        return _ProviderState(plan, checks)

    # -- callbacks ----------------------------------------------------------------

    def on_transition(self, callback: TransitionCallback) -> Callable[[], None]:
        """Call ``callback(transition)`` on every health transition; returns a
        function that unregisters it.

        A plain function runs at once, in the task that made the transition;
        an ``async`` one runs in the monitor's task group when the
        background task is running (so a slow callback delays neither checks
        nor requests), otherwise it is awaited in place. Exceptions are
        logged (``health_callback_failed``) and otherwise ignored.
        """
        entry = (callback, _is_async(callback))
        self._callbacks.append(entry)

        def unregister() -> None:
            if entry in self._callbacks:
                self._callbacks.remove(entry)

        return unregister

    # -- snapshot -------------------------------------------------------------------

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every provider's health, JSON-ready: ``healthy``, ``detail``,
        ``source`` and ``since`` (the last transition), ``uptime`` (fraction
        of time healthy since the first result; ``None`` before it),
        ``uptime_window`` (over the last ``window_seconds``),
        ``last_check`` (wall time), ``last_error`` (and ``last_error_at``),
        ``consecutive_failures`` (the worst check's run),
        ``consecutive_successes`` (the weakest check's run),
        ``live_failures`` (the current run of live failures), ``transitions``
        and, per check, its own counts and last result."""
        now = self._clock()
        out: dict[str, dict[str, Any]] = {}
        for name, state in self._states.items():
            uptime, windowed = self._uptime(state, now)
            out[name] = {
                "monitored": state.plan.monitored,
                "healthy": state.healthy,
                "detail": state.detail,
                "source": state.source,
                "since": state.changed_at,
                "uptime": uptime,
                "uptime_window": windowed,
                "window_seconds": self._window,
                "observed_seconds": None if state.observed_since is None else now - state.observed_since,
                "last_check": state.last_check_at,
                "last_error": state.last_error,
                "last_error_at": state.last_error_at,
                "consecutive_failures": max((c.failures for c in state.checks), default=0),
                "consecutive_successes": min((c.successes for c in state.checks), default=0),
                "live_failures": state.live_failures,
                "transitions": state.transitions,
                "checks": [
                    {
                        "type": c.check.type,
                        "interval_ms": c.check.interval * 1000.0,
                        "timeout_ms": c.check.timeout * 1000.0,
                        "consecutive_failures": c.failures,
                        "consecutive_successes": c.successes,
                        "last": None if c.last is None else c.last.to_dict(),
                    }
                    for c in state.checks
                ],
            }
        return out

    # -- uptime ------------------------------------------------------------------------

    def _observe(self, state: _ProviderState, now: float) -> None:
        if state.observed_since is None:
            state.observed_since = state.mark = now
            state.history.append((now, state.healthy))

    def _uptime(self, state: _ProviderState, now: float) -> tuple[float | None, float | None]:
        since = state.observed_since
        if since is None:
            return None, None
        fallback = 1.0 if state.healthy else 0.0
        up = state.up + (now - state.mark if state.healthy else 0.0)
        total = now - since
        overall = up / total if total > 0 else fallback
        start = max(now - self._window, since)
        span = now - start
        if span <= 0:
            return overall, fallback
        windowed = 0.0
        entries = list(state.history)
        for i, (at, healthy) in enumerate(entries):
            end = entries[i + 1][0] if i + 1 < len(entries) else now
            begin = max(at, start)
            if healthy and end > begin:
                windowed += end - begin
        return overall, windowed / span

    # -- transitions ----------------------------------------------------------------------

    def _transition(
        self, name: str, state: _ProviderState, healthy: bool, detail: str, source: str, now: float | None = None
    ) -> Transition:
        """Flip ``state`` (synchronously, so concurrent tasks see it at once)
        at monotonic time ``now`` (default: the clock's)."""
        if now is None:
            now = self._clock()
        self._observe(state, now)
        if state.healthy:
            state.up += now - state.mark
        state.mark = now
        state.healthy = healthy
        state.detail = detail
        state.source = source
        state.changed_at = self._wall()
        state.transitions += 1
        state.live_failures = 0
        for check in state.checks:
            if healthy:
                check.failures = 0
            else:
                check.successes = 0
        state.history.append((now, healthy))
        horizon = now - self._window
        while len(state.history) > 1 and state.history[1][0] <= horizon:
            state.history.popleft()
        self._manager.set_health(name, healthy, detail)
        uptime, _ = self._uptime(state, now)
        return Transition(name, healthy, detail, source, state.changed_at, uptime, self._settings.notifications)

    async def dispatch(self, transition: Transition, *, wait: bool = True, share: bool = True) -> None:
        """Announce ``transition``: the log event and plain callbacks at once;
        then the shared verdict (``share``) and async callbacks, awaited
        here when ``wait`` or when no task group runs, else started in the
        monitor's task group."""
        if self._log_events:
            event = "provider_recovered" if transition.healthy else "provider_unhealthy"
            emit = log.info if transition.healthy else log.warning
            emit(
                event,
                provider=transition.provider,
                detail=transition.detail,
                source=transition.source,
                uptime=transition.uptime,
                notifications=list(transition.notifications),
            )
        for callback, is_async in list(self._callbacks):
            if not is_async:
                try:
                    callback(transition)
                except Exception as exc:  # noqa: BLE001 - contract: a failing callback is logged, not raised
                    log.error(
                        "health_callback_failed", provider=transition.provider, error=f"{type(exc).__name__}: {exc}"
                    )
        if wait or self._task_group is None:
            await self._finish(transition, share)
        else:
            self._task_group.start_soon(self._finish, transition, share)

    async def _finish(self, transition: Transition, share: bool) -> None:
        if share:
            await self._write_verdict(transition)
        for callback, is_async in list(self._callbacks):
            if is_async:
                try:
                    await callback(transition)  # type: ignore[misc]
                except Exception as exc:  # noqa: BLE001 - contract: a failing callback is logged, not raised
                    log.error(
                        "health_callback_failed", provider=transition.provider, error=f"{type(exc).__name__}: {exc}"
                    )

    # -- the shared verdict ---------------------------------------------------------------------

    async def _write_verdict(self, transition: Transition) -> None:
        state = self._states.get(transition.provider)
        verdict_id = uuid.uuid4().hex
        if state is not None:
            state.verdict_id = verdict_id
        body = {
            "healthy": transition.healthy,
            "detail": transition.detail,
            "source": transition.source,
            "at": transition.at,
            "id": verdict_id,
            "origin": self.instance,
        }
        try:
            await self._manager.state.set(VERDICT_PREFIX + transition.provider, json.dumps(body).encode())
        except Exception as exc:  # noqa: BLE001 - a failing store must not stop health monitoring
            log.warning(
                "health_verdict_write_failed", provider=transition.provider, error=f"{type(exc).__name__}: {exc}"
            )

    async def sync_shared(self, name: str) -> Transition | None:
        """Adopt provider ``name``'s shared verdict when another instance
        wrote a newer one that disagrees with ours (returns the transition,
        already announced)."""
        state = self._states.get(name)
        if state is None:
            return None
        try:
            raw = await self._manager.state.get(VERDICT_PREFIX + name)
        except Exception as exc:  # noqa: BLE001 - a failing store must not stop health monitoring
            log.warning("health_verdict_read_failed", provider=name, error=f"{type(exc).__name__}: {exc}")
            return None
        if raw is None:
            return None
        try:
            verdict = json.loads(raw)
            verdict_id, healthy, at = str(verdict["id"]), bool(verdict["healthy"]), float(verdict["at"])
            detail, origin = str(verdict.get("detail", "")), str(verdict.get("origin", "?"))
        except (ValueError, KeyError, TypeError):
            log.warning("health_verdict_unreadable", provider=name)
            return None
        if verdict_id == state.verdict_id or self._states.get(name) is not state:
            return None
        state.verdict_id = verdict_id
        if healthy == state.healthy or (state.changed_at is not None and at < state.changed_at):
            return None
        transition = self._transition(name, state, healthy, f"{detail} (reported by gateway {origin})", "shared")
        await self.dispatch(transition, share=False)
        return transition

    # -- active checks ------------------------------------------------------------------------------

    async def run_check(self, name: str, index: int = 0) -> CheckResult:
        """Run provider ``name``'s check number ``index`` once: adopt a newer
        shared verdict, probe, count the result, announce a transition.
        Never raises for a failing provider (a failure is a result)."""
        state = self._state(name)
        check_state = state.checks[index]
        await self.sync_shared(name)
        result = await self._probe(name, check_state)
        if self._states.get(name) is not state:
            return result  # the provider was replaced or removed meanwhile
        transition = self._record(name, state, check_state, result)
        if transition is not None:
            await self.dispatch(transition)
        return result

    async def check_now(self, name: str) -> RoundResult:
        """Run every check of provider ``name`` once, concurrently."""
        state = self._state(name)
        results: list[CheckResult | None] = [None] * len(state.checks)

        async def one(index: int) -> None:
            results[index] = await self.run_check(name, index)

        async with anyio.create_task_group() as tg:
            for index in range(len(state.checks)):
                tg.start_soon(one, index)
        return RoundResult(name, tuple(r for r in results if r is not None))

    async def probe_round(self, names: Iterable[str] | None = None) -> dict[str, RoundResult]:
        """:meth:`check_now` for ``names`` (default: every monitored
        provider), all concurrently; results in the order of ``names``."""
        chosen = list(names) if names is not None else [n for n, s in self._states.items() if s.plan.monitored]
        rounds: dict[str, RoundResult] = {}

        async def one(name: str) -> None:
            rounds[name] = await self.check_now(name)

        async with anyio.create_task_group() as tg:
            for name in chosen:
                tg.start_soon(one, name)
        return {name: rounds[name] for name in chosen}

    async def _probe(self, name: str, check_state: _CheckState) -> CheckResult:
        check = check_state.check
        started = time.perf_counter()
        ok: bool | None = False
        latency: float | None = None
        detail = ""
        with anyio.move_on_after(check.timeout) as scope:
            try:
                if check_state.request is None:
                    status = (await self._manager.check_health(name))[name]
                    ok, latency = status.healthy, status.latency
                    detail = status.detail or ("healthy" if ok else "unhealthy")
                else:
                    ok, detail = await self._request(check_state.request, check)
            except SwarmgateError as exc:
                ok, detail = False, _describe(exc)
            except Exception as exc:  # noqa: BLE001 - any failure of a probe is a failed check
                ok, detail = False, f"{type(exc).__name__}: {exc}"
        if scope.cancelled_caught:
            ok, detail = False, f"no answer within {check.timeout:g}s"
            latency = None
        if latency is None:
            latency = (time.perf_counter() - started) * 1000.0
        return CheckResult(name, check.type, ok, latency, detail, self._wall())

    async def _request(self, request: CompletionRequest, check: Check) -> tuple[bool | None, str]:
        response = await self._manager.complete(request)
        if not response.attempts:
            return None, "answered without reaching the provider (a before_request hook answered); not counted"
        length = len(response.content.strip())
        if length < check.expected_response_length:
            return False, (
                f"answer too short: {length} characters from {response.provider}/{response.model}, "
                f"expected at least {check.expected_response_length}"
            )
        return True, f"{length} characters from {response.provider}/{response.model}"

    def _record(
        self, name: str, state: _ProviderState, check_state: _CheckState, result: CheckResult
    ) -> Transition | None:
        check_state.last = result
        state.last_check_at = result.at
        if result.ok is None:
            return None
        now = self._clock()
        self._observe(state, now)
        plan = state.plan
        if result.ok:
            check_state.successes += 1
            check_state.failures = 0
            if not state.healthy and all(c.successes >= plan.success_threshold for c in state.checks):
                runs = "check" if len(state.checks) == 1 else "every check"
                detail = f"{runs} passed {plan.success_threshold} time(s) in a row: {result.detail}"
                return self._transition(name, state, True, detail, "active", now)
            return None
        check_state.failures += 1
        check_state.successes = 0
        state.last_error = f"{result.check}: {result.detail}"
        state.last_error_at = result.at
        if state.healthy and check_state.failures >= plan.failure_threshold:
            detail = f"{result.check} check failed {check_state.failures} time(s) in a row: {result.detail}"
            return self._transition(name, state, False, detail, "active", now)
        return None

    # -- passive health ------------------------------------------------------------------------------

    def live_success(self, name: str) -> None:
        """A live request to ``name`` succeeded: the run of live failures ends."""
        state = self._states.get(name)
        if state is not None:
            state.live_failures = 0

    def live_failure(self, name: str, error: SwarmgateError) -> Transition | None:
        """A live attempt on ``name`` failed with ``error``. Counts only the
        configured provider-fault kinds; returns the transition when this
        failure marks the provider unhealthy (announce it with
        :meth:`dispatch`)."""
        kind = error.kind.value
        if kind not in self._passive_kinds:
            return None
        state = self._states.get(name)
        if state is None or not state.plan.monitored:
            return None
        state.live_failures += 1
        state.last_error = f"live {kind}: {error.message}"
        state.last_error_at = self._wall()
        if not state.healthy:
            for check in state.checks:
                check.successes = 0
            return None
        if state.live_failures < self._passive_threshold:
            return None
        detail = f"{state.live_failures} live failures in a row, the last: {kind}: {error.message}"
        return self._transition(name, state, False, detail, "passive")

    # -- the background task ------------------------------------------------------------------------------

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Run every monitored provider's checks in ``task_group``, each on
        its interval (randomly stretched or shrunk by ``jitter``; the first
        run within ``jitter x interval`` of the start). Idempotent."""
        self._task_group = task_group
        if self._running:
            return
        self._running = True
        for name, state in self._states.items():
            if state.plan.monitored:
                self._spawn(name, state)

    def stop(self) -> None:
        """Stop the background checks (a check under way is cancelled and not
        counted). Async callbacks already started still finish. Idempotent."""
        self._running = False
        for scope in self._scopes.values():
            scope.cancel()
        self._scopes.clear()

    def detach(self) -> None:
        """Forget the task group (its owner is closing it)."""
        self.stop()
        self._task_group = None

    def _spawn(self, name: str, state: _ProviderState) -> None:
        assert self._task_group is not None
        scope = anyio.CancelScope()
        self._scopes[name] = scope
        self._task_group.start_soon(self._provider_loops, name, state, scope, name=f"health:{name}")

    async def _provider_loops(self, name: str, state: _ProviderState, scope: anyio.CancelScope) -> None:
        with scope:
            async with anyio.create_task_group() as tg:
                for index in range(len(state.checks)):
                    tg.start_soon(self._check_loop, name, state, index)

    async def _check_loop(self, name: str, state: _ProviderState, index: int) -> None:
        interval = state.checks[index].check.interval
        jitter = self._settings.jitter
        delay = interval * self._rng.uniform(0.0, jitter)
        while self._states.get(name) is state:
            await anyio.sleep(delay)
            try:
                await self.run_check(name, index)
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any bug in one round
                log.error("health_check_crashed", provider=name, error=f"{type(exc).__name__}: {exc}")
            delay = interval * self._rng.uniform(1.0 - jitter, 1.0 + jitter)

    # -- providers changing at run time --------------------------------------------------------------------

    def provider_changed(self, name: str, config: ProviderConfig | None) -> None:
        """Provider ``name`` was added, replaced (``config``) or removed
        (``None``): its state starts afresh (the kernel's new instance is
        assumed healthy too) and its checks restart. Raises ``ConfigError``
        for a bad ``healthCheck`` section (the provider is then unmonitored)."""
        scope = self._scopes.pop(name, None)
        if scope is not None:
            scope.cancel()
        self._states.pop(name, None)
        if config is None or not config.enabled:
            return
        state = self._new_state(self._settings.plan_for(name, config))
        self._states[name] = state
        if self._running and self._task_group is not None and state.plan.monitored:
            self._spawn(name, state)
