"""swarmgate-cache: an exact-match response cache kept in the StateStore.

* :class:`CachePlugin` -- the hook plugin (entry point ``cache`` in the
  ``swarmgate`` group), configured by ``optimization.caching``: answers
  repeated deterministic requests from the cache (streamed or not), stores
  new answers, drops a changed provider's answers;
* :class:`ResponseCache` -- what it publishes as ``manager.extensions["cache"]``
  (``invalidate(...)``, ``stats()``, ``key_for(request)``, ``flush()``);
* :class:`CacheSettings` -- the configuration section;
* :class:`CacheCodec` -- the seam for encryption at rest
  (``manager.extensions["cache_codec"]``), :class:`IdentityCodec` the default;
* :func:`request_key` -- the cache key of a request.

The public API is exactly ``__all__``.
"""

from swarmgate_cache.codec import IDENTITY, CacheCodec, IdentityCodec
from swarmgate_cache.keys import request_key
from swarmgate_cache.plugin import CachePlugin
from swarmgate_cache.service import COUNTERS, ResponseCache
from swarmgate_cache.settings import STRATEGIES, CacheSettings

__all__ = [
    "COUNTERS",
    "IDENTITY",
    "STRATEGIES",
    "CacheCodec",
    "CachePlugin",
    "CacheSettings",
    "IdentityCodec",
    "ResponseCache",
    "request_key",
]
