"""The sliding window behind the latency percentiles."""

from __future__ import annotations

import random

import pytest

from swarmgate_predict import SlidingQuantiles


def test_quantiles_interpolate_between_ranks() -> None:
    window = SlidingQuantiles(size=10, horizon=100.0)
    for value in (5.0, 1.0, 3.0, 2.0, 4.0):
        window.add(0.0, value)
    assert len(window) == 5
    assert window.quantile(0.5) == 3.0
    assert window.quantile(0.0) == 1.0
    assert window.quantile(1.0) == 5.0
    assert window.quantile(0.95) == pytest.approx(4.8)


def test_a_full_window_evicts_the_oldest_sample() -> None:
    window = SlidingQuantiles(size=3, horizon=100.0)
    for t, value in enumerate((100.0, 1.0, 2.0, 3.0)):
        window.add(float(t), value)
    assert len(window) == 3
    assert window.quantile(1.0) == 3.0  # the 100 was the oldest and is gone
    assert window.oldest() == 1.0


def test_old_samples_expire_after_the_horizon() -> None:
    window = SlidingQuantiles(size=10, horizon=60.0)
    window.add(0.0, 50.0)
    window.add(30.0, 10.0)
    assert not window.expire(59.0)
    assert window.expire(60.0)
    assert len(window) == 1
    assert window.quantile(0.5) == 10.0
    assert window.expire(90.0)
    assert len(window) == 0
    assert window.oldest() is None


def test_matches_a_sorted_copy_under_churn() -> None:
    rng = random.Random(7)
    window = SlidingQuantiles(size=16, horizon=1e9)
    recent: list[float] = []
    for t in range(500):
        value = rng.choice([rng.random(), 0.5, 0.5])  # duplicates must be removed one at a time
        window.add(float(t), value)
        recent = [*recent, value][-16:]
        ordered = sorted(recent)
        assert window.quantile(0.0) == ordered[0]
        assert window.quantile(1.0) == ordered[-1]
    window.clear()
    assert len(window) == 0
