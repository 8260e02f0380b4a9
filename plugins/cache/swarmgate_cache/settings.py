"""The response cache's configuration (``optimization.caching``).

The guide's keys are ``enabled``, ``ttl`` (milliseconds), ``maxSize`` and
``strategy``; the rest extend it. The section being present turns the cache
on (``enabled`` defaults to true); absent, the plugin unregisters itself.
"""

from __future__ import annotations

import math
import re

import attrs

from swarmgate.config import InvalidValue

#: The eviction orders ``strategy`` accepts: ``lru`` (a hit makes an entry
#: the most recent) and ``fifo`` (entries leave in the order they were stored).
STRATEGIES = ("lru", "fifo")

_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@attrs.frozen
class CacheSettings:
    """``optimization.caching``.

    * ``ttl``: lifetime of an entry in milliseconds (a request's
      ``cache.ttl``, in seconds, overrides it for the entry it stores).
    * ``maxSize``: how many entries this gateway instance keeps; storing one
      more evicts the least recently used (``strategy: "lru"``) or the
      oldest (``"fifo"``).
    * ``cacheNonDeterministic``: also cache requests whose temperature is not
      0 (by default only deterministic requests are cached; a request's
      ``cache.allow`` opts in one request).
    * ``namespace``: prefix of every StateStore key (``cache:<namespace>:``),
      to keep apart gateways that share a backend but must not share answers,
      or to start afresh after a change of key scheme.
    * ``perCaller``: key answers by caller too, so callers never see each
      other's cached answers (off: identical requests share one answer).
    * ``statsInterval``: how often (ms) the hit/miss/store counters kept in
      memory are added to the shared counters in the StateStore (0: on every
      request); ``stats()`` always writes them first.
    """

    enabled: bool = True
    ttl: float = 3_600_000.0
    max_size: int = 1000
    strategy: str = "lru"
    cache_non_deterministic: bool = False
    namespace: str = "default"
    per_caller: bool = False
    stats_interval: float = 1000.0

    def __attrs_post_init__(self) -> None:
        if not (self.ttl > 0 and math.isfinite(self.ttl)):
            raise InvalidValue("ttl", f"must be a positive number of milliseconds, got {self.ttl}")
        if self.max_size < 1:
            raise InvalidValue("maxSize", f"must be at least 1, got {self.max_size}")
        if self.strategy not in STRATEGIES:
            raise InvalidValue("strategy", f"must be one of {list(STRATEGIES)}, got {self.strategy!r}")
        if not _NAMESPACE.match(self.namespace):
            raise InvalidValue("namespace", f"must be 1-64 letters, digits, '_', '.' or '-', got {self.namespace!r}")
        if not (self.stats_interval >= 0 and math.isfinite(self.stats_interval)):
            raise InvalidValue(
                "statsInterval", f"must be a non-negative number of milliseconds, got {self.stats_interval}"
            )
