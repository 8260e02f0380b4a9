"""``qwen-swarm-enhanced redis status`` against the real Redis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result
from redis_helpers import DEAD_URL, raw_keys

from swarmgate.cli import build_cli
from swarmgate_redis import create_store


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWARMGATE_CONFIG", raising=False)


def run(*args: str) -> Result:
    return CliRunner().invoke(build_cli(), list(args))


def write(tmp_path: Path, state: dict[str, Any]) -> Path:
    path = tmp_path / "swarmgate.json"
    config = {"providers": {"sim": {"type": "sim", "models": {"s": {}}}}, "state": state}
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def test_status_reports_server_latency_and_keys(tmp_path: Path, redis_url: str, prefix: str) -> None:
    store = create_store({"url": redis_url, "prefix": prefix})

    async def fill() -> None:
        await store.set("a", b"1")
        await store.incr("b")
        await store.window_add("w", 1.0, 60.0)
        await store.take_tokens("t", rate=1.0, capacity=10.0, tokens=5.0)
        await store.aclose()

    anyio.run(fill)
    path = write(tmp_path, {"backend": "redis", "options": {"url": redis_url, "prefix": prefix}})
    result = run("redis", "status", "--config", str(path), "--json", "--pings", "5")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["url"] == redis_url
    assert report["prefix"] == prefix
    assert report["server"]["redis_version"]
    assert 0 < report["ping_ms"] < 1000
    assert 0 < report["take_tokens_ms"] < 1000
    assert report["keys"] == {"values": 2, "windows": 1, "buckets": 1}
    assert len(raw_keys(redis_url, prefix)) == 5  # its scratch bucket is gone again
    table = run("redis", "status", "--config", str(path), "--pings", "2")
    assert table.exit_code == 0, table.output
    assert "2 values/counters, 1 windows, 1 buckets" in table.output
    assert "median of 2" in table.output


def test_status_needs_the_redis_backend(tmp_path: Path) -> None:
    path = write(tmp_path, {"backend": "memory"})
    result = run("redis", "status", "--config", str(path))
    assert result.exit_code == 2
    assert "state.backend: is 'memory'" in result.output


def test_status_without_a_config_says_so() -> None:
    result = run("redis", "status")
    assert result.exit_code == 2
    assert "no config file" in result.output


def test_status_on_an_unreachable_redis_is_one_line_without_the_password(tmp_path: Path) -> None:
    path = write(tmp_path, {"backend": "redis", "options": {"url": DEAD_URL, "socketTimeout": 500}})
    result = run("redis", "status", "--config", str(path))
    assert result.exit_code == 2
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in result.output
    assert "hunter2-secret-pw" not in result.output
    assert "Traceback" not in result.output
