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


def test_multi_provider_example_against_each_wire() -> None:
    from swarmgate.testing import AnthropicWire, DashScopeWire, OllamaWire

    with (
        FakeUpstream.in_thread() as openai,
        FakeUpstream.in_thread(AnthropicWire()) as claude,
        FakeUpstream.in_thread(DashScopeWire()) as qwen,
        FakeUpstream.in_thread(OllamaWire()) as ollama,
    ):
        for name, upstream in (("openai", openai), ("claude", claude), ("qwen", qwen), ("ollama", ollama)):
            upstream.default = ScriptedReply(content=f"an ant, says {name}", usage=(6, 4))
        claude.default = ScriptedReply(content="an ant, says claude", usage=(6, 4), chunk_delay=0.1)  # loses the race
        result = run_example(
            "multi_provider.py",
            OPENAI_BASE_URL=openai.url,
            CLAUDE_BASE_URL=claude.url,
            QWEN_BASE_URL=qwen.url,
            OLLAMA_BASE_URL=ollama.url,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("openai: openai/gpt-4o-mini 6+4 tokens $0.00000330: an ant, says openai")
    assert lines[1].startswith("claude: claude/claude-haiku 6+4 tokens")
    assert lines[2].startswith("qwen: qwen/qwen-turbo 6+4 tokens")
    assert lines[3].startswith("ollama: ollama/llama3.2 6+4 tokens $0.00000000")
    assert lines[4].startswith("cheap: qwen/qwen-turbo")
    assert lines[5].startswith("fastest: fastest/race")
    assert "an ant, says openai" in lines[5]
