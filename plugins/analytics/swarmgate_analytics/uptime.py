"""Uptime from provider health over time, when no health monitor keeps it.

The kernel emits ``provider_down`` / ``provider_recovered`` alerts on every
health transition of a provider, whoever marked it (a health monitor, a
circuit breaker, ``manager.set_health``). The plugin subscribes to them and
notes each transition here, at the time it is delivered (normally within
milliseconds); at query time the handles' current health is reconciled too,
so a dropped alert costs at most the time until the next query.

Per provider a bounded list of transitions is kept (health changes are
rare; the oldest are dropped past :data:`MAX_TRANSITIONS`), from which the
fraction of any window the provider was healthy is computed, clipped to the
time it has been observed.
"""

from __future__ import annotations

from collections import deque
from typing import Final

#: Transitions kept per provider.
MAX_TRANSITIONS: Final = 4096


class UptimeTracker:
    """Health transitions per provider; times are the plugin clock's seconds."""

    def __init__(self) -> None:
        self._history: dict[str, deque[tuple[float, bool]]] = {}

    def known(self, provider: str) -> bool:
        """Whether ``provider`` is being tracked."""
        return provider in self._history

    def start(self, provider: str, healthy: bool, at: float) -> None:
        """Start tracking ``provider`` at ``at`` in state ``healthy`` (no-op if tracked)."""
        if provider not in self._history:
            self._history[provider] = deque([(at, healthy)], maxlen=MAX_TRANSITIONS)

    def note(self, provider: str, healthy: bool, at: float) -> None:
        """Record that ``provider`` is ``healthy`` (or not) from ``at`` on;
        ignored when that is already its state."""
        history = self._history.get(provider)
        if history is None:
            self.start(provider, healthy, at)
            return
        last_at, last = history[-1]
        if last == healthy:
            return
        history.append((max(at, last_at), healthy))

    def uptime(self, provider: str, now: float, span: float | None) -> float | None:
        """The fraction of the last ``span`` seconds (``None``: since tracking
        started) ``provider`` was healthy, over the part of it observed;
        ``None`` for an unknown provider."""
        history = self._history.get(provider)
        if not history:
            return None
        observed = history[0][0]
        start = observed if span is None else max(observed, now - span)
        if now <= start:
            return 1.0 if history[-1][1] else 0.0
        up = 0.0
        entries = list(history)
        for i, (at, healthy) in enumerate(entries):
            end = entries[i + 1][0] if i + 1 < len(entries) else now
            begin = max(at, start)
            if healthy and end > begin:
                up += min(end, now) - begin
        return up / (now - start)
