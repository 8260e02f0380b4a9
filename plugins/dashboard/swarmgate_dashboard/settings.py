"""The dashboard's configuration: ``server.dashboard``.

```json
{"server": {"dashboard": {
  "enabled": true,
  "refreshInterval": 2000,
  "sampleInterval": 2000,
  "history": 1800000,
  "window": null,
  "recentEvents": 20
}}}
```

Durations are milliseconds (the house convention). ``window`` is the
analytics window the page opens with (``null``: since the gateway started;
``"5m"``, ``"1h"``, ``"1d"``...); the page can switch it.
"""

from __future__ import annotations

import math
from typing import Any, Final

import attrs

from swarmgate import InvalidRequestError, parse_section
from swarmgate.config import InvalidValue
from swarmgate_analytics import parse_window

#: Where the section lives in the config.
SECTION: Final = "server.dashboard"
#: Fastest page refresh and sampling accepted (ms): faster only burns CPU.
MIN_INTERVAL_MS: Final = 250.0
#: Longest history kept (ms): one day.
MAX_HISTORY_MS: Final = 86_400_000.0
#: Most points a history may hold (``history / sampleInterval``).
MAX_POINTS: Final = 20_000
#: Most recent events (failovers, errors, alerts) kept for the page.
MAX_EVENTS: Final = 500


def _interval(key: str, value: float) -> None:
    if not (math.isfinite(value) and value >= MIN_INTERVAL_MS):
        raise InvalidValue(key, f"must be a number of milliseconds of at least {MIN_INTERVAL_MS:g}, got {value}")


@attrs.frozen
class DashboardSettings:
    """``server.dashboard`` (see the module docstring).

    ``enabled``: ``false`` mounts nothing and samples nothing.
    ``refreshInterval``: how often the page polls its feed (ms).
    ``sampleInterval``: the step of the charts' history (ms): the plugin
    reads the analytics counters that often, in the background, whether or
    not anyone watches, so a page opened during an incident shows what led
    up to it. ``history``: how far back the charts go (ms).
    ``window``: the analytics window the page opens with. ``recentEvents``:
    how many recent failovers, errors and alerts the page lists.
    """

    enabled: bool = True
    refresh_interval: float = 2000.0
    sample_interval: float = 2000.0
    history: float = 1_800_000.0
    window: str | None = None
    recent_events: int = 20

    def __attrs_post_init__(self) -> None:
        _interval("refreshInterval", self.refresh_interval)
        _interval("sampleInterval", self.sample_interval)
        if not (math.isfinite(self.history) and self.sample_interval <= self.history <= MAX_HISTORY_MS):
            raise InvalidValue(
                "history",
                f"must be milliseconds between sampleInterval ({self.sample_interval:g}) "
                f"and {MAX_HISTORY_MS:g} (a day), got {self.history}",
            )
        if self.points > MAX_POINTS:
            raise InvalidValue(
                "history",
                f"history / sampleInterval is {self.points} points; at most {MAX_POINTS} are kept "
                "(raise sampleInterval or shorten history)",
            )
        if self.window is not None:
            try:
                parse_window(self.window)
            except InvalidRequestError as exc:
                raise InvalidValue("window", str(exc)) from None
        if not 1 <= self.recent_events <= MAX_EVENTS:
            raise InvalidValue("recentEvents", f"must be between 1 and {MAX_EVENTS}, got {self.recent_events}")

    @property
    def points(self) -> int:
        """How many history points are kept."""
        return math.ceil(self.history / self.sample_interval)


def load_settings(raw: Any) -> DashboardSettings:
    """Structure and validate ``server.dashboard`` (``None``: the defaults).
    Raises :class:`~swarmgate.ConfigError` naming every bad path."""
    return parse_section(DashboardSettings, raw, SECTION)
