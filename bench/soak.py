"""Soak: swarmgate under a moderate, steady load for a long time -- does its
memory or its file-descriptor count grow?

Starts the fake upstream (core 1) and the gateway with the full default
plugin stack (``configs/swarmgate.json``, core 0, one worker), then sends
``--rate`` requests per second for ``--duration`` seconds from paced
keep-alive connections (core 1): half streamed, half not, every prompt
different (the cache looks up, stores and evicts; the usage and audit logs
grow on disk). Every ``--every`` seconds it samples the gateway's RSS and
open file descriptors. Start = the first sample after ``--settle`` seconds
of load (caches and pools warm); end = the last sample.

Run:  .venv/bin/python bench/soak.py [--duration 600] [--rate 200]

Prints a summary and writes ``bench/results/soak.json``. Bounded by
``--duration``; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from clients import AsyncConnection, cpu_seconds, fd_kinds, open_fds, rss_kb  # noqa: E402
from compare import (  # noqa: E402
    LOAD_CORE,
    PATH,
    Target,
    _read_port,
    spawn,
    spawn_gateway,
    stop,
    wait_ready,
)

RESULTS = HERE / "results" / "soak.json"


async def drive(
    target: Target, pid: int, *, rate: float, duration: float, every: float, workers: int
) -> dict[str, Any]:
    """Paced load and periodic samples; the figures of the run."""
    interval = workers / rate  # each worker's period between requests
    headers = target.request_headers()
    started = time.monotonic()
    deadline = started + duration
    counts = {"ok": 0, "errors": 0, "stream": 0, "json": 0}
    samples: list[dict[str, float]] = []

    async def worker(n: int) -> None:
        connection = AsyncConnection("127.0.0.1", target.port)
        i = 0
        next_at = started + n * interval / workers
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return
                if next_at > now:
                    await asyncio.sleep(next_at - now)
                next_at += interval
                stream = (i + n) % 2 == 0
                body = target.body(f"soak {n}-{i}: explain swarm intelligence", stream=stream)
                i += 1
                try:
                    status = await connection.request(PATH, body, headers)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    counts["errors"] += 1
                    await connection.aclose()
                    connection = AsyncConnection("127.0.0.1", target.port)
                    continue
                counts["ok" if status == 200 else "errors"] += 1
                counts["stream" if stream else "json"] += 1
        finally:
            await connection.aclose()

    async def sampler() -> None:
        cpu0 = cpu_seconds(pid)
        while True:
            now = time.monotonic()
            samples.append(
                {
                    "t_s": round(now - started, 1),
                    "rss_mb": round(rss_kb(pid) / 1024.0, 1),
                    "fds": open_fds(pid),
                    **{f"fds_{kind}": n for kind, n in fd_kinds(pid).items()},
                    "cpu_s": round(cpu_seconds(pid) - cpu0, 2),
                    "requests": counts["ok"] + counts["errors"],
                }
            )
            if now >= deadline:
                return
            await asyncio.sleep(min(every, max(0.0, deadline - now)))

    await asyncio.gather(sampler(), *(worker(n) for n in range(workers)))
    return {"counts": counts, "samples": samples}


def summarize(run: dict[str, Any], settle: float, duration: float) -> dict[str, Any]:
    samples = run["samples"]
    settled = [s for s in samples if s["t_s"] >= settle] or samples
    start, end = settled[0], samples[-1]
    rss = [s["rss_mb"] for s in settled]
    return {
        "requests": run["counts"],
        "rate_achieved": round((end["requests"]) / max(1.0, duration), 1),
        "rss_start_mb": start["rss_mb"],
        "rss_end_mb": end["rss_mb"],
        "rss_max_mb": max(rss),
        "rss_median_mb": statistics.median(rss),
        "rss_growth_mb": round(end["rss_mb"] - start["rss_mb"], 1),
        "fds_start": start["fds"],
        "fds_end": end["fds"],
        "fds_max": max(s["fds"] for s in settled),
        "cpu_share": round(end["cpu_s"] / max(1.0, end["t_s"]), 3),
        "start_at_s": start["t_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds before the start sample (default 30)")
    parser.add_argument("--workers", type=int, default=16, help="paced keep-alive connections (default 16)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    with tempfile.TemporaryDirectory(prefix="swarmgate-soak-") as tmp:
        work = Path(tmp)
        upstream = spawn(
            [sys.executable, str(HERE / "fake_upstream.py"), "--port", "0"], core=LOAD_CORE, log_path=work / "up.log"
        )
        gateway = None
        try:
            upstream_url = f"http://127.0.0.1:{_read_port(work / 'up.log', upstream)}"
            target = spawn_gateway("gateway", HERE / "configs" / "swarmgate.json", work, upstream_url)
            gateway = target.process
            assert gateway is not None
            wait_ready(target, 60.0, work / "gateway.log")
            idle = {"rss_mb": round(rss_kb(gateway.pid) / 1024.0, 1), "fds": open_fds(gateway.pid)}
            print(f"soak: {args.rate:g} req/s for {args.duration:g} s (half streamed); idle {idle}", file=sys.stderr)
            run = asyncio.run(
                drive(
                    target,
                    gateway.pid,
                    rate=args.rate,
                    duration=args.duration,
                    every=args.every,
                    workers=args.workers,
                )
            )
            assert target.home is not None
            sizes = {p.name: p.stat().st_size for p in target.home.rglob("*") if p.is_file()}
        finally:
            stop(gateway)
            stop(upstream)
    summary = summarize(run, args.settle, args.duration)
    report = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "idle": idle,
        "summary": summary,
        "data_files_bytes": sizes,
        "samples": run["samples"],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    s = summary
    print(
        f"requests {s['requests']} ({s['rate_achieved']}/s); RSS {s['rss_start_mb']} MB at {s['start_at_s']:g} s -> "
        f"{s['rss_end_mb']} MB at the end (max {s['rss_max_mb']}, growth {s['rss_growth_mb']:+} MB); "
        f"fds {s['fds_start']} -> {s['fds_end']} (max {s['fds_max']}); gateway CPU {s['cpu_share']:.0%} of a core"
    )
    print(f"results in {args.json}")


if __name__ == "__main__":
    main()
