"""The CLI: ``config set budget.daily`` validated by the budget plugin's own
section, ``config validate``, and ``budget status`` resuming from the usage
log a gateway recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result

from swarmgate import ProviderManager
from swarmgate.cli import build_cli
from swarmgate.plugins import ALLOW_ENV

SIM: dict[str, Any] = {
    "type": "sim",
    "timeScale": 0,
    "outputTokens": [10, 10],
    "seed": 1,
    "models": {"s": {"costPerToken": 0.01}},
}


@pytest.fixture(autouse=True)
def _plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel, the sim provider type, the usage log and the budget plugin."""
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-sim,swarmgate-usage,swarmgate-budget")
    monkeypatch.delenv("SWARMGATE_CONFIG", raising=False)


def run(*args: str) -> Result:
    return CliRunner().invoke(build_cli(), list(args))


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "swarmgate.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def test_config_set_budget_daily_the_guide_s_example(tmp_path: Path) -> None:
    path = write(tmp_path, {"providers": {"sim": SIM}})
    result = run("config", "set", "budget.daily", "50.0", "--config", str(path))
    assert result.exit_code == 0, result.output
    assert json.loads(path.read_text())["routing"] == {"budgetLimits": {"daily": 50.0}}
    assert run("config", "set", "budget.monthly", "300", "--config", str(path)).exit_code == 0
    assert run("config", "get", "budget.monthly", "--config", str(path)).output == "300\n"
    assert run("config", "get", "routing.budgetLimits", "--config", str(path), "--json").output == (
        '{\n  "daily": 50.0,\n  "monthly": 300\n}\n'
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("budget.daily", "abc", 'error: routing.budgetLimits.daily: expected a number, got "abc";'),
        ("budget.daily", "-5", "error: routing.budgetLimits.daily: must be a non-negative amount, got -5.0;"),
        (
            "budget.alertThresholds",
            "[0.5, 0]",
            "error: routing.budgetLimits.alertThresholds[1]: must be a positive fraction of the limit, got 0.0;",
        ),
        ("budget.weekly", "5", "error: routing.budgetLimits.weekly: unknown key (expected one of: alertThresholds,"),
        ("providers.sim.budget", '{"daily": "x"}', 'error: providers.sim.budget.daily: expected a number, got "x";'),
    ],
)
def test_config_set_refuses_what_the_budget_plugin_refuses(tmp_path: Path, key: str, value: str, message: str) -> None:
    path = write(tmp_path, {"providers": {"sim": SIM}, "routing": {"budgetLimits": {"daily": 10.0}}})
    before = path.read_bytes()
    result = run("config", "set", key, value, "--config", str(path))
    assert result.exit_code == 2
    assert result.output.startswith(message), result.output
    assert result.output.count("\n") == 1
    assert path.read_bytes() == before


def test_config_validate_reports_budget_problems(tmp_path: Path) -> None:
    good = write(tmp_path, {"providers": {"sim": {**SIM, "budget": {"daily": 1.0}}}, "routing": {"budgetLimits": {}}})
    assert run("config", "validate", "--config", str(good)).exit_code == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"providers": {"sim": {**SIM, "budget": {"daily": -1, "monthly": "x"}}}}))
    result = run("config", "validate", "--config", str(bad), "--json")
    assert result.exit_code == 2
    problems = json.loads(result.output)["problems"]
    assert problems == [{"path": "providers.sim.budget.monthly", "message": 'expected a number, got "x"'}]


async def _serve(path: Path, n: int) -> list[float]:
    """A gateway's life: ``n`` requests, recorded in the usage log."""
    async with ProviderManager(path) as manager:
        return [(await manager.complete(prompt="hi", model="sim/s", max_tokens=10)).cost for _ in range(n)]


def test_budget_status_resumes_from_the_recorded_usage(tmp_path: Path) -> None:
    config = {
        "providers": {"sim": {**SIM, "budget": {"monthly": 100.0}}},
        "routing": {"budgetLimits": {"daily": 5.0}},
        "monitoring": {"usageLog": {"path": str(tmp_path / "usage.db"), "commitInterval": 0}},
    }
    path = write(tmp_path, config)
    costs = anyio.run(_serve, path, 3)
    assert sum(costs) > 0
    result = run("budget", "status", "--config", str(path), "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) == {"global:daily", "provider:sim:monthly"}
    assert rows["global:daily"]["spent"] == pytest.approx(sum(costs))
    assert rows["global:daily"]["limit"] == 5.0
    assert rows["provider:sim:monthly"]["spent"] == pytest.approx(sum(costs))
    table = run("budget", "status", "--config", str(path))
    assert table.exit_code == 0, table.output
    assert "global:daily" in table.output


def test_budget_status_without_budgets_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, {"providers": {"sim": SIM}})
    result = run("budget", "status", "--config", str(path))
    assert result.exit_code == 2
    assert "no budget is configured" in result.output
