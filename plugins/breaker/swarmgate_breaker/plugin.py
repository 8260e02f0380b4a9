"""``BreakerPlugin``: a circuit breaker per provider and model (entry point
``breaker`` in the ``swarmgate`` group).

States, per target::

    closed --(failureThreshold consecutive failures, or the failure rate)--> open
    open --(timeout elapsed)--> half-open   (derived from the time it opened)
    half-open --(successThreshold successes)--> closed
    half-open --(a failure)--> open

Hooks: ``filter_targets`` rules open targets out ("circuit open until
HH:MM:SS") and admits at most ``halfOpenMaxRequests`` concurrent probes to a
half-open one; ``on_failure`` (``tryfirst``, returns ``None``: it observes
and never decides, so it runs before any plugin that decides) counts the
failed attempt; ``after_response`` counts the answering attempt's success.

Alerts: opening a closed circuit raises ``breaker_opened``, closing one
``breaker_closed`` (``manager.emit_alert``; a reopening raises nothing).

Shared state, in ``manager.state`` under ``breaker:<provider>/<model>:...``:
the circuit (``:state``, ``open:<wall-clock time it opened>`` or absent),
the consecutive-failure streak (``:streak``), the rate window
(``:requests``, ``:failures``), in-flight probes (``:probes``) and
half-open successes (``:half_ok``). Every instance sharing the backend sees
the same circuits. Per process, in memory: a view of each circuit, re-read
at most every ``syncInterval`` while closed (so a closed target costs no
StateStore call per request), and the successes seen since the last sync,
written in one batch (they reset the shared streak and feed the rate window
late by at most ``syncInterval``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import attrs

from swarmgate import (
    CompletionResponse,
    ConfigError,
    ProviderConfig,
    ProviderManager,
    RequestContext,
    StateStore,
    SwarmgateError,
    Target,
    hookimpl,
    parse_section,
)
from swarmgate.alerts import BREAKER_CLOSED, BREAKER_OPENED, Alert
from swarmgate.logs import get_logger
from swarmgate_breaker.settings import BreakerSettings

log = get_logger("swarmgate.breaker")

#: ``context.state`` key: the (provider, model) pairs this request holds a
#: half-open probe slot for.
STATE_KEY = "breaker"
#: ``set_health`` details written by the breaker start with this.
HEALTH_PREFIX = "circuit open"

CircuitState = Literal["closed", "open", "half_open"]


def clock_time(stamp: float) -> str:
    """``HH:MM:SS`` (local time) of a wall-clock timestamp."""
    return time.strftime("%H:%M:%S", time.localtime(stamp))


def _opened_at(raw: bytes | None) -> float | None:
    """When a stored circuit opened, or ``None`` (closed)."""
    if raw is None or not raw.startswith(b"open:"):
        return None
    try:
        return float(raw[5:])
    except ValueError:
        return None


@attrs.frozen
class _Keys:
    """The StateStore keys of one target, built once."""

    state: str
    streak: str
    requests: str
    failures: str
    probes: str
    half_ok: str

    @classmethod
    def of(cls, provider: str, model: str) -> _Keys:
        base = f"breaker:{provider}/{model}:"
        return cls(*(base + part for part in ("state", "streak", "requests", "failures", "probes", "half_ok")))


@attrs.define
class _View:
    """This process's view of one circuit."""

    provider: str
    keys: _Keys
    opened_at: float | None = None  # wall clock; None: closed
    sync_due: float = 0.0  # the breaker clock time of the next re-read
    pending_ok: int = 0  # successes not yet written to the rate window
    reset_streak: bool = False  # a success happened since the streak was last written
    streak: int = 0  # the shared streak as last seen
    half_ok: int = 0  # half-open successes as last seen


@attrs.define
class BreakerCounters:
    """Per-process counts of transitions and fast failures."""

    opened: int = 0
    reopened: int = 0
    closed: int = 0
    rejected: int = 0
    probes: int = 0


class BreakerService:
    """What the plugin publishes as ``manager.extensions["breaker"]``.

    Reads are synchronous and come from this process's view, which may lag
    other instances' transitions by up to ``syncInterval``.
    """

    def __init__(self, plugin: BreakerPlugin) -> None:
        self._plugin = plugin

    def state(self, target: Target) -> CircuitState:
        """``"closed"``, ``"open"`` or ``"half_open"`` for ``target``."""
        return self._plugin.circuit_state(target.provider, target.model)

    def open_until(self, target: Target) -> float | None:
        """Wall-clock time the circuit of ``target`` stops being open (turns
        half-open), or ``None`` when it is closed."""
        view = self._plugin.view(target.provider, target.model)
        if view is None or view.opened_at is None:
            return None
        return view.opened_at + self._plugin.timeout

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every circuit this process has seen, by ``provider/model``: its
        state, when it opened and until when (wall clock), the consecutive
        failures and half-open successes last seen, and unsynced successes."""
        plugin = self._plugin
        out: dict[str, dict[str, Any]] = {}
        for provider, models in plugin.views().items():
            for model, view in models.items():
                until = None if view.opened_at is None else view.opened_at + plugin.timeout
                out[f"{provider}/{model}"] = {
                    "state": plugin.circuit_state(provider, model),
                    "opened_at": view.opened_at,
                    "open_until": until,
                    "consecutive_failures": view.streak,
                    "half_open_successes": view.half_ok,
                    "pending_successes": view.pending_ok,
                }
        return out

    def counters(self) -> dict[str, int]:
        """Per-process counts: circuits opened, reopened, closed, requests
        ruled out, probes admitted."""
        return attrs.asdict(self._plugin.counters)

    async def sync(self) -> None:
        """Re-read every known circuit from the StateStore now (and write the
        batched successes)."""
        await self._plugin.sync_all()


class BreakerPlugin:
    """The circuit breaker; see the module docstring. ``clock`` returns
    wall-clock seconds (``time.time``): circuits record when they opened in
    it, so instances sharing a StateStore must have synchronised clocks."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock if clock is not None else time.time
        self.manager: ProviderManager | None = None
        self.active = False
        self.settings = BreakerSettings()
        self.counters = BreakerCounters()
        self.timeout = self.settings.timeout / 1000.0
        self._views: dict[str, dict[str, _View]] = {}
        self._marked: set[str] = set()
        self._apply(self.settings)

    def _apply(self, settings: BreakerSettings) -> None:
        self.settings = settings
        self.timeout = settings.timeout / 1000.0
        self._counted = settings.counted_kinds()
        self._threshold = settings.failure_threshold
        self._rate = settings.failure_rate_threshold
        self._minimum = settings.minimum_requests
        self._window = settings.window / 1000.0
        self._max_probes = settings.half_open_max_requests
        self._successes = settings.success_threshold
        self._sync_every = settings.sync_interval / 1000.0
        # A probe slot not given back within this is presumed lost (a crashed instance).
        self._probe_ttl = max(self.timeout, 1.0)

    # -- configuration ----------------------------------------------------------

    @hookimpl
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Read ``routing.circuitBreaker`` (or ``routing.fallback.circuitBreaker:
        true``); publish ``extensions["breaker"]`` when enabled. Raises
        ConfigError naming bad values."""
        self.manager = manager
        raw = manager.config.section("routing.circuitBreaker")
        if raw is None:
            shorthand = manager.config.section("routing.fallback.circuitBreaker")
            if shorthand is None or shorthand is False:
                manager.plugins.discard(self)  # inactive: its hooks would cost every request
                return
            if shorthand is not True:
                raise ConfigError([("routing.fallback.circuitBreaker", f"expected true or false, got {shorthand!r}")])
            raw = {}
        settings = parse_section(BreakerSettings, raw, "routing.circuitBreaker")
        if not settings.enabled:
            manager.plugins.discard(self)
            return
        self._apply(settings)
        self.active = True
        manager.extensions["breaker"] = BreakerService(self)

    @hookimpl
    async def provider_changed(
        self, manager: ProviderManager, name: str, old: ProviderConfig | None, new: ProviderConfig | None
    ) -> None:
        """A replaced provider starts healthy: forget that the breaker marked it."""
        self._marked.discard(name)

    @hookimpl
    async def plugin_shutdown(self, manager: ProviderManager) -> None:
        """Write the batched successes."""
        if self.active:
            for models in self._views.values():
                for view in models.values():
                    await self._flush(view)

    # -- views ------------------------------------------------------------------

    def views(self) -> dict[str, dict[str, _View]]:
        """This process's views, by provider and model (read-only use)."""
        return self._views

    def view(self, provider: str, model: str) -> _View | None:
        """The view of one circuit, if this process has seen it."""
        models = self._views.get(provider)
        return None if models is None else models.get(model)

    def _view(self, provider: str, model: str) -> _View:
        models = self._views.get(provider)
        if models is None:
            models = self._views[provider] = {}
        view = models.get(model)
        if view is None:
            view = models[model] = _View(provider, _Keys.of(provider, model))
        return view

    def circuit_state(self, provider: str, model: str) -> CircuitState:
        """The state of one circuit in this process's view."""
        view = self.view(provider, model)
        if view is None or view.opened_at is None:
            return "closed"
        return "open" if self._clock() < view.opened_at + self.timeout else "half_open"

    @property
    def _store(self) -> StateStore:
        assert self.manager is not None
        return self.manager.state

    async def _flush(self, view: _View) -> None:
        """Write this process's batched successes: reset the shared streak
        and add them to the rate window."""
        pending, view.pending_ok = view.pending_ok, 0
        reset, view.reset_streak = view.reset_streak, False
        store = self._store
        if reset:
            await store.delete(view.keys.streak)
            view.streak = 0
        if pending and self._rate is not None:
            await store.window_add(view.keys.requests, float(pending), self._window)

    async def _sync(self, view: _View, now: float) -> None:
        """Write the batched successes, then re-read the circuit (another
        instance may have opened or closed it)."""
        view.sync_due = now + self._sync_every
        await self._flush(view)
        was_open = view.opened_at is not None
        view.opened_at = _opened_at(await self._store.get(view.keys.state))
        if view.opened_at is None:
            self._restore_health(view.provider)
        elif not was_open and self.settings.mark_unhealthy:
            self._mark_unhealthy(view.provider, now)

    async def sync_all(self) -> None:
        """:meth:`_sync` every known circuit now."""
        now = self._clock()
        for models in list(self._views.values()):
            for view in list(models.values()):
                await self._sync(view, now)

    # -- the request path -------------------------------------------------------

    @hookimpl
    async def filter_targets(
        self, candidates: Sequence[Target], context: RequestContext
    ) -> list[tuple[Target, str]] | None:
        """Rule out open targets; admit half-open ones as probes while
        slots are free. A closed target whose view is fresh costs no
        StateStore call."""
        if not self.active:
            return None
        now = self._clock()
        ruled: list[tuple[Target, str]] | None = None
        views = self._views
        for target in candidates:
            models = views.get(target.provider)
            view = models.get(target.model) if models is not None else None
            if view is None:
                view = self._view(target.provider, target.model)
            elif view.opened_at is None and now < view.sync_due:
                continue
            reason = await self._admit(target, view, now, context)
            if reason is not None:
                self.counters.rejected += 1
                if ruled is None:
                    ruled = []
                ruled.append((target, reason))
        return ruled

    async def _admit(self, target: Target, view: _View, now: float, context: RequestContext) -> str | None:
        """``None`` to let ``target`` through (as a probe when half-open), else the reason not to."""
        if now >= view.sync_due:
            await self._sync(view, now)
        if view.opened_at is None:
            return None
        until = view.opened_at + self.timeout
        if now < until:
            return f"circuit open until {clock_time(until)}"
        store = self._store
        probes = await store.incr(view.keys.probes, 1.0, ttl=self._probe_ttl)
        if probes > self._max_probes:
            await self._release(view)
            return f"circuit half-open: {self._max_probes} probe request(s) already in flight"
        held: set[tuple[str, str]] | None = context.state.get(STATE_KEY)
        if held is None:
            held = context.state[STATE_KEY] = set()
        held.add((target.provider, target.model))
        self.counters.probes += 1
        self._restore_health(target.provider)
        return None

    async def _release(self, view: _View) -> None:
        """Give a probe slot back. A count below zero (the key expired or the
        circuit closed meanwhile) is reset."""
        store = self._store
        if await store.incr(view.keys.probes, -1.0) < 0:
            await store.delete(view.keys.probes)

    async def _release_held(self, context: RequestContext) -> None:
        """Give back every probe slot this request still holds."""
        held: set[tuple[str, str]] | None = context.state.get(STATE_KEY)
        if not held:
            return
        for provider, model in list(held):
            view = self.view(provider, model)
            if view is not None:
                await self._release(view)
        held.clear()

    @hookimpl(tryfirst=True)
    async def on_failure(self, target: Target, error: SwarmgateError, context: RequestContext) -> None:
        """Count a failed attempt if its kind is counted (``countedErrors``);
        open, or reopen a half-open circuit, as the thresholds say. Never
        decides what happens next (returns ``None``); runs first so that a
        plugin that decides cannot hide a failure from it."""
        if not self.active:
            return
        held: set[tuple[str, str]] | None = context.state.get(STATE_KEY)
        probe = False
        if held:
            key = (target.provider, target.model)
            probe = key in held
            held.discard(key)
        view = self._view(target.provider, target.model)
        if error.kind in self._counted:
            await self._failed(target, view)
        if probe:
            await self._release(view)
        if not error.failover:
            await self._release_held(context)  # the request is about to end: nobody else will be tried

    async def _failed(self, target: Target, view: _View) -> None:
        store = self._store
        keys = view.keys
        now = self._clock()
        if view.reset_streak:
            view.reset_streak = False
            await store.delete(keys.streak)
        view.streak = streak = int(await store.incr(keys.streak))
        rate_tripped = False
        if self._rate is not None:
            pending, view.pending_ok = view.pending_ok, 0
            requests = await store.window_add(keys.requests, float(pending + 1), self._window)
            failures = await store.window_add(keys.failures, 1.0, self._window)
            rate_tripped = requests >= self._minimum and failures >= self._rate * requests
        opened_at = _opened_at(await store.get(keys.state))
        if opened_at is not None:
            if now >= opened_at + self.timeout:
                self.counters.reopened += 1
                await self._open(target, view, now, "a failure while half-open", alert=False)
            else:
                view.opened_at = opened_at  # already open: opened by another attempt or instance
            return
        if streak >= self._threshold:
            await self._open(target, view, now, f"{streak} consecutive failures")
        elif rate_tripped:
            await self._open(target, view, now, f"failure rate at or above {self._rate:g}")

    async def _open(self, target: Target, view: _View, now: float, why: str, *, alert: bool = True) -> None:
        """Open the circuit of ``target`` now; raise a ``breaker_opened``
        alert unless it is a half-open circuit reopening (the operator
        already knows; its closing is announced)."""
        store = self._store
        await store.set(view.keys.state, f"open:{now!r}".encode())
        await store.delete(view.keys.half_ok)
        view.opened_at = now
        view.half_ok = 0
        view.sync_due = now + self._sync_every
        self.counters.opened += 1
        log.warning("circuit_opened", target=str(target), reason=why, until=clock_time(now + self.timeout))
        if alert:
            assert self.manager is not None
            self.manager.emit_alert(
                Alert(
                    BREAKER_OPENED,
                    f"circuit of {target} opened ({why}); open until {clock_time(now + self.timeout)}",
                    "warning",
                    target.provider,
                    target.model,
                    {"reason": why, "opened_at": now, "open_until": now + self.timeout},
                )
            )
        if self.settings.mark_unhealthy:
            self._mark_unhealthy(target.provider, now)

    @hookimpl
    async def after_response(self, response: CompletionResponse, context: RequestContext) -> None:
        """Count the answering attempt's success (the failed attempts before
        it were counted in ``on_failure``); close a half-open circuit after
        ``successThreshold`` successes; give back unused probe slots."""
        if not self.active or response.cached:
            return
        provider, model = response.provider, response.model
        models = self._views.get(provider)
        view = models.get(model) if models is not None else None
        if view is None:
            view = self._view(provider, model)
        held: set[tuple[str, str]] | None = context.state.get(STATE_KEY)
        probe = False
        if held:
            key = (provider, model)
            probe = key in held
            held.discard(key)
        if view.opened_at is None:
            view.pending_ok += 1
            view.reset_streak = True
        elif probe or self._clock() >= view.opened_at + self.timeout:
            await self._half_open_success(Target(provider, model), view)
        else:
            view.pending_ok += 1  # an answer that started before the circuit opened
        if probe:
            await self._release(view)
        if held:
            await self._release_held(context)

    async def _half_open_success(self, target: Target, view: _View) -> None:
        view.half_ok = successes = int(await self._store.incr(view.keys.half_ok))
        if successes >= self._successes:
            await self._close(target, view)

    async def _close(self, target: Target, view: _View) -> None:
        keys = view.keys
        await self._store.delete(keys.state, keys.half_ok, keys.streak, keys.requests, keys.failures, keys.probes)
        view.opened_at = None
        view.half_ok = view.streak = view.pending_ok = 0
        view.reset_streak = False
        self.counters.closed += 1
        log.info("circuit_closed", target=str(target))
        assert self.manager is not None
        self.manager.emit_alert(
            Alert(
                BREAKER_CLOSED,
                f"circuit of {target} closed after {self._successes} successful probe(s)",
                "info",
                target.provider,
                target.model,
                {"successes": self._successes},
            )
        )
        self._restore_health(target.provider)

    # -- provider health ---------------------------------------------------------

    def _mark_unhealthy(self, provider: str, now: float) -> None:
        """Mark ``provider`` unhealthy when every model of it (its configured
        models, else the ones seen) has an open circuit."""
        manager = self.manager
        assert manager is not None
        handle = manager.handle(provider)
        views = self._views.get(provider, {})
        if handle is None:
            return
        models = list(handle.config.models) or list(views)
        until = 0.0
        for model in models:
            view = views.get(model)
            if view is None or view.opened_at is None or now >= view.opened_at + self.timeout:
                return
            until = max(until, view.opened_at + self.timeout)
        manager.set_health(provider, False, f"{HEALTH_PREFIX} for every model (until {clock_time(until)})")
        self._marked.add(provider)
        log.warning("provider_marked_unhealthy", provider=provider, by="breaker")

    def _restore_health(self, provider: str) -> None:
        """Undo the breaker's own unhealthy mark (never another plugin's)."""
        if provider not in self._marked:
            return
        self._marked.discard(provider)
        manager = self.manager
        assert manager is not None
        handle = manager.handle(provider)
        if handle is not None and not handle.healthy and handle.health_detail.startswith(HEALTH_PREFIX):
            manager.set_health(provider, True, "")
