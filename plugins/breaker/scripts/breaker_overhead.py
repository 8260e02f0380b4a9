"""What the circuit breaker costs per request, in process (a script, not a test).

Run:  .venv/bin/python plugins/breaker/scripts/breaker_overhead.py [--requests N] [--backend asyncio|trio]

Compares ``ProviderManager.complete()`` against zero-latency in-process
providers with and without the breaker active:

* success path, every circuit closed: ``filter_targets`` finds each
  candidate's view fresh (no StateStore call) and ``after_response`` counts
  the success in memory;
* failure path: the first attempt of every request fails (a counted kind,
  thresholds never reached) and the next target answers: ``on_failure``
  writes the streak and the rate window to the StateStore;
* an open circuit: one of the three targets is ruled out at once.

Only the kernel's plugins load from entry points (``SWARMGATE_PLUGINS``);
figures are medians in microseconds on a noisy machine: compare the
differences, not the absolutes.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio

os.environ["SWARMGATE_PLUGINS"] = "swarmgate"

from swarmgate import Provider, ProviderCall, ProviderManager, ProviderReply, ServerError, TokenUsage
from swarmgate.models import ProviderEvent
from swarmgate_breaker import BreakerPlugin

_REPLY = ProviderReply("benchmark answer", TokenUsage.of(12, 3))


class Zero(Provider):
    """Answers at once."""

    async def complete(self, call: ProviderCall) -> ProviderReply:
        return _REPLY

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        raise NotImplementedError
        yield


class Down(Zero):
    """Always fails (a counted kind)."""

    async def complete(self, call: ProviderCall) -> ProviderReply:
        raise ServerError("down")


def config(first: str, breaker: dict[str, Any] | None) -> dict[str, Any]:
    providers = {
        "alpha": {"type": first, "priority": 1, "models": {"m": {}}},
        "beta": {"type": "zero", "priority": 2, "models": {"m": {}}},
        "gamma": {"type": "zero", "priority": 3, "models": {"m": {}}},
    }
    data: dict[str, Any] = {"providers": providers}
    if breaker is not None:
        data["routing"] = {"circuitBreaker": breaker}
    return data


async def median_us(manager: ProviderManager, n: int) -> float:
    for _ in range(max(200, n // 10)):
        await manager.complete(prompt="hi", model="m")
    samples: list[float] = []
    gc.collect()
    clock = time.perf_counter_ns
    for _ in range(n):
        start = clock()
        await manager.complete(prompt="hi", model="m")
        samples.append((clock() - start) / 1000.0)
    return statistics.median(samples)


async def measure(first: str, breaker: dict[str, Any] | None, n: int) -> float:
    drivers = {"swarmgate.providers": {"zero": Zero, "down": Down}}
    plugins = (BreakerPlugin(),) if breaker is not None else ()
    async with ProviderManager(config(first, breaker), drivers=drivers, plugins=plugins) as manager:
        return await median_us(manager, n)


ROWS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("success path, circuits closed", "zero", {}),
    (
        "success path, circuits closed, rate trigger on",
        "zero",
        {"failureRateThreshold": 0.99, "minimumRequests": 10**9},
    ),
    ("first attempt fails (counted), consecutive trigger", "down", {"failureThreshold": 10**9}),
    (
        "first attempt fails (counted), rate trigger on (1 s window)",
        "down",
        {"failureThreshold": 10**9, "failureRateThreshold": 1.0, "minimumRequests": 10**9, "window": 1000},
    ),
    ("first target's circuit open: ruled out", "down", {"failureThreshold": 1, "timeout": 3_600_000}),
)


async def main(n: int) -> None:
    print("| path | kernel alone µs | with breaker µs | difference µs |")
    print("|---|---:|---:|---:|")
    baselines: dict[str, float] = {}
    for label, first, breaker in ROWS:
        if first not in baselines:
            baselines[first] = await measure(first, None, n)
        without = baselines[first]
        with_plugin = await measure(first, breaker, n)
        print(f"| {label} | {without:.1f} | {with_plugin:.1f} | {with_plugin - without:+.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.requests, backend=args.backend)
