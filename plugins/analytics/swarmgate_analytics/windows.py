"""Sliding windows of tallies, and the window names the API accepts.

Per target (and once for the gateway's requests) a :class:`Series` keeps:

* ``total`` -- since the process started (``window=None``);
* ``seconds`` -- a ring of 60 one-second tallies (windows up to a minute);
* ``minutes`` -- a ring of 1440 one-minute tallies (windows up to a day).

A record goes into the current slot of each ring; a slot whose time has
passed is reset when the ring comes round to it, so memory is bounded by
the ring sizes whatever the traffic, and nothing keeps individual samples.
A window of ``span`` seconds merges the slots whose bucket started within
the span, the current (partial) bucket included: it covers between
``span - width`` and ``span`` seconds (1 s resolution up to a minute, one
minute beyond).
"""

from __future__ import annotations

import math
import re
from typing import Final

from swarmgate import InvalidRequestError
from swarmgate_analytics.tally import Tally

#: The longest span the live rings answer (one day).
LIVE_SPAN: Final = 86_400.0
#: Spans up to this are answered from the one-second ring.
SECOND_SPAN: Final = 60.0

_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def parse_window(window: str | None) -> float | None:
    """Seconds in ``window`` (``<n>[smhd]``: ``30s``, ``1m``, ``1h``, ``1d``,
    ``7d``, ``30d``); ``None`` (or ``"all"``) means since start. Raises
    :class:`~swarmgate.InvalidRequestError` for anything else."""
    if window is None or window.strip().lower() == "all":
        return None
    match = _WINDOW.match(window)
    if match is None:
        raise InvalidRequestError(
            f"window must be a number and a unit, s, m, h or d (1m, 1h, 1d, 7d, 30d), or 'all'; got {window!r}"
        )
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if seconds <= 0:
        raise InvalidRequestError(f"window must be longer than zero, got {window!r}")
    return seconds


class Ring:
    """``size`` tallies of ``width`` seconds each, reused in a circle."""

    __slots__ = ("epochs", "size", "slots", "width")

    def __init__(self, width: float, size: int) -> None:
        self.width = width
        self.size = size
        self.slots: list[Tally | None] = [None] * size
        self.epochs: list[int] = [-1] * size

    def at(self, now: float) -> Tally:
        """The tally of the bucket holding time ``now`` (reset if stale)."""
        epoch = int(now // self.width)
        slot = epoch % self.size
        tally = self.slots[slot]
        if tally is None or self.epochs[slot] != epoch:
            tally = self.slots[slot] = Tally()
            self.epochs[slot] = epoch
        return tally

    def since(self, now: float, span: float) -> list[Tally]:
        """The live tallies of the buckets started within ``span`` seconds
        before ``now`` (at most ``size``), the current one included."""
        current = int(now // self.width)
        count = min(self.size, max(1, math.ceil(span / self.width - 1e-9)))
        out = []
        for epoch in range(current - count + 1, current + 1):
            slot = epoch % self.size
            tally = self.slots[slot]
            if tally is not None and self.epochs[slot] == epoch:
                out.append(tally)
        return out


class Series:
    """A target's (or the gateway's) tallies: since start and the two rings."""

    __slots__ = ("minutes", "seconds", "total")

    def __init__(self) -> None:
        self.total = Tally()
        self.seconds = Ring(1.0, 60)
        self.minutes = Ring(60.0, 1440)

    def tallies(self, now: float) -> tuple[Tally, Tally, Tally]:
        """The three tallies a record at ``now`` goes into."""
        return self.total, self.seconds.at(now), self.minutes.at(now)

    def window(self, now: float, span: float | None) -> Tally:
        """The merged tally of the last ``span`` seconds (``None``: since
        start). Spans beyond :data:`LIVE_SPAN` are cut to it."""
        if span is None:
            return self.total
        ring = self.seconds if span <= SECOND_SPAN else self.minutes
        return Tally.combined(ring.since(now, min(span, LIVE_SPAN)))
