"""``cache stats`` and ``cache clear`` through click's CliRunner: on the
memory backend (a cache private to the command) and on a store shared with
a "gateway" that answered requests from a real loopback upstream."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result

import swarmgate_cache.cli
from swarmgate import ProviderManager
from swarmgate.cli import build_cli
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import FakeUpstream
from swarmgate_cache.cli import MEMORY_NOTE

Config = Callable[..., dict[str, Any]]


@pytest.fixture(autouse=True)
def _admit_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai,swarmgate-cache")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(build_cli(), ["cache", *args], catch_exceptions=False)


def write(tmp_path: Path, config: dict[str, Any]) -> str:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_stats_on_the_memory_backend(tmp_path: Path, make_config: Config) -> None:
    path = write(tmp_path, make_config("http://127.0.0.1:9/v1", maxSize=50, namespace="blue"))
    result = invoke("stats", "--json", "--config", path)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["entries"] == stats["hits"] == stats["misses"] == 0
    assert stats["hit_ratio"] == 0.0
    assert (stats["namespace"], stats["backend"], stats["max_size"]) == ("blue", "memory", 50)

    table = invoke("stats", "--config", path)
    assert table.exit_code == 0, table.output
    for label in ("entries", "hits", "misses", "hit ratio", "cost saved", "evictions", "tampered", "0.0%"):
        assert label in table.output
    assert " ".join(MEMORY_NOTE.split()[:6]) in " ".join(table.output.split())


def test_clear_on_the_memory_backend(tmp_path: Path, make_config: Config) -> None:
    path = write(tmp_path, make_config("http://127.0.0.1:9/v1"))
    result = invoke("clear", "--json", "--config", path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"removed": 0, "criteria": {}, "backend": "memory", "namespace": "default"}
    text = invoke("clear", "--provider", "a", "--older-than", "60", "--config", path)
    assert text.exit_code == 0, text.output
    assert "removed 0 cached entries (provider a, older than 60.0)" in text.output


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"providers": {}}, "optimization.caching: the response cache is not enabled"),
        ({"providers": {}, "optimization": {"caching": {"maxSize": -1}}}, "optimization.caching.maxSize"),
    ],
)
def test_config_problems_exit_2(tmp_path: Path, config: dict[str, Any], message: str) -> None:
    path = write(tmp_path, config)
    for command in (["stats"], ["clear", "--tag", "x"]):
        result = CliRunner().invoke(build_cli(), ["cache", *command, "--config", path])
        assert result.exit_code == 2, result.output
        assert message in result.output


def test_a_negative_age_is_a_usage_error(tmp_path: Path, make_config: Config) -> None:
    path = write(tmp_path, make_config("http://127.0.0.1:9/v1"))
    result = CliRunner().invoke(build_cli(), ["cache", "clear", "--older-than", "-5", "--config", path])
    assert result.exit_code == 2
    assert "--older-than" in result.output


def test_stats_and_clear_act_on_a_shared_backend(
    tmp_path: Path, make_config: Config, state_drivers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command's manager gets the store the "gateway" below used, as a shared backend would give it.
    monkeypatch.setattr(
        swarmgate_cache.cli, "ProviderManager", functools.partial(ProviderManager, drivers=state_drivers)
    )
    with FakeUpstream.in_thread() as upstream:
        config = make_config(upstream.url)

        async def serve() -> float:
            async with ProviderManager(config, drivers=state_drivers) as gateway:
                first = await gateway.complete(prompt="one", model="a/m", temperature=0, tags=["t1"])
                await gateway.complete(prompt="one", model="a/m", temperature=0)
                await gateway.complete(prompt="two", model="a/n", temperature=0)
                await gateway.complete(prompt="three", model="b/m", temperature=0, tags=["t1"])
                return first.cost

        cost = anyio.run(serve)
    path = write(tmp_path, config)
    stats = json.loads(invoke("stats", "--json", "--config", path).output)
    assert (stats["entries"], stats["hits"], stats["misses"], stats["stores"]) == (3, 1, 3, 3)
    assert stats["cost_saved"] == pytest.approx(cost)

    cleared = json.loads(invoke("clear", "--tag", "t1", "--provider", "a", "--json", "--config", path).output)
    assert cleared["removed"] == 1
    assert cleared["criteria"] == {"provider": "a", "tag": "t1"}
    text = invoke("clear", "--model", "m", "--config", path)
    assert "removed 1 cached entry (model m)" in text.output
    assert json.loads(invoke("stats", "--json", "--config", path).output)["entries"] == 1
    assert json.loads(invoke("clear", "--json", "--config", path).output)["removed"] == 1
    assert json.loads(invoke("stats", "--json", "--config", path).output)["invalidated"] == 3
