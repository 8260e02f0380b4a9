"""Per-request cost of the ``sticky`` balancer: a script, not a test.

Times ``order()`` on a three-target tier for a request keyed by ``user``,
one keyed by a 1 KiB prompt prefix, and one with no key, against the
kernel's round-robin; and the median ``complete()`` through a
ProviderManager (three in-process scripted providers, model ``"auto"``,
``user`` set) with each balancer::

    .venv/bin/python plugins/sticky/bench_sticky.py [--calls 200000] [--requests 20000]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import anyio

from swarmgate import CompletionRequest, ProviderManager, RequestContext, Target
from swarmgate.routing import RoundRobinBalancer
from swarmgate.testing.scripted import ScriptedProvider

os.environ["SWARMGATE_PLUGINS"] = "swarmgate,swarmgate-sticky"  # nothing else installed may interfere
NAMES = ("a", "b", "c")
CONFIG: dict[str, Any] = {
    "providers": {name: {"type": "scripted", "models": {"m": {}}} for name in NAMES},
    "routing": {"loadBalancing": {"algorithm": "sticky"}},
    "plugins": {"sticky": {"prefixLength": 1024}},
}
BY_USER = CompletionRequest.create("hello", user="user-1234")
BY_PREFIX = CompletionRequest.create("hello " * 50, system="You are a helpful assistant. " * 40)
NO_KEY = CompletionRequest.create("")


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
    config = {**CONFIG, "routing": {"loadBalancing": {"algorithm": algorithm}}}
    async with ProviderManager(config, drivers={"swarmgate.providers": {"scripted": ScriptedProvider}}) as manager:
        for _ in range(1000):
            await manager.complete(BY_USER)
        samples = []
        for _ in range(requests):
            started = time.perf_counter_ns()
            await manager.complete(BY_USER)
            samples.append((time.perf_counter_ns() - started) / 1000.0)
    return statistics.median(samples)


async def main(calls: int, requests: int) -> None:
    async with ProviderManager(CONFIG, drivers={"swarmgate.providers": {"scripted": ScriptedProvider}}) as manager:
        tier = [Target(name, "m") for name in NAMES]
        context = RequestContext("bench", manager, 0.0)
        balancer, baseline = manager.balancer, RoundRobinBalancer(manager)
        base = per_call_ns(lambda: baseline.order(BY_USER, tier, context), calls)
        print(f"order(), 3 targets:    round-robin {base / 1000:.2f} µs")
        for label, request in (("user key", BY_USER), ("1 KiB prefix key", BY_PREFIX), ("no key", NO_KEY)):
            order = functools.partial(balancer.order, request, tier, context)
            ours = per_call_ns(order, calls)
            print(f"order(), 3 targets:    sticky, {label}: {ours / 1000:.2f} µs")
    rr = await median_complete_us("round-robin", requests)
    sticky = await median_complete_us("sticky", requests)
    print(f"complete() median:     sticky {sticky:.1f} µs, round-robin {rr:.1f} µs ({sticky - rr:+.1f} µs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200_000, help="order() calls per timing run")
    parser.add_argument("--requests", type=int, default=20_000, help="complete() calls per balancer")
    args = parser.parse_args()
    anyio.run(main, args.calls, args.requests)
