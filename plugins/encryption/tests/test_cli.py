"""``encryption generate-key|status|rotate|rotate-master`` through click's
CliRunner, on a config file whose keyring is a SQLite file (the memory
backend), shared with "gateways" run in the test."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result

from swarmgate import ConfigError, ProviderManager
from swarmgate.cli import build_cli
from swarmgate.plugins import ALLOW_ENV
from swarmgate_encryption import EncryptionService, generate_key_text, key_id_of


@pytest.fixture(autouse=True)
def _admit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai,swarmgate-encryption")


@pytest.fixture
def config_path(tmp_path: Path, keyring_path: Path) -> str:
    config = {
        "providers": {
            "a": {"type": "openai", "endpoint": "http://127.0.0.1:9/v1", "apiKey": "sk-test-a", "models": {"m": {}}}
        },
        "security": {"encryption": {"enabled": True, "keyRotation": 86_400_000, "keyringPath": str(keyring_path)}},
    }
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(config))
    return str(path)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(build_cli(), ["encryption", *args], catch_exceptions=False)


def in_gateway(config_path: str, action: Any) -> Any:
    """Run ``action(service)`` in a gateway built from ``config_path``."""

    async def run() -> Any:
        async with ProviderManager(config_path) as manager:
            service = manager.extensions["encryption"]
            assert isinstance(service, EncryptionService)
            return action(service)

    return anyio.run(run)


def test_generate_key() -> None:
    one, two = invoke("generate-key"), invoke("generate-key")
    assert one.exit_code == two.exit_code == 0
    assert len(base64.b64decode(one.output.strip(), validate=True)) == 32
    assert one.output != two.output


def test_status(config_path: str, master_key: str, keyring_path: Path) -> None:
    result = invoke("status", "--json", "--config", config_path)
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["algorithm"] == "AES-256-GCM"
    assert status["keys"] == 2
    assert status["keyring"] == f"sqlite:{keyring_path}"
    assert status["master_key"]["source"] == "env:SWARMGATE_MASTER_KEY"
    table = invoke("status", "--config", config_path)
    assert table.exit_code == 0, table.output
    for label in ("current data key", "next data key", "every 86400 s", status["master_key"]["fingerprint"]):
        assert label in table.output
    assert master_key not in result.output + table.output
    # The gateway sees the keys the command made (same keyring file).
    assert in_gateway(config_path, lambda s: s.current_key_id()) == status["current_key"]


def test_rotate(config_path: str) -> None:
    before = in_gateway(config_path, lambda s: s.current_key_id())
    result = invoke("rotate", "--json", "--config", config_path)
    assert result.exit_code == 0, result.output
    rotated = json.loads(result.output)
    assert rotated["activates_in_s"] == 120  # two refresh intervals of 60 s
    assert in_gateway(config_path, lambda s: s.current_key_id()) == before  # not yet current
    now = invoke("rotate", "--now", "--config", config_path)
    assert now.exit_code == 0, now.output
    (key_id,) = [int(word) for word in now.output.split() if word.isdigit()]
    assert now.output.strip() == f"data key {key_id} is current"
    assert in_gateway(config_path, lambda s: s.current_key_id()) == key_id


def test_rotate_master(config_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    record = in_gateway(config_path, lambda s: s.encrypt(b"an audit body", b"audit:1"))
    new_key = generate_key_text()
    monkeypatch.setenv("NEW_MASTER_KEY", new_key)
    result = invoke("rotate-master", "--new-key-env", "NEW_MASTER_KEY", "--config", config_path)
    assert result.exit_code == 0, result.output
    assert "re-wrapped 2 data key(s)" in result.output
    assert "restart every gateway" in result.output
    assert new_key not in result.output
    # The old key no longer starts a gateway; the new one reads the old record.
    with pytest.raises(ConfigError, match="does not unwrap"):
        in_gateway(config_path, lambda s: None)
    monkeypatch.setenv("SWARMGATE_MASTER_KEY", new_key)
    assert in_gateway(config_path, lambda s: s.decrypt(record, b"audit:1")) == b"an audit body"
    assert in_gateway(config_path, lambda s: s.current_key_id()) == key_id_of(record)
    # Once done, running it again (old key now = new key) is refused: nothing to do with the same key.
    again = invoke("rotate-master", "--new-key-env", "NEW_MASTER_KEY", "--config", config_path)
    assert again.exit_code == 2
    assert "the current one" in again.output


def test_rotate_master_resumes_with_the_old_key(
    config_path: str, master_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_gateway(config_path, lambda s: None)
    monkeypatch.setenv("NEW_MASTER_KEY", generate_key_text())
    assert invoke("rotate-master", "--new-key-env", "NEW_MASTER_KEY", "--config", config_path).exit_code == 0
    again = invoke("rotate-master", "--new-key-env", "NEW_MASTER_KEY", "--config", config_path, "--json")
    assert again.exit_code == 0, again.output
    result: dict[str, Any] = json.loads(again.output)
    assert (result["rewrapped"], result["already"]) == (0, 2)


def test_rotate_master_errors(config_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    in_gateway(config_path, lambda s: None)
    unset = invoke("rotate-master", "--new-key-env", "NO_SUCH_VARIABLE", "--config", config_path)
    assert unset.exit_code == 2
    assert "--new-key-env: $NO_SUCH_VARIABLE is not set" in unset.output
    # The configured (old) key is not the keyring's: refused before writing anything.
    monkeypatch.setenv("SWARMGATE_MASTER_KEY", generate_key_text())
    monkeypatch.setenv("NEW_MASTER_KEY", generate_key_text())
    wrong = invoke("rotate-master", "--new-key-env", "NEW_MASTER_KEY", "--config", config_path)
    assert wrong.exit_code == 2
    assert "security.encryption.masterKeyEnv" in wrong.output
    assert "neither the old" in wrong.output


def test_without_the_section_commands_fail_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "plain.json"
    path.write_text(
        json.dumps({"providers": {"a": {"type": "openai", "endpoint": "http://127.0.0.1:9/v1", "models": {"m": {}}}}})
    )
    for args in (("status",), ("rotate",), ("rotate-master", "--new-key-env", "X")):
        result = invoke(*args, "--config", str(path))
        assert result.exit_code == 2, result.output
        assert "encryption is not enabled in this config" in result.output
        assert "Traceback" not in result.output
