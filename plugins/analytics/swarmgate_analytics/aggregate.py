"""Feeding tallies: from live requests (the plugin's hooks) and from usage
records (the durable log), through the same :class:`~swarmgate_analytics.tally.Tally`
methods with the same facts, so that both give the same figures.

The usage records are read through the structural protocols below (the
fields of ``swarmgate_usage.UsageRecord`` and ``AttemptRecord``), so this
package does not need ``swarmgate-usage`` installed to run live.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from swarmgate import Attempt
from swarmgate_analytics.tally import CANCELLED, Tally
from swarmgate_analytics.windows import Series

TargetKey = tuple[str, str]


class AttemptLike(Protocol):
    """The fields of ``swarmgate_usage.AttemptRecord`` analytics reads."""

    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def error_kind(self) -> str | None: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cost(self) -> float: ...
    @property
    def latency_ms(self) -> float: ...
    @property
    def ttft_ms(self) -> float | None: ...
    @property
    def refused(self) -> bool: ...


class RecordLike(Protocol):
    """The fields of ``swarmgate_usage.UsageRecord`` analytics reads."""

    @property
    def id(self) -> str: ...
    @property
    def ts(self) -> float: ...
    @property
    def ok(self) -> bool: ...
    @property
    def status(self) -> int: ...
    @property
    def error_kind(self) -> str | None: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cost(self) -> float: ...
    @property
    def latency_ms(self) -> float: ...
    @property
    def ttft_ms(self) -> float | None: ...
    @property
    def cache_hit(self) -> bool: ...
    @property
    def cost_saved(self) -> float: ...
    @property
    def attempts(self) -> Sequence[AttemptLike]: ...


def record_kind(record: RecordLike) -> str | None:
    """The error kind of a failed record (a 499 without a kind is a cancellation)."""
    if record.ok:
        return None
    if record.error_kind is None and record.status == 499:
        return CANCELLED
    return record.error_kind


class LiveAggregate:
    """The live tallies: one :class:`Series` per target and one for requests.
    Only the event loop touches it (no locks)."""

    def __init__(self) -> None:
        self.targets: dict[TargetKey, Series] = {}
        self.requests = Series()

    def _series(self, provider: str, model: str) -> Series:
        key = (provider, model)
        series = self.targets.get(key)
        if series is None:
            series = self.targets[key] = Series()
        return series

    def request_done(
        self,
        now: float,
        attempts: Sequence[Attempt],
        ok: bool,
        kind: str | None,
        cache_hit: bool,
        cost_saved: float,
        latency: float,
        ttft: float | None,
    ) -> None:
        """Count one finished request and each of its ``attempts`` at ``now``."""
        cost = 0.0
        input_tokens = output_tokens = 0
        reached = False
        for attempt in attempts:
            tokens = attempt.tokens
            cost += attempt.cost
            input_tokens += tokens.input
            output_tokens += tokens.output
            reached = reached or not attempt.refused
            self._series(attempt.provider, attempt.model).at(now).add_attempt(
                attempt.ok,
                attempt.error_kind,
                attempt.refused,
                attempt.cost,
                tokens.input,
                tokens.output,
                attempt.latency,
                attempt.ttft,
            )
        self.requests.at(now).add_request(
            ok,
            kind,
            reached,
            cache_hit,
            cost,
            cost_saved,
            input_tokens,
            output_tokens,
            latency,
            ttft,
            len(attempts),
        )

    def window(self, now: float, span: float | None) -> tuple[dict[TargetKey, Tally], Tally]:
        """Every target's tally and the requests' tally over the window."""
        targets = {key: series.window(now, span) for key, series in self.targets.items()}
        return targets, self.requests.window(now, span)


class RecordsAggregate:
    """Tallies built from usage records (one per target, one for requests)."""

    def __init__(self) -> None:
        self.targets: dict[TargetKey, Tally] = {}
        self.requests = Tally()

    def add(self, record: RecordLike) -> None:
        """Count one usage record and its attempts."""
        reached = False
        targets = self.targets
        for attempt in record.attempts:
            key = (attempt.provider, attempt.model)
            tally = targets.get(key)
            if tally is None:
                tally = targets[key] = Tally()
            tally.add_attempt(
                attempt.ok,
                attempt.error_kind,
                attempt.refused,
                attempt.cost,
                attempt.input_tokens,
                attempt.output_tokens,
                attempt.latency_ms,
                attempt.ttft_ms,
            )
            reached = reached or not attempt.refused
        self.requests.add_request(
            record.ok,
            record_kind(record),
            reached,
            record.cache_hit,
            record.cost,
            record.cost_saved if record.cache_hit else 0.0,
            record.input_tokens,
            record.output_tokens,
            record.latency_ms,
            record.ttft_ms,
            len(record.attempts),
        )

    @classmethod
    def of(cls, records: Iterable[RecordLike]) -> RecordsAggregate:
        """The tallies of ``records``."""
        aggregate = cls()
        for record in records:
            aggregate.add(record)
        return aggregate
