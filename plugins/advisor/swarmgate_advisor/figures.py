"""Figures computed from usage records: per target, per traffic group, in total.

A *target* is a provider and one of its models. A *traffic group* is the
traffic that asked for the same thing: the route name when the request named
a route, else the requested model as written (``auto``, ``gpt-4o``,
``openai/gpt-4o``). Figures come from the attempts of each record:

* an attempt *counts* towards a target's reliability unless it was refused
  locally (``refused``: the upstream was never called), cancelled by the
  caller (``cancelled``) or failed for a reason that is the request's own
  (invalid request, context length, content filter, budget): those would
  have failed anywhere;
* a *fault* is a counted failure (timeout, rate limit, overload, server or
  connection error, authentication, permission, not found);
* latencies and times to first token are those of successful attempts.

Percentiles use the nearest-rank method on the sorted samples (the value at
rank ``ceil(q * n)``), so a small hand-built log gives figures one can
check by hand.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

import attrs

from swarmgate import Target

if TYPE_CHECKING:
    from swarmgate_usage import AttemptRecord, UsageRecord

#: Failure kinds that are the provider's fault (they count against its reliability).
FAULT_KINDS: Final = frozenset(
    {
        "timeout",
        "rate_limited",
        "overloaded",
        "server_error",
        "connection_error",
        "authentication",
        "permission",
        "not_found",
    }
)
#: Faults a circuit breaker counts by default (transient trouble: down, slow, shedding load).
TRANSIENT_KINDS: Final = frozenset({"timeout", "rate_limited", "overloaded", "server_error", "connection_error"})
CANCELLED: Final = "cancelled"


def quantile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of ``values`` (sorted ascending), or
    ``None`` when empty: the value at rank ``ceil(q * n)`` (1-based)."""
    n = len(values)
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n - 1e-9))
    return values[min(rank, n) - 1]


def mean(values: Sequence[float]) -> float | None:
    """The arithmetic mean, or ``None`` when empty."""
    return sum(values) / len(values) if values else None


@attrs.define
class TargetFigures:
    """What a target did, from its attempts."""

    target: Target
    #: Attempts that count (not refused, not cancelled, not the request's own fault).
    attempts: int = 0
    ok: int = 0
    faults: int = 0
    transient_faults: int = 0
    refused: int = 0
    cancelled: int = 0
    request_errors: int = 0
    by_kind: Counter[str] = attrs.field(factory=Counter)
    latencies: list[float] = attrs.field(factory=list)
    ttfts: list[float] = attrs.field(factory=list)
    fail_latency: float = 0.0
    fail_cost: float = 0.0
    cost: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    streams: int = 0
    #: ``(time, ok, kind)`` of each counted attempt in time order (for the breaker simulation).
    events: list[tuple[float, bool, str | None]] = attrs.field(factory=list)

    def add(self, attempt: AttemptRecord, at: float, stream: bool) -> None:
        """Count one attempt that started at ``at`` (unix seconds)."""
        if attempt.refused:
            self.refused += 1
            return
        kind = attempt.error_kind
        if not attempt.ok and kind == CANCELLED:
            self.cancelled += 1
            return
        if not attempt.ok and kind not in FAULT_KINDS:
            self.request_errors += 1
            if kind:
                self.by_kind[kind] += 1
            return
        self.attempts += 1
        if stream:
            self.streams += 1
        self.events.append((at, attempt.ok, kind))
        if attempt.ok:
            self.ok += 1
            self.latencies.append(attempt.latency_ms)
            if attempt.ttft_ms is not None:
                self.ttfts.append(attempt.ttft_ms)
            self.cost += attempt.cost
            self.input_tokens += attempt.input_tokens
            self.output_tokens += attempt.output_tokens
        else:
            assert kind is not None
            self.faults += 1
            if kind in TRANSIENT_KINDS:
                self.transient_faults += 1
            self.by_kind[kind] += 1
            self.fail_latency += attempt.latency_ms
            self.fail_cost += attempt.cost

    def finish(self) -> None:
        """Sort the samples (call once, after the last :meth:`add`)."""
        self.latencies.sort()
        self.ttfts.sort()
        self.events.sort(key=lambda e: e[0])

    @property
    def success_rate(self) -> float | None:
        """Successes over counted attempts, or ``None`` without any."""
        return self.ok / self.attempts if self.attempts else None

    @property
    def fault_rate(self) -> float | None:
        """Transient faults over counted attempts, or ``None`` without any."""
        return self.transient_faults / self.attempts if self.attempts else None

    def latency(self, q: float) -> float | None:
        """The ``q`` quantile of successful attempts' latency (ms)."""
        return quantile(self.latencies, q)

    def ttft(self, q: float) -> float | None:
        """The ``q`` quantile of successful attempts' time to first token (ms)."""
        return quantile(self.ttfts, q)

    @property
    def mean_latency(self) -> float | None:
        """Mean latency of successful attempts (ms)."""
        return mean(self.latencies)

    @property
    def mean_fail_latency(self) -> float:
        """Mean latency of failed attempts (ms; 0 without any)."""
        return self.fail_latency / self.faults if self.faults else 0.0

    @property
    def mean_fail_cost(self) -> float:
        """Mean cost of failed attempts (partial streams; 0 without any)."""
        return self.fail_cost / self.faults if self.faults else 0.0

    def observed_price(self, input_tokens: float, output_tokens: float) -> float | None:
        """What a call with these token counts cost here, at the observed
        mean cost per token of successful attempts (``None`` without tokens)."""
        tokens = self.input_tokens + self.output_tokens
        if tokens <= 0:
            return None
        return self.cost / tokens * (input_tokens + output_tokens)


@attrs.define
class GroupFigures:
    """One traffic group: the requests that asked for the same model or route."""

    key: str
    route: bool = False
    requests: int = 0
    ok: int = 0
    cache_hits: int = 0
    cost: float = 0.0
    #: Latency of answered requests (ms), sorted by :meth:`finish`.
    latencies: list[float] = attrs.field(factory=list)
    answered: Counter[Target] = attrs.field(factory=Counter)
    targets: dict[Target, TargetFigures] = attrs.field(factory=dict)
    attempts: int = 0
    failovers: int = 0
    extra_attempt_cost: float = 0.0
    extra_attempt_latency: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    streams: int = 0

    def target(self, target: Target) -> TargetFigures:
        figures = self.targets.get(target)
        if figures is None:
            figures = self.targets[target] = TargetFigures(target)
        return figures

    @property
    def mean_tokens(self) -> tuple[float, float]:
        """Mean input and output tokens of the answered requests (0, 0 without any)."""
        if not self.ok:
            return 0.0, 0.0
        return self.input_tokens / self.ok, self.output_tokens / self.ok


@attrs.define
class Figures:
    """Everything computed from one window of the usage log."""

    since: float
    until: float
    records: int = 0
    requests: int = 0
    ok: int = 0
    cache_hits: int = 0
    cost: float = 0.0
    cost_saved: float = 0.0
    first_ts: float | None = None
    last_ts: float | None = None
    targets: dict[Target, TargetFigures] = attrs.field(factory=dict)
    groups: dict[str, GroupFigures] = attrs.field(factory=dict)

    def target(self, target: Target) -> TargetFigures:
        figures = self.targets.get(target)
        if figures is None:
            figures = self.targets[target] = TargetFigures(target)
        return figures

    @property
    def span_seconds(self) -> float:
        """Seconds between the first and the last request of the window (0 without any)."""
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return max(0.0, self.last_ts - self.first_ts)

    def per_day(self, amount: float, floor_seconds: float = 3600.0) -> float:
        """``amount`` observed over the window, as a daily rate: divided by
        the observed span (at least ``floor_seconds``, so a burst of a few
        seconds is not blown up into a huge daily figure) and scaled to 24 h."""
        return amount * 86_400.0 / max(self.span_seconds, floor_seconds)

    def providers(self) -> dict[str, list[TargetFigures]]:
        """The targets' figures grouped by provider."""
        out: dict[str, list[TargetFigures]] = {}
        for target, figures in self.targets.items():
            out.setdefault(target.provider, []).append(figures)
        return out


def group_key(record: UsageRecord) -> str:
    """The traffic group of a record: its route, else the requested model."""
    return record.route or record.requested_model


def compute(records: Iterable[UsageRecord], since: float, until: float) -> Figures:
    """The figures of the records whose ``ts`` lies in ``[since, until]``.

    Cache hits count as requests (and in ``cache_hits``) but not towards
    any target or latency figure. An attempt's start time is the record's
    ``ts`` plus the latency of the attempts before it.
    """
    figures = Figures(since=since, until=until)
    for record in records:
        if not since <= record.ts <= until:
            continue
        figures.records += 1
        figures.requests += 1
        figures.first_ts = record.ts if figures.first_ts is None else min(figures.first_ts, record.ts)
        figures.last_ts = record.ts if figures.last_ts is None else max(figures.last_ts, record.ts)
        figures.cost += record.cost
        figures.cost_saved += record.cost_saved
        key = group_key(record)
        group = figures.groups.get(key)
        if group is None:
            group = figures.groups[key] = GroupFigures(key, route=record.route is not None)
        group.requests += 1
        group.cost += record.cost
        if record.stream:
            group.streams += 1
        if record.cache_hit:
            figures.cache_hits += 1
            group.cache_hits += 1
            if record.ok:
                figures.ok += 1
                group.ok += 1
            continue
        if record.ok:
            figures.ok += 1
            group.ok += 1
            group.latencies.append(record.latency_ms)
            group.input_tokens += record.input_tokens
            group.output_tokens += record.output_tokens
            if record.provider is not None and record.model is not None:
                group.answered[Target(record.provider, record.model)] += 1
        tried = [a for a in record.attempts if not a.refused]
        group.attempts += len(tried)
        if len(tried) > 1:
            group.failovers += 1
            extra = tried[:-1] if record.ok else tried[1:]
            group.extra_attempt_cost += sum(a.cost for a in extra)
            group.extra_attempt_latency += sum(a.latency_ms for a in extra)
        offset = 0.0
        for attempt in record.attempts:
            target = Target(attempt.provider, attempt.model)
            at = record.ts + offset / 1000.0
            figures.target(target).add(attempt, at, record.stream)
            group.target(target).add(attempt, at, record.stream)
            offset += attempt.latency_ms
    for target_figures in figures.targets.values():
        target_figures.finish()
    for group in figures.groups.values():
        group.latencies.sort()
        for target_figures in group.targets.values():
            target_figures.finish()
    return figures
