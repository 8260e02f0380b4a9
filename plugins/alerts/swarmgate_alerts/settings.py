"""The alert watchers' configuration (``monitoring.alerts``).

Durations are milliseconds, like everywhere in the config. The section is
shared with the delivery plugins: ``webhook`` belongs to swarmgate-webhook
and ``email`` to swarmgate-email; they are accepted here unparsed.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from swarmgate.config import InvalidValue

#: ``monitoring.alerts``: the section these settings are read from.
SECTION = "monitoring.alerts"
#: Where the latency SLA defaults from: ``routing.sla.maxLatency`` (ms).
SLA_SECTION = "routing.sla"


def positive_ms(key: str, value: float) -> None:
    """Refuse anything but a positive, finite number of milliseconds."""
    if not (value > 0 and math.isfinite(value)):
        raise InvalidValue(key, f"must be a positive number of milliseconds, got {value!r}")


def at_least_one(key: str, value: int) -> None:
    """Refuse a count below 1."""
    if value < 1:
        raise InvalidValue(key, f"must be at least 1, got {value!r}")


@attrs.frozen
class ErrorRateSettings:
    """``monitoring.alerts.errorRate``: raise ``error_rate_spike`` for a
    provider when, over the last ``window`` ms, at least ``minRequests``
    attempts were made at it and a share of at least ``threshold`` (a
    fraction in (0, 1]) of them failed. ``enabled: false`` turns this
    watcher off."""

    enabled: bool = True
    threshold: float = 0.5
    min_requests: int = 20
    window: float = 60_000.0

    def __attrs_post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise InvalidValue("threshold", f"must be a fraction in (0, 1], e.g. 0.5, got {self.threshold!r}")
        at_least_one("minRequests", self.min_requests)
        positive_ms("window", self.window)


@attrs.frozen
class AlertsSettings:
    """``monitoring.alerts``.

    * ``enabled``: ``false`` turns the watchers off (the delivery plugins
      read it too and stop delivering).
    * ``latencySla``: ms; raise ``latency_sla_breached`` when a provider's
      p95 latency over the last ``latencyWindow`` ms (at least
      ``latencyMinSamples`` answers in it) exceeds it. Unset: the guide's
      ``routing.sla.maxLatency``; unset there too: no latency watcher.
    * ``errorRate``: see :class:`ErrorRateSettings`.
    * ``cooldown``: ms between two alerts of the same type for the same
      provider (shared through the StateStore, so gateway instances
      sharing a backend do not repeat each other).
    * ``resolved``: raise ``latency_sla_resolved`` / ``error_rate_resolved``
      (``info``) when a condition this instance alerted on ends.
    * ``webhook``, ``email``: the delivery plugins' sub-sections.
    """

    enabled: bool = True
    latency_sla: float | None = None
    latency_window: float = 60_000.0
    latency_min_samples: int = 20
    latency_max_samples: int = 1000
    error_rate: ErrorRateSettings = attrs.field(factory=ErrorRateSettings)
    cooldown: float = 300_000.0
    resolved: bool = True
    webhook: Any = None
    email: Any = None

    def __attrs_post_init__(self) -> None:
        if self.latency_sla is not None:
            positive_ms("latencySla", self.latency_sla)
        positive_ms("latencyWindow", self.latency_window)
        at_least_one("latencyMinSamples", self.latency_min_samples)
        at_least_one("latencyMaxSamples", self.latency_max_samples)
        if self.latency_max_samples < self.latency_min_samples:
            raise InvalidValue(
                "latencyMaxSamples",
                f"must be at least latencyMinSamples ({self.latency_min_samples}), got {self.latency_max_samples}",
            )
        if not (self.cooldown >= 0 and math.isfinite(self.cooldown)):
            raise InvalidValue("cooldown", f"must be a non-negative number of milliseconds, got {self.cooldown!r}")
