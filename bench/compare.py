"""Benchmark: swarmgate next to its peers (LiteLLM's proxy, Portkey's
gateway) in front of the same instant upstream, on loopback, in one run.

One command::

    .venv/bin/python bench/compare.py

It installs what it needs when missing (``wrk`` with apt-get; LiteLLM's
proxy into its own venv ``bench/.peers/litellm``; Portkey's gateway with npm
into ``bench/.peers/portkey``), then:

- starts the fake upstream (``fake_upstream.py``: OpenAI wire, JSON and SSE,
  instant) pinned to core 1, the load core;
- starts each gateway pinned to core 0 (``taskset -c 0``), one worker:
  swarmgate (``bench/configs/swarmgate.json``: the full default plugin
  stack), LiteLLM (``bench/configs/litellm.yaml``), Portkey (routing headers);
- drives load with ``wrk`` pinned to core 1 (``wrk/chat.lua``: a new prompt
  per request, so swarmgate's cache looks up, misses and stores), for
  JSON and streamed answers, at concurrency 1 and 50, the upstream itself
  ("direct") measured the same way in the same run;
- times streams' first bytes and first SSE events with a raw-socket client;
- reads each gateway's RSS idle, under load (peak) and holding 1,000
  concurrent open streams, and its CPU time per request;

and prints one table and writes ``bench/results/latest.json``.
``--markdown`` also prints the table as Markdown (for docs/benchmarks.md).

The machine: 2 cores at least (core 0 for the gateway, core 1 for load and
upstream). The whole run takes 5-8 minutes; ``--quick`` about 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from clients import (  # noqa: E402 - the bench folder is not a package
    close_all,
    cpu_seconds,
    hold_streams,
    rss_kb,
    sequential_timings,
)

PEERS = HERE / ".peers"
LITELLM_VENV = PEERS / "litellm"
PORTKEY_DIR = PEERS / "portkey"
PORTKEY_SERVER = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
RESULTS = HERE / "results" / "latest.json"
GATEWAY_CORE = "0"
LOAD_CORE = "1"
CALLER_KEY = "sk-bench-caller"
PATH = "/v1/chat/completions"
PROMPT = "Explain swarm intelligence in one line."
HOLD_PROMPT = "HOLD-STREAM: keep this stream open."

PORTKEY_PACKAGE = {
    "name": "swarmgate-bench-portkey",
    "private": True,
    "dependencies": {"@portkey-ai/gateway": "*"},
    # Portkey's streaming needs this version of the Node adapter.
    "overrides": {"@hono/node-server": "1.14.1"},
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- installation -----------------------------------------------------------------


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    log("installing wrk (apt-get install -y wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, capture_output=True, check=True)


def ensure_litellm() -> Path:
    executable = LITELLM_VENV / "bin" / "litellm"
    if executable.exists():
        return executable
    log("installing LiteLLM's proxy into bench/.peers/litellm (pip install 'litellm[proxy]')")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run(
        [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "litellm[proxy]"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return executable


def ensure_portkey() -> Path:
    if PORTKEY_SERVER.exists():
        return PORTKEY_SERVER
    log("installing Portkey's gateway into bench/.peers/portkey (npm, @hono/node-server pinned to 1.14.1)")
    PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
    (PORTKEY_DIR / "package.json").write_text(json.dumps(PORTKEY_PACKAGE, indent=2))
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund"],
        cwd=PORTKEY_DIR,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return PORTKEY_SERVER


# -- processes ----------------------------------------------------------------------


@dataclass
class Target:
    """Something wrk can load: the upstream itself or a gateway in front of it."""

    name: str
    port: int
    headers: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    version: str = ""
    #: A swarmgate gateway's data directory (usage and audit logs).
    home: Path | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def body(self, prompt: str, *, stream: bool) -> bytes:
        data: dict[str, Any] = {
            "model": "bench-model",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": prompt}],
        }
        if stream:
            data["stream"] = True
            data["stream_options"] = {"include_usage": True}
        return json.dumps(data, separators=(",", ":")).encode()

    def request_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {CALLER_KEY}", **self.headers}


def spawn(args: list[str], *, core: str, env: dict[str, str] | None = None, log_path: Path) -> subprocess.Popen[bytes]:
    """``args`` pinned to ``core``, in a session of its own (stopped as a group)."""
    output = log_path.open("wb")
    return subprocess.Popen(
        ["taskset", "-c", core, *args],
        env={**os.environ, **(env or {})},
        stdout=output,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


#: swarmgate's ``serve`` command, run with this interpreter.
SERVE = (sys.executable, "-c", "from swarmgate.cli import main; main()", "serve")


def spawn_gateway(name: str, config: Path, work: Path, upstream_url: str) -> Target:
    """swarmgate's ``serve`` with ``config`` on a free port, pinned to the
    gateway core, with a data directory of its own under ``work`` and the
    upstream and caller key the bench configs read from the environment;
    its output goes to ``work/<name>.log``, its files to ``target.home``."""
    port = free_port()
    home = work / f"{name}-home"
    home.mkdir()
    target = Target(name, port, version=importlib.metadata.version("swarmgate"), home=home)
    target.process = spawn(
        [*SERVE, "--config", str(config), "--port", str(port)],
        core=GATEWAY_CORE,
        env={"SWARMGATE_HOME": str(home), "BENCH_UPSTREAM": upstream_url, "BENCH_CALLER_KEY": CALLER_KEY},
        log_path=work / f"{name}.log",
    )
    return target


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def wait_ready(target: Target, timeout: float, log_path: Path) -> None:
    """Until a chat completion through ``target`` answers 200."""
    deadline = time.monotonic() + timeout
    last = ""
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if target.process is not None and target.process.poll() is not None:
                raise RuntimeError(f"{target.name} exited at start-up; see {log_path}")
            try:
                response = client.post(
                    f"http://127.0.0.1:{target.port}{PATH}",
                    content=target.body(PROMPT + " (ready?)", stream=False),
                    headers=target.request_headers(),
                )
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
    raise RuntimeError(f"{target.name} not ready after {timeout:.0f} s ({last}); see {log_path}")


# -- measurements -------------------------------------------------------------------


@dataclass
class Run:
    """One wrk run's figures."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us_per_request: float | None = None
    cpu_share: float | None = None
    peak_rss_mb: float | None = None


@contextlib.contextmanager
def sampling_rss(pid: int | None) -> Iterator[list[int]]:
    """Sample ``pid``'s RSS every 0.25 s while the block runs."""
    samples: list[int] = []
    if pid is None:
        yield samples
        return
    stop_event = threading.Event()

    def sample() -> None:
        while not stop_event.is_set():
            samples.append(rss_kb(pid))
            stop_event.wait(0.25)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop_event.set()
        thread.join()
        samples.append(rss_kb(pid))


def wrk(target: Target, *, stream: bool, connections: int, seconds: float, record: bool = True) -> Run | None:
    """``wrk`` on core 1 against ``target`` for ``seconds``."""
    env = {
        **os.environ,
        "BENCH_STREAM": "1" if stream else "0",
        "BENCH_KEY": CALLER_KEY,
        "BENCH_HEADERS": "|".join(f"{k}: {v}" for k, v in target.headers.items()),
    }
    args = [
        "taskset",
        "-c",
        LOAD_CORE,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "wrk" / "chat.lua"),
        f"http://127.0.0.1:{target.port}{PATH}",
    ]
    pid = target.pid
    cpu_before = cpu_seconds(pid) if pid else 0.0
    with sampling_rss(pid) as rss:
        started = time.perf_counter()
        out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
        elapsed = time.perf_counter() - started
    cpu_after = cpu_seconds(pid) if pid else 0.0
    if not record:
        return None
    line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result for {target.name}:\n{out}")
    data = json.loads(line[len("WRKJSON ") :])
    requests = int(data["requests"])
    errors = sum(int(data[k]) for k in data if k.startswith("errors_"))
    run = Run(
        rps=requests / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000.0,
        p99_ms=data["p99_us"] / 1000.0,
        errors=errors,
        requests=requests,
    )
    if pid:
        run.cpu_us_per_request = (cpu_after - cpu_before) / max(1, requests) * 1e6
        run.cpu_share = (cpu_after - cpu_before) / elapsed
        run.peak_rss_mb = max(rss) / 1024.0
    return run


def ttfb(target: Target, n: int) -> dict[str, float]:
    """Median and p99 ms to the first byte and to the first SSE event of a
    stream, and of the whole answer, at concurrency 1 (raw sockets)."""
    bodies = [target.body(f"{PROMPT} ttfb #{i}", stream=True) for i in range(n + 20)]
    timings = sequential_timings("127.0.0.1", target.port, PATH, bodies, target.request_headers())
    return {
        "first_byte_p50_ms": statistics.median(timings.first_byte),
        "first_event_p50_ms": statistics.median(timings.first_event),
        "first_event_p99_ms": percentile(timings.first_event, 0.99),
        "total_p50_ms": statistics.median(timings.total),
    }


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def open_streams(target: Target, count: int, within: float) -> dict[str, float]:
    """RSS of the gateway while it holds ``count`` concurrent streams open."""
    assert target.pid is not None

    async def go() -> dict[str, float]:
        body = target.body(HOLD_PROMPT, stream=True)
        writers, opened = await hold_streams(
            "127.0.0.1", target.port, PATH, body, target.request_headers(), count, within=within
        )
        await asyncio.sleep(1.0)
        rss = rss_kb(target.pid or 0) / 1024.0
        await close_all(writers)
        return {"opened": opened, "rss_mb": rss}

    result = asyncio.run(go())
    time.sleep(2.0)  # let the gateway cancel its upstream calls
    return result


# -- the run ------------------------------------------------------------------------


def versions(targets: dict[str, Target]) -> dict[str, str]:
    def dist(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1:2]
    found = {
        "swarmgate": dist("swarmgate"),
        "python": platform.python_version(),
        "uvloop": dist("uvloop"),
        "uvicorn": dist("uvicorn"),
        "httptools": dist("httptools"),
        "httpx": dist("httpx"),
        "httpx-aiohttp": dist("httpx-aiohttp"),
        "aiohttp": dist("aiohttp"),
        "orjson": dist("orjson"),
        "wrk": wrk_version[0] if wrk_version else "?",
    }
    for name in ("litellm", "portkey"):
        if name in targets:
            found[name] = targets[name].version
    if "portkey" in targets:
        found["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return found


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def start_all(
    work: Path, wanted: list[str], upstream_port: int, floors: list[str], variants: dict[str, str]
) -> dict[str, Target]:
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    targets: dict[str, Target] = {"direct": Target("direct", upstream_port)}
    if "swarmgate" in wanted:
        targets["swarmgate"] = spawn_gateway("swarmgate", HERE / "configs" / "swarmgate.json", work, upstream_url)
    if "portkey" in wanted:
        server = ensure_portkey()
        port = free_port()
        version = json.loads((server.parent.parent / "package.json").read_text())["version"]
        target = Target(
            "portkey",
            port,
            headers={"x-portkey-provider": "openai", "x-portkey-custom-host": f"{upstream_url}/v1"},
            version=version,
        )
        target.process = spawn(
            ["node", str(server), f"--port={port}", "--headless"],
            core=GATEWAY_CORE,
            env={"NODE_ENV": "production"},
            log_path=work / "portkey.log",
        )
        targets["portkey"] = target
    if "litellm" in wanted:
        executable = ensure_litellm()
        port = free_port()
        version = subprocess.run(
            [str(LITELLM_VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        target = Target("litellm", port, version=version)
        target.process = spawn(
            [
                str(executable),
                "--config",
                str(HERE / "configs" / "litellm.yaml"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
            ],
            core=GATEWAY_CORE,
            env={
                "BENCH_UPSTREAM_V1": f"{upstream_url}/v1",
                "BENCH_LITELLM_KEY": CALLER_KEY,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR",
            },
            log_path=work / "litellm.log",
        )
        targets["litellm"] = target
    for kind in floors:
        port = free_port()
        target = Target(f"floor-{kind}", port)
        target.process = spawn(
            [
                sys.executable,
                str(HERE / "passthrough.py"),
                "--upstream",
                upstream_url,
                "--port",
                str(port),
                "--client",
                kind,
            ],
            core=GATEWAY_CORE,
            log_path=work / f"floor-{kind}.log",
        )
        targets[target.name] = target
    for name, config in variants.items():
        targets[name] = spawn_gateway(name, Path(config), work, upstream_url)
    for target in targets.values():
        if target.process is not None:
            wait_ready(target, 120.0, work / f"{target.name}.log")
            log(f"{target.name} ready on port {target.port}")
    return targets


def measure(targets: dict[str, Target], args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {name: {} for name in targets}
    gateways = [t for t in targets.values() if t.process is not None]
    for target in gateways:  # idle: after start-up and a short warm-up, at rest
        wrk(target, stream=False, connections=1, seconds=1, record=False)
        wrk(target, stream=True, connections=1, seconds=1, record=False)
    time.sleep(2.0)
    for target in gateways:
        results[target.name]["idle_rss_mb"] = rss_kb(target.pid or 0) / 1024.0
    for stream in (False, True):
        mode = "stream" if stream else "json"
        for connections in (1, 50):
            rounds = args.rounds if connections > 1 else 1
            runs: dict[str, list[Run]] = {name: [] for name in targets}
            for r in range(rounds):
                order = list(targets.values()) if r % 2 == 0 else list(targets.values())[::-1]
                for target in order:
                    wrk(target, stream=stream, connections=connections, seconds=args.warmup, record=False)
                    run = wrk(target, stream=stream, connections=connections, seconds=args.duration)
                    assert run is not None
                    runs[target.name].append(run)
                    log(
                        f"{mode} c{connections} {target.name}: {run.rps:,.0f} req/s, "
                        f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, errors {run.errors}"
                    )
            for name, found in runs.items():
                best = max(found, key=lambda r: r.rps)
                results[name][f"{mode}_c{connections}"] = {
                    **best.__dict__,
                    "rounds_rps": [round(r.rps, 1) for r in found],
                }
        for target in targets.values():
            if stream:
                results[target.name]["ttfb"] = ttfb(target, args.ttfb_requests)
                log(f"ttfb {target.name}: {results[target.name]['ttfb']}")
    for target in gateways:
        results[target.name]["load_rss_mb"] = max(
            results[target.name][key].get("peak_rss_mb") or 0.0
            for key in ("json_c1", "json_c50", "stream_c1", "stream_c50")
        )
        if args.streams:
            held = open_streams(target, args.streams, within=60.0)
            results[target.name]["open_streams"] = held
            log(f"{args.streams} open streams through {target.name}: {held}")
    direct = results["direct"]
    for target in gateways:
        mine = results[target.name]
        mine["added_ms_c1"] = {
            "json": mine["json_c1"]["p50_ms"] - direct["json_c1"]["p50_ms"],
            "stream": mine["stream_c1"]["p50_ms"] - direct["stream_c1"]["p50_ms"],
        }
        mine["added_ttfb_ms"] = mine["ttfb"]["first_event_p50_ms"] - direct["ttfb"]["first_event_p50_ms"]
    return results


# -- reporting ----------------------------------------------------------------------


def rows(results: dict[str, Any], names: list[str]) -> list[tuple[str, list[str]]]:
    def get(name: str, *keys: str) -> Any:
        node: Any = results.get(name, {})
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    def fmt(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    out: list[tuple[str, list[str]]] = []
    for mode, label in (("json", "JSON"), ("stream", "stream")):
        out.append((f"{label}: throughput at c50 (req/s)", [fmt(get(n, f"{mode}_c50", "rps"), ",.0f") for n in names]))
        out.append((f"{label}: p50 / p99 at c1 (ms)", [_pair(get(n, f"{mode}_c1"), fmt) for n in names]))
        out.append((f"{label}: p50 / p99 at c50 (ms)", [_pair(get(n, f"{mode}_c50"), fmt) for n in names]))
        out.append((f"{label}: added p50 at c1 (ms)", [fmt(get(n, "added_ms_c1", mode), ".3f") for n in names]))
        out.append(
            (
                f"{label}: gateway CPU per request (µs)",
                [fmt(get(n, f"{mode}_c50", "cpu_us_per_request"), ",.0f") for n in names],
            )
        )
    out.append(("stream: first SSE event p50 (ms)", [fmt(get(n, "ttfb", "first_event_p50_ms"), ".3f") for n in names]))
    out.append(("stream: added time to first event (ms)", [fmt(get(n, "added_ttfb_ms"), ".3f") for n in names]))
    out.append(("RSS idle (MB)", [fmt(get(n, "idle_rss_mb"), ".1f") for n in names]))
    out.append(("RSS under load, peak (MB)", [fmt(get(n, "load_rss_mb"), ".1f") for n in names]))
    out.append(
        (
            "RSS with 1,000 open streams (MB)",
            [
                "-"
                if get(n, "open_streams") is None
                else f"{get(n, 'open_streams', 'rss_mb'):.1f} ({get(n, 'open_streams', 'opened'):.0f} open)"
                for n in names
            ],
        )
    )
    return out


def _pair(run: dict[str, Any] | None, fmt: Callable[[Any, str], str]) -> str:
    if run is None:
        return "-"
    return f"{fmt(run['p50_ms'], '.2f')} / {fmt(run['p99_ms'], '.2f')}"


def verdict(results: dict[str, Any]) -> list[str]:
    """The issue's targets, met or not."""
    sg = results.get("swarmgate")
    if not sg:
        return []
    lines = []
    pk = results.get("portkey")
    if pk:
        for mode in ("json", "stream"):
            ratio = sg[f"{mode}_c50"]["rps"] / pk[f"{mode}_c50"]["rps"]
            lines.append(f"throughput per core vs Portkey ({mode}): {ratio:.2f}x (target >= 2x)")
    lines.append(f"added latency at c1 (JSON): {sg['added_ms_c1']['json']:.3f} ms (target < 0.5 ms)")
    lines.append(f"added time to first stream event: {sg['added_ttfb_ms']:.3f} ms (target < 0.5 ms)")
    lines.append(f"idle RSS: {sg['idle_rss_mb']:.1f} MB (target < 80 MB)")
    return lines


def print_table(report: dict[str, Any], markdown: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    results = report["results"]
    fixed = ("direct", "swarmgate", "portkey", "litellm")
    names = [n for n in fixed if n in results] + [n for n in results if n not in fixed]
    titles = {"direct": "upstream direct", "swarmgate": "swarmgate", "portkey": "Portkey", "litellm": "LiteLLM"}
    titles.update({n: n for n in names if n not in titles})
    table = Table(title=f"Gateways on one core, loopback, {report['date']}")
    table.add_column("")
    for name in names:
        table.add_column(titles[name], justify="right")
    body = rows(results, names)
    for label, cells in body:
        table.add_row(label, *cells)
    console = Console()
    console.print(table)
    for line in report["verdict"]:
        console.print(line)
    if markdown:
        print()
        print("| | " + " | ".join(titles[n] for n in names) + " |")
        print("|---|" + "---:|" * len(names))
        for label, cells in body:
            print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measured wrk run (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each run (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the c50 runs; the best counts")
    parser.add_argument("--ttfb-requests", type=int, default=300, help="sequential streams timed per target")
    parser.add_argument("--streams", type=int, default=1000, help="concurrent open streams held (0: skip)")
    parser.add_argument(
        "--only", default="swarmgate,portkey,litellm", help="comma-separated gateways (swarmgate, portkey, litellm)"
    )
    parser.add_argument(
        "--floors",
        default="",
        type=lambda v: [x for x in v.split(",") if x],
        help="also load featureless pass-through proxies (bench/passthrough.py): aiohttp, native, httpx (comma-separated)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=CONFIG",
        help="also load swarmgate with another config (repeatable), e.g. bare=/tmp/bare.json",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (3 s, 1 round, 100 ttfb, 300 streams)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.rounds, args.ttfb_requests = 3.0, 1.0, 1, 100
        args.streams = min(args.streams, 300)
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 CPU cores: core 0 for the gateway, core 1 for the load and the upstream")
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    os.sched_setaffinity(0, {int(LOAD_CORE)})  # this script's own clients run on the load core
    ensure_wrk()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="swarmgate-bench-") as tmp:
        work = Path(tmp)
        upstream = spawn(
            [sys.executable, str(HERE / "fake_upstream.py"), "--port", "0", "--hold", "90"],
            core=LOAD_CORE,
            log_path=work / "upstream.log",
        )
        targets: dict[str, Target] = {}
        try:
            upstream_port = _read_port(work / "upstream.log", upstream)
            targets = start_all(work, wanted, upstream_port, args.floors, dict(v.split("=", 1) for v in args.variant))
            report: dict[str, Any] = {
                "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": machine(),
                "versions": versions(targets),
                "settings": {
                    "duration_s": args.duration,
                    "warmup_s": args.warmup,
                    "rounds": args.rounds,
                    "ttfb_requests": args.ttfb_requests,
                    "open_streams": args.streams,
                    "gateway_core": GATEWAY_CORE,
                    "load_core": LOAD_CORE,
                    "swarmgate_config": "bench/configs/swarmgate.json",
                    "litellm_config": "bench/configs/litellm.yaml",
                },
            }
            report["results"] = measure(targets, args)
        finally:
            for target in targets.values():
                stop(target.process)
            stop(upstream)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["duration_s"] = round(time.time() - started, 1)
    report["verdict"] = verdict(report["results"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report, args.markdown)
    log(f"done in {report['duration_s']:.0f} s; results in {args.json}")


def _read_port(path: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        first = text.splitlines()[0].strip() if text.strip() else ""
        if first.isdigit():
            return int(first)
        if process.poll() is not None:
            raise RuntimeError(f"the fake upstream exited: {text}")
        time.sleep(0.05)
    raise RuntimeError("the fake upstream did not start")


if __name__ == "__main__":
    main()
