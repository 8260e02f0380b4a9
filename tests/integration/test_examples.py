"""Every example runs, as a user would run it, against local servers only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from swarmgate.testing import FakeUpstream, ScriptedReply

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_example(name: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_openai_compatible_example_with_failover_to_the_backup() -> None:
    with FakeUpstream.in_thread() as primary, FakeUpstream.in_thread() as backup:
        primary.enqueue(ScriptedReply(status=503, error_message="primary overloaded"))
        result = run_example("openai_compatible.py", OPENAI_BASE_URL=primary.url, BACKUP_BASE_URL=backup.url)
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "provider: backup/llama3" in out
        assert "attempts: primary=overloaded, backup=ok" in out
        assert "streamed by primary/gpt-4o-mini" in out
        sent = [r for r in backup.requests if r.json is not None]
        assert sent[0].json is not None
        assert sent[0].json["model"] == "llama3"


def test_embedded_default_example() -> None:
    result = run_example("embedded_default.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("providers: sim-qwen, sim-openai, sim-claude, sim-local")
    assert result.stdout.count("\n#") == 6
