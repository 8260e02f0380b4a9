"""What the response cache costs and saves per request, in process (a script, not a test).

Run:  .venv/bin/python plugins/cache/scripts/cache_overhead.py [--requests N] [--backend asyncio|trio]

Compares ``ProviderManager.complete()`` against a zero-latency in-process
provider without the cache and with it active (memory StateStore):

* not cacheable (no temperature): the cache only decides to skip;
* a miss and a store, every request a new prompt (``maxSize`` 1000, so in
  the steady state every store also evicts the oldest entry);
* a hit: the answer comes from the cache and the provider is not called.

Against a real provider a hit saves the whole upstream round trip; here the
provider answers at once, so the figures are the cache's own bookkeeping.
Only the kernel's plugins load from entry points (``SWARMGATE_PLUGINS``);
figures are medians in microseconds on a noisy machine: compare the
differences, not the absolutes.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

os.environ["SWARMGATE_PLUGINS"] = "swarmgate"

from swarmgate import Provider, ProviderCall, ProviderManager, ProviderReply, TokenUsage
from swarmgate.models import ProviderEvent
from swarmgate_cache import CachePlugin

_REPLY = ProviderReply("benchmark answer", TokenUsage.of(12, 3))


class Zero(Provider):
    """Answers at once."""

    async def complete(self, call: ProviderCall) -> ProviderReply:
        return _REPLY

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        raise NotImplementedError
        yield


def config(cache: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"providers": {"alpha": {"type": "zero", "models": {"m": {"costPerToken": 0.001}}}}}
    if cache:
        data["optimization"] = {"caching": {"enabled": True, "maxSize": 1000}}
    return data


async def median_us(manager: ProviderManager, n: int, request: Callable[[int], dict[str, Any]]) -> float:
    counter = itertools.count()
    for _ in range(max(200, n // 10)):
        await manager.complete(**request(next(counter)))
    samples: list[float] = []
    gc.collect()
    clock = time.perf_counter_ns
    for _ in range(n):
        body = request(next(counter))
        start = clock()
        await manager.complete(**body)
        samples.append((clock() - start) / 1000.0)
    return statistics.median(samples)


async def measure(cache: bool, n: int, request: Callable[[int], dict[str, Any]]) -> float:
    drivers = {"swarmgate.providers": {"zero": Zero}}
    plugins = (CachePlugin(),) if cache else ()
    async with ProviderManager(config(cache), drivers=drivers, plugins=plugins) as manager:
        return await median_us(manager, n, request)


ROWS: tuple[tuple[str, Callable[[int], dict[str, Any]]], ...] = (
    ("not cacheable (no temperature): skipped", lambda i: {"prompt": "hi", "model": "m"}),
    (
        "miss + store (+ eviction), new prompt each time",
        lambda i: {"prompt": f"hi {i}", "model": "m", "temperature": 0},
    ),
    ("hit: answered from the cache", lambda i: {"prompt": "hi", "model": "m", "temperature": 0}),
)


async def main(n: int) -> None:
    print("| path | kernel alone µs | with cache µs | difference µs |")
    print("|---|---:|---:|---:|")
    for label, request in ROWS:
        without = await measure(False, n, request)
        with_plugin = await measure(True, n, request)
        print(f"| {label} | {without:.1f} | {with_plugin:.1f} | {with_plugin - without:+.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.requests, backend=args.backend)
