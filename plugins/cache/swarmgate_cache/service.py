"""``ResponseCache``: the cache itself, published as ``manager.extensions["cache"]``.

Everything shared lives in the StateStore under ``cache:<namespace>:``, so a
shared backend (Redis) shares the cache between gateway instances:

* ``e:<key>`` -- the entry: the answer (content, tool calls, tokens, finish
  reason, provider, model), its original cost, when it was stored and the
  request's tags, as compact JSON passed through the codec (the seam for
  encryption at rest); expires after the entry's TTL;
* ``ix:<provider>:<model>:<key>`` -- the secondary index for invalidation by
  provider, model and age: its value is the wall-clock time the entry was
  stored; same TTL;
* ``tag:<tag>:<key>`` -- one per tag of the storing request; same TTL;
* ``stat:<name>`` -- the shared counters (hits, misses, stores, evictions,
  skipped, tampered, invalidated, cost_saved).

Provider, model and tag names in key names are percent-encoded, so a ``:``
in a name cannot be mistaken for a separator.

Per process, in memory: the eviction order (an ``OrderedDict`` of the keys
this instance stored or served, with the store keys of each), bounded by
``maxSize``: storing past it deletes the least recently used entry
(``lru``) or the oldest (``fifo``) from the store. At start-up the order is
seeded from the entries already in the store, oldest first. Counters are
counted in memory and added to the shared ones every ``statsInterval``.
"""

from __future__ import annotations

import functools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote, unquote

import attrs
import orjson

from swarmgate import (
    CompletionRequest,
    CompletionResponse,
    InvalidRequestError,
    ProviderConfig,
    ProviderManager,
    RequestContext,
    StateStore,
    Target,
    TokenUsage,
)
from swarmgate.logs import get_logger
from swarmgate_cache.codec import IDENTITY, CacheCodec
from swarmgate_cache.keys import request_key
from swarmgate_cache.settings import CacheSettings

log = get_logger("swarmgate.cache")

#: ``context.state`` key holding ``(cache key, ttl seconds, check the
#: answering model's default temperature)`` for a request whose answer is to
#: be stored.
STATE_KEY: Final = "cache"

#: The shared counters, in the order ``stats()`` reports them.
COUNTERS: Final = ("hits", "misses", "stores", "evictions", "skipped", "tampered", "invalidated", "cost_saved")

#: Answers never stored: a filtered answer may well pass next time, and an
#: ``error`` finish is not an answer.
UNCACHED_FINISH: Final = frozenset({"error", "content_filter"})

#: Provider config fields whose change cannot change an answer: a change of
#: only these keeps the provider's cached answers (a key rotation, new
#: weights or limits). Any other change (endpoint, models, type, headers,
#: enabled, driver settings...) drops them.
_ANSWER_NEUTRAL: Final = (
    "api_key",
    "priority",
    "weight",
    "timeout",
    "timeouts",
    "health_check",
    "rate_limit",
    "retry",
    "budget",
)


@functools.lru_cache(maxsize=4096)
def _q(name: str) -> str:
    """``name`` percent-encoded for a key name (memoised: provider, model and
    tag names repeat on every store)."""
    return quote(name, safe="")


class _Tampered(Exception):
    """A stored value that does not decode into an entry."""


@attrs.frozen
class Entry:
    """One decoded cache entry."""

    content: str
    provider: str
    model: str
    tokens: TokenUsage
    finish_reason: str
    tool_calls: tuple[dict[str, Any], ...] | None
    cost: float
    stored_at: float
    tags: tuple[str, ...]

    def dump(self) -> bytes:
        """Compact JSON (before the codec)."""
        return orjson.dumps(
            {
                "content": self.content,
                "provider": self.provider,
                "model": self.model,
                "tokens": [self.tokens.input, self.tokens.output, self.tokens.total],
                "finish": self.finish_reason,
                "tool_calls": self.tool_calls,
                "cost": self.cost,
                "at": self.stored_at,
                "tags": self.tags,
            }
        )

    @classmethod
    def load(cls, data: bytes) -> Entry:
        """Parse :meth:`dump`'s output; raises :class:`_Tampered` on anything else."""
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise _Tampered(f"not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise _Tampered("not an object")
        try:
            content, provider, model = raw["content"], raw["provider"], raw["model"]
            tokens, finish, tool_calls = raw["tokens"], raw["finish"], raw["tool_calls"]
            cost, stored_at, tags = raw["cost"], raw["at"], raw["tags"]
        except KeyError as exc:
            raise _Tampered(f"missing field {exc}") from None
        if not all(isinstance(v, str) for v in (content, provider, model, finish)):
            raise _Tampered("a text field is not a string")
        if not (isinstance(tokens, list) and len(tokens) == 3 and all(type(t) is int and t >= 0 for t in tokens)):
            raise _Tampered("bad token counts")
        if tool_calls is not None and not (
            isinstance(tool_calls, list) and all(isinstance(c, dict) for c in tool_calls)
        ):
            raise _Tampered("bad tool calls")
        if not all(type(v) in (int, float) and math.isfinite(v) for v in (cost, stored_at)):
            raise _Tampered("bad cost or timestamp")
        if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            raise _Tampered("bad tags")
        return cls(
            content,
            provider,
            model,
            TokenUsage(*tokens),
            finish,
            tuple(tool_calls) if tool_calls else None,
            float(cost),
            float(stored_at),
            tuple(tags),
        )


@attrs.frozen
class _Indexed:
    """What the secondary index says about one entry."""

    provider: str
    model: str
    index_key: str
    tag_keys: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


class ResponseCache:
    """The exact-match response cache; see the module docstring.

    ``clock`` returns wall-clock seconds (``time.time``): entries record when
    they were stored in it (``cached_at``, invalidation by age), so
    instances sharing a store need synchronised clocks. ``monotonic`` paces
    the counter writes. The plugin calls :meth:`lookup` and :meth:`store`;
    users call :meth:`invalidate`, :meth:`stats` and :meth:`key_for`.
    """

    def __init__(
        self,
        manager: ProviderManager,
        settings: CacheSettings,
        codec: CacheCodec = IDENTITY,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.backend = manager.config.state.backend
        self._manager = manager
        self._state: StateStore = manager.state
        self._clock = clock
        self._monotonic = monotonic
        prefix = f"cache:{settings.namespace}:"
        self._entry_prefix = prefix + "e:"
        self._index_prefix = prefix + "ix:"
        self._tag_prefix = prefix + "tag:"
        self._stat_prefix = prefix + "stat:"
        self._ttl = settings.ttl / 1000.0
        self._max_size = settings.max_size
        self._lru = settings.strategy == "lru"
        self._always = settings.cache_non_deterministic
        self._per_caller = settings.per_caller
        hash_key = getattr(codec, "hash_key", None)
        self._hash_key: bytes | None = hash_key if isinstance(hash_key, bytes) and hash_key else None
        #: The codec wants each entry's store key name (associated data); see CacheCodec.
        self._binds_key = getattr(codec, "binds_key", False) is True
        self._interval = settings.stats_interval / 1000.0
        self._flush_due = 0.0
        self._pending = dict.fromkeys(COUNTERS, 0.0)
        #: cache key -> every store key of that entry, oldest (next evicted) first.
        self._order: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._zero_defaults = False
        self.configured()

    def configured(self) -> None:
        """Re-read which models default to temperature 0 (after a provider change)."""
        self._zero_defaults = any(
            model.temperature == 0
            for provider in self._manager.config.providers.values()
            if provider.enabled
            for model in provider.models.values()
        )

    # -- keys ---------------------------------------------------------------------

    def key_for(self, request: CompletionRequest) -> str:
        """The cache key of ``request`` (32 hex digits), whether or not it
        would be cached. Raises ``TypeError`` when a field (``extra``,
        ``tools``...) holds a value JSON cannot represent."""
        return request_key(request, per_caller=self._per_caller, hash_key=self._hash_key)

    def _store_keys(self, key: str, provider: str, model: str, tags: Iterable[str]) -> tuple[str, ...]:
        return (
            self._entry_prefix + key,
            f"{self._index_prefix}{_q(provider)}:{_q(model)}:{key}",
            *(f"{self._tag_prefix}{_q(tag)}:{key}" for tag in tags),
        )

    # -- the request path -----------------------------------------------------------

    async def lookup(self, request: CompletionRequest, context: RequestContext) -> CompletionResponse | None:
        """The cached answer to ``request``, or ``None``. Decides whether the
        request is cacheable at all and, if so, leaves its plan (key, TTL,
        whether the answering model's default temperature must be 0) in
        ``context.state["cache"]`` for :meth:`store`. Raises
        InvalidRequestError for a non-positive ``cache.ttl``."""
        control = request.cache
        ttl = self._ttl
        refresh = allow = False
        if control is not None:
            if control.bypass:
                self._skip()
                return None
            if control.ttl is not None:
                if not (control.ttl > 0 and math.isfinite(control.ttl)):
                    raise InvalidRequestError(f"'cache.ttl' must be a positive number of seconds, got {control.ttl}")
                ttl = control.ttl
            refresh, allow = control.refresh, control.allow
        temperature = request.temperature
        # Without a temperature the answering model's default decides: if some
        # model defaults to 0, look up, and store only answers from such a model.
        check_target = False
        if not (allow or self._always or temperature == 0):
            if temperature is not None or not self._zero_defaults:
                self._skip()
                return None
            check_target = True
        try:
            key = self.key_for(request)
        except TypeError:
            self._skip()
            return None
        context.state[STATE_KEY] = (key, ttl, check_target)
        if refresh:
            return None
        raw = await self._state.get(self._entry_prefix + key)
        entry = None if raw is None else await self._decode(key, raw)
        if entry is None:
            self._order.pop(key, None)
            self._pending["misses"] += 1
            await self._maybe_flush()
            return None
        self._pending["hits"] += 1
        self._pending["cost_saved"] += entry.cost
        if key in self._order:
            if self._lru:
                self._order.move_to_end(key)
        else:  # stored by another instance (or before a restart): now known here too
            await self._remember(key, self._store_keys(key, entry.provider, entry.model, entry.tags))
        await self._maybe_flush()
        return CompletionResponse(
            content=entry.content,
            provider=entry.provider,
            model=entry.model,
            cost=0.0,
            latency=context.elapsed_ms(),
            tokens=entry.tokens,
            finish_reason=entry.finish_reason,
            id=context.id,
            cached=True,
            tool_calls=entry.tool_calls,
            metadata={"cache": "hit", "cost_saved": entry.cost, "cached_at": entry.stored_at, "cache_key": key},
        )

    async def store(self, request: CompletionRequest, response: CompletionResponse, context: RequestContext) -> bool:
        """Store ``response`` as the answer to ``request`` if :meth:`lookup`
        found the request cacheable, the answer did not come from the cache
        and it is a real answer (not a filtered or error finish). Returns
        whether it stored."""
        if response.cached:
            return False
        plan = context.state.get(STATE_KEY)
        if plan is None or response.finish_reason in UNCACHED_FINISH:
            return False
        key, ttl, check_target = plan
        if check_target and self._manager.model_config(Target(response.provider, response.model)).temperature != 0:
            return False
        entry = Entry(
            response.content,
            response.provider,
            response.model,
            response.tokens,
            response.finish_reason,
            response.tool_calls,
            response.cost,
            self._clock(),
            request.tags,
        )
        keys = self._store_keys(key, entry.provider, entry.model, entry.tags)
        try:
            value = self._encode(entry.dump(), keys[0])
        except TypeError:  # a tool call holding something JSON cannot represent
            return False
        stamp = repr(entry.stored_at).encode()
        # The index first: a crash in between leaves an index key without an
        # entry (harmless), never an entry that invalidation cannot find.
        for index_key in keys[1:]:
            await self._state.set(index_key, stamp if index_key.startswith(self._index_prefix) else b"", ttl)
        await self._state.set(keys[0], value, ttl)
        previous = self._order.pop(key, None)
        if previous is not None:  # a refresh: drop index keys the new answer no longer has
            stale = set(previous) - set(keys)
            if stale:
                await self._state.delete(*stale)
        self._pending["stores"] += 1
        await self._remember(key, keys)
        await self._maybe_flush()
        return True

    def _skip(self) -> None:
        self._pending["skipped"] += 1

    def _encode(self, data: bytes, store_key: str) -> bytes:
        if self._binds_key:
            return self.codec.encode(data, store_key.encode())  # type: ignore[call-arg]
        return self.codec.encode(data)

    async def _decode(self, key: str, raw: bytes) -> Entry | None:
        """The entry stored at ``key``; a value that does not decode (a codec
        refusing it, corrupt JSON) is tampered: logged, counted, deleted."""
        try:
            if self._binds_key:
                plain = self.codec.decode(raw, (self._entry_prefix + key).encode())  # type: ignore[call-arg]
            else:
                plain = self.codec.decode(raw)
            return Entry.load(plain)
        except Exception as exc:  # noqa: BLE001 - any codec failure means the entry cannot be trusted
            log.warning("cache_entry_tampered", key=key, error=f"{type(exc).__name__}: {exc}")
            self._pending["tampered"] += 1
            await self._state.delete(self._entry_prefix + key)
            return None

    async def _remember(self, key: str, keys: tuple[str, ...]) -> None:
        """Make ``key`` the most recent entry; evict past ``maxSize``."""
        order = self._order
        order[key] = keys
        while len(order) > self._max_size:
            _, evicted = order.popitem(last=False)
            self._pending["evictions"] += 1
            await self._state.delete(*evicted)

    # -- counters -------------------------------------------------------------------

    async def _maybe_flush(self) -> None:
        if self._monotonic() >= self._flush_due:
            await self.flush()

    async def flush(self) -> None:
        """Add the counts kept in memory to the shared counters now."""
        pending, self._pending = self._pending, dict.fromkeys(COUNTERS, 0.0)
        self._flush_due = self._monotonic() + self._interval
        for name, amount in pending.items():
            if amount:
                await self._state.incr(self._stat_prefix + name, amount)

    async def stats(self) -> dict[str, Any]:
        """The shared counters (every instance on this backend and namespace):
        ``hits``, ``misses``, ``stores``, ``evictions``, ``skipped`` (not
        considered: bypassed, not deterministic, not representable),
        ``tampered``, ``invalidated``, ``cost_saved`` (the original cost of
        every answer served from the cache), ``hit_ratio`` (hits / (hits +
        misses), 0 before any lookup), ``entries`` (live entries in the
        store), and the settings in force (``namespace``, ``backend``,
        ``strategy``, ``max_size``, ``ttl_ms``)."""
        await self.flush()
        out: dict[str, Any] = {}
        for name in COUNTERS:
            raw = await self._state.get(self._stat_prefix + name)
            value = float(raw) if raw else 0.0
            out[name] = value if name == "cost_saved" else int(value)
        looked_up = out["hits"] + out["misses"]
        out["hit_ratio"] = out["hits"] / looked_up if looked_up else 0.0
        out["entries"] = len(await self._state.keys(self._entry_prefix))
        out["local_entries"] = len(self._order)
        out.update(
            namespace=self.settings.namespace,
            backend=self.backend,
            strategy=self.settings.strategy,
            max_size=self._max_size,
            ttl_ms=self.settings.ttl,
        )
        return out

    # -- invalidation ---------------------------------------------------------------

    async def _index(self) -> dict[str, _Indexed]:
        """The secondary index, by cache key (not the hot path: scans keys)."""
        found: dict[str, _Indexed] = {}
        skip = len(self._index_prefix)
        for name in await self._state.keys(self._index_prefix):
            parts = name[skip:].split(":")
            if len(parts) == 3:
                provider, model, key = parts
                found[key] = _Indexed(unquote(provider), unquote(model), name)
        skip = len(self._tag_prefix)
        for name in await self._state.keys(self._tag_prefix):
            parts = name[skip:].split(":")
            if len(parts) == 2 and parts[1] in found:
                indexed = found[parts[1]]
                found[parts[1]] = attrs.evolve(
                    indexed, tag_keys=(*indexed.tag_keys, name), tags=(*indexed.tags, unquote(parts[0]))
                )
        return found

    async def _stored_at(self, indexed: _Indexed) -> float:
        raw = await self._state.get(indexed.index_key)
        try:
            return float(raw) if raw is not None else math.inf
        except ValueError:
            return -math.inf  # unreadable: treat as very old

    async def invalidate(
        self,
        *,
        key: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        tag: str | None = None,
        older_than: float | None = None,
        all: bool = False,  # noqa: A002 - the documented keyword
    ) -> int:
        """Delete cached entries; returns how many existed.

        ``all=True`` deletes every entry of this namespace. Otherwise give at
        least one criterion; an entry is deleted when it meets every one
        given: its ``key`` (as :meth:`key_for` computes it), the
        ``provider`` or ``model`` that answered, a ``tag`` of the request
        that stored it, stored more than ``older_than`` seconds ago. Raises
        ``ValueError`` for no criterion, criteria with ``all``, or a
        negative ``older_than``. The counters are kept."""
        criteria = {"key": key, "provider": provider, "model": model, "tag": tag, "older_than": older_than}
        given = [name for name, value in criteria.items() if value is not None]
        if all and given:
            raise ValueError(f"invalidate(all=True) takes no other criterion (got {', '.join(given)})")
        if not all and not given:
            raise ValueError("invalidate() needs a criterion (key, provider, model, tag, older_than) or all=True")
        if older_than is not None and not older_than >= 0:
            raise ValueError(f"older_than must be a non-negative number of seconds, got {older_than}")
        if all:
            entries = await self._state.keys(self._entry_prefix)
            index = [*await self._state.keys(self._index_prefix), *await self._state.keys(self._tag_prefix)]
            removed = await self._state.delete(*entries) if entries else 0
            if index:
                await self._state.delete(*index)
            self._order.clear()
        else:
            index_of = await self._index()
            chosen: set[str] = {key} if key is not None else set(index_of)
            if provider is not None or model is not None or tag is not None:
                chosen = {
                    k
                    for k in chosen
                    if (i := index_of.get(k)) is not None
                    and (provider is None or i.provider == provider)
                    and (model is None or i.model == model)
                    and (tag is None or tag in i.tags)
                }
            if older_than is not None:
                horizon = self._clock() - older_than
                chosen = {k for k in chosen if k in index_of and await self._stored_at(index_of[k]) <= horizon}
            removed = await self._purge(chosen, index_of)
        if removed:
            self._pending["invalidated"] += removed
        log.info("cache_invalidated", removed=removed, **{k: v for k, v in criteria.items() if v is not None}, all=all)
        return removed

    async def _purge(self, keys: Iterable[str], index_of: Mapping[str, _Indexed]) -> int:
        entries: list[str] = []
        others: set[str] = set()
        for key in keys:
            entries.append(self._entry_prefix + key)
            indexed = index_of.get(key)
            if indexed is not None:
                others.add(indexed.index_key)
                others.update(indexed.tag_keys)
            others.update(self._order.pop(key, ()))
        others.difference_update(entries)
        removed = await self._state.delete(*entries) if entries else 0
        if others:
            await self._state.delete(*others)
        return removed

    async def provider_changed(self, name: str, old: ProviderConfig | None, new: ProviderConfig | None) -> int:
        """Drop provider ``name``'s entries unless only answer-neutral fields
        changed (key, priority, weight, timeouts, health checks, limits,
        retry, budget). Returns how many were dropped."""
        self.configured()
        if old is not None and new is not None:
            neutral = {field: getattr(new, field) for field in _ANSWER_NEUTRAL}
            if attrs.evolve(old, **neutral) == new:
                return 0
        return await self.invalidate(provider=name)

    async def load(self) -> None:
        """Seed the eviction order from the entries already in the store
        (a shared backend, a restart), oldest first; evict past ``maxSize``."""
        index_of = await self._index()
        if not index_of:
            return
        stamped = [(await self._stored_at(i), key, i) for key, i in index_of.items()]
        stamped.sort(key=lambda item: item[0])
        for _, key, indexed in stamped:
            keys = (self._entry_prefix + key, indexed.index_key, *indexed.tag_keys)
            await self._remember(key, keys)
