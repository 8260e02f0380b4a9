"""swarmgate-ratelimit: token-bucket rate limits.

* :class:`RateLimitPlugin` -- the hook plugin (entry point ``ratelimit`` in
  the ``swarmgate`` group), configured by ``optimization.rateLimiting`` and
  each provider's ``rateLimit``: requests and tokens per minute for the
  gateway, each caller and each provider, shared through the StateStore;
* :class:`RateLimitService` -- what it publishes as
  ``manager.extensions["ratelimit"]`` (``snapshot()``, ``limits(scope)``,
  ``refresh()``);
* :class:`RateLimitExceededError`, :class:`ProviderRateLimitExceededError`
  -- its refusals (the kernel's ``RateLimitedError``, HTTP 429);
* :class:`RateLimitSettings`, :class:`LimitSettings` -- the configuration;
  :class:`Bucket`, :class:`Limits` -- the compiled limits of one scope.

The public API is exactly ``__all__``.
"""

from swarmgate_ratelimit.buckets import Bucket, Limits
from swarmgate_ratelimit.errors import ProviderRateLimitExceededError, RateLimitExceededError
from swarmgate_ratelimit.plugin import RateLimitCounters, RateLimitPlugin, RateLimitService
from swarmgate_ratelimit.settings import DEFAULT_MAX_TOKENS, LimitSettings, RateLimitSettings

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "Bucket",
    "LimitSettings",
    "Limits",
    "ProviderRateLimitExceededError",
    "RateLimitCounters",
    "RateLimitExceededError",
    "RateLimitPlugin",
    "RateLimitService",
    "RateLimitSettings",
]
