"""The advisor's configuration (``monitoring.advisor``).

Durations are milliseconds, like every duration in the config; shares,
rates and tolerances are fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import attrs

from swarmgate import SwarmgateConfig, parse_section
from swarmgate.config import InvalidValue

#: The config path of the section.
SECTION: Final = "monitoring.advisor"
#: Seven days, in milliseconds.
DEFAULT_LOOKBACK_MS: Final = 7 * 24 * 3600 * 1000.0
#: The response cache's defaults (the guide's ``optimization.caching``),
#: used to simulate a cache that is not configured.
DEFAULT_CACHE_TTL_MS: Final = 3_600_000.0
DEFAULT_CACHE_MAX_SIZE: Final = 1000


def _fraction(key: str, value: float, *, open_low: bool = False) -> None:
    low_ok = value > 0 if open_low else value >= 0
    if not (low_ok and value <= 1 and math.isfinite(value)):
        bound = "(0, 1]" if open_low else "[0, 1]"
        raise InvalidValue(key, f"must be a fraction in {bound}, got {value!r}")


def _positive_ms(key: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise InvalidValue(key, f"must be a positive number of milliseconds, got {value!r}")


@attrs.frozen
class AdvisorSettings:
    """``monitoring.advisor``.

    * ``enabled`` (default true): publish the advisor and track prompt
      fingerprints; false leaves the plugin inert.
    * ``minSamples`` (20): the fewest observations a figure needs before a
      rule may act on it (attempts at a target, requests of a group, ...).
    * ``lookback`` (ms, 7 days): how far back the usage log is read.
    * ``latencySla``: the p95 latency (ms) a provider should stay under: a
      number for every provider, or ``{"provider": ms, ...}`` (``"*"`` sets
      the default for the rest). Unset: ``routing.sla.maxLatency``.
    * ``reliabilityTolerance`` (0.02): how much lower a cheaper target's
      success rate may be and still count as equally reliable.
    * ``latencyTolerance`` (0.1): how much higher (as a fraction) a cheaper
      target's p95 latency may be and still count as equally fast.
    * ``minSavings`` (0.1): a cheaper target must cost at least this
      fraction less per request to be recommended.
    * ``shiftShare`` (0.8): the share of a pair's traffic a recommended
      weight change gives the cheaper target.
    * ``duplicateThreshold`` (0.05): the share of requests a response cache
      would have answered above which enabling it is recommended.
    * ``errorRate`` (0.05): the attempt failure rate (provider faults) above
      which a breaker or a lower weight is recommended.
    * ``budgetMinSpent`` (0.1): a budget's burn is projected only once this
      fraction of its limit is spent (early-period noise).
    * ``fingerprints`` (true): fingerprint answered requests to measure
      duplicates while caching is off.
    * ``path``: the fingerprint database (default: next to the usage log,
      ``<usage log stem>.advisor.db``); relative paths go under the data
      directory.
    * ``flushInterval`` (ms, 1000): fingerprint counts are handed to the
      database writer at most this long after a request.
    """

    enabled: bool = True
    min_samples: int = 20
    lookback: float = DEFAULT_LOOKBACK_MS
    latency_sla: Any = None
    reliability_tolerance: float = 0.02
    latency_tolerance: float = 0.1
    min_savings: float = 0.1
    shift_share: float = 0.8
    duplicate_threshold: float = 0.05
    error_rate: float = 0.05
    budget_min_spent: float = 0.1
    fingerprints: bool = True
    path: str | None = None
    flush_interval: float = 1000.0

    def __attrs_post_init__(self) -> None:
        if self.min_samples < 1:
            raise InvalidValue("minSamples", f"must be at least 1, got {self.min_samples}")
        _positive_ms("lookback", self.lookback)
        _positive_ms("flushInterval", self.flush_interval)
        _fraction("reliabilityTolerance", self.reliability_tolerance)
        _fraction("minSavings", self.min_savings)
        _fraction("shiftShare", self.shift_share, open_low=True)
        _fraction("duplicateThreshold", self.duplicate_threshold)
        _fraction("errorRate", self.error_rate, open_low=True)
        _fraction("budgetMinSpent", self.budget_min_spent)
        if not (self.latency_tolerance >= 0 and math.isfinite(self.latency_tolerance)):
            raise InvalidValue("latencyTolerance", f"must be a non-negative fraction, got {self.latency_tolerance!r}")
        if self.path is not None and not self.path.strip():
            raise InvalidValue("path", "must be a file path, got an empty string")
        sla = self.latency_sla
        if sla is None:
            return
        if isinstance(sla, Mapping):
            for name, value in sla.items():
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise InvalidValue(f"latencySla.{name}", f"expected a number of milliseconds, got {value!r}")
                _positive_ms(f"latencySla.{name}", float(value))
        elif isinstance(sla, bool) or not isinstance(sla, int | float):
            raise InvalidValue("latencySla", f"expected a number of milliseconds or an object, got {sla!r}")
        else:
            _positive_ms("latencySla", float(sla))

    @classmethod
    def from_config(cls, config: SwarmgateConfig) -> AdvisorSettings:
        """The section of ``config`` (defaults when absent). Raises
        ConfigError naming bad values."""
        return parse_section(cls, config.section(SECTION), SECTION, source=config.source)

    def sla_for(self, provider: str, config: SwarmgateConfig) -> float | None:
        """The latency SLA (ms) of ``provider``: ``latencySla`` (its own
        entry, else ``"*"``, else the number), else ``routing.sla.maxLatency``,
        else ``None`` (no SLA)."""
        sla = self.latency_sla
        if isinstance(sla, Mapping):
            value = sla.get(provider, sla.get("*"))
            if value is not None:
                return float(value)
        elif sla is not None:
            return float(sla)
        routing_sla = config.section("routing.sla")
        if isinstance(routing_sla, Mapping):
            value = routing_sla.get("maxLatency")
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                return float(value)
        return None


@attrs.frozen
class CacheModel:
    """The response cache the advisor simulates while caching is off: the
    ``ttl`` (ms) and ``maxSize`` of ``optimization.caching`` when they are
    written there (even disabled), else the guide's defaults; whether
    non-deterministic requests would be cached (``cacheNonDeterministic``)."""

    enabled: bool
    ttl_ms: float
    max_size: int
    non_deterministic: bool
    present: bool

    @classmethod
    def from_config(cls, config: SwarmgateConfig) -> CacheModel:
        """Read ``optimization.caching`` leniently: it belongs to the cache
        plugin, which validates it; a value of the wrong type here falls
        back to the default."""
        raw = config.section("optimization.caching")
        present = isinstance(raw, Mapping)
        data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        enabled = present and data.get("enabled", True) is not False
        ttl = data.get("ttl")
        size = data.get("maxSize")
        return cls(
            enabled=enabled,
            ttl_ms=float(ttl)
            if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl > 0
            else DEFAULT_CACHE_TTL_MS,
            max_size=size
            if isinstance(size, int) and not isinstance(size, bool) and size > 0
            else DEFAULT_CACHE_MAX_SIZE,
            non_deterministic=data.get("cacheNonDeterministic") is True,
            present=present,
        )
