"""The rings against brute force: records at random times over two days,
each window checked against the records whose bucket it covers."""

from __future__ import annotations

import math
import random

import pytest

from swarmgate_analytics.windows import Series


def expected(events: list[tuple[float, float]], now: float, span: float | None) -> tuple[int, float]:
    """Count and latency sum of the events a window covers: whole seconds up
    to a minute, whole minutes beyond (the current bucket included)."""
    if span is None:
        chosen = events
    elif span <= 60:
        first = int(now) - math.ceil(span) + 1
        chosen = [e for e in events if first <= int(e[0]) <= int(now)]
    else:
        span = min(span, 86_400.0)
        first = int(now // 60) - math.ceil(span / 60 - 1e-9) + 1
        chosen = [e for e in events if first <= int(e[0] // 60) <= int(now // 60)]
    return len(chosen), sum(latency for _, latency in chosen)


@pytest.mark.parametrize("seed", [11, 12])
def test_windows_equal_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    series = Series()
    events: list[tuple[float, float]] = []
    now = 1_700_000_000.0
    for _ in range(3000):
        now += rng.choice((0.0, 0.2, 0.7, 3.0, 45.0, 600.0, 7200.0))
        latency = rng.uniform(1.0, 500.0)
        series.at(now).add_attempt(True, None, False, 0.0, 0, 0, latency, None)
        events.append((now, latency))
        if rng.random() < 0.05:
            later = now + rng.choice((0.0, 0.5, 30.0, 90.0, 4000.0))
            for span in (None, 1.0, 30.0, 60.0, 61.0, 300.0, 3600.0, 86_400.0, 7 * 86_400.0):
                tally = series.window(later, span)
                count, total = expected(events, later, span)
                assert tally.successes == count, (span, later - now)
                assert tally.latency_sum == pytest.approx(total)
