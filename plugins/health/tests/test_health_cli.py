"""``debug providers [--health] [--json]`` through click's CliRunner, against
real loopback upstreams (FakeUpstream + the openai driver) and the embedded
default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from swarmgate.cli import build_cli
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import FakeUpstream, ScriptedReply, unreachable_url


@pytest.fixture(autouse=True)
def _admit_health(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai,swarmgate-health")
    monkeypatch.delenv("SWARMGATE_CONFIG", raising=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(build_cli(), ["debug", "providers", *args], catch_exceptions=False)


def write(tmp_path: Path, config: dict[str, Any]) -> str:
    path = tmp_path / "providers.json"
    path.write_text(json.dumps(config))
    return str(path)


def providers(up_url: str, down_url: str | None = None, **routing: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "providers": {
            "up": {"type": "openai", "endpoint": up_url, "models": {"gpt-4o-mini": {}}, "priority": 1},
            "off": {"type": "openai", "endpoint": up_url, "enabled": False},
        },
        "routing": routing,
    }
    if down_url is not None:
        config["providers"]["down"] = {"type": "openai", "endpoint": down_url, "models": {"m": {}}, "timeout": 2000}
    return config


def test_all_healthy_prints_the_table_and_exits_0(tmp_path: Path) -> None:
    with FakeUpstream.in_thread() as upstream:
        path = write(tmp_path, providers(upstream.url))
        result = invoke("--health", "--config", path)
        models_probes = [r for r in upstream.requests if r.path.endswith("/models")]
    assert result.exit_code == 0, result.output
    out = result.output
    for column in ("provider", "type", "healthy", "latency", "detail", "uptime"):
        assert column in out
    assert "up" in out
    assert "openai" in out
    assert "yes" in out
    assert "100.0%" in out
    assert "disabled in the config" in out
    assert "1/1 healthy" in out
    assert len(models_probes) == 1


def test_one_down_exits_1_and_json_names_the_failure(tmp_path: Path) -> None:
    with FakeUpstream.in_thread() as upstream:
        path = write(tmp_path, providers(upstream.url, unreachable_url()))
        table = invoke("--health", "--config", path)
        as_json = invoke("--health", "--config", path, "--json")
    assert table.exit_code == 1, table.output
    assert "1/2 healthy; unhealthy: down" in table.output
    assert as_json.exit_code == 1
    rows = {row["provider"]: row for row in json.loads(as_json.stdout)}
    assert set(rows) == {"up", "off", "down"}
    up, down, off = rows["up"], rows["down"], rows["off"]
    assert up["healthy"] is True
    assert up["uptime"] == 1.0
    assert up["type"] == "openai"
    assert isinstance(up["latency_ms"], float)
    assert [c["check"] for c in up["checks"]] == ["ping"]
    assert down["healthy"] is False
    assert down["uptime"] == 0.0
    assert "ping:" in down["detail"]
    assert down["checks"][0]["ok"] is False
    assert off["healthy"] is None
    assert off["enabled"] is False


def test_request_checks_run_too(tmp_path: Path) -> None:
    checks = [{"type": "ping"}, {"type": "request", "testPrompt": "are you there?", "expectedResponseLength": 10}]
    with FakeUpstream.in_thread() as upstream:
        upstream.default = ScriptedReply(content="yes, here")  # 9 characters: too short
        path = write(tmp_path, providers(upstream.url, healthCheck={"checks": checks, "interval": 1000}))
        short = invoke("--health", "--config", path, "--json")
        upstream.default = ScriptedReply(content="yes, I am here")
        fine = invoke("--health", "--config", path, "--json")
        sent = [r.json["messages"][-1]["content"] for r in upstream.completions]
    assert short.exit_code == 1, short.output
    (row,) = [r for r in json.loads(short.stdout) if r["provider"] == "up"]
    assert [c["ok"] for c in row["checks"]] == [True, False]
    assert "answer too short: 9 characters" in row["detail"]
    assert fine.exit_code == 0, fine.output
    assert sent == ["are you there?", "are you there?"]


def test_without_health_lists_providers_without_probing(tmp_path: Path) -> None:
    with FakeUpstream.in_thread() as upstream:
        # Monitoring is on, with a first background check due at once: the command keeps it off.
        config = providers(upstream.url, unreachable_url(), healthCheck={"interval": 1000, "jitter": 0})
        path = write(tmp_path, config)
        table = invoke("--config", path)
        as_json = invoke("--config", path, "--json")
        requests = list(upstream.requests)
    assert table.exit_code == 0, table.output
    assert "gpt-4o-mini" in table.output
    assert "down" in table.output
    rows = json.loads(as_json.stdout)
    assert [r["provider"] for r in rows] == ["up", "off", "down"]
    assert all(r["healthy"] is None for r in rows)
    assert requests == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"providers": {}, "routing": {"healthCheck": {"interval": 0}}}, "routing.healthCheck.interval"),
        ({"providers": {"p": {"type": "openai", "healthCheck": {"failureThreshold": 0}}}}, "providers.p.healthCheck"),
        ({"providers": {"p": {"type": "no-such-type"}}}, "unknown provider type 'no-such-type'"),
        ('{"providers": ', "invalid JSON"),
    ],
)
def test_config_errors_exit_2(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    result = CliRunner().invoke(build_cli(), ["debug", "providers", "--health", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(build_cli(), ["debug", "providers", "--config", str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert "cannot read config file" in result.output


def test_an_active_background_monitor_does_not_double_probe(tmp_path: Path) -> None:
    with FakeUpstream.in_thread() as upstream:
        path = write(tmp_path, providers(upstream.url, healthCheck={"interval": 60_000, "jitter": 0}))
        result = invoke("--health", "--config", path)
        models_probes = [r for r in upstream.requests if r.path.endswith("/models")]
    assert result.exit_code == 0, result.output
    assert len(models_probes) == 1


def test_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-health,swarmgate-sim")
    result = invoke("--health", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["provider"] for r in rows} == {"sim-qwen", "sim-openai", "sim-claude", "sim-local"}
    assert all(r["type"] == "sim" and r["healthy"] for r in rows)
