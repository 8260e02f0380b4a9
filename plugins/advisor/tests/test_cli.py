"""The CLI commands on recorded usage logs, through the real CLI group with
the plugins' commands registered (click's CliRunner): ``recommendations``,
``optimize routing --target ...`` and ``analyze bottlenecks``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import click
import pytest
from advisor_helpers import CHEAP, DRIVERS, PRICEY, answers, attempt, config, request, write_log
from click.testing import CliRunner

from swarmgate import ProviderManager
from swarmgate.cli import build_cli


@pytest.fixture(scope="module")
def cli() -> click.Group:
    return build_cli()


def invoke(cli: click.Group, *args: str) -> Any:
    """Run the CLI with a terminal wide enough that table cells do not wrap."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env={"COLUMNS": "250"})


def write_config(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


async def record_traffic(db: Path) -> dict[str, Any]:
    """40 requests over pricey and cheap through a manager: repeated prompts, caching off."""
    cfg = config(db)
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        answers(manager, "pricey", 20)
        answers(manager, "cheap", 20)
        for i in range(40):
            await manager.complete(prompt=f"question {i % 4}", model="m", temperature=0)
    return cfg


def test_recommendations_from_a_recorded_log(cli: click.Group, tmp_path: Path, db: Path) -> None:
    cfg_path = write_config(tmp_path, anyio.run(record_traffic, db))
    result = invoke(cli, "recommendations", "--config", str(cfg_path), "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert sorted(r["type"] for r in found) == ["caching", "cheaper-target"]
    caching = next(r for r in found if r["type"] == "caching")
    assert caching["evidence"]["hits"] == 36  # read from usage.advisor.db next to the log
    table = invoke(cli, "recommendations", "--config", str(cfg_path), "--log", str(db))
    assert table.exit_code == 0, table.output
    assert "cheaper-target" in table.output
    assert "config set" in table.output
    assert "config set routing.loadBalancing.weights.cheap 1.6" in table.output


def test_optimize_routing_marks_the_best_and_its_change(cli: click.Group, tmp_path: Path, db: Path) -> None:
    now = time.time()
    records = [
        request(f"a{i}", now - 100 + i, [attempt("a", latency=ms, cost=0.2)])
        for i, ms in enumerate((100.0, 200.0, 300.0, 400.0))
    ]
    records += [
        request("b1", now - 50, [attempt("b", latency=50.0, cost=0.02)]),
        request("b2", now - 40, [attempt("b", latency=150.0, cost=0.02)]),
        request("b3", now - 30, [attempt("b", ok=False, latency=30.0)]),
    ]
    anyio.run(write_log, db, records)
    cfg_path = write_config(
        tmp_path,
        {
            "providers": {
                "a": {"type": "scripted", "priority": 1, "models": {"m": dict(PRICEY)}},
                "b": {"type": "scripted", "priority": 2, "models": {"m": dict(CHEAP)}},
            },
            "monitoring": {"usageLog": {"path": str(db)}, "advisor": {"minSamples": 2}},
        },
    )
    result = invoke(cli, "optimize", "routing", "--target", "cost", "--config", str(cfg_path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["best"] == "cost-optimized"
    assert report["actual"]["cost"] == pytest.approx(0.84)
    assert next(c for c in report["candidates"] if c["best"])["cost"] == pytest.approx(0.56)
    table = invoke(cli, "optimize", "routing", "--target", "cost", "--config", str(cfg_path))
    assert table.exit_code == 0, table.output
    assert "actual (recorded)" in table.output
    assert "best for cost: cost-optimized" in table.output
    assert "qwen-swarm-enhanced config set routing.strategy cost-optimized" in table.output
    performance = invoke(cli, "optimize", "routing", "--target", "performance", "--config", str(cfg_path))
    assert "best for performance: current: keep the current config" in performance.output


def test_analyze_bottlenecks(cli: click.Group, tmp_path: Path, db: Path) -> None:
    cfg_path = write_config(tmp_path, anyio.run(record_traffic, db))
    result = invoke(cli, "analyze", "bottlenecks", "--config", str(cfg_path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["requests"] == 40
    assert {f["type"] for f in report["findings"]} >= {"slow-target", "amplification"}
    table = invoke(cli, "analyze", "bottlenecks", "--config", str(cfg_path))
    assert table.exit_code == 0
    assert "attempts per request" in table.output


def test_an_old_log_is_analysed_as_of_its_last_request(cli: click.Group, tmp_path: Path, db: Path) -> None:
    month_ago = time.time() - 30 * 86_400
    records = [
        request(f"x{i}", month_ago + i, [attempt("pricey", ok=i >= 10, kind="server_error", cost=0.2)])
        for i in range(30)
    ]
    anyio.run(write_log, db, records)
    cfg_path = write_config(tmp_path, config(db))
    result = invoke(cli, "recommendations", "--config", str(cfg_path), "--json")
    assert result.exit_code == 0, result.output
    assert [r["type"] for r in json.loads(result.output)] == ["error-rate"]
    windowed = invoke(cli, "analyze", "bottlenecks", "--config", str(cfg_path), "--window", "10s", "--json")
    assert json.loads(windowed.output)["requests"] == 11  # the last 10 seconds of the log, both ends in


def test_user_errors_exit_2_with_one_line(cli: click.Group, tmp_path: Path) -> None:
    missing = invoke(
        cli,
        "recommendations",
        "--log",
        str(tmp_path / "nope.db"),
        "--config",
        str(write_config(tmp_path, config(tmp_path / "nope.db"))),
    )
    assert missing.exit_code == 2
    assert missing.output.strip().startswith("error: no usage log at")
    window = invoke(cli, "analyze", "bottlenecks", "--window", "soon")
    assert window.exit_code == 2
    assert "--window" in window.output
    target = invoke(cli, "optimize", "routing", "--target", "speed")
    assert target.exit_code == 2
    bad = write_config(tmp_path, {"monitoring": {"advisor": {"minSamples": 0}}})
    config_error = invoke(cli, "recommendations", "--config", str(bad))
    assert config_error.exit_code == 2
    assert "monitoring.advisor.minSamples" in config_error.output


def test_every_recommended_command_applies_with_config_set(
    cli: click.Group, tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record traffic that triggers every rule, then run each recommendation's
    ``commands`` exactly as printed: ``config set`` validates each edit with
    the kernel's loader and the plugins' own sections (cache, breaker, wrr)."""
    import shlex

    from advisor_helpers import ALLOWED

    from swarmgate import load_config
    from swarmgate.plugins import ALLOW_ENV

    monkeypatch.setenv(ALLOW_ENV, ALLOWED + ",swarmgate-sim,swarmgate-cache,swarmgate-breaker,swarmgate-budget")
    anyio.run(record_traffic, db)
    now = time.time()
    flaky = [
        request(f"f{i}", now - 60 + i, [attempt("flaky", ok=i >= 8, latency=900.0, cost=0.01)], requested="flaky/m")
        for i in range(30)
    ]
    anyio.run(write_log, db, flaky)
    sim = {"type": "sim", "timeScale": 0}
    cfg = config(
        db,
        advisor={"latencySla": {"flaky": 500}},
        routing={"budgetLimits": {"daily": 1.0}},
    )
    cfg["providers"] = {
        "pricey": {**sim, "priority": 1, "models": {"m": dict(PRICEY)}},
        "cheap": {**sim, "priority": 1, "models": {"m": dict(CHEAP)}},
        "flaky": {**sim, "priority": 5, "models": {"m": dict(CHEAP)}},
    }
    cfg_path = write_config(tmp_path, cfg)
    result = invoke(cli, "recommendations", "--config", str(cfg_path), "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert sorted(r["type"] for r in found) == ["budget-burn", "caching", "cheaper-target", "error-rate", "latency-sla"]
    for rec in found:
        for command in rec["commands"]:
            argv = shlex.split(command)
            assert argv[:3] == ["qwen-swarm-enhanced", "config", "set"]
            applied = invoke(cli, *argv[1:], "--config", str(cfg_path))
            assert applied.exit_code == 0, (command, applied.output)
    edited = load_config(cfg_path)
    assert edited.routing.load_balancing.algorithm == "weighted-round-robin"
    assert edited.routing.load_balancing.weights["cheap"] == 1.6
    assert edited.section("optimization.caching.enabled") is True
    assert edited.section("routing.circuitBreaker.failureThreshold") == 5
    assert edited.providers["flaky"].timeouts.first_token is None  # not streamed
    assert edited.section("routing.budgetLimits.daily") > 1.0
