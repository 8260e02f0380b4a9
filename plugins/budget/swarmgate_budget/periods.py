"""Budget periods: UTC calendar days and months.

A daily budget covers one UTC day, from 00:00:00Z to the next 00:00:00Z; a
monthly budget one UTC calendar month, from the first at 00:00:00Z to the
first of the next month. Spend is counted in the period the attempt was
*reserved* in (a request reserving at 23:59:59Z and answering after midnight
counts for the day it started in).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import attrs

PeriodKind = Literal["daily", "monthly"]

#: Both kinds, in the order budgets are listed.
KINDS: tuple[PeriodKind, ...] = ("daily", "monthly")


def iso(stamp: float) -> str:
    """``2026-11-26T00:00:00Z`` for a wall-clock timestamp (seconds)."""
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.frozen
class Period:
    """One concrete period. ``label`` is ``day:YYYY-MM-DD`` or ``month:YYYY-MM``
    (it names the period in StateStore keys); ``start``/``end`` are wall-clock
    seconds (``end`` exclusive: the reset time)."""

    kind: PeriodKind
    label: str
    date: str
    start: float
    end: float

    @property
    def resets_at(self) -> str:
        """When the next period starts, ISO 8601 UTC."""
        return iso(self.end)

    @property
    def hours(self) -> float:
        """The period's length in hours."""
        return (self.end - self.start) / 3600.0


def period_of(kind: PeriodKind, now: float) -> Period:
    """The ``kind`` period containing ``now`` (wall-clock seconds)."""
    moment = datetime.fromtimestamp(now, UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "daily":
        date = f"{day:%Y-%m-%d}"
        return Period(kind, f"day:{date}", date, day.timestamp(), (day + timedelta(days=1)).timestamp())
    first = day.replace(day=1)
    following = (
        first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)
    )
    date = f"{first:%Y-%m}"
    return Period(kind, f"month:{date}", date, first.timestamp(), following.timestamp())
