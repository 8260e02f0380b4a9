"""The ``security.callerKeys`` section, the pepper, and the plugin in a
real manager: inactive without the section, the service and caller
directory published with it, start-up errors naming the path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from swarmgate import CallerPolicy, ConfigError, ProviderManager
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import FakeUpstream
from swarmgate_keys import (
    EXTENSION,
    CallerKeyService,
    CallerKeysSettings,
    Hasher,
    KeySpec,
    KeyStore,
    load_settings,
    resolve_hasher,
)

pytestmark = pytest.mark.anyio


def test_the_section_switches_the_store_on() -> None:
    assert load_settings(None).enabled is False
    assert load_settings(True) == CallerKeysSettings()
    assert load_settings(False).enabled is False
    assert load_settings({"enabled": False}).enabled is False
    assert load_settings({"path": "k.db", "pepperEnv": "P"}) == CallerKeysSettings(path="k.db", pepper_env="P")


@pytest.mark.parametrize(
    ("raw", "path", "message"),
    [
        ("yes", "security.callerKeys", "must be an object"),
        ({"path": " "}, "security.callerKeys.path", "empty"),
        ({"pepperEnv": "A", "pepperFile": "f"}, "security.callerKeys.pepperFile", "not both"),
        ({"pepper": "x"}, "security.callerKeys.pepper", ""),
    ],
)
def test_bad_settings_name_the_path(raw: Any, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(raw)
    assert raised.value.problems[0][0] == path
    assert message in raised.value.problems[0][1]


def test_the_pepper_comes_from_the_environment_or_a_file(tmp_path: Path, pepper: str) -> None:
    assert resolve_hasher(CallerKeysSettings(), env={}) == Hasher(None)
    assert resolve_hasher(CallerKeysSettings(), env={"SWARMGATE_KEY_PEPPER": pepper}) == Hasher(pepper.encode())
    assert resolve_hasher(CallerKeysSettings(pepper_env="MINE"), env={"MINE": pepper}) == Hasher(pepper.encode())
    (tmp_path / "pepper").write_text(pepper + "\n")
    found = resolve_hasher(CallerKeysSettings(pepper_file="pepper"), base_dir=tmp_path, env={})
    assert found == Hasher(pepper.encode())
    assert found.scheme.startswith("hmac-sha256:")
    assert pepper not in found.scheme
    assert pepper not in repr(found)


@pytest.mark.parametrize(
    ("settings", "env", "path", "message"),
    [
        (CallerKeysSettings(pepper_env="MINE"), {}, "pepperEnv", "MINE is not set"),
        (CallerKeysSettings(), {"SWARMGATE_KEY_PEPPER": "short-pepper"}, "pepperEnv", "shorter than 16"),
        (CallerKeysSettings(pepper_file="missing"), {}, "pepperFile", "cannot read the pepper file"),
    ],
)
def test_a_missing_or_weak_pepper_is_an_error(
    settings: CallerKeysSettings, env: dict[str, str], path: str, message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as raised:
        resolve_hasher(settings, base_dir=tmp_path, env=env)
    assert raised.value.problems[0][0] == f"security.callerKeys.{path}"
    assert message in str(raised.value)
    assert "short-pepper" not in str(raised.value)


async def test_without_the_section_nothing_is_published(
    upstream: FakeUpstream, tmp_path: Path, make_config: Callable[..., dict[str, Any]]
) -> None:
    config = make_config(upstream, tmp_path / "keys.db")
    del config["security"]
    async with ProviderManager(config) as manager:
        assert EXTENSION not in manager.extensions
    assert not (tmp_path / "keys.db").exists()


async def test_the_service_answers_for_the_gateway_and_the_directory(
    upstream: FakeUpstream,
    store_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pepper: str,
    make_config: Callable[..., dict[str, Any]],
) -> None:
    monkeypatch.setenv("KEYS_TEST_PEPPER", pepper)
    with KeyStore(store_path, Hasher(pepper.encode())) as store:
        alice = store.create(KeySpec(name="alice", models=("gpt-4o-mini",), requests_per_minute=30))
        old = store.create(KeySpec(name="old"))
        store.revoke("old")
    async with ProviderManager(make_config(upstream, store_path)) as manager:
        service = manager.extensions[EXTENSION]
        assert isinstance(service, CallerKeyService)
        assert service.authenticate(alice.key) == "alice"
        assert service.authenticate(old.key) is None
        assert service.authenticate("sg-nope") is None
        assert manager.caller_policy("alice") == CallerPolicy(allowed_models=("gpt-4o-mini",), requests_per_minute=30)
        issued = await service.create(KeySpec(name="bob", daily_budget=2.0))
        assert service.authenticate(issued.key) == "bob"
        assert manager.caller_policy("bob").daily_budget == 2.0
        assert [k.name for k in await service.list()] == ["alice", "old", "bob"]
        assert (await service.get("bob")).id == issued.record.id
        revoked, changed = await service.revoke("bob")
        assert changed
        assert revoked.status() == "revoked"
        assert service.authenticate(issued.key) is None
        assert manager.caller_policy("bob") == CallerPolicy()
    assert EXTENSION not in manager.extensions


async def test_a_store_made_with_another_pepper_fails_the_start(
    upstream: FakeUpstream,
    store_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pepper: str,
    make_config: Callable[..., dict[str, Any]],
) -> None:
    with KeyStore(store_path, Hasher(b"the-pepper-of-yesterday")) as store:
        store.create(KeySpec(name="alice"))
    monkeypatch.setenv("KEYS_TEST_PEPPER", pepper)
    with pytest.raises(ConfigError, match="hashed with another pepper") as raised:
        async with ProviderManager(make_config(upstream, store_path)):
            pass
    assert raised.value.problems[0][0] == "security.callerKeys.pepperEnv"
    monkeypatch.delenv("KEYS_TEST_PEPPER")
    with pytest.raises(ConfigError, match="KEYS_TEST_PEPPER is not set"):
        async with ProviderManager(make_config(upstream, store_path)):
            pass


async def test_caller_keys_without_the_plugin_fail_the_start(
    upstream: FakeUpstream,
    store_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_config: Callable[..., dict[str, Any]],
) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate-openai,swarmgate-server")
    with pytest.raises(ConfigError, match="install 'swarmgate-keys'") as raised:
        async with ProviderManager(make_config(upstream, store_path)):
            pass
    assert raised.value.problems[0][0] == "security.callerKeys"
