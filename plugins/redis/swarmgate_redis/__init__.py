"""swarmgate-redis: the shared StateStore backend on Redis.

With ``"state": {"backend": "redis", "options": {"url": "redis://host:6379/0"}}``
every gateway instance pointed at the same Redis (and ``prefix``) shares
its circuits, health verdicts, rate limits, budgets, alert cooldowns and
response cache.

* :func:`create_store` -- the entry point ``redis`` in the
  ``swarmgate.state`` group: parses ``state.options``, checks the server;
* :class:`RedisStateStore` -- the store (atomic Lua scripts, server time);
* :class:`RedisOptions` -- ``state.options``;
* :class:`StateUnavailableError` -- what a failing Redis raises (HTTP 503);
* :class:`RedisPlugin` -- the hook plugin adding ``qwen-swarm-enhanced redis status``;
* :func:`mask_url` -- a Redis URL with its password masked.

The public API is exactly ``__all__``.
"""

from typing import TYPE_CHECKING, Any

from swarmgate_redis.plugin import RedisPlugin
from swarmgate_redis.settings import DEFAULT_PREFIX, DEFAULT_URL, RedisOptions, mask_url

if TYPE_CHECKING:
    from swarmgate_redis.store import RedisStateStore, StateUnavailableError, create_store

_STORE_NAMES = frozenset({"RedisStateStore", "StateUnavailableError", "create_store"})

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_URL",
    "RedisOptions",
    "RedisPlugin",
    "RedisStateStore",
    "StateUnavailableError",
    "create_store",
    "mask_url",
]


def __getattr__(name: str) -> Any:
    """The store's names, imported on first use: the hook plugin (loaded by
    every gateway for its CLI command) does not pull in redis-py (~6 MB of
    memory) unless the Redis backend is configured or asked for."""
    if name in _STORE_NAMES:
        from swarmgate_redis import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
