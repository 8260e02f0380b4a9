"""Crash safety for real: a process serving traffic is killed with SIGKILL;
the log still holds every request committed before, and is intact."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from usage_helpers import ALLOWED

from swarmgate.plugins import ALLOW_ENV
from swarmgate_usage import open_log

WORKER = Path(__file__).with_name("usage_crash_worker.py")
FIRST = 40


def read_line(proc: subprocess.Popen[str], prefix: str, deadline: float) -> str:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"the worker never printed {prefix!r} (exit code {proc.poll()})")


def test_kill_9_loses_nothing_committed_and_leaves_the_log_intact(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    env = {**os.environ, ALLOW_ENV: ALLOWED, "SWARMGATE_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(db), str(FIRST)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        assert read_line(proc, "committed ", deadline) == f"committed {FIRST}"
        # Keep it serving (and group-committing) a while, then kill it mid-flight.
        served = int(read_line(proc, "served ", deadline).split()[1])
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        orphans = conn.execute(
            "SELECT COUNT(*) FROM attempts WHERE request_id NOT IN (SELECT id FROM requests)"
        ).fetchone()[0]
        assert orphans == 0
    usage = open_log(db)
    try:
        records = usage.records_sync()
    finally:
        usage.close()
    assert len(records) >= FIRST
    assert served >= FIRST
    assert all(r.ok and r.caller == "crash-test" and len(r.attempts) == 1 for r in records)
    # Ids are unique and each committed request kept its attempt.
    assert len({r.id for r in records}) == len(records)
