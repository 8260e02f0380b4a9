"""Benchmark: what the prediction model and the predictive strategies cost per request.

Measures, in process, with a zero-latency provider:

* ``Predictor.predict`` for one target, and ``rank`` of the intelligent and
  cost-optimized strategies over 3 and 8 candidates (the synchronous hot path);
* the predict plugin's learning hook (``after_response``) per answer;
* the cost plugin's budget guard (``filter_targets``: two StateStore reads
  and a prediction per candidate) per request;
* a whole ``complete()`` routed by ``intelligent`` with learning on, against
  the same request routed by the kernel's ``priority`` strategy.

Run:  .venv/bin/python plugins/predict/bench/bench_routing.py [--n N]

It prints a Markdown table of medians. It is a script, not a test: figures on
a shared machine are noisy, so compare them with each other.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from swarmgate import (
    CompletionRequest,
    FinishEvent,
    Provider,
    ProviderCall,
    ProviderEvent,
    ProviderManager,
    ProviderReply,
    RequestContext,
    Target,
    TextDelta,
    TokenUsage,
    UsageEvent,
    hookimpl,
)
from swarmgate.plugins import ALLOW_ENV
from swarmgate_cost import CostPlugin
from swarmgate_predict import Predictor, PredictPlugin

_REPLY = ProviderReply("benchmark answer", TokenUsage.of(12, 30))
REQUEST = CompletionRequest.create("Explain swarm intelligence in two sentences.", max_tokens=200)


class ZeroLatencyProvider(Provider):
    """Answers at once: only gateway work is measured."""

    async def complete(self, call: ProviderCall) -> ProviderReply:
        return _REPLY

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        yield TextDelta(_REPLY.content)
        yield UsageEvent(_REPLY.tokens)
        yield FinishEvent("stop")


class Budget:
    """Stands in for a budget plugin (announces the spend counters)."""

    @hookimpl
    def plugin_setup(self, manager: ProviderManager) -> None:
        manager.extensions["budget"] = self


DRIVERS: dict[str, dict[str, Any]] = {"swarmgate.providers": {"zero": ZeroLatencyProvider}}


def config(strategy: str, providers: int = 3, budget: bool = False) -> dict[str, Any]:
    routing: dict[str, Any] = {"strategy": strategy}
    if budget:
        routing["budgetLimits"] = {"daily": 1_000_000.0, "monthly": 10_000_000.0}
    return {
        "providers": {
            f"p{i}": {"type": "zero", "models": {"m": {"costPerToken": 1e-6 * (i + 1)}}} for i in range(providers)
        },
        "routing": routing,
    }


def per_call_us(fn: Callable[[], object], n: int) -> float:
    """Median microseconds per call, over batches of 100 calls (``n`` calls in all)."""
    batches = []
    for _ in range(max(n // 100, 5)):
        started = time.perf_counter()
        for _ in range(100):
            fn()
        batches.append((time.perf_counter() - started) * 1e6 / 100)
    return statistics.median(batches)


async def per_call_us_async(fn: Callable[[], Awaitable[object]], n: int) -> float:
    """:func:`per_call_us` for a coroutine function."""
    batches = []
    for _ in range(max(n // 100, 5)):
        started = time.perf_counter()
        for _ in range(100):
            await fn()
        batches.append((time.perf_counter() - started) * 1e6 / 100)
    return statistics.median(batches)


async def hot_path(candidates: int, n: int) -> list[tuple[str, float]]:
    """predict, the learning hook, and rank over ``candidates`` warm targets."""
    rows: list[tuple[str, float]] = []
    async with ProviderManager(config("intelligent", candidates), drivers=DRIVERS) as manager:
        predictor = manager.extensions["predict"]
        assert isinstance(predictor, Predictor)
        targets = [Target(f"p{i}", "m") for i in range(candidates)]
        for target in targets:
            for _ in range(64):
                predictor.observe_success(target, latency_ms=900, ttft_ms=300, input_tokens=20, output_tokens=150)
        context = RequestContext("bench", manager, 0.0)
        intelligent = manager.strategy()
        cost = manager.strategy("cost-optimized")
        if candidates == 3:
            rows.append(
                ("Predictor.predict, one target", per_call_us(lambda: predictor.predict(targets[0], REQUEST), n))
            )
            plugin = next(p for p in manager.plugins.pm.get_plugins() if isinstance(p, PredictPlugin))
            response = await manager.complete(REQUEST)
            answered = RequestContext("answered", manager, 0.0, attempts=[response.attempts[-1]])

            def learn() -> None:
                answered.state.clear()
                plugin.after_response(REQUEST, response, answered)

            rows.append(("predict plugin after_response (learn one answer)", per_call_us(learn, n)))
        rows.append(
            (
                f"intelligent rank, {candidates} candidates",
                per_call_us(lambda: intelligent.rank(REQUEST, targets, context), n),
            )
        )
        rows.append(
            (
                f"cost-optimized rank, {candidates} candidates",
                per_call_us(lambda: cost.rank(REQUEST, targets, context), n),
            )
        )
    return rows


async def budget_guard(n: int) -> list[tuple[str, float]]:
    """The cost plugin's filter_targets with limits and a budget plugin present."""
    cfg = config("cost-optimized", 3, budget=True)
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=[Budget()]) as manager:
        guard = manager.plugins.get("cost")
        assert isinstance(guard, CostPlugin)
        targets = [Target(f"p{i}", "m") for i in range(3)]
        context = RequestContext("bench", manager, 0.0)
        figure = await per_call_us_async(lambda: guard.filter_targets(REQUEST, targets, context), n)
    return [("cost plugin filter_targets (budget guard), 3 candidates", figure)]


async def pipeline(strategy: str, n: int) -> list[tuple[str, float]]:
    """A whole complete() over 3 candidates routed by ``strategy``."""
    async with ProviderManager(config(strategy), drivers=DRIVERS) as manager:
        for _ in range(200):
            await manager.complete(REQUEST)
        figure = await per_call_us_async(lambda: manager.complete(REQUEST), n)
    return [(f"complete(), 3 candidates, strategy {strategy}", figure)]


async def main(n: int) -> None:
    # only the kernel, the predictor and the strategies: nothing else on the path
    os.environ.setdefault(ALLOW_ENV, "swarmgate,swarmgate-predict,swarmgate-cost,swarmgate-intelligent")
    gc.disable()
    rows = await hot_path(3, n)
    rows += await hot_path(8, n)
    rows += await budget_guard(n)
    rows += await pipeline("priority", n)
    rows += await pipeline("intelligent", n)
    gc.enable()
    print("| what | µs per call (median) |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="what the predictive routing costs per request")
    parser.add_argument("--n", type=int, default=20_000, help="calls per figure (default 20000)")
    anyio.run(main, parser.parse_args().n)
