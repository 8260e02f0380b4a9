"""Benchmark: swarmgate in front of a real loopback upstream, against calling it directly.

Starts the OpenAI-format fake upstream (``swarmgate.testing.FakeUpstream``)
in a separate process, then, in this process and in the same run, sends the
same sequential requests (a) straight to it with one pooled
``httpx.AsyncClient`` (httpx's own transport) and (b) through
``ProviderManager`` with the ``openai`` provider plugin, once per HTTP
transport behind its client (``--transports``: swarmgate's ``native`` one,
``aiohttp``'s, ``httpx``'s own; ``$SWARMGATE_HTTP_TRANSPORT`` picks it) --
non-streaming and streaming -- in ``--rounds`` interleaved rounds (the order
reversed every other round). It reports median and p99 latency, this
process's CPU time per request (the upstream's is not counted), and the
median's ratio to (a).

Run:  .venv/bin/python bench/upstream.py [--requests N] [--rounds R] [--transports native,aiohttp,httpx]

A script, not a test; loopback only; bounded by ``--requests``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx

from swarmgate import ProviderManager
from swarmgate.http import TRANSPORT_ENV

SERVER = """
import sys, time
from swarmgate.testing import FakeUpstream, ScriptedReply
with FakeUpstream.in_thread() as server:
    server.default = ScriptedReply(content="a short benchmark answer from the fake upstream", usage=(12, 9))
    print(server.url, flush=True)
    sys.stdin.read()
"""

BODY: dict[str, Any] = {
    "model": "bench-model",
    "messages": [{"role": "user", "content": "Explain swarm intelligence in one line."}],
    "max_tokens": 64,
}

PROMPT = "Explain swarm intelligence in one line."


class Samples:
    """Latencies (ms) and CPU µs per request, per round."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.cpu: list[float] = []


async def timed(fn: Callable[[], Awaitable[None]], n: int, into: Samples) -> None:
    """``n`` sequential calls of ``fn``: latencies and this process's CPU per call."""
    latencies = []
    cpu = time.process_time()
    for _ in range(n):
        start = time.perf_counter_ns()
        await fn()
        latencies.append((time.perf_counter_ns() - start) / 1e6)
    into.cpu.append((time.process_time() - cpu) / n * 1e6)
    into.latencies += latencies


async def run(url: str, n: int, rounds: int, transports: list[str]) -> dict[str, dict[str, Samples]]:
    config = {
        "providers": {
            "upstream": {"type": "openai", "endpoint": url, "models": {"bench-model": {"costPerToken": 0.000001}}}
        }
    }
    calls: dict[str, dict[str, Callable[[], Awaitable[None]]]] = {"non-streaming": {}, "streaming": {}}
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=url))

        async def direct() -> None:
            response = await client.post("/chat/completions", json=BODY)
            response.json()

        async def direct_stream() -> None:
            body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
            async with client.stream("POST", "/chat/completions", json=body) as response:
                async for _ in response.aiter_lines():
                    pass

        calls["non-streaming"]["direct (httpx)"] = direct
        calls["streaming"]["direct (httpx)"] = direct_stream
        for kind in transports:
            os.environ[TRANSPORT_ENV] = kind  # read when the provider opens its client
            manager = await stack.enter_async_context(ProviderManager(config))

            async def gateway(manager: ProviderManager = manager) -> None:
                await manager.complete(prompt=PROMPT, model="bench-model", max_tokens=64)

            async def gateway_stream(manager: ProviderManager = manager) -> None:
                async for _ in manager.stream(prompt=PROMPT, model="bench-model"):
                    pass

            calls["non-streaming"][f"swarmgate ({kind})"] = gateway
            calls["streaming"][f"swarmgate ({kind})"] = gateway_stream
        os.environ.pop(TRANSPORT_ENV, None)

        results: dict[str, dict[str, Samples]] = {}
        for mode, fns in calls.items():
            results[mode] = {name: Samples() for name in fns}
            for fn in fns.values():  # warm-up: connections open, caches filled
                for _ in range(max(20, n // 10)):
                    await fn()
            for r in range(rounds):
                order = list(fns.items()) if r % 2 == 0 else list(fns.items())[::-1]
                for name, fn in order:
                    await timed(fn, n, results[mode][name])
    return results


def p99(samples: list[float]) -> float:
    return sorted(samples)[int(0.99 * len(samples))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per row and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--transports", default="native,aiohttp,httpx", help="comma-separated: native, aiohttp, httpx")
    args = parser.parse_args()
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        results = anyio.run(run, url, args.requests, args.rounds, transports)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(
        f"{args.requests} sequential requests per row and round, {args.rounds} interleaved rounds, "
        "upstream in another process on loopback; CPU: this process's, median of the rounds\n"
    )
    print("| request | client | median ms | p99 ms | CPU µs/request | median vs direct |")
    print("|---|---|---:|---:|---:|---:|")
    for mode, rows in results.items():
        direct = statistics.median(rows["direct (httpx)"].latencies)
        for name, samples in rows.items():
            median = statistics.median(samples.latencies)
            print(
                f"| {mode} | {name} | {median:.3f} | {p99(samples.latencies):.3f} | "
                f"{statistics.median(samples.cpu):.0f} | {median / direct:.2f}x |"
            )


if __name__ == "__main__":
    main()
