"""What the retry plugin costs per request, in process (a script, not a test).

Run:  .venv/bin/python plugins/retry/scripts/retry_overhead.py [--requests N] [--backend asyncio|trio]

Compares ``ProviderManager.complete()`` against zero-latency in-process
providers with and without the plugin active:

* success path: every request answered at once (the plugin's only work is
  ``filter_targets``: note the candidates, count a budget deposit);
* failure paths: the first attempt of every request fails and the second
  answers -- retried by the plugin (delay 0) versus failed over by the
  kernel alone; with the budget off, with the budget allowing every retry
  (its sliding window then holds one point per retry: the memory store
  sums the window on every read, so this row grows with the retry rate
  times the window), and with the budget spent (refusals only read).

Only the kernel's plugins load from entry points (``SWARMGATE_PLUGINS``);
the figures are medians in microseconds on a noisy machine: compare the
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
from swarmgate_retry import RetryPlugin

_REPLY = ProviderReply("benchmark answer", TokenUsage.of(12, 3))


class Zero(Provider):
    """Answers at once."""

    async def complete(self, call: ProviderCall) -> ProviderReply:
        return _REPLY

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        raise NotImplementedError
        yield


class EveryOther(Zero):
    """Fails every other call (retryable)."""

    calls = 0

    async def complete(self, call: ProviderCall) -> ProviderReply:
        EveryOther.calls += 1
        if EveryOther.calls % 2:
            raise ServerError("every other call fails")
        return _REPLY


def config(kind: str, budget: dict[str, Any] | None) -> dict[str, Any]:
    providers = {
        name: {"type": kind, "priority": priority, "models": {"m": {}}}
        for name, priority in (("alpha", 1), ("beta", 1), ("gamma", 2))
    }
    data: dict[str, Any] = {"providers": providers}
    if budget is not None:
        data["optimization"] = {"retry": {"initialDelay": 0, "maxAttempts": 3, "retryBudget": budget}}
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


async def measure(kind: str, budget: dict[str, Any] | None, n: int) -> float:
    drivers = {"swarmgate.providers": {"zero": Zero, "every-other": EveryOther}}
    plugins = (RetryPlugin(),) if budget is not None else ()
    async with ProviderManager(config(kind, budget), drivers=drivers, plugins=plugins) as manager:
        return await median_us(manager, n)


ROWS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("success path (budget on)", "zero", {}),
    ("first attempt fails: retried, budget off", "every-other", {"enabled": False}),
    ("first attempt fails: retried, budget allows all (1 s window)", "every-other", {"ratio": 10.0, "window": 1000}),
    ("first attempt fails: retried, budget allows all (10 s window)", "every-other", {"ratio": 10.0}),
    ("first attempt fails: budget spent, fails over", "every-other", {"ratio": 0.0, "minPerSecond": 0}),
)


async def main(n: int) -> None:
    print("| path | kernel alone µs | with retry µs | difference µs |")
    print("|---|---:|---:|---:|")
    baselines: dict[str, float] = {}
    for label, kind, budget in ROWS:
        if kind not in baselines:
            baselines[kind] = await measure(kind, None, n)
        without = baselines[kind]
        with_plugin = await measure(kind, budget, n)
        print(f"| {label} | {without:.1f} | {with_plugin:.1f} | {with_plugin - without:+.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.requests, backend=args.backend)
