"""What each StateStore operation costs on Redis, against the in-memory store
(a script, not a test).

Run:  .venv/bin/python plugins/redis/scripts/redis_latency.py [--ops N] [--requests N]
          [--backend asyncio|trio] [--url URL]

1. For every operation: the median and p99 round trip in microseconds, one
   call at a time (what one request waits), then the throughput with 32
   concurrent callers (what a busy gateway process gets from one Redis).
2. Whole requests through ``ProviderManager.complete()`` against a
   zero-latency in-process provider, with the plugins that use the store
   on each path (loaded from their entry points), on the memory store and
   on Redis: what sharing the state adds to a request.

The keys live under a random prefix, removed at the end. Figures from a
shared, noisy machine: compare the orders of magnitude, not the digits.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from swarmgate import MemoryStateStore, ProviderManager, StateStore
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import ScriptedProvider
from swarmgate_redis import RedisStateStore, create_store

Op = Callable[[StateStore, int], Awaitable[Any]]

OPERATIONS: dict[str, Op] = {
    "get (hit)": lambda s, i: s.get("value"),
    "set (with ttl)": lambda s, i: s.set(f"v{i % 100}", b"x" * 200, ttl=60),
    "incr (with ttl)": lambda s, i: s.incr("counter", 1.0, ttl=60),
    "window_add": lambda s, i: s.window_add("window", 1.0, 60.0),
    "window_total": lambda s, i: s.window_total("window", 60.0),
    "take_tokens": lambda s, i: s.take_tokens("bucket", rate=1e9, capacity=1e12),
    "delete (1 key)": lambda s, i: s.delete(f"gone{i}"),
}


async def measure(store: StateStore, op: Op, n: int) -> tuple[float, float, float]:
    """(median µs, p99 µs, operations/s with 32 concurrent callers)."""
    for i in range(min(200, n)):
        await op(store, i)
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await op(store, i)
        samples.append(time.perf_counter() - started)
    samples.sort()
    total = n * 2
    per_task = total // 32

    async def worker(base: int) -> None:
        for i in range(per_task):
            await op(store, base + i)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for w in range(32):
            tg.start_soon(worker, w * per_task)
    rate = per_task * 32 / (time.perf_counter() - started)
    return statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99)] * 1e6, rate


#: Request paths: (label, plugin distributions, config sections, request fields).
PATHS: list[tuple[str, tuple[str, ...], dict[str, Any], dict[str, Any]]] = [
    ("no state-using plugin", (), {}, {}),
    (
        "rate limit (1 request bucket)",
        ("swarmgate-ratelimit",),
        {"optimization": {"rateLimiting": {"requestsPerMinute": 1e12}}},
        {},
    ),
    (
        "rate limit (requests + tokens)",
        ("swarmgate-ratelimit",),
        {"optimization": {"rateLimiting": {"requestsPerMinute": 1e12, "tokensPerMinute": 1e15}}},
        {"max_tokens": 10},
    ),
    (
        "budget (daily + monthly)",
        ("swarmgate-budget",),
        {"routing": {"budgetLimits": {"daily": 1e12, "monthly": 1e12}}},
        {},
    ),
    ("cache hit", ("swarmgate-cache",), {"optimization": {"caching": {"enabled": True}}}, {"temperature": 0}),
    ("breaker, closed circuit", ("swarmgate-breaker",), {"routing": {"circuitBreaker": {"enabled": True}}}, {}),
]


async def request_paths(requests: int, url: str) -> None:
    import os

    print(f"\n{requests} sequential requests per row through complete() (zero-latency provider)")
    print(f"{'path':<32} {'memory µs':>10} {'redis µs':>9} {'added µs':>9}")
    for label, plugins, sections, fields in PATHS:
        os.environ[ALLOW_ENV] = ",".join(("swarmgate", "swarmgate-redis", *plugins))
        medians = []
        for backend in ("memory", "redis"):
            prefix = f"swarmgate-bench:{uuid.uuid4().hex[:8]}:"
            config: dict[str, Any] = {
                "providers": {"p": {"type": "scripted", "models": {"m": {"costPerToken": 1e-9}}}},
                "state": {"backend": backend, "options": {"url": url, "prefix": prefix} if backend == "redis" else {}},
                **sections,
            }
            drivers = {"swarmgate.providers": {"scripted": ScriptedProvider}}
            async with ProviderManager(config, drivers=drivers) as manager:
                samples = []
                for i in range(requests + 100):
                    started = time.perf_counter()
                    await manager.complete(prompt="benchmark", model="p/m", **fields)
                    if i >= 100:
                        samples.append(time.perf_counter() - started)
                medians.append(statistics.median(samples) * 1e6)
            if backend == "redis":  # after the manager closed: plugins write on shutdown too
                leftover = create_store({"url": url, "prefix": prefix})
                await leftover.clear()
                await leftover.aclose()
        print(f"{label:<32} {medians[0]:>10.1f} {medians[1]:>9.1f} {medians[1] - medians[0]:>+9.1f}")


async def main(ops: int, requests: int, url: str) -> None:
    prefix = f"swarmgate-bench:{uuid.uuid4().hex[:8]}:"
    stores: dict[str, StateStore] = {
        "memory": MemoryStateStore(),
        "redis": create_store({"url": url, "prefix": prefix}),
    }
    print(f"{ops} sequential calls per row; throughput with 32 concurrent callers")
    print(f"{'operation':<18} {'memory µs':>10} {'redis median µs':>16} {'redis p99 µs':>13} {'redis ops/s':>12}")
    try:
        for store in stores.values():
            await store.set("value", b"x" * 200)
        for name, op in OPERATIONS.items():
            memory = await measure(stores["memory"], op, ops)
            remote = await measure(stores["redis"], op, ops)
            print(f"{name:<18} {memory[0]:>10.1f} {remote[0]:>16.1f} {remote[1]:>13.1f} {remote[2]:>12,.0f}")
    finally:
        redis_store = stores["redis"]
        assert isinstance(redis_store, RedisStateStore)
        await redis_store.clear()
        for store in stores.values():
            await store.aclose()
    if requests:
        await request_paths(requests, url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    anyio.run(main, args.ops, args.requests, args.url, backend=args.backend)
