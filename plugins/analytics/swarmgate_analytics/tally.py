"""The aggregation shared by the live windows and the usage-log reader.

A :class:`Tally` sums what happened in one span of time, either to one
target (its *attempts*) or to the gateway as a whole (its *requests*). The
live plugin keeps one per target per time bucket and merges them for a
window; the offline reader feeds every :class:`~swarmgate_usage.UsageRecord`
into the same methods. Both go through :func:`add_attempt` and
:func:`add_request` with the same facts, so live and offline figures agree.

Attempt accounting (one target):

* an attempt a ``before_attempt`` hook *refused* (budget, rate limit) never
  reached the provider: it counts in ``refused`` (by kind) and nowhere else;
* a *cancelled* attempt (the caller went away, a hedge lost) is neither a
  success nor a failure: it counts in ``cancelled``, and its partial cost
  and tokens are spent money, so they count too;
* every other attempt is a success or a failure (by error kind); latency and
  time to first token are taken from successes only.

Request accounting (the gateway): a request is answered (``successes``;
cache hits included and also counted in ``cache_hits``), failed
(``failures``; those that never reached a provider, refused or with nothing
to try, also count in ``rejected``) or cancelled. Cost and tokens are summed
over the request's attempts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from swarmgate_analytics import histogram

CANCELLED = "cancelled"


class Tally:
    """Counters of one span; see the module docstring. Latencies in ms."""

    __slots__ = (
        "attempts",
        "cache_hits",
        "cancelled",
        "cost",
        "cost_saved",
        "errors",
        "failures",
        "input_tokens",
        "latency_hist",
        "latency_max",
        "latency_min",
        "latency_sum",
        "output_tokens",
        "refusals",
        "refused",
        "rejected",
        "successes",
        "ttft_count",
        "ttft_hist",
        "ttft_max",
        "ttft_min",
        "ttft_sum",
    )

    def __init__(self) -> None:
        self.successes = 0
        self.failures = 0
        self.refused = 0
        self.cancelled = 0
        self.rejected = 0
        self.cache_hits = 0
        self.attempts = 0
        self.cost = 0.0
        self.cost_saved = 0.0
        self.input_tokens = 0
        self.output_tokens = 0
        self.latency_sum = 0.0
        self.latency_min = float("inf")
        self.latency_max = 0.0
        self.latency_hist: dict[int, int] = {}
        self.ttft_sum = 0.0
        self.ttft_count = 0
        self.ttft_min = float("inf")
        self.ttft_max = 0.0
        self.ttft_hist: dict[int, int] = {}
        self.errors: dict[str, int] | None = None
        self.refusals: dict[str, int] | None = None

    # -- recording ---------------------------------------------------------------

    def _latency(self, latency: float, ttft: float | None) -> None:
        self.latency_sum += latency
        if latency < self.latency_min:
            self.latency_min = latency
        if latency > self.latency_max:
            self.latency_max = latency
        index = histogram.bin_of(latency)
        hist = self.latency_hist
        hist[index] = hist.get(index, 0) + 1
        if ttft is not None:
            self.ttft_sum += ttft
            self.ttft_count += 1
            if ttft < self.ttft_min:
                self.ttft_min = ttft
            if ttft > self.ttft_max:
                self.ttft_max = ttft
            index = histogram.bin_of(ttft)
            hist = self.ttft_hist
            hist[index] = hist.get(index, 0) + 1

    def _error(self, kind: str | None) -> None:
        errors = self.errors
        if errors is None:
            errors = self.errors = {}
        key = kind or "unknown"
        errors[key] = errors.get(key, 0) + 1

    def add_attempt(
        self,
        ok: bool,
        kind: str | None,
        refused: bool,
        cost: float,
        input_tokens: int,
        output_tokens: int,
        latency: float,
        ttft: float | None,
    ) -> None:
        """Count one attempt at this tally's target."""
        if refused:
            self.refused += 1
            refusals = self.refusals
            if refusals is None:
                refusals = self.refusals = {}
            key = kind or "unknown"
            refusals[key] = refusals.get(key, 0) + 1
            return
        self.cost += cost
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        if ok:
            self.successes += 1
            self._latency(latency, ttft)
        elif kind == CANCELLED:
            self.cancelled += 1
        else:
            self.failures += 1
            self._error(kind)

    def add_request(
        self,
        ok: bool,
        kind: str | None,
        reached: bool,
        cache_hit: bool,
        cost: float,
        cost_saved: float,
        input_tokens: int,
        output_tokens: int,
        latency: float,
        ttft: float | None,
        attempts: int,
    ) -> None:
        """Count one request (``reached``: at least one attempt was not refused)."""
        self.cost += cost
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.attempts += attempts
        if ok:
            self.successes += 1
            if cache_hit:
                self.cache_hits += 1
                self.cost_saved += cost_saved
            self._latency(latency, ttft)
        elif kind == CANCELLED:
            self.cancelled += 1
        else:
            self.failures += 1
            if not reached:
                self.rejected += 1
            self._error(kind)

    # -- combining ------------------------------------------------------------------

    def absorb(self, other: Tally) -> None:
        """Add ``other``'s counts to this tally."""
        self.successes += other.successes
        self.failures += other.failures
        self.refused += other.refused
        self.cancelled += other.cancelled
        self.rejected += other.rejected
        self.cache_hits += other.cache_hits
        self.attempts += other.attempts
        self.cost += other.cost
        self.cost_saved += other.cost_saved
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.latency_sum += other.latency_sum
        self.latency_min = min(self.latency_min, other.latency_min)
        self.latency_max = max(self.latency_max, other.latency_max)
        histogram.merge(self.latency_hist, other.latency_hist)
        self.ttft_sum += other.ttft_sum
        self.ttft_count += other.ttft_count
        self.ttft_min = min(self.ttft_min, other.ttft_min)
        self.ttft_max = max(self.ttft_max, other.ttft_max)
        histogram.merge(self.ttft_hist, other.ttft_hist)
        if other.errors:
            if self.errors is None:
                self.errors = {}
            _add_counts(self.errors, other.errors)
        if other.refusals:
            if self.refusals is None:
                self.refusals = {}
            _add_counts(self.refusals, other.refusals)

    @classmethod
    def combined(cls, tallies: Iterable[Tally]) -> Tally:
        """A new tally holding the sum of ``tallies``."""
        out = cls()
        for tally in tallies:
            out.absorb(tally)
        return out

    # -- figures -----------------------------------------------------------------------

    @property
    def finished(self) -> int:
        """Successes plus failures (what a success rate is over)."""
        return self.successes + self.failures

    def success_rate(self) -> float | None:
        """Successes over successes plus failures; ``None`` before any."""
        finished = self.finished
        return self.successes / finished if finished else None

    def avg_latency(self) -> float | None:
        """Mean latency (ms) of the successes."""
        return self.latency_sum / self.successes if self.successes else None

    def latency(self, q: float) -> float | None:
        """The ``q``-quantile of the successes' latency (ms), within one bin."""
        return histogram.percentile(self.latency_hist, q, self.latency_min, self.latency_max)

    def avg_ttft(self) -> float | None:
        """Mean time to first token (ms) of the successes that reported one."""
        return self.ttft_sum / self.ttft_count if self.ttft_count else None

    def ttft(self, q: float) -> float | None:
        """The ``q``-quantile of the time to first token (ms), within one bin."""
        return histogram.percentile(self.ttft_hist, q, self.ttft_min, self.ttft_max)

    def target_figures(self) -> dict[str, Any]:
        """The per-provider / per-model figures (camelCase, JSON-ready).
        ``totalRequests`` counts the attempts that reached the provider and
        finished (successes + failures); ``avgCost`` is ``totalCost`` over it."""
        finished = self.finished
        return {
            "successRate": self.success_rate(),
            "avgLatency": self.avg_latency(),
            "p50Latency": self.latency(0.5),
            "p95Latency": self.latency(0.95),
            "p99Latency": self.latency(0.99),
            "avgTtft": self.avg_ttft(),
            "p95Ttft": self.ttft(0.95),
            "avgCost": self.cost / finished if finished else None,
            "totalRequests": finished,
            "successes": self.successes,
            "failures": self.failures,
            "refused": self.refused,
            "cancelled": self.cancelled,
            "totalCost": self.cost,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "errorsByKind": dict(sorted((self.errors or {}).items())),
            "refusedByKind": dict(sorted((self.refusals or {}).items())),
        }

    def request_figures(self) -> dict[str, Any]:
        """The gateway-wide figures over requests (camelCase, JSON-ready).
        ``avgCost`` is ``totalCost`` over answered plus failed requests;
        ``attemptsPerRequest`` over every request."""
        finished = self.finished
        requests = finished + self.cancelled
        return {
            "requests": requests,
            "successes": self.successes,
            "failures": self.failures,
            "cancelled": self.cancelled,
            "rejected": self.rejected,
            "cacheHits": self.cache_hits,
            "successRate": self.success_rate(),
            "avgLatency": self.avg_latency(),
            "p50Latency": self.latency(0.5),
            "p95Latency": self.latency(0.95),
            "p99Latency": self.latency(0.99),
            "avgTtft": self.avg_ttft(),
            "p95Ttft": self.ttft(0.95),
            "avgCost": self.cost / finished if finished else None,
            "totalCost": self.cost,
            "costSaved": self.cost_saved,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "attempts": self.attempts,
            "attemptsPerRequest": self.attempts / requests if requests else None,
            "errorsByKind": dict(sorted((self.errors or {}).items())),
        }

    def counters(self) -> dict[str, Any]:
        """Raw counters with the histograms (for ``metrics()`` and exporters)."""
        return {
            "successes": self.successes,
            "failures": self.failures,
            "refused": self.refused,
            "cancelled": self.cancelled,
            "rejected": self.rejected,
            "cacheHits": self.cache_hits,
            "attempts": self.attempts,
            "cost": self.cost,
            "costSaved": self.cost_saved,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "errorsByKind": dict(sorted((self.errors or {}).items())),
            "refusedByKind": dict(sorted((self.refusals or {}).items())),
            "latency": {
                "sum": self.latency_sum,
                "count": self.successes,
                "buckets": histogram.sparse(self.latency_hist),
            },
            "ttft": {"sum": self.ttft_sum, "count": self.ttft_count, "buckets": histogram.sparse(self.ttft_hist)},
        }


def _add_counts(target: dict[str, int], source: Mapping[str, int]) -> None:
    for key, count in source.items():
        target[key] = target.get(key, 0) + count
