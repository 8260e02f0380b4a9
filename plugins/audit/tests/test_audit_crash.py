"""Crash safety for real: a process serving traffic is killed with SIGKILL;
the log still holds every record committed before, and its chain verifies."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from audit_helpers import ALLOWED

from swarmgate.plugins import ALLOW_ENV
from swarmgate_audit import open_log

WORKER = Path(__file__).with_name("audit_crash_worker.py")
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


def test_kill_9_loses_nothing_committed_and_the_chain_verifies(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
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
        served = int(read_line(proc, "served ", deadline).split()[1])  # group-committing now: kill it mid-flight
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
    conn.close()
    audit = open_log(db)
    try:
        report = audit.verify_sync()
        records = audit.records_sync()
    finally:
        audit.close()
    assert report.ok, report.broken
    assert served >= FIRST
    assert len(records) >= FIRST
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert all(r.who == "crash-test" and r.data["ok"] for r in records)
    assert len({r.id for r in records}) == len(records)
