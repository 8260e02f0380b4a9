"""The charts' history: points computed from the analytics counters.

Every ``sampleInterval`` the dashboard reads the analytics plugin's raw
counters (``manager.get_metrics()``: cumulative since start, latency and
time-to-first-token histograms included) and keeps the *difference* from
the previous reading as one :class:`Point`. A difference of cumulative
counters is exact: nothing served between two readings is lost or counted
twice, whatever the timing of the readings, and the percentiles of an
interval come from the difference of the histograms (to within one bin,
28%, like every analytics percentile). Nothing is added to the request
path: the work is one ``get_metrics()`` per interval, plus a subtraction
per provider.

A counter that went down (the analytics service was rebuilt) starts the
difference over from zero.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from swarmgate_analytics import histogram

#: The latency quantiles each point carries, with their JSON names.
LATENCY_QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
#: The time-to-first-token quantiles each point carries.
TTFT_QUANTILES = (("ttft50", 0.5), ("ttft95", 0.95))


@attrs.define
class Counters:
    """Cumulative counters of one provider (summed over its models) or of
    the gateway's requests, as read from one metrics document."""

    successes: int = 0
    failures: int = 0
    cancelled: int = 0
    refused: int = 0
    cache_hits: int = 0
    cost: float = 0.0
    latency: dict[int, int] = attrs.field(factory=dict)
    ttft: dict[int, int] = attrs.field(factory=dict)

    @classmethod
    def of(cls, entries: Iterable[Mapping[str, Any]]) -> Counters:
        """The sum of metrics entries (``targets`` rows or ``requests``)."""
        out = cls()
        for entry in entries:
            out.successes += int(entry.get("successes") or 0)
            out.failures += int(entry.get("failures") or 0)
            out.cancelled += int(entry.get("cancelled") or 0)
            out.refused += int(entry.get("refused") or 0)
            out.cache_hits += int(entry.get("cacheHits") or 0)
            out.cost += float(entry.get("cost") or 0.0)
            histogram.merge(out.latency, histogram.from_sparse((entry.get("latency") or {}).get("buckets") or ()))
            histogram.merge(out.ttft, histogram.from_sparse((entry.get("ttft") or {}).get("buckets") or ()))
        return out

    @property
    def finished(self) -> int:
        """Successes, failures and cancellations."""
        return self.successes + self.failures + self.cancelled

    def minus(self, earlier: Counters | None) -> Counters:
        """What happened since ``earlier`` (all of this when ``earlier`` is
        ``None`` or any of its counters is larger: a restart)."""
        if earlier is None or not self._follows(earlier):
            return self
        return Counters(
            successes=self.successes - earlier.successes,
            failures=self.failures - earlier.failures,
            cancelled=self.cancelled - earlier.cancelled,
            refused=self.refused - earlier.refused,
            cache_hits=self.cache_hits - earlier.cache_hits,
            cost=max(0.0, self.cost - earlier.cost),
            latency=_hist_minus(self.latency, earlier.latency),
            ttft=_hist_minus(self.ttft, earlier.ttft),
        )

    def _follows(self, earlier: Counters) -> bool:
        if (
            self.successes < earlier.successes
            or self.failures < earlier.failures
            or self.cancelled < earlier.cancelled
            or self.refused < earlier.refused
            or self.cache_hits < earlier.cache_hits
        ):
            return False
        return all(self.latency.get(i, 0) >= n for i, n in earlier.latency.items()) and all(
            self.ttft.get(i, 0) >= n for i, n in earlier.ttft.items()
        )


def _hist_minus(later: Mapping[int, int], earlier: Mapping[int, int]) -> dict[int, int]:
    out = {}
    for index, count in later.items():
        left = count - earlier.get(index, 0)
        if left > 0:
            out[index] = left
    return out


def quantile(hist: Mapping[int, int], q: float) -> float | None:
    """The ``q``-quantile (ms) of an interval's histogram, interpolated in its
    bin and kept within the bins that hold values (an interval has no
    observed minimum and maximum of its own); ``None`` when empty."""
    if not hist:
        return None
    low = histogram.lower_bound(min(hist))
    top = max(hist)
    high = histogram.upper_bound(top)
    if math.isinf(high):
        high = histogram.lower_bound(top)
    value = histogram.percentile(hist, q, low, high)
    return None if value is None else round(value, 3)


def _figures(delta: Counters, seconds: float) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "requests": delta.finished,
        "rps": round(delta.finished / seconds, 4) if seconds > 0 else None,
        "successes": delta.successes,
        "errors": delta.failures,
        "cost": delta.cost,
    }
    for name, q in LATENCY_QUANTILES:
        figures[name] = quantile(delta.latency, q)
    for name, q in TTFT_QUANTILES:
        figures[name] = quantile(delta.ttft, q)
    return figures


class History:
    """The last ``size`` points; :meth:`add` turns a metrics document into
    the next one. Each point is JSON-ready:

    * ``t`` (unix seconds, the reading's time), ``dt`` (seconds since the
      previous reading);
    * over the gateway's requests in that interval: ``requests`` (answered,
      failed and cancelled), ``rps``, ``successes``, ``errors``,
      ``cacheHits``, ``cost``, ``p50``/``p95``/``p99`` latency and
      ``ttft50``/``ttft95`` (ms; ``None`` without successes);
    * ``providers``: the same per provider over its *attempts* (a failover
      is an error at the first provider and a success at the next), plus
      ``spent``: its cost since the analytics started.

    The first reading covers the time since the counters started (the
    document's ``since``); without a ``since`` it only sets the baseline.
    """

    def __init__(self, size: int) -> None:
        self.points: deque[dict[str, Any]] = deque(maxlen=size)
        self._last: tuple[float, Counters, dict[str, Counters]] | None = None

    def add(self, metrics: Mapping[str, Any], at: float | None = None) -> dict[str, Any] | None:
        """Read ``metrics`` (a ``get_metrics()`` document) taken at ``at``
        (default: its ``generatedAt``); returns the new point, or ``None``
        for a first reading without ``since`` or one not later than the
        previous."""
        now = float(at if at is not None else metrics["generatedAt"])
        requests = Counters.of([metrics.get("requests") or {}])
        rows: dict[str, list[Mapping[str, Any]]] = {}
        for row in metrics.get("providers") or ():
            rows.setdefault(str(row["name"]), [])
        for target in metrics.get("targets") or ():
            rows.setdefault(str(target["provider"]), []).append(target)
        providers = {name: Counters.of(entries) for name, entries in rows.items()}
        last = self._last
        self._last = (now, requests, providers)
        if last is None:
            started = metrics.get("since")
            if not isinstance(started, int | float) or started >= now:
                return None
            last = (float(started), Counters(), {})  # the counters were zero when the analytics started
        then, earlier_requests, earlier = last
        seconds = now - then
        if seconds <= 0:
            return None
        delta = requests.minus(earlier_requests)
        point = {"t": round(now, 3), "dt": round(seconds, 3), **_figures(delta, seconds), "cacheHits": delta.cache_hits}
        point["providers"] = {
            name: {**_figures(counters.minus(earlier.get(name)), seconds), "spent": counters.cost}
            for name, counters in providers.items()
        }
        self.points.append(point)
        return point

    def since(self, t: float | None) -> list[dict[str, Any]]:
        """The points taken after ``t`` (all of them for ``None``), oldest first."""
        if t is None:
            return list(self.points)
        out: list[dict[str, Any]] = []
        for point in reversed(self.points):
            if point["t"] <= t:
                break
            out.append(point)
        out.reverse()
        return out

    def providers(self) -> Sequence[str]:
        """The providers of the last reading, in the metrics' order."""
        return list(self._last[2]) if self._last is not None else []
