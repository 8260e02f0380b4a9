"""Per-request cost of the ``weighted-round-robin`` balancer: a script, not a test.

Times ``order()`` on a three-target tier against the kernel's round-robin,
and the median ``complete()`` through a ProviderManager (three in-process
scripted providers, model ``"auto"``) with each balancer::

    .venv/bin/python plugins/wrr/bench_wrr.py [--calls 200000] [--requests 20000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import anyio

from swarmgate import CompletionRequest, ProviderManager, RequestContext, Target
from swarmgate.routing import RoundRobinBalancer
from swarmgate.testing.scripted import ScriptedProvider

os.environ["SWARMGATE_PLUGINS"] = "swarmgate,swarmgate-wrr"  # nothing else installed may interfere
NAMES = ("a", "b", "c")
CONFIG: dict[str, Any] = {
    "providers": {name: {"type": "scripted", "models": {"m": {}}} for name in NAMES},
    "routing": {"loadBalancing": {"algorithm": "weighted-round-robin", "weights": {"a": 5, "b": 3, "c": 2}}},
}


def per_call_ns(call: Callable[[], object], calls: int) -> float:
    """Best of five runs, nanoseconds per call."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter_ns()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter_ns() - started) / calls)
    return best


async def median_complete_us(algorithm: str, requests: int) -> float:
    config = {**CONFIG, "routing": {"loadBalancing": {**CONFIG["routing"]["loadBalancing"], "algorithm": algorithm}}}
    async with ProviderManager(config, drivers={"swarmgate.providers": {"scripted": ScriptedProvider}}) as manager:
        request = CompletionRequest.create("hello")
        for _ in range(1000):
            await manager.complete(request)
        samples = []
        for _ in range(requests):
            started = time.perf_counter_ns()
            await manager.complete(request)
            samples.append((time.perf_counter_ns() - started) / 1000.0)
    return statistics.median(samples)


async def main(calls: int, requests: int) -> None:
    async with ProviderManager(CONFIG, drivers={"swarmgate.providers": {"scripted": ScriptedProvider}}) as manager:
        tier = [Target(name, "m") for name in NAMES]
        request = CompletionRequest.create("hello")
        context = RequestContext("bench", manager, 0.0)
        balancer, baseline = manager.balancer, RoundRobinBalancer(manager)
        ours = per_call_ns(lambda: balancer.order(request, tier, context), calls)
        base = per_call_ns(lambda: baseline.order(request, tier, context), calls)
    print(f"order(), 3 targets:    weighted-round-robin {ours / 1000:.2f} µs, round-robin {base / 1000:.2f} µs")
    rr = await median_complete_us("round-robin", requests)
    wrr = await median_complete_us("weighted-round-robin", requests)
    print(f"complete() median:     weighted-round-robin {wrr:.1f} µs, round-robin {rr:.1f} µs ({wrr - rr:+.1f} µs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200_000, help="order() calls per timing run")
    parser.add_argument("--requests", type=int, default=20_000, help="complete() calls per balancer")
    args = parser.parse_args()
    anyio.run(main, args.calls, args.requests)
