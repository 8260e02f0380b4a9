"""Deadlines on the request path without a timer per await.

The kernel bounds every driver call: a whole non-streamed answer by the
attempt's timeout, a stream's first token by the first-token timeout and
each later event by the idle timeout -- all capped by the request's total
deadline. An ``anyio.CancelScope(deadline=...)`` around every such await
costs about 5 µs on asyncio (the scope's bookkeeping plus a ``TimerHandle``
armed and cancelled), paid once per streamed event.

A :class:`Watchdog` is made once per attempt and guards any number of
awaits, one at a time, each with its own deadline::

    watchdog = new_watchdog()
    try:
        with watchdog.until(watchdog.now() + 5.0):
            event = await upstream.__anext__()    # TimeoutError if 5 s pass first
        ...
    finally:
        watchdog.close()

On asyncio a guarded await costs a few attribute stores: every watchdog on
a loop shares one ``loop.call_at`` timer, set for the earliest deadline and
re-armed lazily, so no timer is armed or cancelled per attempt either.
Moving a deadline later (the next event's idle bound) is a float store;
when the timer fires it checks each watchdog's real deadline and either
leaves it for later or cancels its task (``Task.cancel``), and the guard
turns that cancellation into :class:`TimeoutError` (``Task.uncancel``, as
``asyncio.timeout`` does). Time spent outside a guarded await (a stream's
consumer holding an event) is never cut short: the timer only cancels a task
that is inside a guard whose deadline has passed.

On trio (no cheap timer callbacks; cancellation goes through scopes) each
guarded await runs in a native ``trio.CancelScope`` with the deadline,
cheaper than anyio's wrapper around the same scope.

Cancellation from elsewhere wins: a task already being cancelled (by an
enclosing anyio scope, a lost hedge race, the caller) is not cancelled again
by the watchdog, and a guard that sees a cancellation besides its own lets
it propagate instead of turning it into a timeout. The backend is resolved
once per watchdog, not per await.
"""

from __future__ import annotations

import math
import time
from asyncio import CancelledError, Task, current_task
from asyncio.base_events import BaseEventLoop
from asyncio.events import AbstractEventLoop, _get_running_loop
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Protocol
from weakref import WeakKeyDictionary, ref

_anyio_task_states: Any
try:  # anyio's per-task cancel-scope stack: read to honour its shields (see AsyncioWatchdog)
    from anyio._backends._asyncio import _task_states as _anyio_task_states
except ImportError:  # pragma: no cover - an anyio without it: no anyio scopes to honour
    _anyio_task_states = None

_current_task: Callable[[AbstractEventLoop], Task[Any] | None]
try:  # Python 3.11's asyncio.current_task() is Python code reading this C dict: read it directly
    from _asyncio import _current_tasks  # type: ignore[attr-defined]

    _current_task = _current_tasks.get
except ImportError:  # pragma: no cover - other versions and interpreters
    _current_task = current_task

__all__ = ["AsyncioWatchdog", "TrioWatchdog", "Watchdog", "current_time", "new_watchdog"]

_CANCEL_MESSAGE = "swarmgate: a provider call passed its deadline"
#: Seconds between checks while a task past its deadline sits in a shielded anyio scope.
SHIELD_POLL = 0.005


class Watchdog(Protocol):
    """Deadlines for a sequence of awaits in one attempt (see the module docstring).

    ``until(deadline)`` returns the watchdog itself as a context manager that
    guards one await: if the clock (:meth:`now`, the anyio clock) reaches
    ``deadline`` while inside, the awaited call is cancelled and the ``with``
    block raises :class:`TimeoutError`. Guards do not nest; one at a time.
    ``close()`` releases the timer (idempotent; the watchdog stays usable).
    """

    def now(self) -> float:
        """The event loop's clock, the one ``anyio.current_time()`` reads."""
        ...

    def until(self, deadline: float) -> Watchdog:
        """Set the deadline (absolute, :meth:`now` clock) of the next guarded await."""
        ...

    def __enter__(self) -> Watchdog: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool: ...

    def close(self) -> None:
        """Release the timer, if any."""
        ...


class _LoopTimer:
    """The one ``call_at`` timer that every asyncio watchdog on a loop shares.

    A watchdog in a guard is registered here; the timer is set for the
    earliest deadline known when it was set and, when it fires, asks each
    registered watchdog whether its real deadline passed (:meth:`AsyncioWatchdog._check`),
    then sets itself for the earliest one still pending. Registering a
    watchdog is a set insertion; a timer is rescheduled only when a deadline
    comes before the pending one.
    """

    __slots__ = ("__weakref__", "_loop", "_round", "watchdogs", "when")

    def __init__(self, loop: AbstractEventLoop) -> None:
        # Nothing here refers to the loop strongly (not even a TimerHandle, which
        # does): the timers are kept in a WeakKeyDictionary by loop.
        self._loop = ref(loop)
        self.watchdogs: set[AsyncioWatchdog] = set()
        self.when = math.inf  # when the pending timer fires (inf: none pending)
        self._round = 0  # the pending timer's number; an earlier one firing late is stale

    def schedule(self, when: float) -> None:
        """Fire at ``when`` (earlier than the pending time) instead; a timer
        set before is left to fire and finds itself stale."""
        loop = self._loop()
        if loop is not None:
            self.when = when
            self._round += 1
            loop.call_at(when, self._fire, self._round)

    def _fire(self, round_: int) -> None:
        if round_ != self._round:
            return
        self.when = math.inf
        loop = self._loop()
        if loop is None:
            return
        now = loop.time()
        soonest = math.inf
        for watchdog in list(self.watchdogs):
            later = watchdog._check(now)
            if later == math.inf:
                self.watchdogs.discard(watchdog)
            elif later < soonest:
                soonest = later
        if soonest < math.inf:
            self.schedule(soonest)


_timers: WeakKeyDictionary[AbstractEventLoop, _LoopTimer] = WeakKeyDictionary()
_last_timer: _LoopTimer | None = None  # the timer of the loop used last (one loop per thread, mostly)


def _timer_of(loop: AbstractEventLoop) -> _LoopTimer:
    global _last_timer
    timer = _last_timer
    if timer is not None and timer._loop() is loop:
        return timer
    timer = _timers.get(loop)
    if timer is None:
        timer = _timers[loop] = _LoopTimer(loop)
    _last_timer = timer
    return timer


class AsyncioWatchdog:
    """The asyncio watchdog: registered with its loop's shared timer while in a guard.

    ``Task.cancel`` knows nothing of anyio's shields, so before cancelling,
    the timer looks at the task's anyio cancel scopes: if one entered inside
    the guard is shielded (a driver closing a connection, a rejected key's
    instance released), the cancellation waits until it is left (checked
    every :data:`SHIELD_POLL` seconds). A shielded scope around the whole
    guard does not stop it, as it would not stop a deadline scope inside it.
    """

    __slots__ = (
        "__weakref__",
        "_armed",
        "_baseline",
        "_deadline",
        "_entry_scope",
        "_fired",
        "_registered",
        "_state",
        "_task",
        "_timer",
        "now",
    )

    def __init__(self, loop: AbstractEventLoop) -> None:
        self._timer = _timer_of(loop)
        #: The loop's clock (``time.monotonic`` itself for the stock loops).
        self.now: Callable[[], float] = time.monotonic if type(loop).time is BaseEventLoop.time else loop.time
        self._deadline = math.inf
        self._task: Task[Any] | None = None
        self._state: Any = None  # the task's anyio TaskState, once it has one
        self._entry_scope: Any = None  # its innermost anyio cancel scope when the guard was entered
        self._armed = False  # inside a guarded await
        self._fired = False  # the timer cancelled the task in the current guard
        self._baseline = 0  # the task's cancelling() count when the guard was entered
        self._registered = False  # in the shared timer's set

    def until(self, deadline: float) -> AsyncioWatchdog:
        self._deadline = deadline
        return self

    def __enter__(self) -> AsyncioWatchdog:
        timer = self._timer
        loop = timer._loop()
        task = None if loop is None else _current_task(loop)
        if task is None:
            raise RuntimeError("a Watchdog guards an await inside a task")
        if task is not self._task:
            self._task = task
            self._state = None
        state = self._state
        if state is None and _anyio_task_states is not None:
            state = self._state = _anyio_task_states.get(task)
        self._entry_scope = None if state is None else state.cancel_scope
        self._baseline = task.cancelling()
        self._fired = False
        self._armed = True
        if not self._registered:
            self._registered = True
            timer.watchdogs.add(self)
        deadline = self._deadline
        if deadline < timer.when:  # no timer pending, or the pending one fires too late
            timer.schedule(deadline)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        self._armed = False
        if not self._fired:
            return False
        self._fired = False
        task = self._task
        assert task is not None
        # Take back our own cancellation request; if another one is pending as
        # well (the caller, an enclosing scope), that one propagates.
        if task.uncancel() <= self._baseline and exc_type is CancelledError:
            raise TimeoutError from None
        return False

    def close(self) -> None:
        if self._registered:
            self._registered = False
            self._timer.watchdogs.discard(self)
        self._task = None
        self._state = None
        self._entry_scope = None

    def _check(self, now: float) -> float:
        """Called by the shared timer at ``now``: cancel the task if its guard's
        deadline passed; return when to check again (``inf``: unregister)."""
        if not self._armed:
            self._registered = False
            return math.inf  # outside a guard: the next guard registers again
        deadline = self._deadline
        if now < deadline:
            return deadline  # the deadline moved on since the timer was set
        task = self._task
        assert task is not None
        if task.done() or task.cancelling() > self._baseline:
            self._registered = False
            return math.inf  # finished, or already being cancelled by someone else: that cancellation wins
        if self._shielded(task):
            return now + SHIELD_POLL
        self._fired = True
        self._registered = False
        task.cancel(_CANCEL_MESSAGE)
        return math.inf

    def _shielded(self, task: Task[Any]) -> bool:
        """Whether ``task`` is inside a shielded anyio scope entered within the guard."""
        if _anyio_task_states is None:
            return False
        state = _anyio_task_states.get(task)
        if state is None:
            return False
        entry = self._entry_scope
        try:  # anyio's private task state: a later anyio that lays it out anew reads as "not shielded"
            scope = state.cancel_scope
            while scope is not None and scope is not entry:
                if scope.shield:
                    return True
                scope = scope._parent_scope
        except AttributeError:
            return False
        return False


class TrioWatchdog:
    """The trio watchdog: a native ``trio.CancelScope`` per guarded await."""

    __slots__ = ("_deadline", "_scope", "_trio")

    def __init__(self) -> None:
        import trio

        self._trio = trio
        self._deadline = math.inf
        self._scope: Any = None

    def now(self) -> float:
        now: float = self._trio.current_time()
        return now

    def until(self, deadline: float) -> TrioWatchdog:
        self._deadline = deadline
        return self

    def __enter__(self) -> TrioWatchdog:
        scope = self._scope = self._trio.CancelScope(deadline=self._deadline)
        scope.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        scope = self._scope
        self._scope = None
        swallowed: bool = scope.__exit__(exc_type, exc, tb)
        if scope.cancelled_caught:
            raise TimeoutError from None
        return swallowed

    def close(self) -> None:
        self._scope = None


def current_time() -> float:
    """``anyio.current_time()`` without its per-call backend lookup: the
    running asyncio loop's clock, else trio's."""
    loop = _get_running_loop()
    if loop is not None:
        return loop.time()
    import trio  # imported already: trio is running

    now: float = trio.current_time()
    return now


def new_watchdog() -> Watchdog:
    """A watchdog for the running event loop: asyncio's when one is running, else trio's."""
    loop = _get_running_loop()
    if loop is not None:
        return AsyncioWatchdog(loop)
    return TrioWatchdog()
