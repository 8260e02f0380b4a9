"""Recent failovers, errors and alerts, for the page's event list.

Failovers and errors come from the usage log (``manager.extensions["usage"]``,
``swarmgate-usage``): at every sample the dashboard reads the newest
records of requests that failed or had a failed attempt (at most
:data:`SCAN` of them, started since a little before the newest one it has
seen; the log selects them) and keeps the notable ones:

* a **failover**: an answered request with a failed attempt before the
  answer (a refused attempt -- budget, rate limit -- is routing, not a
  failure; a cancelled one is a lost hedge);
* an **error**: a request that ended without an answer (cancellations by
  the caller, 499, are left out: they are the caller's doing).

Alerts come from the kernel's alert hub (``manager.alerts.recent``: the last
100 alerts, whoever raised them: provider down and recovered, breaker
opened, budget thresholds, latency SLA, error-rate spikes).

Each event is JSON-ready: ``id``, ``at`` (unix seconds: when the request
ended, or when the alert was raised), ``kind`` (``failover``, ``error``,
``alert``), ``severity`` (``info``, ``warning``, ``critical``),
``provider``, ``model``, ``message`` and, for requests, ``path``: the
attempts in order, each ``{provider, model, ok, errorKind, status, refused}``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol

#: Most records read per sample.
SCAN: Final = 1000
#: Seconds before the newest record seen from which the next read starts
#: (a long request is logged when it ends, but sorted by when it started).
LAG: Final = 120.0
#: Error kinds of attempts that are not a provider's failure.
NOT_FAILURES: Final = frozenset({"cancelled"})


class AttemptLike(Protocol):
    """The fields of ``swarmgate_usage.AttemptRecord`` read here."""

    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def error_kind(self) -> str | None: ...
    @property
    def status(self) -> int: ...
    @property
    def refused(self) -> bool: ...


class RecordLike(Protocol):
    """The fields of ``swarmgate_usage.UsageRecord`` read here."""

    @property
    def id(self) -> str: ...
    @property
    def ts(self) -> float: ...
    @property
    def requested_model(self) -> str: ...
    @property
    def provider(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def ok(self) -> bool: ...
    @property
    def status(self) -> int: ...
    @property
    def error_kind(self) -> str | None: ...
    @property
    def latency_ms(self) -> float: ...
    @property
    def attempts(self) -> Sequence[AttemptLike]: ...


class RecordReader(Protocol):
    """The part of ``swarmgate_usage.UsageLog`` read here."""

    async def records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        latest: bool = False,
        failures_only: bool = False,
    ) -> Sequence[RecordLike]:
        """The newest ``limit`` records started since ``since`` (``latest=True``),
        oldest first; with ``failures_only``, only requests that failed or had
        a failed attempt (refusals aside)."""
        ...


def _step(attempt: AttemptLike) -> dict[str, Any]:
    return {
        "provider": attempt.provider,
        "model": attempt.model,
        "ok": attempt.ok,
        "errorKind": attempt.error_kind,
        "status": attempt.status,
        "refused": attempt.refused,
    }


def _describe(attempt: AttemptLike) -> str:
    if attempt.ok:
        return f"{attempt.provider} answered"
    what = "refused" if attempt.refused else (attempt.error_kind or "failed")
    return f"{attempt.provider} ✗ {what}"


def record_event(record: RecordLike) -> dict[str, Any] | None:
    """The event a usage record stands for (see the module docstring), or
    ``None`` when it is not notable."""
    attempts = list(record.attempts)
    if record.ok:
        failed = [a for a in attempts if not a.ok and not a.refused and a.error_kind not in NOT_FAILURES]
        if not failed or record.status != 200:
            return None
        kind, severity = "failover", "warning"
        message = f"{record.requested_model}: " + " → ".join(
            _describe(a) for a in attempts if a.ok or a.error_kind not in NOT_FAILURES
        )
    else:
        if record.error_kind in NOT_FAILURES or record.status == 499:
            return None
        kind, severity = "error", "critical" if record.status >= 500 else "warning"
        tried = " → ".join(_describe(a) for a in attempts) or "no provider tried"
        message = f"{record.requested_model}: {record.status} {record.error_kind or 'error'} ({tried})"
    return {
        "id": record.id,
        "at": round(record.ts + record.latency_ms / 1000.0, 3),
        "kind": kind,
        "severity": severity,
        "provider": record.provider,
        "model": record.model,
        "message": message,
        "status": record.status,
        "errorKind": record.error_kind,
        "path": [_step(a) for a in attempts],
    }


def alert_event(alert: Any, index: int) -> dict[str, Any]:
    """An alert of the hub as an event (``index`` tells equal alerts apart)."""
    return {
        "id": f"alert:{alert.at:.6f}:{index}",
        "at": round(float(alert.at), 3),
        "kind": "alert",
        "severity": alert.severity,
        "provider": alert.provider,
        "model": alert.model,
        "message": f"{alert.type}: {alert.message}",
        "type": alert.type,
        "status": None,
        "errorKind": None,
        "path": [],
    }


class EventLog:
    """The notable requests seen in the usage log (the newest ``size``)."""

    def __init__(self, size: int, span: float) -> None:
        self.size = size
        self.span = span
        self._events: dict[str, dict[str, Any]] = {}
        self._newest: float | None = None
        self._floor = -math.inf  # the oldest event kept once the log is full

    def add(self, records: Iterable[RecordLike]) -> int:
        """Keep the notable ``records`` not seen yet; returns how many were new."""
        added = 0
        for record in records:
            if self._newest is None or record.ts > self._newest:
                self._newest = record.ts
            if record.id in self._events:
                continue
            event = record_event(record)
            if event is None or (len(self._events) >= self.size and event["at"] <= self._floor):
                continue  # not notable, or older than everything kept (dropped before, or would be)
            self._events[record.id] = event
            added += 1
        if len(self._events) > self.size:
            keep = sorted(self._events.values(), key=lambda e: e["at"])[-self.size :]
            self._events = {e["id"]: e for e in keep}
            self._floor = keep[0]["at"]
        return added

    async def poll(self, reader: RecordReader, now: float | None = None) -> int:
        """Read the newest records (see the module docstring) and keep the notable ones."""
        now = time.time() if now is None else now
        since = now - self.span
        if self._newest is not None:
            since = max(since, self._newest - LAG)
        # Only failed requests and failovers can be notable: the log selects
        # them (under load, decoding every record read cost ~2% of the CPU).
        return self.add(await reader.records(since=since, limit=SCAN, latest=True, failures_only=True))

    def recent(self, alerts: Iterable[Any] = (), limit: int | None = None) -> list[dict[str, Any]]:
        """The events, alerts merged in, newest first (at most ``limit``)."""
        merged = list(self._events.values())
        merged.extend(alert_event(alert, i) for i, alert in enumerate(alerts))
        merged.sort(key=lambda e: e["at"], reverse=True)
        return merged if limit is None else merged[:limit]
