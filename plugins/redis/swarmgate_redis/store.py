"""RedisStateStore: the StateStore on a Redis server, shared by every gateway
instance pointed at it.

Semantics are those of :class:`~swarmgate.state.MemoryStateStore` (the
shared contract suite, :class:`swarmgate.testing.StateStoreContract`, runs
against both), with three differences that come from sharing:

* "now" is the Redis server's clock (``TIME`` inside the scripts), so the
  instances agree on windows and refills whatever their own clocks say;
* windows and buckets expire in Redis once they no longer matter (a window
  ``window`` seconds after its last point, a bucket once it would have
  refilled), where the memory store keeps them until deleted; a StateStore
  key should therefore be used with one ``window`` (or one ``capacity``)
  throughout, as every plugin does;
* a counter read with :meth:`get` is the shortest decimal text of its value
  (``b"2.5"``, ``b"3.0"``), which ``float()`` reads back exactly.

Every operation is one Redis command or one Lua script (``EVALSHA``, loaded
once per server and reloaded if Redis restarted), so each is atomic with
respect to every other client; the batches (``take_many``, ``incr_many``,
``get_many``) are one round trip whatever their size. See :mod:`swarmgate_redis.lua` for the key
layout.

Event loops: under asyncio the store speaks ``redis.asyncio``. That client
is asyncio-only, so under trio the store runs redis-py's (thread-safe,
pooled) synchronous client in anyio worker threads, at most
``maxConnections`` at a time: the same commands and scripts, a thread hop
more per operation. The transport is picked on first use; a store is used
from one event loop.

Failures: Redis unreachable, timing out or refusing a command raises
:class:`StateUnavailableError` (a :class:`~swarmgate.errors.SwarmgateError`,
HTTP 503) naming the server without its password. Commands are never
retried by the client (a script that timed out may have run), so a failed
operation was applied at most once.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, cast

import anyio
import anyio.to_thread
import redis
import redis.asyncio
import redis.exceptions
import sniffio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from swarmgate.config import parse_section
from swarmgate.errors import ConfigError, ErrorKind, SwarmgateError
from swarmgate.logs import get_logger, register_secret
from swarmgate.state import BucketOp, BucketResult, BucketsResult, CounterOp, CountersResult
from swarmgate_redis.lua import NOT_A_NUMBER, SCRIPTS, Script
from swarmgate_redis.settings import RedisOptions, mask_url, password_of

log = get_logger("swarmgate.redis")

#: Keys per SCAN round trip in :meth:`RedisStateStore.keys`.
SCAN_COUNT = 1000
#: The oldest server the scripts run on (``SET ... KEEPTTL``).
MIN_SERVER_VERSION = (6, 0)
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class StateUnavailableError(SwarmgateError):
    """The Redis state backend failed: unreachable, timed out, or refused a
    command (out of memory, read-only replica...). HTTP 503; neither
    retryable nor a reason to fail over (every target shares the state)."""

    kind: ClassVar[ErrorKind] = ErrorKind.SERVER_ERROR
    status_code: ClassVar[int] = 503


def _ms(seconds: float) -> int:
    """Milliseconds for a positive duration, rounded up so nothing expires early."""
    return max(1, math.ceil(seconds * 1000.0))


def _forever(ttl: float | None) -> bool:
    """Whether ``ttl`` means no expiry: ``None``, infinity, or NaN (as in the memory store)."""
    return ttl is None or ttl != ttl or ttl == math.inf


def _num(value: float) -> str:
    """A float argument for a script: Python's shortest round-trip text."""
    return repr(float(value))


class _Transport(Protocol):
    async def execute(self, *args: Any) -> Any: ...

    async def aclose(self) -> None: ...


def _pool_kwargs(options: RedisOptions) -> dict[str, Any]:
    # No client-side retries: a script whose reply timed out may have run,
    # and running it again would apply it twice. A pooled connection that
    # went stale (Redis restarted) is replaced when it is checked out.
    # RESP2, whatever redis-py's default (3 from redis-py 8): every Redis
    # version and proxy speaks it, and the replies the store parses keep
    # one shape.
    return {
        "protocol": 2,
        "max_connections": options.max_connections,
        "timeout": options.timeout_seconds,
        "socket_timeout": options.timeout_seconds,
        "socket_connect_timeout": options.timeout_seconds,
        "retry": AsyncRetry(NoBackoff(), 0),
    }


class _AsyncioTransport:
    """``redis.asyncio`` on the running asyncio loop."""

    def __init__(self, options: RedisOptions) -> None:
        self._pool = redis.asyncio.BlockingConnectionPool.from_url(options.url, **_pool_kwargs(options))
        self._client = redis.asyncio.Redis(connection_pool=self._pool)

    async def execute(self, *args: Any) -> Any:
        execute = cast(Callable[..., Awaitable[Any]], self._client.execute_command)  # untyped in redis-py
        return await execute(*args)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._pool.disconnect()


class _ThreadTransport:
    """redis-py's synchronous client in anyio worker threads (for trio, where
    ``redis.asyncio`` cannot run). The limiter keeps at most
    ``maxConnections`` threads busy, one pooled connection each."""

    def __init__(self, options: RedisOptions) -> None:
        kwargs = _pool_kwargs(options)
        kwargs["retry"] = Retry(NoBackoff(), 0)
        self._pool = redis.BlockingConnectionPool.from_url(options.url, **kwargs)
        self._client = redis.Redis(connection_pool=self._pool)
        self._limiter = anyio.CapacityLimiter(options.max_connections)

    async def execute(self, *args: Any) -> Any:
        call = functools.partial(self._client.execute_command, *args)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def aclose(self) -> None:
        self._client.close()
        self._pool.disconnect()


class RedisStateStore:
    """A :class:`~swarmgate.state.StateStore` on Redis (see the module docstring).

    Build it with :func:`create_store` (what ``state.backend: "redis"``
    does), which also checks that the server answers. Constructing it
    directly does no I/O; the first operation connects.
    """

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        #: The URL as it may be shown: the password masked.
        self.display_url = mask_url(options.url)
        password = password_of(options.url)
        if password:
            register_secret(password)  # scrubbed from every log line and error from now on
        prefix = options.prefix
        self._v, self._w, self._s, self._b = prefix + "v:", prefix + "w:", prefix + "s:", prefix + "b:"
        self._transport: _Transport | None = None
        self._library: str | None = None
        self._closed = False

    # -- plumbing ------------------------------------------------------------------

    def _connection(self) -> _Transport:
        library = sniffio.current_async_library()
        transport = self._transport
        if transport is not None and library == self._library:
            return transport
        if self._closed:
            raise RuntimeError("the Redis state store is closed")
        if transport is not None:
            raise RuntimeError(
                f"the Redis state store was opened under {self._library} and cannot be used under {library}"
            )
        transport = _AsyncioTransport(self.options) if library == "asyncio" else _ThreadTransport(self.options)
        self._transport, self._library = transport, library
        return transport

    def _failure(self, exc: redis.exceptions.RedisError) -> StateUnavailableError:
        return StateUnavailableError(
            f"the Redis state backend at {self.display_url} failed: {type(exc).__name__}: {exc}"
        )

    async def _execute(self, *args: Any) -> Any:
        if self._closed:
            raise RuntimeError("the Redis state store is closed")
        try:
            return await self._connection().execute(*args)
        except redis.exceptions.RedisError as exc:
            raise self._failure(exc) from exc

    async def _eval(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[str | int],
        subject: str = "",
        subjects: Sequence[str] | None = None,
    ) -> Any:
        """Run ``script`` by its SHA; load it first if the server does not know it.
        ``subject`` is the StateStore key named in a ValueError; for a batch,
        ``subjects`` are the keys of its operations, in order."""
        if self._closed:
            raise RuntimeError("the Redis state store is closed")
        connection = self._connection()
        try:
            try:
                return await connection.execute("EVALSHA", script.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                await connection.execute("SCRIPT", "LOAD", script.source)
                return await connection.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.ResponseError as exc:
            if NOT_A_NUMBER in str(exc):
                if subjects is not None:  # the script names the operation: 'SWARMGATE_NOT_A_NUMBER <n>'
                    subject = subjects[int(str(exc).split(NOT_A_NUMBER, 1)[1].split()[0]) - 1]
                raise ValueError(f"the value at {subject!r} is not a number") from None
            raise self._failure(exc) from exc
        except redis.exceptions.RedisError as exc:
            raise self._failure(exc) from exc

    # -- the StateStore protocol -----------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """The value (or counter text) at ``key``, or ``None`` if absent or expired."""
        value: bytes | None = await self._execute("GET", self._v + key)
        return value

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value`` at ``key`` for ``ttl`` seconds (``None``: forever;
        ``<= 0``: expired at once, i.e. the key is removed)."""
        name = self._v + key
        if _forever(ttl):
            await self._execute("SET", name, value)
        elif ttl is not None and ttl > 0:
            await self._execute("SET", name, value, "PX", _ms(ttl))
        else:
            await self._execute("DEL", name)

    async def delete(self, *keys: str) -> int:
        """Remove each key's value, counter, window and bucket; returns how many keys had any."""
        if not keys:
            return 0
        names = [name for key in keys for name in (self._v + key, self._w + key, self._s + key, self._b + key)]
        found = await self._eval(SCRIPTS["delete"], names, ())
        return int(found)

    async def keys(self, prefix: str) -> list[str]:
        """Every live value or counter key starting with ``prefix``, sorted
        (``SCAN`` over the namespace: not for the hot path)."""
        start = len(self._v)
        return [name[start:] for name in await self._scan(self._v + prefix)]

    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        """Add ``amount`` to the counter at ``key`` (created at 0, expiring
        after ``ttl`` seconds when created) and return the new value. Raises
        ValueError if ``key`` holds a value that is not a number."""
        if _forever(ttl):
            expiry = ""
        else:
            assert ttl is not None
            expiry = str(_ms(ttl)) if ttl > 0 else "0"
        value = await self._eval(SCRIPTS["incr"], (self._v + key,), (_num(amount), expiry), key)
        return float(value)

    async def window_add(self, key: str, amount: float, window: float) -> float:
        """Record ``amount`` now (server time) in a ``window``-second sliding
        window and return its total including it."""
        expiry = str(_ms(window) + 1) if math.isfinite(window) else ""
        total = await self._eval(
            SCRIPTS["window_add"], (self._w + key, self._s + key), (_num(amount), _num(window), expiry)
        )
        return float(total)

    async def window_total(self, key: str, window: float) -> float:
        """The total recorded at ``key`` within the last ``window`` seconds."""
        total = await self._eval(SCRIPTS["window_total"], (self._w + key, self._s + key), (_num(window),))
        return float(total)

    async def take_tokens(self, key: str, *, rate: float, capacity: float, tokens: float = 1.0) -> BucketResult:
        """Token bucket at ``key`` (see :meth:`swarmgate.state.StateStore.take_tokens`):
        negative ``tokens`` give back, zero reads the level; server time."""
        allowed, level, wait = await self._eval(
            SCRIPTS["take_tokens"], (self._b + key,), (_num(rate), _num(capacity), _num(tokens))
        )
        return BucketResult(bool(allowed), float(level), float(wait))

    async def take_many(self, ops: Sequence[BucketOp]) -> BucketsResult:
        """The bucket operations of ``ops``, all or nothing, in one script
        (see :meth:`swarmgate.state.StateStore.take_many`); server time."""
        if not ops:
            return BucketsResult(-1, 0.0, ())
        prefix = self._b
        keys = [prefix + bucket.key for bucket, _tokens, _mode in ops]
        args = [
            arg
            for bucket, tokens, mode in ops
            for arg in (_num(bucket.rate), _num(bucket.capacity), _num(tokens), mode)
        ]
        reply = await self._eval(SCRIPTS["take_many"], keys, args)
        return BucketsResult(int(reply[0]) - 1, float(reply[1]), tuple(float(level) for level in reply[2:]))

    async def incr_many(self, ops: Sequence[CounterOp], ceilings: Sequence[float] | None = None) -> CountersResult:
        """The counter increments of ``ops``, all or nothing, in one script
        (see :meth:`swarmgate.state.StateStore.incr_many`). Raises
        ValueError, nothing applied, if a key holds a value that is not a number."""
        if not ops:
            return CountersResult(-1, ())
        prefix = self._v
        keys = [prefix + key for key, _amount, _ttl in ops]
        args: list[str] = []
        for index, (_key, amount, ttl) in enumerate(ops):
            if _forever(ttl):
                expiry = ""
            else:
                assert ttl is not None
                expiry = str(_ms(ttl)) if ttl > 0 else "0"
            ceiling = math.inf if ceilings is None else ceilings[index]
            args += (_num(amount), expiry, "" if ceiling == math.inf else _num(ceiling))
        reply = await self._eval(SCRIPTS["incr_many"], keys, args, subjects=[key for key, _a, _t in ops])
        return CountersResult(int(reply[0]) - 1, tuple(float(value) for value in reply[1:]))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The value (or counter text) at each key, in one ``MGET``."""
        if not keys:
            return []
        prefix = self._v
        values: list[bytes | None] = await self._execute("MGET", *[prefix + key for key in keys])
        return values

    async def aclose(self) -> None:
        """Close the connections. Idempotent; the store is unusable afterwards."""
        self._closed = True
        transport, self._transport = self._transport, None
        if transport is not None:
            with anyio.CancelScope(shield=True):
                await transport.aclose()

    # -- beyond the protocol -----------------------------------------------------------

    async def ping(self) -> float:
        """One ``PING`` round trip; returns its duration in seconds."""
        started = anyio.current_time()
        await self._execute("PING")
        return anyio.current_time() - started

    async def server_info(self) -> dict[str, Any]:
        """The server's version, mode and memory use (``INFO server``/``memory``)."""
        server = await self._execute("INFO", "server")
        memory = await self._execute("INFO", "memory")
        return {
            "redis_version": str(server.get("redis_version", "?")),
            "redis_mode": str(server.get("redis_mode", "?")),
            "used_memory_human": str(memory.get("used_memory_human", "?")),
            "maxmemory_policy": str(memory.get("maxmemory_policy", "?")),
        }

    async def count_keys(self) -> dict[str, int]:
        """How many Redis keys of each kind the namespace holds (``SCAN``):
        ``values`` (values and counters), ``windows``, ``buckets``."""
        counts: dict[str, int] = {}
        for kind, prefix in (("values", self._v), ("windows", self._w), ("buckets", self._b)):
            counts[kind] = len(await self._scan(prefix))
        return counts

    async def clear(self) -> int:
        """Delete every key of the namespace (``prefix``) and return how many
        Redis keys went. The state of every gateway using this namespace is
        lost (circuits close, budgets and rate limits restart): for tests and
        deliberate resets only."""
        names = await self._scan(self.options.prefix)
        removed = 0
        for start in range(0, len(names), 500):
            removed += int(await self._execute("UNLINK", *names[start : start + 500]))
        return removed

    async def _scan(self, prefix: str) -> list[str]:
        pattern = _GLOB_SPECIAL.sub(r"\\\1", prefix) + "*"
        found: set[str] = set()
        cursor = 0
        while True:
            reply = await self._execute("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
            cursor = int(reply[0])
            found.update(name.decode() for name in reply[1])
            if cursor == 0:
                return sorted(found)

    def _refused(self, exc: Exception) -> str:
        return (
            f"Redis at {self.display_url} refused the credentials (a wrong or missing user or password "
            f"in the URL): {type(exc).__name__}: {exc}"
        )

    def check(self) -> None:
        """Connect once (synchronously), check the server and load the
        scripts; raises :class:`StateUnavailableError` if Redis does not
        answer, :class:`~swarmgate.errors.ConfigError` (``state.options.url``)
        if it refuses the credentials or is too old. Run by
        :func:`create_store` at gateway start-up, so a missing Redis is
        reported before the first request; it blocks for at most
        ``socketTimeout``."""
        kwargs = _pool_kwargs(self.options)
        kwargs.update(retry=Retry(NoBackoff(), 0), max_connections=1)
        client = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(self.options.url, **kwargs))
        try:
            info = client.info("server")
            version = tuple(int(part) for part in str(info.get("redis_version", "0.0")).split(".")[:2])
            if version < MIN_SERVER_VERSION:
                raise ConfigError(
                    [
                        (
                            "state.options.url",
                            f"Redis at {self.display_url} is version {info.get('redis_version')}; "
                            f"the state backend needs {'.'.join(map(str, MIN_SERVER_VERSION))} or newer",
                        )
                    ]
                )
            load = cast(Callable[..., Any], client.script_load)
            for script in SCRIPTS.values():
                load(script.source)
        except redis.exceptions.AuthenticationError as exc:
            raise ConfigError([("state.options.url", self._refused(exc))]) from None
        except redis.exceptions.ResponseError as exc:
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                raise ConfigError([("state.options.url", self._refused(exc))]) from None
            raise self._failure(exc) from None
        except redis.exceptions.RedisError as exc:
            raise StateUnavailableError(
                f"cannot reach Redis at {self.display_url} (state.options.url): {type(exc).__name__}: {exc}"
            ) from None
        finally:
            client.close()
            client.connection_pool.disconnect()
        log.info("redis_state_ready", url=self.display_url, prefix=self.options.prefix, version=info["redis_version"])


def create_store(options: Mapping[str, Any] | None = None) -> RedisStateStore:
    """The ``redis`` entry point of ``swarmgate.state``: parse ``state.options``
    (:class:`~swarmgate_redis.settings.RedisOptions`; a bad one raises
    ConfigError naming ``state.options.<key>``), build the store and check
    that Redis answers (:meth:`RedisStateStore.check`)."""
    parsed = parse_section(RedisOptions, dict(options or {}), "state.options")
    store = RedisStateStore(parsed)
    store.check()
    return store
