"""The charts' history: points are exact differences of cumulative counters,
checked against brute force over the observations themselves."""

from __future__ import annotations

import math
import random
from typing import Any

from swarmgate_analytics import Tally, histogram
from swarmgate_dashboard import History
from swarmgate_dashboard.history import quantile


class Traffic:
    """Cumulative tallies as the analytics plugin keeps them, and every
    observation, for brute force."""

    def __init__(self) -> None:
        self.requests = Tally()
        self.targets: dict[tuple[str, str], Tally] = {}

    def attempt(self, provider: str, ok: bool, latency: float, cost: float, ttft: float | None = None) -> None:
        tally = self.targets.setdefault((provider, "m"), Tally())
        tally.add_attempt(ok, None if ok else "server_error", False, cost, 3, 5, latency, ttft)

    def request(self, ok: bool, latency: float, cost: float, *, cache_hit: bool = False) -> None:
        self.requests.add_request(
            ok, None if ok else "server_error", True, cache_hit, cost, 0.0, 3, 5, latency, None, 1
        )

    def metrics(self, at: float, providers: tuple[str, ...] = ("a", "b")) -> dict[str, Any]:
        return {
            "generatedAt": at,
            "targets": [{"provider": p, "model": m, **t.counters()} for (p, m), t in self.targets.items()],
            "requests": self.requests.counters(),
            "providers": [{"name": p} for p in providers],
        }


def nearest_rank_bin(values: list[float], q: float) -> int:
    ordered = sorted(values)
    return histogram.bin_of(ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1])


def test_the_first_reading_covers_the_time_since_the_counters_started() -> None:
    traffic = Traffic()
    traffic.request(True, 12.0, 0.5)
    traffic.attempt("a", True, 12.0, 0.5)
    history = History(10)
    assert history.add({**traffic.metrics(100.0), "since": 96.0}) == history.since(None)[0]
    [point] = history.since(None)
    assert (point["t"], point["dt"], point["requests"], point["rps"]) == (100.0, 4.0, 1, 0.25)
    assert point["providers"]["a"]["cost"] == point["providers"]["a"]["spent"] == 0.5
    # Without a start time the first reading is only the baseline.
    history = History(10)
    assert history.add(traffic.metrics(100.0)) is None
    assert history.since(None) == []


def test_points_are_the_traffic_between_readings() -> None:
    rng = random.Random(7)
    traffic = Traffic()
    history = History(10)
    for _ in range(50):  # before the baseline: never in a point
        traffic.attempt("a", True, rng.uniform(1, 900), 0.01)
        traffic.request(True, rng.uniform(1, 900), 0.01)
    history.add(traffic.metrics(100.0))

    latencies: dict[str, list[float]] = {"a": [], "b": []}
    ttfts: list[float] = []
    costs = {"a": 0.0, "b": 0.0}
    request_latencies = []
    errors = 0
    hits = 0
    for i in range(400):
        provider = "a" if i % 3 else "b"
        ok = rng.random() > 0.1
        latency = rng.lognormvariate(4, 1)
        ttft = latency / 3 if provider == "a" else None
        cost = rng.uniform(0, 0.002)
        traffic.attempt(provider, ok, latency, cost, ttft)
        costs[provider] += cost
        if ok:
            latencies[provider].append(latency)
            if ttft is not None:
                ttfts.append(ttft)
        hit = ok and i % 10 == 0
        traffic.request(ok, latency, cost, cache_hit=hit)
        errors += not ok
        hits += hit
        if ok:
            request_latencies.append(latency)

    point = history.add(traffic.metrics(104.0))
    assert point is not None
    assert point["t"] == 104.0
    assert point["dt"] == 4.0
    assert point["requests"] == 400
    assert point["rps"] == 100.0
    assert point["errors"] == errors
    assert point["successes"] == 400 - errors
    assert point["cacheHits"] == hits > 0
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert histogram.bin_of(point[name]) == nearest_rank_bin(request_latencies, q), name
    for provider in ("a", "b"):
        figures = point["providers"][provider]
        assert figures["requests"] == sum(1 for i in range(400) if ("a" if i % 3 else "b") == provider)
        assert math.isclose(figures["cost"], costs[provider], rel_tol=1e-9)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            assert histogram.bin_of(figures[name]) == nearest_rank_bin(latencies[provider], q), (provider, name)
    assert histogram.bin_of(point["providers"]["a"]["ttft95"]) == nearest_rank_bin(ttfts, 0.95)
    assert point["providers"]["b"]["ttft50"] is None
    # "spent" is cumulative: the 50 attempts before the baseline count.
    assert math.isclose(point["providers"]["a"]["spent"], 0.5 + costs["a"], rel_tol=1e-9)


def test_an_idle_interval_has_zero_counts_and_no_percentiles() -> None:
    traffic = Traffic()
    history = History(10)
    traffic.request(True, 5.0, 0.1)
    traffic.attempt("a", True, 5.0, 0.1)
    history.add(traffic.metrics(1.0))
    point = history.add(traffic.metrics(3.0))
    assert point is not None
    assert (point["requests"], point["rps"], point["errors"], point["cost"]) == (0, 0.0, 0, 0.0)
    assert point["p50"] is None
    assert point["providers"]["a"]["p95"] is None
    assert point["providers"]["a"]["spent"] == 0.1
    assert point["providers"]["b"]["requests"] == 0  # configured, no traffic yet


def test_a_counter_going_down_starts_over() -> None:
    history = History(10)
    before = Traffic()
    for _ in range(20):
        before.request(True, 10.0, 0.0)
    history.add(before.metrics(1.0))
    rebuilt = Traffic()  # the analytics service was rebuilt: its counters restart
    for _ in range(3):
        rebuilt.request(True, 10.0, 0.0)
    point = history.add(rebuilt.metrics(2.0))
    assert point is not None
    assert point["requests"] == 3


def test_readings_not_later_than_the_last_are_ignored() -> None:
    history = History(10)
    traffic = Traffic()
    history.add(traffic.metrics(5.0))
    assert history.add(traffic.metrics(5.0)) is None
    assert history.add(traffic.metrics(4.0)) is None


def test_the_ring_keeps_the_newest_points_and_since_filters() -> None:
    history = History(3)
    traffic = Traffic()
    for t in range(6):
        traffic.request(True, 1.0, 0.0)
        history.add(traffic.metrics(float(t)))
    assert [p["t"] for p in history.since(None)] == [3.0, 4.0, 5.0]
    assert [p["t"] for p in history.since(3.0)] == [4.0, 5.0]
    assert history.since(5.0) == []
    assert [p["t"] for p in history.since(-1.0)] == [3.0, 4.0, 5.0]
    assert history.providers() == ["a", "b"]


def test_quantile_of_an_interval() -> None:
    assert quantile({}, 0.5) is None
    one = {histogram.bin_of(100.0): 4}
    value = quantile(one, 0.5)
    assert value is not None
    assert histogram.bin_of(value) == histogram.bin_of(100.0)
    overflow = {histogram.OVERFLOW: 2}
    assert quantile(overflow, 0.99) == histogram.BOUNDS[-1]
