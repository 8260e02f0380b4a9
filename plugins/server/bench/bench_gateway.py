"""Benchmark: what the gateway adds over calling the upstream directly.

Starts, on loopback, an instant OpenAI-format upstream (a raw ASGI app on
uvicorn with httptools: canned answers, no work) and the gateway in front
of it (``serve``, one worker, uvloop and httptools), each in its own
process; then sends the same sequential requests (concurrency 1) straight
to the upstream and through the gateway, non-streaming and streaming, and
prints median and p99 latency, the difference (the gateway's added
latency) and, for streams, the time to the first byte.

Run:  .venv/bin/python plugins/server/bench/bench_gateway.py [--requests N]

A script, not a test: loopback only, bounded by ``--requests``. The
figures are only as quiet as the machine; the full comparison with peers
(throughput at saturation, memory) lives in ``bench/``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

UPSTREAM = r"""
import sys, uvicorn
ANSWER = b'{"id":"chatcmpl-b","object":"chat.completion","created":1,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"a short benchmark answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":4,"total_tokens":16}}'
CHUNK = b'data: {"id":"chatcmpl-b","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\n\n'
TAIL = (b'data: {"id":"chatcmpl-b","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b'data: {"id":"chatcmpl-b","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":4,"total_tokens":16}}\n\n'
        b'data: [DONE]\n\n')
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if b'"stream":true' in body.replace(b" ", b""):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for word in (b"a", b" short", b" benchmark", b" answer"):
            await send({"type": "http.response.body", "body": CHUNK % word, "more_body": True})
        await send({"type": "http.response.body", "body": TAIL})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]})
        await send({"type": "http.response.body", "body": ANSWER})
config = uvicorn.Config(app, host="127.0.0.1", port=0, http="httptools", loop="uvloop", log_level="warning", access_log=False)
sock = config.bind_socket()
print(sock.getsockname()[1], flush=True)
uvicorn.Server(config).run(sockets=[sock])
"""

BODY: dict[str, Any] = {
    "model": "bench-model",
    "messages": [{"role": "user", "content": "Explain swarm intelligence in one line."}],
    "max_tokens": 64,
}


def _spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)


def _measure(client: httpx.Client, url: str, n: int, *, stream: bool) -> tuple[list[float], list[float]]:
    """Total and first-byte latencies (ms) of ``n`` sequential requests."""
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}} if stream else BODY
    totals: list[float] = []
    firsts: list[float] = []
    for i in range(n + max(20, n // 10)):
        started = time.perf_counter()
        with client.stream("POST", url, json=body) as response:
            first = None
            for _ in response.iter_raw():
                if first is None:
                    first = time.perf_counter()
        done = time.perf_counter()
        if response.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {response.status_code}")
        if i >= max(20, n // 10):
            totals.append((done - started) * 1000.0)
            firsts.append(((first or done) - started) * 1000.0)
    return totals, firsts


def _p(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] if len(samples) > 1 else samples[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    upstream = _spawn([sys.executable, "-c", UPSTREAM])
    gateway = None
    try:
        assert upstream.stdout is not None
        port = int(upstream.stdout.readline())
        config = {
            "providers": {
                "bench": {
                    "type": "openai",
                    "endpoint": f"http://127.0.0.1:{port}/v1",
                    "apiKey": "sk-bench-0000",
                    "models": {"bench-model": {"costPerToken": 0.000001}},
                }
            }
        }
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.json"
            path.write_text(json.dumps(config))
            gateway = _spawn(
                [
                    sys.executable,
                    "-c",
                    "from swarmgate.cli import main; main()",
                    "serve",
                    "--config",
                    str(path),
                    "--port",
                    "0",
                ],
                env=os.environ.copy(),
            )
            assert gateway.stdout is not None
            base = gateway.stdout.readline().rsplit(" ", 1)[1].strip()
            with httpx.Client(timeout=10) as client:
                print(f"{'':22} {'p50 ms':>8} {'p99 ms':>8}   (concurrency 1, {args.requests} requests)")
                for stream in (False, True):
                    direct, direct_first = _measure(
                        client, f"http://127.0.0.1:{port}/v1/chat/completions", args.requests, stream=stream
                    )
                    through, through_first = _measure(
                        client, base + "/v1/chat/completions", args.requests, stream=stream
                    )
                    kind = "stream" if stream else "json"
                    print(f"{kind + ' direct':22} {_p(direct, 50):8.3f} {_p(direct, 99):8.3f}")
                    print(f"{kind + ' via gateway':22} {_p(through, 50):8.3f} {_p(through, 99):8.3f}")
                    print(f"{kind + ' added':22} {_p(through, 50) - _p(direct, 50):8.3f}")
                    if stream:
                        print(f"{'ttfb added':22} {_p(through_first, 50) - _p(direct_first, 50):8.3f}")
    finally:
        for process in (gateway, upstream):
            if process is not None:
                process.terminate()
                process.wait(10)


if __name__ == "__main__":
    main()
