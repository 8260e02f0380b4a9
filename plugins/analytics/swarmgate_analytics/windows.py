"""Sliding windows of tallies, and the window names the API accepts.

Per target (and once for the gateway's requests) a :class:`Series` keeps:

* ``total`` -- since the process started (``window=None``);
* ``seconds`` -- a ring of 60 one-second tallies (windows up to a minute);
* ``minutes`` -- a ring of 1440 one-minute tallies (windows up to a day).

A record goes into one tally only, the current second's (a slot of the
seconds ring). When a record arrives in a later second, the finished
second is rolled up into its minute and into ``total`` (a merge of two
small tallies, once per second per target), so the request path updates a
single tally. A slot whose time has passed is reset when the ring comes
round to it, so memory is bounded by the ring sizes whatever the traffic,
and nothing keeps individual samples.
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

    def epochs_within(self, now: float, span: float) -> range:
        """The bucket numbers started within ``span`` seconds before ``now``
        (at most ``size``), the current one included."""
        current = int(now // self.width)
        count = min(self.size, max(1, math.ceil(span / self.width - 1e-9)))
        return range(current - count + 1, current + 1)

    def since(self, now: float, span: float) -> list[Tally]:
        """The live tallies of :meth:`epochs_within`."""
        out = []
        for epoch in self.epochs_within(now, span):
            slot = epoch % self.size
            tally = self.slots[slot]
            if tally is not None and self.epochs[slot] == epoch:
                out.append(tally)
        return out


class Series:
    """A target's (or the gateway's) tallies: since start and the two rings,
    with the current second not yet rolled up into the minutes and total."""

    __slots__ = ("current", "epoch", "minutes", "seconds", "total")

    def __init__(self) -> None:
        self.total = Tally()
        self.seconds = Ring(1.0, 60)
        self.minutes = Ring(60.0, 1440)
        self.current: Tally | None = None
        self.epoch = -1  # the current second

    def at(self, now: float) -> Tally:
        """The tally a record at ``now`` goes into (the current second's),
        rolling the previous second up first when ``now`` is in a later one.
        Times must not go backwards by more than the current second."""
        epoch = int(now)
        current = self.current
        if current is not None and epoch <= self.epoch:
            return current
        if current is not None:
            self.total.absorb(current)
            self.minutes.at(float(self.epoch)).absorb(current)
        self.current = current = self.seconds.at(float(epoch))
        self.epoch = epoch
        return current

    def window(self, now: float, span: float | None) -> Tally:
        """The merged tally of the last ``span`` seconds (``None``: since
        start). Spans beyond :data:`LIVE_SPAN` are cut to it."""
        current = self.current
        if span is None:
            return self.total if current is None else Tally.combined((self.total, current))
        if span <= SECOND_SPAN:
            return Tally.combined(self.seconds.since(now, span))
        span = min(span, LIVE_SPAN)
        tallies = self.minutes.since(now, span)
        if current is not None and self.epoch // 60 in self.minutes.epochs_within(now, span):
            tallies.append(current)
        return Tally.combined(tallies)
