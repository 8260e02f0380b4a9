"""Per-request cost of swarmgate-health (a measurement script, not a test).

Run from the repository root::

    SWARMGATE_PLUGINS=swarmgate .venv/bin/python plugins/health/bench/bench_health.py

It measures (1) the plugin's request hooks called directly (the success
path, ``after_response``; a live failure below the threshold, ``on_failure``)
and (2) a zero-latency ``complete()`` through the whole pipeline with the
monitor active (background checks on a one-hour interval, so they never run
during the measurement) against the same pipeline without the plugin.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import anyio

from swarmgate import CompletionRequest, ProviderManager, ServerError, Target
from swarmgate.testing import ScriptedProvider
from swarmgate_health import HealthPlugin

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}
CONFIG: dict[str, Any] = {
    "providers": {
        "a": {"type": "scripted", "models": {"m": {}}, "priority": 1},
        "b": {"type": "scripted", "models": {"m": {}}, "priority": 2},
    },
    "routing": {"healthCheck": {"interval": 3_600_000, "passive": {"failureThreshold": 1_000_000_000}}},
}


def per_call_ns(fn: Any, n: int) -> float:
    """Best of five runs of ``n`` calls, nanoseconds per call."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - started) / n)
    return best


async def per_call_async_ns(fn: Any, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter_ns()
        for _ in range(n):
            await fn()
        best = min(best, (time.perf_counter_ns() - started) / n)
    return best


async def pipeline_us(plugins: list[object], n: int) -> float:
    """Median of five runs of ``n`` zero-latency requests, microseconds per request."""
    runs = []
    async with ProviderManager(CONFIG, drivers=DRIVERS, plugins=plugins) as manager:
        request = CompletionRequest.create("hello", model="m")
        for _ in range(200):
            await manager.complete(request)
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(n):
                await manager.complete(request)
            runs.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(runs)


async def main() -> None:
    plugin = HealthPlugin(background=False)
    async with ProviderManager(CONFIG, drivers=DRIVERS, plugins=[plugin]) as manager:
        request = CompletionRequest.create("hello", model="m")
        response = await manager.complete(request)
        error = ServerError("boom")
        target = Target("a", "m")
        success = per_call_ns(lambda: plugin.after_response(request, response), 200_000)
        failure = await per_call_async_ns(lambda: plugin.on_failure(request, target, error), 100_000)
    print(f"after_response (success path):      {success:7.0f} ns per request")
    print(f"on_failure (counted, no transition): {failure:7.0f} ns per failed attempt")
    without = await pipeline_us([], 20_000)
    with_plugin = await pipeline_us([HealthPlugin()], 20_000)
    print(f"complete() without the plugin:       {without:7.2f} us")
    print(f"complete() with the monitor active:  {with_plugin:7.2f} us (+{with_plugin - without:.2f} us)")


if __name__ == "__main__":
    anyio.run(main)
