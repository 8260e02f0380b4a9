"""What live analytics costs per request, in process (a script, not a test).

Run:  .venv/bin/python plugins/analytics/scripts/analytics_overhead.py [--requests N] [--backend asyncio|trio]

Compares ``ProviderManager.complete()`` against a zero-latency in-process
provider with and without the analytics plugin, on the success path and on
a failover path (the first target fails, the second answers: two attempts
counted per request), and times ``get_analytics()`` for each window once
the windows hold traffic.

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
from swarmgate_analytics import AnalyticsPlugin

_REPLY = ProviderReply("benchmark answer", TokenUsage.of(12, 3))


class Instant(Provider):
    """Answers at once; provider ``down`` always fails."""

    async def complete(self, call: ProviderCall) -> ProviderReply:
        if self.name == "down":
            raise ServerError("down", provider=self.name)
        return _REPLY

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        raise NotImplementedError
        yield  # pragma: no cover


CONFIG: dict[str, Any] = {
    "providers": {
        "up": {"type": "instant", "priority": 1, "models": {"m": {"inputCostPerToken": 0.001}}},
        "down": {"type": "instant", "priority": 0, "models": {"m": {}}},
    },
    "routing": {"fallbackChains": [["down", "up"]]},
}
DRIVERS = {"swarmgate.providers": {"instant": Instant}}


async def per_request(manager: ProviderManager, model: str, requests: int, rounds: int = 7) -> float:
    """Median microseconds per ``complete()`` over ``rounds`` rounds."""
    for _ in range(requests // 4):
        await manager.complete(prompt="hi", model=model)
    samples = []
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        for _ in range(requests):
            await manager.complete(prompt="hi", model=model)
        samples.append((time.perf_counter() - started) / requests * 1e6)
    return statistics.median(samples)


async def main(requests: int) -> None:
    rows = []
    for label, model in (("success", "up/m"), ("failover (2 attempts)", "down/m")):
        async with ProviderManager(CONFIG, drivers=DRIVERS) as manager:
            without = await per_request(manager, model, requests)
        async with ProviderManager(CONFIG, drivers=DRIVERS, plugins=(AnalyticsPlugin(),)) as manager:
            with_analytics = await per_request(manager, model, requests)
        rows.append((label, without, with_analytics))
    print(f"{'path':<24}{'without':>10}{'with':>10}{'cost':>10}  (µs per request, median)")
    for label, without, with_analytics in rows:
        print(f"{label:<24}{without:>10.1f}{with_analytics:>10.1f}{with_analytics - without:>10.1f}")
    async with ProviderManager(CONFIG, drivers=DRIVERS, plugins=(AnalyticsPlugin(),)) as manager:
        for _ in range(requests):
            await manager.complete(prompt="hi", model="up/m")
        print(f"\n{'get_analytics(window)':<24}{'ms':>10}")
        for window in (None, "1m", "1h", "1d"):
            started = time.perf_counter()
            await manager.get_analytics(window)
            print(f"{window or 'since start':<24}{(time.perf_counter() - started) * 1000:>10.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.requests, backend=args.backend)
