"""The kernel's ``config get / set / validate`` commands on real files
(JSON and YAML), with only the kernel's own plugins loaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import ruamel.yaml  # noqa: F401 - the comment-keeping YAML path under test (a dev extra; optional for the kernel)
import yaml
from click.testing import CliRunner, Result

from swarmgate import cli as cli_module
from swarmgate.cli import build_cli, parse_config_key, parse_config_value
from swarmgate.errors import ConfigError
from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV

BASE: dict[str, Any] = {
    "providers": {
        "openai": {
            "type": "openai",
            "apiKey": "${OPENAI_API_KEY}",
            "models": {"gpt-4.1": {"maxTokens": 4096}, "gpt-4o": {}},
        },
        "local": {"type": "openai", "apiKey": "sk-literal-secret-value", "models": {"m": {}}},
    },
    "routes": {"fast": ["openai/gpt-4o", "local/m"]},
    "routing": {"strategy": "priority"},
}


@pytest.fixture(autouse=True)
def _kernel_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel, the openai provider type (the configs' providers) and the budget plugin (budget.* keys)."""
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai,swarmgate-budget")
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    monkeypatch.delenv("SWARMGATE_CONFIG", raising=False)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(build_cli(), ["config", *args], env=env)


def write_json(tmp_path: Path, data: dict[str, Any], indent: int = 2) -> Path:
    path = tmp_path / "swarmgate.json"
    path.write_text(json.dumps(data, indent=indent) + "\n")
    return path


def test_keys_parse_with_aliases_indices_and_quotes() -> None:
    assert parse_config_key("budget.daily") == [("routing", False), ("budgetLimits", False), ("daily", False)]
    assert parse_config_key("routes.fast.targets[0]") == [
        ("routes", False),
        ("fast", False),
        ("targets", False),
        (0, True),
    ]
    assert parse_config_key('providers.openai.models["gpt-4.1"].maxTokens')[3] == ("gpt-4.1", True)
    assert parse_config_key("providers.'a.b'")[1] == ("a.b", True)
    for bad in ("", "a..b", "a.", "a[", "a[x]", 'a."b'):
        with pytest.raises(ConfigError):
            parse_config_key(bad)


def test_values_parse_as_json_else_text() -> None:
    assert parse_config_value("50.0") == 50.0
    assert parse_config_value("50") == 50
    assert parse_config_value("true") is True
    assert parse_config_value("null") is None
    assert parse_config_value("[0.5, 0.8]") == [0.5, 0.8]
    assert parse_config_value('{"daily": 5}') == {"daily": 5}
    assert parse_config_value('"50"') == "50"
    assert parse_config_value("cost-optimized") == "cost-optimized"
    assert parse_config_value("NaN") == "NaN"


def test_get_values_as_written(tmp_path: Path) -> None:
    path = write_json(tmp_path, BASE)
    assert run("get", "routing.strategy", "--config", str(path)).output == "priority\n"
    assert run("get", "providers.openai.apiKey", "--config", str(path)).output == "${OPENAI_API_KEY}\n"
    assert run("get", "providers.local.apiKey", "--config", str(path)).output == "***\n"  # a literal secret
    assert run("get", "providers.openai.models.gpt-4.1.maxTokens", "--config", str(path)).output == "4096\n"
    assert run("get", 'providers.openai.models["gpt-4.1"]', "--config", str(path), "--json").output == (
        '{\n  "maxTokens": 4096\n}\n'
    )
    assert run("get", "routes.fast[1]", "--config", str(path)).output == "local/m\n"
    whole = run("get", "--config", str(path), "--json")
    assert json.loads(whole.output)["providers"]["local"]["apiKey"] == "***"
    as_yaml = run("get", "providers.openai", "--config", str(path))
    assert yaml.safe_load(as_yaml.output)["models"] == {"gpt-4.1": {"maxTokens": 4096}, "gpt-4o": {}}
    env = run("get", "routing.strategy", env={"SWARMGATE_CONFIG": str(path)})
    assert env.output == "priority\n"


def test_get_errors_exit_2(tmp_path: Path) -> None:
    path = write_json(tmp_path, BASE)
    missing = run("get", "budget.daily", "--config", str(path))
    assert missing.exit_code == 2
    assert "routing.budgetLimits: not set" in missing.output
    wrong = run("get", "routing.strategy.name", "--config", str(path))
    assert wrong.exit_code == 2
    assert "routing.strategy.name: routing.strategy is a string, not an object or a list" in wrong.output
    no_file = run("get", "routing")
    assert no_file.exit_code == 2
    assert "no config file: pass --config PATH or set SWARMGATE_CONFIG" in no_file.output


def test_set_writes_the_value_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write_json(tmp_path, BASE, indent=4)
    result = run("set", "budget.daily", "50.0", "--config", str(path))
    assert result.exit_code == 0, result.output
    assert result.output == f"routing.budgetLimits.daily = 50.0 ({path})\n"
    written = json.loads(path.read_text())
    assert written["routing"] == {"strategy": "priority", "budgetLimits": {"daily": 50.0}}
    assert written["providers"] == BASE["providers"]  # ${ENV} references and order kept
    assert list(written) == list(BASE)
    assert path.read_text().startswith('{\n    "providers"')  # its indentation too
    assert run("set", "routing.strategy", "priority", "--config", str(path)).exit_code == 0
    assert run("set", "routes.fast[2]", "openai/gpt-4.1", "--config", str(path)).exit_code == 0  # append
    assert run("set", "providers.openai.models.gpt-4.1.maxTokens", "8192", "--config", str(path)).exit_code == 0
    written = json.loads(path.read_text())
    assert written["routes"]["fast"] == ["openai/gpt-4o", "local/m", "openai/gpt-4.1"]
    assert written["providers"]["openai"]["models"]["gpt-4.1"] == {"maxTokens": 8192}


def test_set_creates_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "new.json"
    result = run("set", "routing.strategy", "priority", "--config", str(path))
    assert result.exit_code == 0, result.output
    assert json.loads(path.read_text()) == {"routing": {"strategy": "priority"}}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("routing.strategy", "5", "error: routing.strategy: expected a string, got 5;"),
        ("routing.nope", "1", "error: routing.nope: unknown key (expected one of:"),
        ("routing.hedging.maxRatio", "2", "error: routing.hedging.maxRatio: must be between 0 and 1;"),
        ("routes.fast[7]", '"x/y"', "error: routes.fast[7]: index out of range: routes.fast has 2 item(s);"),
        ("routes.fast.x", "1", "error: routes.fast.x: routes.fast is a list: use an index like [0];"),
        ("routing..x", "1", "error: routing..x: malformed key: an empty segment;"),
        ("routing.fallbackChains", '[["openai", "ghost"]]', "error: routing.fallbackChains[0][1]: unknown provider"),
    ],
)
def test_set_refuses_a_bad_value_in_one_line(tmp_path: Path, key: str, value: str, message: str) -> None:
    path = write_json(tmp_path, BASE)
    before = path.read_bytes()
    result = run("set", key, value, "--config", str(path))
    assert result.exit_code == 2
    assert result.output.startswith(message), result.output
    assert result.output.count("\n") == 1
    assert result.output.rstrip().endswith(f"{path} left unchanged")
    assert path.read_bytes() == before


YAML_TEXT = """\
# The gateway's config.
providers:
  openai:
    type: openai
    apiKey: ${OPENAI_API_KEY}  # from the environment
    models:
      gpt-4o: {}
routing:
  strategy: priority  # cheapest later
"""


def test_set_in_yaml_keeps_comments(tmp_path: Path) -> None:
    path = tmp_path / "swarmgate.yaml"
    path.write_text(YAML_TEXT)
    result = run("set", "budget.monthly", "300", "--config", str(path))
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert "# The gateway's config." in text
    assert "apiKey: ${OPENAI_API_KEY}  # from the environment" in text
    assert "strategy: priority  # cheapest later" in text
    assert yaml.safe_load(text)["routing"] == {"strategy": "priority", "budgetLimits": {"monthly": 300}}


def test_set_in_yaml_without_ruamel_says_comments_were_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "_roundtrip_yaml", lambda: None)
    path = tmp_path / "swarmgate.yml"
    path.write_text(YAML_TEXT)
    result = CliRunner().invoke(build_cli(), ["config", "set", "budget.daily", "10", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "re-written without its comments (install ruamel.yaml to keep them)" in result.stderr
    data = yaml.safe_load(path.read_text())
    assert data["routing"]["budgetLimits"] == {"daily": 10}
    assert data["providers"]["openai"]["apiKey"] == "${OPENAI_API_KEY}"


def test_validate(tmp_path: Path) -> None:
    cfg = {"routing": {"strategy": "priority"}, "routes": {}, "state": {"backend": "memory"}}
    good = write_json(tmp_path, cfg)
    result = run("validate", "--config", str(good))
    assert result.exit_code == 0, result.output
    assert result.output == f"ok: {good} is valid\n"
    report = json.loads(run("validate", "--config", str(good), "--json").output)
    assert report == {"file": str(good), "valid": True, "problems": [], "warning": None}

    bad = tmp_path / "bad.yaml"
    bad.write_text("routing:\n  strategy: 5\n  hedging: {maxRatio: 3}\n")
    result = run("validate", "--config", str(bad))
    assert result.exit_code == 2
    assert "routing.strategy: expected a string, got 5" in result.output
    result = run("validate", "--config", str(bad), "--json")
    assert result.exit_code == 2
    assert [p["path"] for p in json.loads(result.output)["problems"]] == ["routing.strategy"]


def test_validate_checks_env_and_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    path = write_json(tmp_path, {"providers": {"p": {"type": "nosuch", "apiKey": "${NO_SUCH_KEY}"}}})
    result = run("validate", "--config", str(path), "--no-plugins")
    assert result.exit_code == 2
    assert "providers.p.apiKey: environment variable ${NO_SUCH_KEY} is not set" in result.output
    assert run("validate", "--config", str(path), "--no-plugins", "--ignore-env").exit_code == 0
    # The plugins' check: no installed plugin provides the provider type.
    result = run("validate", "--config", str(path), "--ignore-env")
    assert result.exit_code == 2
    assert "  providers.p.type: unknown provider type 'nosuch': no installed plugin provides it" in result.output
    result = run("set", "providers.p.timeout", "1000", "--config", str(path))
    assert result.exit_code == 2
    assert result.output.startswith("error: providers.p.type: unknown provider type 'nosuch'")


def test_set_in_yaml_keeps_its_indentation(tmp_path: Path) -> None:
    path = tmp_path / "swarmgate.yaml"
    path.write_text(
        "providers:\n"
        "    openai:\n"
        "        type: openai   # the type\n"
        "        models:\n"
        "            gpt-4o: {}\n"
        "routes:\n"
        "    fast:\n"
        "        - openai/gpt-4o\n"
    )
    result = run("set", "budget.alertThresholds", "[0.5, 0.9]", "--config", str(path))
    assert result.exit_code == 0, result.output
    assert path.read_text() == (
        "providers:\n"
        "    openai:\n"
        "        type: openai   # the type\n"
        "        models:\n"
        "            gpt-4o: {}\n"
        "routes:\n"
        "    fast:\n"
        "        - openai/gpt-4o\n"
        "routing:\n"
        "    budgetLimits:\n"
        "        alertThresholds:\n"
        "            - 0.5\n"
        "            - 0.9\n"
    )
    assert run("get", "budget.alertThresholds", "--config", str(path)).output == "- 0.5\n- 0.9\n"
    assert run("get", "routing", "--config", str(path), "--json").output == (
        '{\n  "budgetLimits": {\n    "alertThresholds": [\n      0.5,\n      0.9\n    ]\n  }\n}\n'
    )
