"""Benchmark: the kernel pipeline's cost per request, in process.

Measures microseconds per ``ProviderManager.complete()`` (and per streamed
request) against a zero-latency in-process provider, with every installed
plugin's hooks registered (the default stack), and compares it with calling
the same provider driver directly -- the floor any gateway pays.

Run:  .venv/bin/python bench/pipeline.py [--requests N] [--backend asyncio|trio|both]

It prints a Markdown table (median and p99 per call, and the ratio to the
direct call) for docs/benchmarks.md. It is a script, not a test: figures
on a shared 2-core machine are noisy, so compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from swarmgate import (
    CompletionRequest,
    FinishEvent,
    Provider,
    ProviderCall,
    ProviderManager,
    ProviderReply,
    TextDelta,
    TokenUsage,
    UsageEvent,
)
from swarmgate.models import ProviderEvent

_REPLY = ProviderReply("benchmark answer", TokenUsage.of(12, 3))
_EVENTS = (TextDelta("benchmark "), TextDelta("answer"), UsageEvent(TokenUsage.of(12, 3)), FinishEvent("stop"))


class ZeroLatencyProvider(Provider):
    """Answers at once with a constant reply: only the pipeline is measured."""

    async def complete(self, call: ProviderCall) -> ProviderReply:
        return _REPLY

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        for event in _EVENTS:
            yield event


CONFIG: dict[str, Any] = {
    "providers": {
        name: {
            "type": "zero",
            "priority": priority,
            "models": {"bench-model": {"costPerToken": 0.000001, "maxTokens": 256}},
        }
        for name, priority in (("alpha", 1), ("beta", 1), ("gamma", 2))
    },
    "routing": {"strategy": "priority", "loadBalancing": "round-robin"},
    # The kernel's own cost: the plugins that are on by default when installed
    # (usage log, analytics, audit log) are switched off here; bench/plugin_cost.py
    # measures each of them.
    "monitoring": {"usageLog": {"enabled": False}, "analytics": {"enabled": False}},
    "security": {"audit": {"enabled": False}},
}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    """Microseconds per call for ``n`` calls (after a warm-up of n/10)."""
    for _ in range(max(100, n // 10)):
        await fn()
    samples = []
    clock = time.perf_counter_ns
    gc.collect()
    for _ in range(n):
        start = clock()
        await fn()
        samples.append((clock() - start) / 1000.0)
    return samples


async def run(n: int) -> tuple[str, list[tuple[str, list[float]]]]:
    results: list[tuple[str, list[float]]] = []
    async with ProviderManager(CONFIG, drivers={"swarmgate.providers": {"zero": ZeroLatencyProvider}}) as manager:
        provider = manager.provider("alpha")
        auto = CompletionRequest.create("Explain swarm intelligence in one line.")
        forced = CompletionRequest.create(
            "Explain swarm intelligence in one line.", provider="alpha", model="bench-model"
        )
        call = ProviderCall(
            forced, "bench-model", "bench-model", manager.config.providers["alpha"].models["bench-model"], 60
        )

        async def direct() -> None:
            await provider.complete(call)

        async def direct_stream() -> None:
            async for _ in provider.stream(call):
                pass

        async def complete_auto() -> None:
            await manager.complete(auto)

        async def complete_forced() -> None:
            await manager.complete(forced)

        async def complete_dict() -> None:
            await manager.complete(prompt="Explain swarm intelligence in one line.", model="auto")

        async def stream_auto() -> None:
            async for _ in manager.stream(auto):
                pass

        results.append(("driver called directly (baseline)", await timed(direct, n)))
        results.append(('complete(), model "auto", 3 providers', await timed(complete_auto, n)))
        results.append(("complete(), forced provider", await timed(complete_forced, n)))
        results.append(("complete(prompt=..., model=...) keywords", await timed(complete_dict, n)))
        results.append(("driver stream, called directly (baseline)", await timed(direct_stream, n)))
        results.append(('stream(), model "auto", 4 events', await timed(stream_auto, n)))
        plugins = ", ".join(p.name for p in manager.plugins.plugins())
    sim_config = _embedded_default_without_waits()
    if sim_config is not None:
        async with ProviderManager(sim_config) as manager:
            sim_request = CompletionRequest.create("Explain swarm intelligence in one line.", max_tokens=32)

            async def complete_sim() -> None:
                await manager.complete(sim_request)

            results.append(("complete(), embedded default (sim, timeScale 0)", await timed(complete_sim, n)))
    return plugins, results


def _embedded_default_without_waits() -> dict[str, Any] | None:
    """The sim plugin's embedded default with no sleeping and no failures, if installed."""
    try:
        from swarmgate_sim import embedded_default
    except ImportError:
        return None
    config = embedded_default()
    for provider in config["providers"].values():
        provider.update(timeScale=0, failureRate=0, midStreamFailureRate=0)
        provider.pop("outages", None)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    args = parser.parse_args()
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    print(f"python {platform.python_version()} on {platform.machine()}, {args.requests} calls per row\n")
    for backend in backends:
        plugins, results = anyio.run(run, args.requests, backend=backend)
        base_complete = statistics.median(results[0][1])
        base_stream = statistics.median(results[4][1])
        print(f"### {backend}\n\nplugins registered: {plugins}\n")
        print("| path | median µs | p99 µs | median over direct driver call |")
        print("|---|---:|---:|---:|")
        for i, (name, samples) in enumerate(results):
            median = statistics.median(samples)
            base = base_stream if 4 <= i < 6 else base_complete
            ratio = "1.0x" if i in (0, 4) else f"+{median - base:.1f} µs"
            print(f"| {name} | {median:.1f} | {percentile(samples, 0.99):.1f} | {ratio} |")
        print()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
