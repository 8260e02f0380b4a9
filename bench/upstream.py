"""Benchmark: swarmgate in front of a real loopback upstream, against calling it directly.

Starts the OpenAI-format fake upstream (``swarmgate.testing.FakeUpstream``)
in a separate process, then, in this process and in the same run, sends the
same sequential requests (a) straight to it with one pooled
``httpx.AsyncClient`` and (b) through ``ProviderManager`` with the
``openai`` provider plugin -- non-streaming and streaming -- and reports
median and p99 latency and the ratio of (b) to (a).

Run:  .venv/bin/python bench/upstream.py [--requests N]

A script, not a test; loopback only; bounded by ``--requests``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx

from swarmgate import ProviderManager

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


async def timed(fn: Callable[[], Awaitable[None]], n: int) -> list[float]:
    for _ in range(max(20, n // 10)):
        await fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        await fn()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


async def run(url: str, n: int) -> list[tuple[str, list[float], list[float]]]:
    config = {
        "providers": {
            "upstream": {"type": "openai", "endpoint": url, "models": {"bench-model": {"costPerToken": 0.000001}}}
        }
    }
    rows = []
    async with httpx.AsyncClient(base_url=url) as client, ProviderManager(config) as manager:

        async def direct() -> None:
            response = await client.post("/chat/completions", json=BODY)
            response.json()

        async def direct_stream() -> None:
            body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
            async with client.stream("POST", "/chat/completions", json=body) as response:
                async for _ in response.aiter_lines():
                    pass

        async def gateway() -> None:
            await manager.complete(prompt="Explain swarm intelligence in one line.", model="bench-model", max_tokens=64)

        async def gateway_stream() -> None:
            async for _ in manager.stream(prompt="Explain swarm intelligence in one line.", model="bench-model"):
                pass

        rows.append(("non-streaming", await timed(direct, n), await timed(gateway, n)))
        rows.append(("streaming", await timed(direct_stream, n), await timed(gateway_stream, n)))
    return rows


def p99(samples: list[float]) -> float:
    return sorted(samples)[int(0.99 * len(samples))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        rows = anyio.run(run, url, args.requests)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"{args.requests} sequential requests per row, upstream in another process on loopback\n")
    print(
        "| request | direct median ms | via swarmgate median ms | direct p99 ms | via swarmgate p99 ms | median ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, direct, gateway in rows:
        d, g = statistics.median(direct), statistics.median(gateway)
        print(f"| {name} | {d:.3f} | {g:.3f} | {p99(direct):.3f} | {p99(gateway):.3f} | {g / d:.2f}x |")


if __name__ == "__main__":
    main()
