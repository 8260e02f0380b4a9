"""The ``demo`` command: in process (CliRunner, run_demo) and as a real subprocess."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from swarmgate import Attempt, ProviderManager
from swarmgate.cli import build_cli
from swarmgate_sim import embedded_default
from swarmgate_sim.demo import DemoOptions, Outcome, Spec, prepare_config, run_demo, summarize, traffic

NAMES = ("sim-qwen", "sim-openai", "sim-claude", "sim-local")


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(), list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_demo_runs_the_embedded_default() -> None:
    code, output = invoke("demo", "--requests", "12", "--time-scale", "0", "--seed", "3")
    assert code == 0, output
    assert "embedded default" in output
    assert "per provider" in output
    for name in NAMES:
        assert name in output
    request_lines = [line for line in output.splitlines() if line.startswith("#")]
    assert len(request_lines) == 12
    assert "12 requests in" in output


def test_demo_streams() -> None:
    code, output = invoke("demo", "-n", "6", "--stream", "--time-scale", "0", "--seed", "9")
    assert code == 0, output
    assert "streamed" in output
    assert "ttft" in output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (json.dumps({"providers": {"sim-x": {"type": "sim", "failureRate": 2}}}), "providers.sim-x.failureRate"),
        ('{"providers": ', "invalid JSON"),
        (json.dumps({"providers": {"p": {"type": "no-such-type"}}}), "unknown provider type 'no-such-type'"),
    ],
)
def test_demo_bad_config_exits_2(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = CliRunner().invoke(build_cli(), ["demo", "--config", str(path)])
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    assert message in result.output
    assert "Traceback" not in result.output


def test_demo_missing_config_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(build_cli(), ["demo", "--config", str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert "cannot read config file" in result.output


def test_prepare_config_scales_and_seeds_sim_providers_only(tmp_path: Path) -> None:
    raw = embedded_default()
    raw["providers"]["sim-qwen"]["timeScale"] = 0.5
    raw["providers"]["other"] = {"type": "openai", "timeScale": 7, "enabled": False}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    config = prepare_config(path, 0.1, 42)
    assert config.providers["sim-qwen"].settings["timeScale"] == pytest.approx(0.05)
    assert config.providers["sim-openai"].settings["timeScale"] == pytest.approx(0.1)
    assert config.providers["sim-claude"].settings["seed"] == 42
    assert config.providers["other"].settings == {"timeScale": 7}
    assert config.source == str(path)


@pytest.mark.anyio
async def test_traffic_mixes_auto_routes_model_and_forced() -> None:
    async with ProviderManager(prepare_config(None, 0, 1)) as manager:
        specs = traffic(manager, 40, random.Random(1))
    labels = {spec.label for spec in specs}
    assert {"auto", "route fast", "route smart", "model qwen-turbo", "forced sim-local", "auto, max 24 tok"} <= labels
    assert sum(spec.model == "auto" and spec.provider is None for spec in specs) >= 20
    assert len({spec.prompt for spec in specs}) > 5


@pytest.mark.anyio
async def test_run_demo_outcomes_and_summary() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=160)
    outcomes = await run_demo(DemoOptions(requests=30, concurrency=5, seed=7, time_scale=0), console)
    assert [o.index for o in outcomes] == list(range(30))
    assert all(o.attempts for o in outcomes)
    for o in outcomes:
        if o.spec.provider is not None and o.response is not None:
            assert o.response.provider == o.spec.provider
        if o.response is not None:
            assert o.response.metadata["simulated"] is True
    summaries = summarize(outcomes, list(NAMES))
    assert [s.provider for s in summaries] == list(NAMES)
    assert sum(s.served for s in summaries) == sum(o.response is not None for o in outcomes)
    assert sum(s.attempts for s in summaries) == sum(len(o.attempts) for o in outcomes)
    text = buffer.getvalue()
    assert "per provider" in text
    assert "total" in text


def test_summary_figures() -> None:
    spec = Spec("auto", "hi")
    ok = [Attempt("a", "m", True, float(ms), 0.5) for ms in range(1, 21)]
    failed = Attempt("a", "m", False, 5.0, 0.0, error_kind="rate_limited")
    outcomes = [Outcome(i, spec, (failed, attempt) if i == 0 else (attempt,), 0.0) for i, attempt in enumerate(ok)]
    (summary,) = summarize(outcomes, ["a"])
    assert (summary.attempts, summary.failed, summary.served) == (21, 1, 0)
    assert summary.success_rate == pytest.approx(20 / 21)
    assert summary.avg_latency == pytest.approx(10.5)
    assert summary.p95_latency == 19.0
    assert summary.cost == pytest.approx(10.0)


def _command() -> list[str]:
    script = Path(sys.executable).with_name("qwen-swarm-enhanced")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from swarmgate.cli import main; main()"]


def test_demo_as_a_subprocess() -> None:
    result = subprocess.run(
        [*_command(), "demo", "--requests", "8", "--time-scale", "0.02", "--seed", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "per provider" in result.stdout
    assert "8 requests in" in result.stdout
    assert "Traceback" not in result.stderr


def test_demo_subprocess_bad_config_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"providers": {"sim-x": {"type": "sim", "failureKinds": {"meteor": 1}}}}))
    result = subprocess.run(
        [*_command(), "demo", "--config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "providers.sim-x.failureKinds.meteor" in result.stderr
    assert "Traceback" not in result.stderr
