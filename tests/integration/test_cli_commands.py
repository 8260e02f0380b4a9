"""Every command of the feature guide's CLI, run against a live gateway.

The gateway is ``qwen-swarm-enhanced serve`` in a subprocess (uvicorn on
loopback) in front of two fake OpenAI-wire upstreams; traffic goes through
it first (routed, cached, streamed, failed over). Then each read command
runs twice where it can: with ``--url`` against the gateway's admin API,
and locally on the config and the usage log the gateway recorded; both
must tell the same story. The commands that work on files (config, migrate)
and the ones that stand alone (demo, plugins list, test provider) run too,
and so do the errors a user meets (a gateway that is down, a wrong admin
key, ``--log`` with ``--url``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from swarmgate.cli import build_cli
from swarmgate.testing import FakeUpstream, ScriptedReply

ADMIN_KEY = "sk-admin-cli-commands-0123456789"
SERVE = "from swarmgate.cli import main; main()"
#: What the traffic below sends: 8 routed requests, 1 repeat (a cache hit),
#: 1 failed over, 2 streamed.
REQUESTS = 12


@attrs.define
class Stack:
    url: str
    config: Path
    log: Path
    alpha: FakeUpstream
    beta: FakeUpstream
    tmp: Path
    process: subprocess.Popen[str]
    headers: dict[str, str] = attrs.field(factory=dict)


def _read_line(process: subprocess.Popen[str], timeout: float = 30.0) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        process.kill()
        raise AssertionError("serve printed nothing in time: " + (process.stderr.read() if process.stderr else ""))
    return process.stdout.readline()


def _config(alpha: FakeUpstream, beta: FakeUpstream, log: Path) -> dict[str, Any]:
    prices = {"inputCostPerToken": 0.000001, "outputCostPerToken": 0.000002}
    return {
        "providers": {
            "alpha": {
                "type": "openai",
                "endpoint": alpha.url,
                "priority": 1,
                "timeout": 5000,
                "models": {"fast": prices, "big": {"inputCostPerToken": 0.00001, "outputCostPerToken": 0.00003}},
            },
            "beta": {
                "type": "openai",
                "endpoint": beta.url,
                "priority": 1,
                "timeout": 5000,
                "models": {"fast": {"inputCostPerToken": 0.0000005, "outputCostPerToken": 0.000001}},
            },
        },
        "routing": {
            "loadBalancing": {"algorithm": "weighted-round-robin", "weights": {"alpha": 3, "beta": 1}},
            "fallbackChains": [["alpha", "beta"]],
        },
        "routes": {"fast-route": {"targets": ["alpha/fast", "beta/fast"]}},
        "optimization": {"caching": {"enabled": True, "statsInterval": 0}},
        "monitoring": {"usageLog": {"path": str(log), "commitInterval": 50}},
        "server": {"adminKey": ADMIN_KEY},
    }


def _traffic(url: str, alpha: FakeUpstream) -> None:
    with httpx.Client(base_url=url, timeout=20) as client:

        def ask(prompt: str, **extra: Any) -> httpx.Response:
            body = {"model": "fast-route", "messages": [{"role": "user", "content": prompt}], "temperature": 0}
            response = client.post("/v1/chat/completions", json={**body, **extra})
            assert response.status_code == 200, response.text
            return response

        for i in range(8):
            ask(f"question number {i}")
        assert ask("question number 0").headers["x-swarmgate-cache"] == "hit"
        alpha.enqueue(ScriptedReply.error(500, "alpha is having a bad day"))
        failed_over = ask("please fail over", model="alpha/fast")
        assert failed_over.headers["x-swarmgate-provider"] == "beta"
        assert failed_over.headers["x-swarmgate-attempts"] == "2"
        for i in range(2):
            with client.stream(
                "POST",
                "/v1/chat/completions",
                json={"model": "fast-route", "stream": True, "messages": [{"role": "user", "content": f"stream {i}"}]},
            ) as stream:
                assert stream.status_code == 200
                assert "data: [DONE]" in stream.read().decode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("cli-commands")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("SWARMGATE_URL", "SWARMGATE_ADMIN_KEY", "SWARMGATE_CONFIG"):
            patch.delenv(name, raising=False)
        with FakeUpstream.in_thread() as alpha, FakeUpstream.in_thread() as beta:
            log = tmp / "usage.db"
            config = tmp / "gateway.json"
            config.write_text(json.dumps(_config(alpha, beta, log), indent=2))
            env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMGATE_") or k == "SWARMGATE_HOME"}
            process = subprocess.Popen(
                [sys.executable, "-c", SERVE, "serve", "--config", str(config), "--port", "0"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            try:
                line = _read_line(process)
                assert line.startswith("swarmgate gateway listening on http://127.0.0.1:"), line
                url = line.split(" on ", 1)[1].strip()
                _traffic(url, alpha)
                yield Stack(url, config, log, alpha, beta, tmp, process)
            finally:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
                    try:
                        process.wait(20)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()


@pytest.fixture(scope="module")
def cli() -> Any:
    return build_cli()


def run(cli: Any, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"})  # rich tables unwrapped


def remote(cli: Any, stack: Stack, *args: str) -> Result:
    return run(cli, *args, "--url", stack.url, "--admin-key", ADMIN_KEY)


def local(cli: Any, stack: Stack, *args: str) -> Result:
    return run(cli, *args, "--config", str(stack.config), "--log", str(stack.log))


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr or result.output}"
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def recorded(cli: Any, stack: Stack) -> dict[str, Any]:
    """The local analytics once the gateway's usage log holds every request
    (its group commit runs every 50 ms)."""
    deadline = time.monotonic() + 10
    while True:
        report: dict[str, Any] = as_json(local(cli, stack, "analytics", "providers", "--json"))
        if report["totals"]["requests"] >= REQUESTS or time.monotonic() > deadline:
            return report
        time.sleep(0.05)


# -- serve, and the read commands against it --------------------------------------------------


def test_serve_is_the_live_gateway(stack: Stack) -> None:
    health = httpx.get(stack.url + "/health", timeout=5)
    assert health.status_code == 200
    assert len(stack.alpha.completions) + len(stack.beta.completions) == REQUESTS  # the cache hit never went up


def test_analytics_providers_from_the_gateway_and_from_its_log(cli: Any, stack: Stack) -> None:
    live = as_json(remote(cli, stack, "analytics", "providers", "--json"))
    assert live["totals"]["requests"] == REQUESTS
    assert live["totals"]["cacheHits"] == 1
    logged = recorded(cli, stack)
    assert logged["totals"]["requests"] == REQUESTS
    for report in (live, logged):
        served = {row["name"]: row["totalRequests"] for row in report["providers"]}
        assert served == {"alpha": len(stack.alpha.completions), "beta": len(stack.beta.completions)}
    table = ok(remote(cli, stack, "analytics", "providers", "--detailed")).stdout
    assert "latency p95 (ms)" in table
    assert f"gateway at {stack.url}" in table
    assert f"{REQUESTS} requests" in ok(local(cli, stack, "analytics", "providers")).stdout


def test_analytics_costs_by_provider(cli: Any, stack: Stack) -> None:
    live = as_json(remote(cli, stack, "analytics", "costs", "--by-provider", "--json"))
    logged = as_json(local(cli, stack, "analytics", "costs", "--by-provider", "--json"))
    assert live["groupBy"] == logged["groupBy"] == "provider"
    assert {r["name"] for r in live["rows"]} == {"alpha", "beta"}
    assert live["totalCost"] == pytest.approx(logged["totalCost"])
    assert live["totalCost"] > 0
    assert "per 1k tokens" in ok(remote(cli, stack, "analytics", "costs", "--by-provider")).stdout


def test_analytics_load_balancing_shows_the_configured_weights(cli: Any, stack: Stack) -> None:
    for result in (
        remote(cli, stack, "analytics", "load-balancing", "--json"),
        local(cli, stack, "analytics", "load-balancing", "--json"),
    ):
        balance = as_json(result)
        assert balance["algorithm"] == "weighted-round-robin"
        rows = {row["name"]: row for row in balance["rows"]}
        assert rows["alpha"]["weightShare"] == pytest.approx(0.75)
        assert rows["beta"]["weightShare"] == pytest.approx(0.25)
    assert "load balancing (weighted-round-robin)" in ok(remote(cli, stack, "analytics", "load-balancing")).stdout


def test_analyze_bottlenecks(cli: Any, stack: Stack) -> None:
    live = as_json(remote(cli, stack, "analyze", "bottlenecks", "--json"))
    recorded(cli, stack)
    logged = as_json(local(cli, stack, "analyze", "bottlenecks", "--json"))
    assert live["requests"] == logged["requests"] == REQUESTS
    assert ok(remote(cli, stack, "analyze", "bottlenecks")).stdout.strip()


@pytest.mark.parametrize("target", ["performance", "cost", "reliability"])
def test_optimize_routing(cli: Any, stack: Stack, target: str) -> None:
    live = as_json(remote(cli, stack, "optimize", "routing", "--target", target, "--json"))
    recorded(cli, stack)
    logged = as_json(local(cli, stack, "optimize", "routing", "--target", target, "--json"))
    assert live["target"] == logged["target"] == target
    assert live["requests"] == logged["requests"] > 0
    assert [c["name"] for c in live["candidates"]] == [c["name"] for c in logged["candidates"]]
    assert f"routing replay for {target}" in ok(remote(cli, stack, "optimize", "routing", "--target", target)).stdout


def test_recommendations(cli: Any, stack: Stack) -> None:
    assert isinstance(as_json(remote(cli, stack, "recommendations", "--json")), list)
    assert isinstance(as_json(local(cli, stack, "recommendations", "--json")), list)


@pytest.mark.parametrize("fmt", ["json", "prometheus", "csv"])
def test_export_metrics(cli: Any, stack: Stack, fmt: str) -> None:
    recorded(cli, stack)
    for result in (
        remote(cli, stack, "export", "metrics", "--format", fmt),
        local(cli, stack, "export", "metrics", "--format", fmt),
    ):
        text = ok(result).stdout
        if fmt == "json":
            assert json.loads(text)["analytics"]["totals"]["requests"] == REQUESTS
        elif fmt == "prometheus":
            assert any(family.samples for family in text_string_to_metric_families(text))
        else:
            rows = list(csv.DictReader(io.StringIO(text)))
            assert {row["provider"] for row in rows} >= {"alpha", "beta"}
    out = stack.tmp / "metrics.prom"
    ok(remote(cli, stack, "export", "metrics", "--format", "prometheus", "--output", str(out)))
    assert "# TYPE" in out.read_text()


def test_debug_providers_with_health(cli: Any, stack: Stack) -> None:
    rows = as_json(remote(cli, stack, "debug", "providers", "--health", "--json"))
    assert {row["provider"]: row["healthy"] for row in rows} == {"alpha": True, "beta": True}
    assert all(row["latency_ms"] is not None for row in rows)
    rows = as_json(run(cli, "debug", "providers", "--health", "--json", "--config", str(stack.config)))
    assert {row["provider"]: row["healthy"] for row in rows} == {"alpha": True, "beta": True}
    listed = ok(remote(cli, stack, "debug", "providers")).stdout
    assert "alpha" in listed
    assert "fast, big" in listed


def test_cache_stats_and_clear(cli: Any, stack: Stack) -> None:
    stats = as_json(remote(cli, stack, "cache", "stats", "--json"))
    assert stats["hits"] >= 1
    assert stats["entries"] >= 1
    assert "note: the 'memory' state backend" not in ok(remote(cli, stack, "cache", "stats")).stdout
    cleared = as_json(remote(cli, stack, "cache", "clear", "--provider", "beta", "--json"))
    assert cleared["criteria"] == {"provider": "beta"}
    cleared = as_json(remote(cli, stack, "cache", "clear", "--json"))
    assert cleared["criteria"] == {}
    assert as_json(remote(cli, stack, "cache", "stats", "--json"))["entries"] == 0
    # Locally, with the in-memory backend, the command sees a cache of its own and says so.
    result = ok(run(cli, "cache", "stats", "--config", str(stack.config)))
    assert "not a running gateway's cache" in result.stdout


# -- the commands on files, and the stand-alone ones ---------------------------------------------


def test_config_set_get_validate(cli: Any, stack: Stack) -> None:
    config = stack.tmp / "edited.json"
    document = json.loads(stack.config.read_text())
    document["monitoring"]["usageLog"]["path"] = str(stack.tmp / "edited-usage.db")
    config.write_text(json.dumps(document, indent=2))
    ok(run(cli, "config", "set", "routing.loadBalancing.weights.beta", "2", "--config", str(config)))
    ok(run(cli, "config", "set", "budget.daily", "50.0", "--config", str(config)))
    weights = as_json(run(cli, "config", "get", "routing.loadBalancing.weights", "--json", "--config", str(config)))
    assert weights == {"alpha": 3, "beta": 2}
    assert ok(run(cli, "config", "get", "budget.daily", "--config", str(config))).stdout.strip() == "50.0"
    assert ok(run(cli, "config", "validate", "--config", str(config))).stdout.startswith("ok:")
    refused = run(cli, "config", "set", "routing.strategy", "no-such-strategy", "--config", str(config))
    assert refused.exit_code == 2
    assert "routing.strategy" in refused.stderr


def test_plugins_list(cli: Any) -> None:
    rows = as_json(run(cli, "plugins", "list", "--json"))
    names = {(row["group"], row["name"]) for row in rows}
    assert {("swarmgate", "server"), ("swarmgate", "migrate"), ("swarmgate.exporters", "prometheus")} <= names


def test_demo(cli: Any) -> None:
    result = ok(run(cli, "demo", "-n", "6", "-c", "2", "--time-scale", "0", "--seed", "7"))
    assert result.stdout.strip()


def test_test_provider(cli: Any, stack: Stack) -> None:
    before = len(stack.alpha.completions)
    result = ok(run(cli, "test", "provider", "alpha", "--config", str(stack.config)))
    assert "alpha/fast" in result.stdout
    report = as_json(run(cli, "test", "provider", "alpha", "--stream", "--json", "--config", str(stack.config)))
    assert report["ok"] is True
    assert report["health"]["healthy"] is True
    assert report["request"]["model"] == "fast"
    assert report["request"]["ttft_ms"] is not None
    assert len(stack.alpha.completions) == before + 2


def test_migrate_from_litellm(cli: Any, stack: Stack) -> None:
    source = stack.tmp / "litellm.yaml"
    source.write_text(
        "model_list:\n"
        "  - model_name: fast\n"
        f"    litellm_params: {{model: openai/fast, api_base: '{stack.alpha.url}', rpm: 60}}\n"
        "    model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n"
        "  - model_name: fast\n"
        f"    litellm_params: {{model: openai/fast, api_base: '{stack.beta.url}', rpm: 20}}\n"
        "    model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n"
        "router_settings: {routing_strategy: simple-shuffle, num_retries: 1}\n"
    )
    out = stack.tmp / "migrated.json"
    result = ok(run(cli, "migrate", "--from", "litellm", str(source), "--output", str(out)))
    assert result.stdout.startswith(f"wrote {out}: 2 deployments in 1 model group -> 2 providers, 1 route")
    migrated = json.loads(out.read_text())
    assert len(migrated["routes"]["fast"]["targets"]) == 2
    assert migrated["routing"] == {"loadBalancing": "weighted-round-robin"}
    assert ok(run(cli, "config", "validate", "--config", str(out))).stdout.startswith("ok:")


# -- errors -------------------------------------------------------------------------------------------


def test_a_gateway_that_is_down_is_one_line_and_exit_2(cli: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    for args in (("analytics", "providers"), ("cache", "stats"), ("debug", "providers"), ("analyze", "bottlenecks")):
        result = run(cli, *args, "--url", url)
        assert result.exit_code == 2
        assert result.stderr == f"error: cannot reach the gateway at {url}: connection refused\n"


def test_a_wrong_admin_key_and_local_options_with_url(cli: Any, stack: Stack) -> None:
    result = run(cli, "analytics", "providers", "--url", stack.url, "--admin-key", "sk-not-the-admin-key-000")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: GET /admin/analytics: HTTP 40")
    assert len(result.stderr.strip().splitlines()) == 1
    result = run(cli, "analytics", "providers", "--url", stack.url, "--log", str(stack.log))
    assert result.exit_code == 2
    assert "--log reads local files; with --url the gateway answers" in result.stderr
    env_result = CliRunner().invoke(
        cli, ["cache", "stats", "--json"], env={"SWARMGATE_URL": stack.url, "SWARMGATE_ADMIN_KEY": ADMIN_KEY}
    )
    assert json.loads(ok(env_result).stdout)["namespace"] == "default"


def test_the_gateway_shuts_down_cleanly(stack: Stack) -> None:
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(20) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(stack.url + "/health", timeout=5)
