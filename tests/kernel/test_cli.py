"""The kernel's CLI commands: plugins list and test provider."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from swarmgate.cli import build_cli
from swarmgate.testing import FakeUpstream, ScriptedReply


def config_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "providers.json"
    path.write_text(
        json.dumps(
            {
                "providers": {
                    "up": {"type": "openai", "endpoint": url, "models": {"m": {"costPerToken": 0.001}}},
                    "off": {"type": "openai", "endpoint": url, "enabled": False},
                }
            }
        )
    )
    return path


def test_plugins_list_shows_kernel_entry_points() -> None:
    result = CliRunner().invoke(build_cli(), ["plugins", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {(row["group"], row["name"]): row for row in json.loads(result.output)}
    assert rows[("swarmgate", "core")]["distribution"] == "swarmgate"
    assert rows[("swarmgate.providers", "openai")]["status"] == "enabled"
    assert ("swarmgate.strategies", "priority") in rows


def test_test_provider_probes_and_sends_one_request(tmp_path: Path) -> None:
    with FakeUpstream.in_thread() as upstream:
        upstream.default = ScriptedReply(content="[yes] I am here", usage=(7, 4))
        config = config_file(tmp_path, upstream.url)
        result = CliRunner().invoke(build_cli(), ["test", "provider", "up", "--config", str(config)])
        streamed = CliRunner().invoke(build_cli(), ["test", "provider", "up", "--config", str(config), "--stream"])
        upstream.enqueue(ScriptedReply(status=429, error_message="slow down", headers={"retry-after": "3"}))
        failed = CliRunner().invoke(build_cli(), ["test", "provider", "up", "--config", str(config)])
        paths = [r.path for r in upstream.requests]
    assert result.exit_code == 0, result.output
    assert "healthy" in result.output
    assert "ok up/m" in result.output
    assert "[yes] I am here" in result.output
    assert "7 in, 4 out" in result.output
    assert "$0.011000" in result.output
    assert streamed.exit_code == 0, streamed.output
    assert "first token" in streamed.output
    assert failed.exit_code == 1
    assert "rate_limited" in failed.output
    assert "slow down" in failed.output
    assert "/v1/models" in paths


def test_test_provider_user_errors_exit_2(tmp_path: Path) -> None:
    with FakeUpstream.in_thread() as upstream:
        config = config_file(tmp_path, upstream.url)
        unknown = CliRunner().invoke(build_cli(), ["test", "provider", "nope", "--config", str(config)])
        disabled = CliRunner().invoke(build_cli(), ["test", "provider", "off", "--config", str(config)])
    assert unknown.exit_code == 2
    assert "unknown provider 'nope' (configured: ['off', 'up'])" in unknown.output
    assert disabled.exit_code == 2
    assert "disabled" in disabled.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"providers": {"x": {"type": 5}}}')
    result = CliRunner().invoke(build_cli(), ["test", "provider", "x", "--config", str(bad)])
    assert result.exit_code == 2
    assert "providers.x.type: expected a string, got 5" in result.output
