"""``qwen-swarm-enhanced migrate --from litellm config.yaml [--output ours.json]``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from swarmgate import load_config
from swarmgate.cli import build_cli

CONFIGS = Path(__file__).parent / "configs"


def run(*args: str) -> Result:
    return CliRunner().invoke(build_cli(), ["migrate", *args])


def test_prints_the_config_on_stdout_and_the_notes_on_stderr() -> None:
    result = run("--from", "litellm", str(CONFIGS / "latency_qwen.yaml"))
    assert result.exit_code == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["routes"]["chat"]["fallbacks"] == ["qwen/qwen-plus"]
    lines = result.stderr.splitlines()
    assert "note: router_settings.disable_cooldowns: cooldowns are disabled" in result.stderr
    assert lines[-1] == "3 deployments in 2 model groups -> 2 providers, 1 route; 6 notes"


def test_writes_json_or_yaml_and_checks_with_the_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "ours.json"
    result = run("--from", "litellm", str(CONFIGS / "local_mixed.yaml"), "--output", str(out))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}: 3 deployments in 3 model groups -> 4 providers, 1 route;")
    assert f"config validate --config {out}" in result.stdout
    assert "note: model_list[2].litellm_params.model: no swarmgate provider type" in result.stderr
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0000")
    assert load_config(out).routes["llama3"].fallbacks == ("deepseek/deepseek-chat",)

    yaml_out = tmp_path / "ours.yaml"
    result = run("--from", "litellm", str(CONFIGS / "local_mixed.yaml"), "-o", str(yaml_out), "--quiet")
    assert result.exit_code == 0
    assert "note:" not in result.stderr
    assert yaml.safe_load(yaml_out.read_text()) == json.loads(out.read_text())


def test_json_report(tmp_path: Path) -> None:
    result = run("--from", "litellm", str(CONFIGS / "azure_load_balancing.yaml"), "--json", "--no-plugins")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["config"]["routes"]["gpt-4o"]["fallbacks"] == ["anthropic/claude-3-5-sonnet-20241022"]
    assert {"path": "router_settings.allowed_fails", "message": report["notes"][2]["message"]} in report["notes"]
    assert report["summary"].startswith("4 deployments in 3 model groups -> 4 providers, 3 routes")
    out = tmp_path / "ours.json"
    report = json.loads(
        run(
            "--from", "litellm", str(CONFIGS / "azure_load_balancing.yaml"), "--json", "--no-plugins", "-o", str(out)
        ).stdout
    )
    assert "config" not in report
    assert report["output"] == str(out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "litellm", "missing.yaml"], "error: missing.yaml: no such file"),
        (["--from", "kong", "x.yaml"], "Invalid value for '--from'"),
    ],
)
def test_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_refuses_to_overwrite_and_to_write_over_its_source(tmp_path: Path) -> None:
    source = tmp_path / "config.yaml"
    source.write_text((CONFIGS / "latency_qwen.yaml").read_text())
    out = tmp_path / "ours.json"
    out.write_text("{}")
    result = run("--from", "litellm", str(source), "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr == f"error: {out} exists: pass --force to overwrite it\n"
    assert out.read_text() == "{}"
    assert run("--from", "litellm", str(source), "-o", str(out), "--force").exit_code == 0
    assert json.loads(out.read_text())["routing"] == {"strategy": "performance-optimized"}
    result = run("--from", "litellm", str(source), "-o", str(source), "--force")
    assert result.exit_code == 2
    assert "--output is the source file" in result.stderr


def test_a_result_the_checks_refuse_is_not_written(tmp_path: Path) -> None:
    source = tmp_path / "config.yaml"
    source.write_text(
        "model_list:\n"
        "  - model_name: m\n"
        "    litellm_params: {model: openai/gpt-4o, api_key: os.environ/K, timeout: -5}\n"
        "    model_info: {input_cost_per_token: 0.000001}\n"
        "litellm_settings:\n"
        "  cache: true\n"
        "  cache_params: {type: redis, url: 'http://cache.internal:6379'}\n"
    )
    out = tmp_path / "ours.json"
    result = run("--from", "litellm", str(source), "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: {source}: converted config: state.options.url: expected a redis://, rediss:// or unix:// URL"
    )
    assert not out.exists()
    result = run("--from", "litellm", str(source), "-o", str(out), "--no-plugins")
    assert result.exit_code == 0  # the kernel's loader alone does not read the state backend's options
    assert "timeout" not in json.loads(out.read_text())["providers"]["openai"]  # a negative timeout is dropped


def test_an_unreadable_source_names_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: 42}\n")
    result = run("--from", "litellm", str(bad), "-o", str(tmp_path / "never.json"))
    assert result.exit_code == 2
    assert result.stderr == f"error: {bad}: model_list[0].litellm_params.model: required: the model LiteLLM calls\n"
    assert not (tmp_path / "never.json").exists()
