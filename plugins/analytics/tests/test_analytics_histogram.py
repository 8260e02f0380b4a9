"""The latency bins: bounds, nearest-rank percentiles within one bin,
exact cumulative counts, the sparse form."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from analytics_helpers import nearest_rank

from swarmgate_analytics import Tally, histogram


def test_bounds_are_r10_preferred_numbers_with_exact_round_values() -> None:
    bounds = histogram.BOUNDS
    assert bounds[0] == 0.1
    assert bounds[-1] == 1e6
    assert list(bounds) == sorted(bounds)
    assert max(b / a for a, b in itertools.pairwise(bounds)) <= 1.28 + 1e-12
    for value in (1.0, 2.0, 2.5, 5.0, 10.0, 250.0, 1000.0, 50_000.0):
        assert value in bounds
    assert set(histogram.EXPORT_BOUNDS) <= set(bounds)


def test_a_value_on_a_bound_belongs_to_the_bin_below_it() -> None:
    index = histogram.bin_of(2.5)
    assert histogram.upper_bound(index) == 2.5
    assert histogram.lower_bound(index) == 2.0
    assert histogram.bin_of(2.5000001) == index + 1
    assert histogram.bin_of(0.0) == 0
    assert histogram.bin_of(5e6) == histogram.OVERFLOW
    assert histogram.upper_bound(histogram.OVERFLOW) == math.inf


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_lie_in_the_bin_of_the_exact_nearest_rank_value(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(4.0, 1.2) for _ in range(rng.randint(1, 800))]
    tally = Tally()
    for value in values:
        tally.add_attempt(True, None, False, 0.0, 0, 0, value, value / 3)
    for q in (0.5, 0.9, 0.95, 0.99, 1.0):
        exact = nearest_rank(values, q)
        estimate = tally.latency(q)
        assert estimate is not None
        assert histogram.bin_of(estimate) == histogram.bin_of(exact), (q, exact, estimate)
        ttft = tally.ttft(q)
        assert ttft is not None
        assert histogram.bin_of(ttft) == histogram.bin_of(nearest_rank([v / 3 for v in values], q))
    assert tally.latency(1.0) == max(values)  # clamped to the observed maximum
    assert tally.avg_latency() == pytest.approx(sum(values) / len(values))


def test_a_single_sample_is_reported_exactly_and_the_overflow_bin_by_its_maximum() -> None:
    tally = Tally()
    tally.add_attempt(True, None, False, 0.0, 0, 0, 42.0, None)
    assert tally.latency(0.5) == tally.latency(0.99) == 42.0
    tally.add_attempt(True, None, False, 0.0, 0, 0, 7_200_000.0, None)  # two hours: beyond the last bound
    assert tally.latency(1.0) == 7_200_000.0
    assert tally.ttft(0.5) is None


def test_cumulative_counts_at_export_bounds_are_exact() -> None:
    rng = random.Random(7)
    values = [rng.uniform(0.0, 300_000.0) for _ in range(500)] + [1.0, 2.5, 5.0, 2_000_000.0]
    hist: dict[int, int] = {}
    for value in values:
        index = histogram.bin_of(value)
        hist[index] = hist.get(index, 0) + 1
    pairs = histogram.cumulative(hist, histogram.EXPORT_BOUNDS)
    for bound, count in pairs[:-1]:
        assert count == sum(1 for v in values if v <= bound)
    assert pairs[-1] == (math.inf, len(values))


def test_the_sparse_form_round_trips() -> None:
    hist = {0: 2, 10: 5, histogram.OVERFLOW: 1}
    pairs = histogram.sparse(hist)
    assert pairs == [[0.1, 2], [1.0, 5], [None, 1]]
    assert histogram.from_sparse(pairs) == hist
