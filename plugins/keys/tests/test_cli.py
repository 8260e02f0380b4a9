"""The ``keys`` commands: on a store file (``--store``, ``--config``) and
against a live gateway (``--url``), through the real CLI entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner, Result

from swarmgate.cli import build_cli
from swarmgate.logs import fingerprint
from swarmgate.testing import FakeUpstream
from swarmgate.testing.leaks import assert_no_secrets
from swarmgate_keys import Hasher, KeyStore
from swarmgate_server import RunningGateway, run_gateway

ADMIN_KEY = "sk-admin-keys-tests-0123456789"
MESSAGES: Any = [{"role": "user", "content": "hello"}]


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(build_cli(), list(args), env=env, catch_exceptions=False)


def ask(url: str, key: str) -> str | None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content


@pytest.fixture
def config_file(
    upstream: FakeUpstream,
    tmp_path: Path,
    make_config: Callable[..., dict[str, Any]],
    pepper: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    monkeypatch.setenv("KEYS_TEST_PEPPER", pepper)
    path = tmp_path / "swarmgate.json"
    path.write_text(json.dumps(make_config(upstream, tmp_path / "keys.db")))
    return path


def test_create_list_revoke_on_a_store_file(store_path: Path) -> None:
    created = run("keys", "create", "--name", "alice", "--models", "gpt-4o-mini, fast", "--rpm", "60",
                  "--burst", "5", "--daily", "2.5", "--expires", "30d", "--meta", "team=a", "--store", str(store_path),
                  "--json")  # fmt: skip
    assert created.exit_code == 0, created.output
    answer = json.loads(created.stdout)
    key, record = answer["key"], answer["record"]
    assert key.startswith("sg-")
    assert record["models"] == ["gpt-4o-mini", "fast"]
    assert record["metadata"] == {"team": "a"}
    assert record["fingerprint"] == fingerprint(key)
    with KeyStore(store_path) as store:  # no pepper anywhere: plain SHA-256
        assert store.authenticate(key) is not None

    human = run("keys", "create", "--name", "bob", "--store", str(store_path))
    assert human.exit_code == 0
    lines = human.stdout.splitlines()
    assert "shown this once" in lines[1]
    bob_key = lines[2]
    assert bob_key.startswith("sg-")

    listed = run("keys", "list", "--store", str(store_path), "--json")
    rows = json.loads(listed.stdout)
    assert [r["name"] for r in rows] == ["alice", "bob"]
    table = run("keys", "list", "--store", str(store_path), env={"COLUMNS": "200"})
    assert "alice" in table.stdout
    assert "60 req/min" in table.stdout
    assert_no_secrets([listed.stdout, table.stdout], [key, bob_key])

    revoked = run("keys", "revoke", "alice", "--store", str(store_path))
    assert revoked.exit_code == 0
    assert "'alice'" in revoked.stdout
    assert "revoked" in revoked.stdout
    again = run("keys", "revoke", record["id"], "--store", str(store_path), "--json")
    assert json.loads(again.stdout)["changed"] is False
    active = json.loads(run("keys", "list", "--status", "active", "--store", str(store_path), "--json").stdout)
    assert [r["name"] for r in active] == ["bob"]


def test_the_config_names_the_store_and_its_pepper(config_file: Path, tmp_path: Path, pepper: str) -> None:
    created = run("keys", "create", "--name", "alice", "--rpm", "5", "--config", str(config_file), "--json")
    assert created.exit_code == 0, created.output
    # The store switches the (installed) ratelimit plugin on: no warning.
    assert "not enforced" not in created.stderr
    key = json.loads(created.stdout)["key"]
    with KeyStore(tmp_path / "keys.db", Hasher(pepper.encode())) as store:
        assert store.authenticate(key) is not None
    # The same store without its pepper is refused, naming what to set.
    refused = run("keys", "list", "--store", str(tmp_path / "keys.db"))
    assert refused.exit_code == 2
    assert "hashed with a pepper" in refused.stderr


def test_a_config_without_caller_keys_is_warned_about(
    upstream: FakeUpstream, tmp_path: Path, make_config: Callable[..., dict[str, Any]]
) -> None:
    config = make_config(upstream, tmp_path / "keys.db")
    del config["security"]
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(config))
    created = run("keys", "create", "--name", "alice", "--config", str(path))
    assert created.exit_code == 0
    assert "security.callerKeys is not enabled" in created.stderr


def test_limits_a_disabled_plugin_would_not_enforce_are_warned_about(
    upstream: FakeUpstream,
    tmp_path: Path,
    make_config: Callable[..., dict[str, Any]],
    pepper: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEYS_TEST_PEPPER", pepper)
    config = make_config(
        upstream,
        tmp_path / "keys.db",
        optimization={"rateLimiting": {"enabled": False}},
        routing={"budgetLimits": {"enabled": False}},
    )
    path = tmp_path / "off.json"
    path.write_text(json.dumps(config))
    created = run("keys", "create", "--name", "alice", "--rpm", "5", "--daily", "1", "--config", str(path))
    assert created.exit_code == 0, created.output
    assert "rate limit of this key is not enforced" in created.stderr
    assert "budget of this key is not enforced" in created.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "--name", "admin"], "reserved"),
        (["keys", "create", "--name", "a", "--expires", "soon"], "neither a duration"),
        (["keys", "create", "--name", "a", "--burst", "3"], "needs requestsPerMinute"),
        (["keys", "create", "--name", "a", "--meta", "novalue"], "KEY=VALUE"),
        (["keys", "revoke", "nobody"], "no caller key 'nobody'"),
        (["keys", "list", "--url", "http://127.0.0.1:9"], "give --url"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(store_path: Path, args: list[str], message: str) -> None:
    result = run(*args, "--store", str(store_path))
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_a_taken_name_is_refused(store_path: Path) -> None:
    assert run("keys", "create", "--name", "alice", "--store", str(store_path)).exit_code == 0
    again = run("keys", "create", "--name", "alice", "--store", str(store_path))
    assert again.exit_code == 2
    assert "already exists" in again.stderr


def test_rotate_without_url_reads_the_key_sources(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run("keys", "rotate", "primary", "--config", str(config_file), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"provider": "primary", "keys": [fingerprint("sk-upstream-primary-000")]}
    monkeypatch.setenv("NEXT_KEY", "sk-upstream-next-0123")
    human = run("keys", "rotate", "primary", "--key-env", "NEXT_KEY", "--config", str(config_file))
    assert fingerprint("sk-upstream-next-0123") in human.stdout
    assert "this process only" in human.stdout
    unknown = run("keys", "rotate", "nowhere", "--config", str(config_file))
    assert unknown.exit_code == 2
    missing = run("keys", "rotate", "primary", "--key-env", "UNSET_VARIABLE_X", "--config", str(config_file))
    assert missing.exit_code == 2
    assert "UNSET_VARIABLE_X is not set" in missing.stderr


@pytest.fixture
def gateway(config_file: Path) -> Iterator[RunningGateway]:
    with run_gateway(config_file) as running:
        yield running


def test_commands_against_a_live_gateway(
    gateway: RunningGateway, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = ("--url", gateway.url, "--admin-key", ADMIN_KEY)
    created = run("keys", "create", "--name", "remote", "--models", "gpt-4o-mini", "--json", *remote)
    assert created.exit_code == 0, created.output
    answer = json.loads(created.stdout)
    assert ask(gateway.url, answer["key"])

    listed = run("keys", "list", "--json", *remote)
    assert [r["name"] for r in json.loads(listed.stdout)] == ["remote"]
    assert_no_secrets([listed.stdout], [answer["key"]])

    revoked = run("keys", "revoke", answer["record"]["fingerprint"], *remote)
    assert revoked.exit_code == 0, revoked.output
    with pytest.raises(openai.AuthenticationError):
        ask(gateway.url, answer["key"])

    # $SWARMGATE_URL and $SWARMGATE_ADMIN_KEY stand for the options.
    env = {"SWARMGATE_URL": gateway.url, "SWARMGATE_ADMIN_KEY": ADMIN_KEY}
    assert json.loads(run("keys", "list", "--json", env=env).stdout)[0]["status"] == "revoked"
    wrong = run("keys", "list", "--url", gateway.url, "--admin-key", "sk-wrong-admin-key-000")
    assert wrong.exit_code == 2
    assert "HTTP 401" in wrong.stderr

    # Provider key rotation on the running gateway: the upstream sees the new key next.
    monkeypatch.setenv("NEXT_KEY", "sk-upstream-next-0123")
    rotated = run("keys", "rotate", "primary", "--key-env", "NEXT_KEY", "--json", *remote)
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout)["keys"] == [fingerprint("sk-upstream-next-0123")]
    caller = json.loads(run("keys", "create", "--name", "after", "--json", *remote).stdout)["key"]
    upstream.requests.clear()
    assert ask(gateway.url, caller)
    assert upstream.requests[-1].headers["authorization"] == "Bearer sk-upstream-next-0123"
    reread = run("keys", "rotate", "primary", *remote)
    assert fingerprint("sk-upstream-primary-000") in reread.stdout


def test_a_key_revoked_by_the_cli_in_another_process_is_refused_at_once(
    gateway: RunningGateway, config_file: Path, pepper: str
) -> None:
    remote = ("--url", gateway.url, "--admin-key", ADMIN_KEY)
    key = json.loads(run("keys", "create", "--name", "victim", "--json", *remote).stdout)["key"]
    assert ask(gateway.url, key)
    env = {**os.environ, "KEYS_TEST_PEPPER": pepper, "SWARMGATE_PLUGINS": "swarmgate-keys,swarmgate-server"}
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "qwen-swarm-enhanced"),
            "keys",
            "revoke",
            "victim",
            "--config",
            str(config_file),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "revoked" in done.stdout
    with pytest.raises(openai.AuthenticationError):
        ask(gateway.url, key)
    status = httpx.get(gateway.url + "/admin/keys/victim", headers={"authorization": "Bearer " + ADMIN_KEY})
    assert status.status_code == 404  # a name only names a live key
