"""``CachePlugin``: the response cache's hooks (entry point ``cache`` in the
``swarmgate`` group), configured by ``optimization.caching``.

* ``plugin_setup`` (``trylast``, so that a plugin publishing
  ``extensions["cache_codec"]`` has done so): reads the section, stays
  unregistered when it is absent or ``enabled: false``, builds the
  :class:`~swarmgate_cache.ResponseCache` on ``manager.state`` and publishes
  it as ``manager.extensions["cache"]``.
* ``before_request`` (``trylast``: authentication, rate limits and request
  rewrites such as redaction run first, so a refused caller never gets a
  cached answer and the key is computed on what would be sent): answers a
  hit with ``cached=True``; the kernel replays it to a streaming caller as
  a stream.
* ``after_response``: stores a cacheable answer.
* ``provider_changed``: drops the provider's entries when its answers may
  change.
* ``plugin_shutdown``: writes the pending counters.
* ``register_commands``: ``cache stats`` and ``cache clear``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from swarmgate import (
    CompletionRequest,
    CompletionResponse,
    PluginError,
    ProviderConfig,
    ProviderManager,
    RequestContext,
    hookimpl,
    parse_section,
)
from swarmgate_cache.codec import IDENTITY, CacheCodec
from swarmgate_cache.service import ResponseCache
from swarmgate_cache.settings import CacheSettings

if TYPE_CHECKING:
    import click

SECTION = "optimization.caching"


class CachePlugin:
    """The response cache's hooks; see the module docstring. ``clock``
    (wall-clock seconds) and ``monotonic`` are for tests."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self.cache: ResponseCache | None = None

    @hookimpl(trylast=True)
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Read ``optimization.caching``; raise ConfigError naming bad values;
        raise PluginError if ``extensions["cache_codec"]`` is not a codec."""
        raw = manager.config.section(SECTION)
        if raw is None:
            manager.plugins.discard(self)  # inactive: its hooks would cost every request
            return
        settings = parse_section(CacheSettings, raw, SECTION)
        if not settings.enabled:
            manager.plugins.discard(self)
            return
        codec = manager.extensions.get("cache_codec", IDENTITY)
        if not isinstance(codec, CacheCodec):
            raise PluginError(
                f"extensions['cache_codec'] must have encode(bytes) and decode(bytes) methods, got {codec!r}",
                namespace="swarmgate",
                name="cache_codec",
            )
        cache = ResponseCache(
            manager,
            settings,
            codec,
            clock=self._clock,
            monotonic=self._monotonic,
        )
        await cache.load()
        self.cache = cache
        manager.extensions["cache"] = cache

    @hookimpl(trylast=True)
    async def before_request(self, request: CompletionRequest, context: RequestContext) -> CompletionResponse | None:
        """A cached answer, or ``None`` (a miss, or not cacheable)."""
        assert self.cache is not None  # registered only while active
        return await self.cache.lookup(request, context)

    @hookimpl
    async def after_response(
        self, request: CompletionRequest, response: CompletionResponse, context: RequestContext
    ) -> None:
        """Store the answer when the request was cacheable."""
        assert self.cache is not None
        await self.cache.store(request, response, context)

    @hookimpl
    async def provider_changed(self, name: str, old: ProviderConfig | None, new: ProviderConfig | None) -> None:
        """Drop ``name``'s cached answers when its answers may change."""
        if self.cache is not None:
            await self.cache.provider_changed(name, old, new)

    @hookimpl
    async def plugin_shutdown(self) -> None:
        """Write the counters kept in memory."""
        if self.cache is not None:
            await self.cache.flush()

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        """Add ``cache stats`` and ``cache clear``."""
        from swarmgate_cache.cli import add_commands

        add_commands(cli)
