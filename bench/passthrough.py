"""The floor: a featureless Python pass-through proxy, for calibration.

An ASGI app on uvicorn (uvloop, httptools, one worker) that forwards each
``POST`` body to the upstream and its answer back -- streamed answers
piece by piece -- with nothing else: no parsing, no routing, no plugins.
``--client aiohttp`` uses aiohttp directly; ``--client native`` swarmgate's
pooled httpx client (:func:`swarmgate.http.make_client`) with its native
transport (:class:`swarmgate.transport.NativeTransport`, the default);
``--client httpx`` the same client over aiohttp's transport
(``SWARMGATE_HTTP_TRANSPORT=aiohttp``). What a gateway costs beyond this
is its own work.

Run: ``python bench/passthrough.py --upstream http://127.0.0.1:PORT --port 0
[--client aiohttp|native|httpx]``; it prints the bound port on its first line.

Or ``python bench/passthrough.py --compare aiohttp,native,httpx [--seconds 5]
[--rounds 3]``: starts ``fake_upstream.py`` and one pass-through per client,
loads each with ``wrk`` (``wrk/chat.lua``; JSON and streamed, one connection
and 50) in interleaved rounds, and prints each one's requests/s, median
latency and CPU µs per request (the pass-through process's user + system
time over the run; the best round by requests/s).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Passthrough:
    """Forward ``POST <path>`` to ``upstream + path``."""

    def __init__(self, upstream: str, client: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.kind = client
        self.session: Any = None

    async def startup(self) -> None:
        if self.kind == "aiohttp":
            import aiohttp

            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
        else:
            from swarmgate.config import ProviderConfig
            from swarmgate.http import TRANSPORT_ENV, make_client

            os.environ[TRANSPORT_ENV] = "native" if self.kind == "native" else "aiohttp"
            self.session = make_client(ProviderConfig(type="openai"), base_url=self.upstream)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.startup()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.session is not None:
                        await (self.session.close() if self.kind == "aiohttp" else self.session.aclose())
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {"content-type": "application/json"}
        if self.kind == "aiohttp":
            async with self.session.post(self.upstream + scope["path"], data=body, headers=headers) as response:
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status,
                        "headers": [(b"content-type", response.headers.get("content-type", "").encode())],
                    }
                )
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        else:
            request = self.session.build_request("POST", scope["path"], content=body, headers=headers)
            response = await self.session.send(request, stream=True)
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": [(b"content-type", response.headers.get("content-type", "").encode())],
                    }
                )
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            finally:
                await response.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def serve(upstream: str, port: int, client: str) -> None:
    """Run the pass-through on ``port`` (0: any); print the bound port."""
    import uvicorn

    config = uvicorn.Config(
        Passthrough(upstream, client),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
    sock = config.bind_socket()
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def _spawn(args: list[str]) -> tuple[subprocess.Popen[str], int]:
    """Start a server script; its port once it accepts connections."""
    process = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    deadline = time.monotonic() + 30.0
    while True:  # the port is printed when bound, before the server listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return process, port
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _wrk(port: int, *, stream: bool, connections: int, seconds: float) -> dict[str, Any]:
    env = {**os.environ, "BENCH_STREAM": "1" if stream else "0", "BENCH_KEY": "sk-bench", "BENCH_HEADERS": ""}
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    args += ["-s", str(HERE / "wrk" / "chat.lua"), f"http://127.0.0.1:{port}/v1/chat/completions"]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    data: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    return data


def compare(kinds: list[str], seconds: float, rounds: int) -> None:
    """Load one pass-through per client kind, interleaved; print a table."""
    sys.path.insert(0, str(HERE))
    from clients import cpu_seconds

    upstream, upstream_port = _spawn([str(HERE / "fake_upstream.py"), "--port", "0"])
    url = f"http://127.0.0.1:{upstream_port}"
    servers = {kind: _spawn([__file__, "--upstream", url, "--port", "0", "--client", kind]) for kind in kinds}
    rows: dict[tuple[str, int, str], dict[str, float]] = {}
    try:
        for stream in (False, True):
            for connections in (1, 50):
                for r in range(rounds):
                    for kind in kinds if r % 2 == 0 else kinds[::-1]:
                        process, port = servers[kind]
                        _wrk(port, stream=stream, connections=connections, seconds=1)  # warm-up
                        before = cpu_seconds(process.pid)
                        started = time.perf_counter()
                        data = _wrk(port, stream=stream, connections=connections, seconds=seconds)
                        elapsed = time.perf_counter() - started
                        cpu = cpu_seconds(process.pid) - before
                        requests = int(data["requests"])
                        run = {
                            "rps": requests / (data["duration_us"] / 1e6),
                            "p50_ms": data["p50_us"] / 1000.0,
                            "cpu_us": cpu / max(1, requests) * 1e6,
                            "cpu_share": cpu / elapsed,
                        }
                        key = ("stream" if stream else "json", connections, kind)
                        if key not in rows or run["rps"] > rows[key]["rps"]:
                            rows[key] = run
    finally:
        for process, _ in (*servers.values(), (upstream, 0)):
            process.terminate()
            process.wait(timeout=10)
    print(f"wrk -t1, {seconds:g} s per run, best of {rounds} interleaved rounds\n")
    print("| load | client | requests/s | median ms | CPU µs/request |")
    print("|---|---|---:|---:|---:|")
    for (mode, connections, kind), run in rows.items():
        print(f"| {mode} c{connections} | {kind} | {run['rps']:,.0f} | {run['p50_ms']:.3f} | {run['cpu_us']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--upstream")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--client", choices=["aiohttp", "native", "httpx"], default="aiohttp")
    parser.add_argument("--compare", help="comma-separated clients to load side by side (needs wrk)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.compare:
        compare([k.strip() for k in args.compare.split(",") if k.strip()], args.seconds, args.rounds)
    elif args.upstream:
        serve(args.upstream, args.port, args.client)
    else:
        parser.error("--upstream (serve) or --compare (measure) is required")


if __name__ == "__main__":
    main()
