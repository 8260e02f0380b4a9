"""Alerts: what the gateway tells its operators, and how it is delivered.

Anything may raise an alert (the kernel on provider health transitions, the
breaker, budgets, the analytics watchers) with
:meth:`~swarmgate.manager.ProviderManager.emit_alert`. Emitting never blocks
and never fails the caller: the alert is queued (bounded; when full the
oldest undelivered alert is dropped and counted) and a background task of
the manager delivers it, in order, to every ``on_alert`` callback and to the
``deliver_alert`` hook (the webhook and email plugins).
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import sniffio

from swarmgate.logs import get_logger

if TYPE_CHECKING:
    from swarmgate.manager import ProviderManager

log = get_logger("swarmgate.alerts")

#: The alert types the first-party plugins raise (others may add their own).
PROVIDER_DOWN = "provider_down"
PROVIDER_RECOVERED = "provider_recovered"
BREAKER_OPENED = "breaker_opened"
BREAKER_CLOSED = "breaker_closed"
BUDGET_THRESHOLD = "budget_threshold"
LATENCY_SLA = "latency_sla_breached"
ERROR_RATE_SPIKE = "error_rate_spike"

#: How many undelivered alerts are kept before the oldest is dropped.
QUEUE_SIZE = 1000


@attrs.frozen
class Alert:
    """One alert. ``type`` is one of the constants above (or a plugin's own),
    ``severity`` ``info``/``warning``/``critical``, ``message`` a sentence
    for humans, ``data`` the figures behind it (JSON-ready), ``at`` the wall
    clock (seconds since the epoch)."""

    type: str
    message: str
    severity: str = "warning"
    provider: str | None = None
    model: str | None = None
    data: Mapping[str, Any] = attrs.field(factory=dict)
    at: float = attrs.field(factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "type": self.type,
            "message": self.message,
            "severity": self.severity,
            "provider": self.provider,
            "model": self.model,
            "data": dict(self.data),
            "at": self.at,
        }


AlertCallback = Callable[[Alert], Awaitable[None] | None]


def subscribe(callbacks: list[AlertCallback], callback: AlertCallback) -> Callable[[], None]:
    """Append ``callback`` to ``callbacks``; returns the function that removes it."""
    callbacks.append(callback)

    def unsubscribe() -> None:
        if callback in callbacks:
            callbacks.remove(callback)

    return unsubscribe


class AlertHub:
    """The queue between those who raise alerts and those who deliver them."""

    def __init__(self, manager: ProviderManager, callbacks: list[AlertCallback] | None = None) -> None:
        self._manager = manager
        self._callbacks = callbacks if callbacks is not None else []
        self._queue: deque[Alert] = deque()
        self._wakeup = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._scope = anyio.CancelScope()
        self._task: object = None  # keeps the asyncio task referenced
        self._done: anyio.Event | None = None
        self.dropped = 0
        self.delivered = 0
        self.recent: deque[Alert] = deque(maxlen=100)

    def subscribe(self, callback: AlertCallback) -> Callable[[], None]:
        """Call ``callback`` (sync or async) for every alert; returns the unsubscribe function."""
        return subscribe(self._callbacks, callback)

    def emit(self, alert: Alert) -> None:
        """Queue ``alert`` for delivery (never blocks, never raises)."""
        if len(self._queue) >= QUEUE_SIZE:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(alert)
        self.recent.append(alert)
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        self._wakeup.set()
        log.warning("alert", type=alert.type, provider=alert.provider, message=alert.message)

    async def drain(self) -> None:
        """Wait until every queued alert has been delivered (the one being
        delivered included: it has left the queue but not the hooks)."""
        while self._queue or not self._idle.is_set():
            await self._idle.wait()

    async def run(self) -> None:
        """Deliver queued alerts until :meth:`stop`."""
        try:
            with self._scope:
                while True:
                    await self._wakeup.wait()
                    self._wakeup = anyio.Event()
                    await self.deliver_pending()
        finally:
            if self._done is not None:
                self._done.set()

    def start(self) -> None:
        """Run :meth:`run` as a detached background task of the event loop.

        Hand-written because anyio has no detached spawn: a task group would
        have to be entered by ``initialize()`` and left by ``aclose()`` in
        strict LIFO order across managers, which library users cannot be
        asked to guarantee. asyncio gets a plain task, trio a system task."""
        self._done = anyio.Event()
        if sniffio.current_async_library() == "trio":
            import trio

            trio.lowlevel.spawn_system_task(self.run, name="swarmgate:alerts")
        else:
            import asyncio

            self._task = asyncio.get_running_loop().create_task(self.run(), name="swarmgate:alerts")

    async def aclose(self) -> None:
        """Stop the background task and wait until it has ended (idempotent)."""
        self._scope.cancel()
        if self._done is not None:
            await self._done.wait()

    async def deliver_pending(self) -> None:
        """Deliver everything queued now (callbacks first, then the hook)."""
        while self._queue:
            alert = self._queue.popleft()
            for callback in list(self._callbacks):
                try:
                    result = callback(alert)
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:  # noqa: BLE001 - one bad subscriber must not stop the others
                    log.error("alert_callback_failed", error=f"{type(exc).__name__}: {exc}")
            await self._manager.plugins.deliver_alert(alert, self._manager)
            self.delivered += 1
        self._idle.set()
