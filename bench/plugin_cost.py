"""Benchmark: what each default plugin costs per request, in process.

The gateway benchmark's configuration (``bench/configs/swarmgate.json``:
routing with a fallback chain, breaker, retry, cache, rate limits, budgets,
usage log, analytics, and the audit log, which is on by default) with its
providers swapped for a zero-latency in-process driver, measured as a
whole and then with each plugin turned off by config, one at a time. Every
request has a different prompt, so the cache looks up, misses and stores.

Two figures per row: the median wall time of one ``complete()`` (what a
request waits for) and the CPU time per request of the whole process,
threads included (the usage and audit logs write SQLite in worker threads:
their cost is real even though no request waits for it), measured over
the run with the logs flushed at its end. "cost" is the difference with the
full stack: what turning the plugin off saves.

Run:  .venv/bin/python bench/plugin_cost.py [--requests N] [--json PATH]

A script, not a test; in process; bounded by ``--requests`` per row.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio

from swarmgate import CompletionRequest, Provider, ProviderCall, ProviderManager, ProviderReply, TokenUsage
from swarmgate.models import FinishEvent, ProviderEvent, TextDelta, UsageEvent

HERE = Path(__file__).resolve().parent
CONFIG_PATH = HERE / "configs" / "swarmgate.json"

_REPLY = ProviderReply("a short benchmark answer", TokenUsage.of(12, 4))


class ZeroLatencyProvider(Provider):
    """Answers at once with a constant reply: only the pipeline is measured."""

    async def complete(self, call: ProviderCall) -> ProviderReply:
        return _REPLY

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        yield TextDelta("a short benchmark answer")
        yield UsageEvent(TokenUsage.of(12, 4))
        yield FinishEvent("stop")


def base_config() -> dict[str, Any]:
    """The gateway benchmark's config, in process: zero-latency providers,
    no ``server`` section."""
    config: dict[str, Any] = json.loads(CONFIG_PATH.read_text())
    for provider in config["providers"].values():
        provider["type"] = "zero"
        provider.pop("endpoint", None)
        provider.pop("apiKey", None)
    config.pop("server", None)
    return config


def _drop(*paths: str) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        for path in paths:
            *parents, leaf = path.split(".")
            if parents and parents[0] == "providers[*]":
                for provider in config["providers"].values():
                    provider.pop(leaf, None)
                continue
            node = config
            for part in parents:
                node = node.get(part, {})
            node.pop(leaf, None)

    return edit


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    return edit


#: Each default plugin and the config edit that turns it off.
WITHOUT: dict[str, Callable[[dict[str, Any]], None]] = {
    "cache": _drop("optimization.caching"),
    "ratelimit": _drop("optimization.rateLimiting", "providers[*].rateLimit"),
    "budget": _drop("routing.budgetLimits", "providers[*].budget"),
    "breaker": _drop("routing.circuitBreaker"),
    "retry": _drop("optimization.retry"),
    "fallback chain": _drop("routing.fallbackChains"),
    "usage log": _set("monitoring.usageLog", {"enabled": False}),
    "analytics": _set("monitoring.analytics", {"enabled": False}),
    "audit": _set("security.audit", {"enabled": False}),
}


def variants() -> list[tuple[str, dict[str, Any]]]:
    full = base_config()
    rows = [("full default stack", full)]
    for name, edit in WITHOUT.items():
        config = copy.deepcopy(full)
        edit(config)
        rows.append((f"without {name}", config))
    bare = copy.deepcopy(full)
    for edit in WITHOUT.values():
        edit(bare)
    rows.append(("none of them (kernel + inert plugins)", bare))
    return rows


class Variant:
    """One configuration, its manager kept open across the rounds."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.config = config
        self.samples: list[float] = []
        self.cpu: list[float] = []
        self.plugins: list[str] = []
        self.counter = 0

    async def open(self, stack: contextlib.AsyncExitStack, home: Path) -> None:
        os.environ["SWARMGATE_HOME"] = str(home)  # read at plugin setup: each variant its own files
        drivers = {"swarmgate.providers": {"zero": ZeroLatencyProvider}}
        self.manager = await stack.enter_async_context(ProviderManager(self.config, drivers=drivers))
        self.flushes = [
            service.flush
            for name, service in self.manager.extensions.items()
            if name in ("usage", "audit") and hasattr(service, "flush")
        ]
        self.plugins = sorted(p.name for p in self.manager.plugins.plugins())

    def requests(self, n: int) -> list[CompletionRequest]:
        start, self.counter = self.counter, self.counter + n
        return [
            CompletionRequest.create(f"Explain swarm intelligence in one line. #{i}", caller="bench", max_tokens=64)
            for i in range(start, start + n)
        ]

    async def round(self, n: int, *, record: bool) -> None:
        """``n`` requests; with ``record``, their wall times and the CPU per request."""
        manager = self.manager
        requests = self.requests(n)
        for flush in self.flushes:
            await flush()
        gc.collect()
        clock = time.perf_counter_ns
        samples = []
        cpu_start = time.process_time()
        for request in requests:
            start = clock()
            await manager.complete(request)
            samples.append((clock() - start) / 1000.0)
        for flush in self.flushes:
            await flush()
        cpu = time.process_time() - cpu_start
        if record:
            self.samples += samples
            self.cpu.append(cpu / n * 1e6)


async def run(n: int, rounds: int) -> list[dict[str, Any]]:
    """Every variant open at once; ``rounds`` rounds of ``n`` requests each,
    the variants interleaved in every round (the machine's noise then
    falls on all of them alike); per variant the median over rounds."""
    per_round = max(1, n // rounds)
    with tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as stack:
            rows = [Variant(name, config) for name, config in variants()]
            for i, variant in enumerate(rows):
                home = Path(tmp) / str(i)
                home.mkdir()
                await variant.open(stack, home)
            for variant in rows:
                await variant.round(max(100, per_round // 5), record=False)  # warm-up
            for r in range(rounds):
                order = rows if r % 2 == 0 else rows[::-1]
                for variant in order:
                    await variant.round(per_round, record=True)
                print(f"  round {r + 1}/{rounds}", file=sys.stderr)
    results = []
    for variant in rows:
        samples = sorted(variant.samples)
        results.append(
            {
                "row": variant.name,
                "median_us": statistics.median(samples),
                "p99_us": samples[min(len(samples) - 1, int(0.99 * len(samples)))],
                "cpu_us_per_request": statistics.median(variant.cpu),
                "cpu_us_rounds": [round(c, 1) for c in variant.cpu],
                "plugins": variant.plugins,
            }
        )
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    full = results[0]
    lines = [
        "| configuration | median µs | p99 µs | CPU µs / request (all threads) | cost of the plugin (CPU) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in results:
        cost = "" if row is full else f"{full['cpu_us_per_request'] - row['cpu_us_per_request']:+.1f}"
        lines.append(
            f"| {row['row']} | {row['median_us']:.1f} | {row['p99_us']:.1f} | {row['cpu_us_per_request']:.1f} | {cost} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000, help="requests per row, over all rounds")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (the median round counts)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, {args.requests} requests per row in {args.rounds} rounds, asyncio",
        file=sys.stderr,
    )
    results = anyio.run(run, args.requests, args.rounds)
    print(markdown(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"requests": args.requests, "rows": results}, indent=2))


if __name__ == "__main__":
    main()
