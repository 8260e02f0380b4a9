"""``security.encryption`` through a real ProviderManager: the master key
from the environment or a file, every start-up error (missing or malformed
master key, a key in the config, bad values), the keyring choice, the
services published, and the plugin found through its entry point."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from swarmgate import ConfigError, PluginError, ProviderManager, hookimpl
from swarmgate.logs import redact_text
from swarmgate.plugins import ALLOW_ENV
from swarmgate_encryption import (
    EncryptedCacheCodec,
    EncryptionPlugin,
    EncryptionService,
    SqliteKeyStore,
    StateKeyStore,
    TamperedError,
    generate_key_text,
)

pytestmark = pytest.mark.anyio

Config = Callable[..., dict[str, Any]]


def gateway(config: dict[str, Any], drivers: Any, *plugins: object, **options: Any) -> ProviderManager:
    return ProviderManager(config, drivers=drivers, plugins=[*plugins, EncryptionPlugin(background=False, **options)])


def problems(error: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return dict(error.value.problems)


async def test_enabled_publishes_the_service_and_the_cache_codec(make_config: Config, drivers: Any) -> None:
    async with gateway(make_config(), drivers) as manager:
        service = manager.extensions["encryption"]
        assert isinstance(service, EncryptionService)
        codec = manager.extensions["cache_codec"]
        assert isinstance(codec, EncryptedCacheCodec)
        assert codec.binds_key is True
        assert codec.hash_key == service.index_key
        assert len(codec.hash_key) == 32
        assert service.decrypt(service.encrypt(b"hello", b"x"), b"x") == b"hello"
        assert isinstance(service.store, StateKeyStore)  # auto: a shared backend keeps the keyring
        assert service.status()["keyring"] == "state:shared"


async def test_the_memory_backend_keeps_the_keyring_in_sqlite(
    make_config: Config, drivers: Any, keyring_path: Path
) -> None:
    async with gateway(make_config(backend="memory"), drivers) as manager:
        service = manager.extensions["encryption"]
        assert isinstance(service.store, SqliteKeyStore)
        assert service.store.path == keyring_path
        blob = service.encrypt(b"survives a restart", b"a")
    async with gateway(make_config(backend="memory"), drivers) as manager:
        assert manager.extensions["encryption"].decrypt(blob, b"a") == b"survives a restart"


async def test_the_keyring_in_a_memory_state_store_is_refused(make_config: Config, drivers: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        async with gateway(make_config(backend="memory", keyring="state"), drivers):
            pass
    assert "lose every data key at restart" in problems(caught)["security.encryption.keyring"]


async def test_absent_or_disabled_the_plugin_unregisters(make_config: Config, drivers: Any) -> None:
    for config in (make_config(section=False), make_config(enabled=False)):
        plugin = EncryptionPlugin(background=False)
        async with ProviderManager(config, drivers=drivers, plugins=[plugin]) as manager:
            assert "encryption" not in manager.extensions
            assert "cache_codec" not in manager.extensions
            assert plugin not in [manager.plugins.get(info.name) for info in manager.plugins.plugins()]


async def test_a_missing_master_key_is_a_start_up_error(
    make_config: Config, drivers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWARMGATE_MASTER_KEY")
    with pytest.raises(ConfigError) as caught:
        async with gateway(make_config(), drivers):
            pass
    message = problems(caught)["security.encryption.masterKeyEnv"]
    assert "$SWARMGATE_MASTER_KEY is not set" in message
    assert "will not start without its master key" in message
    assert "generate-key" in message
    # An empty variable is no better.
    monkeypatch.setenv("SWARMGATE_MASTER_KEY", "  ")
    with pytest.raises(ConfigError, match="is not set"):
        async with gateway(make_config(), drivers):
            pass


async def test_a_named_variable(make_config: Config, drivers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWARMGATE_MASTER_KEY")
    with pytest.raises(ConfigError, match=r"\$VAULT_KEY is not set"):
        async with gateway(make_config(masterKeyEnv="VAULT_KEY"), drivers):
            pass
    monkeypatch.setenv("VAULT_KEY", generate_key_text())
    async with gateway(make_config(masterKeyEnv="VAULT_KEY"), drivers) as manager:
        assert manager.extensions["encryption"].status()["master_key"]["source"] == "env:VAULT_KEY"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not base64 at all!", "is not base64"),
        (base64.b64encode(os.urandom(16)).decode(), "decodes to 16 bytes"),
        (base64.b64encode(os.urandom(33)).decode(), "decodes to 33 bytes"),
    ],
)
async def test_a_malformed_master_key_is_a_start_up_error(
    make_config: Config, drivers: Any, monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv("SWARMGATE_MASTER_KEY", value)
    with pytest.raises(ConfigError) as caught:
        async with gateway(make_config(), drivers):
            pass
    assert expected in problems(caught)["security.encryption.masterKeyEnv"]
    assert value not in str(caught.value)


async def test_url_safe_and_unpadded_keys_are_accepted(
    make_config: Config, drivers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = bytes(range(250, 256)) * 5 + b"\xfb\xff"  # bytes that encode to '+' and '/'
    monkeypatch.setenv("SWARMGATE_MASTER_KEY", base64.urlsafe_b64encode(raw).decode().rstrip("="))
    async with gateway(make_config(), drivers) as manager:
        fingerprint = manager.extensions["encryption"].master.fingerprint
    monkeypatch.setenv("SWARMGATE_MASTER_KEY", base64.b64encode(raw).decode())
    async with gateway(make_config(), drivers) as manager:
        assert manager.extensions["encryption"].master.fingerprint == fingerprint


@pytest.mark.parametrize("field", ["masterKey", "key", "dataKey"])
async def test_a_key_in_the_config_is_refused(make_config: Config, drivers: Any, field: str) -> None:
    secret = generate_key_text()
    with pytest.raises(ConfigError) as caught:
        async with gateway(make_config(**{field: secret}), drivers):
            pass
    message = problems(caught)[f"security.encryption.{field}"]
    assert "a key in the config is refused" in message
    assert "masterKeyEnv" in message
    assert "masterKeyFile" in message
    assert secret not in str(caught.value)


async def test_a_key_in_the_config_is_refused_even_when_disabled(make_config: Config, drivers: Any) -> None:
    with pytest.raises(ConfigError, match="masterKey"):
        async with gateway(make_config(enabled=False, masterKey="${SOME_ENV}"), drivers):
            pass


@pytest.mark.parametrize(
    ("keys", "path", "expected"),
    [
        ({"algorithm": "AES-128-CBC"}, "algorithm", "only 'AES-256-GCM'"),
        ({"keyRotation": 10}, "keyRotation", "at least 1000"),
        ({"keyRotation": -1}, "keyRotation", "at least 1000"),
        ({"refreshInterval": 1}, "refreshInterval", "at least 10"),
        ({"keyRotation": 60_000, "refreshInterval": 40_000}, "refreshInterval", "at most half of keyRotation"),
        ({"masterKeyEnv": "A", "masterKeyFile": "/k"}, "masterKeyFile", "not both"),
        ({"keyring": "vault"}, "keyring", "must be one of"),
        ({"unknownKey": 1}, "unknownKey", ""),
        ({"enabled": "yes"}, "enabled", ""),
    ],
)
async def test_bad_values_are_config_errors_naming_the_path(
    make_config: Config, drivers: Any, keys: dict[str, Any], path: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        async with gateway(make_config(**keys), drivers):
            pass
    found = problems(caught)
    assert f"security.encryption.{path}" in found, found
    assert expected in found[f"security.encryption.{path}"]


async def test_the_algorithm_spelled_in_lower_case(make_config: Config, drivers: Any) -> None:
    async with gateway(make_config(algorithm="aes-256-gcm", keyRotation=86_400_000), drivers) as manager:
        assert manager.extensions["encryption"].status()["algorithm"] == "AES-256-GCM"


async def test_the_master_key_from_a_file(
    make_config: Config, drivers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWARMGATE_MASTER_KEY")
    text_file, raw_file = tmp_path / "master.key", tmp_path / "master.bin"
    raw = os.urandom(32)
    text_file.write_text(base64.b64encode(raw).decode() + "\n")
    raw_file.write_bytes(raw)
    for file in (text_file, raw_file):
        file.chmod(0o600)
    fingerprints = set()
    for file in (text_file, raw_file):
        with capture_logs() as logs:
            async with gateway(make_config(masterKeyFile=str(file)), drivers) as manager:
                status = manager.extensions["encryption"].status()
        fingerprints.add(status["master_key"]["fingerprint"])
        assert status["master_key"]["source"] == f"file:{file}"
        assert not [e for e in logs if e["event"] == "master_key_file_permissions"]
    assert len(fingerprints) == 1  # the same key, either way


async def test_master_key_file_errors(make_config: Config, drivers: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(ConfigError) as caught:
        async with gateway(make_config(masterKeyFile=str(missing)), drivers):
            pass
    assert "cannot read the master key file" in problems(caught)["security.encryption.masterKeyFile"]
    short = tmp_path / "short.key"
    short.write_text("c2hvcnQ=")
    with pytest.raises(ConfigError, match="decodes to 5 bytes"):
        async with gateway(make_config(masterKeyFile=str(short)), drivers):
            pass
    binary = tmp_path / "binary.key"
    binary.write_bytes(os.urandom(31) + b"\xff")
    binary.write_bytes(binary.read_bytes() * 2)  # 64 bytes, not text
    with pytest.raises(ConfigError, match="not base64 text"):
        async with gateway(make_config(masterKeyFile=str(binary)), drivers):
            pass


async def test_a_readable_master_key_file_is_a_warning(make_config: Config, drivers: Any, tmp_path: Path) -> None:
    file = tmp_path / "master.key"
    file.write_text(generate_key_text())
    file.chmod(0o644)
    with capture_logs() as logs:
        async with gateway(make_config(masterKeyFile=str(file)), drivers):
            pass
    (warning,) = [e for e in logs if e["event"] == "master_key_file_permissions"]
    assert warning["log_level"] == "warning"
    assert warning["mode"] == "0o644"


async def test_the_master_key_never_reaches_a_log_line(make_config: Config, drivers: Any, master_key: str) -> None:
    with capture_logs() as logs:
        async with gateway(make_config(), drivers) as manager:
            service = manager.extensions["encryption"]
            await service.rotate()
            with pytest.raises(TamperedError):
                service.decrypt(service.encrypt(b"x", b"a"), b"b")
    assert logs  # the refused record at least
    assert master_key not in repr(logs)
    assert master_key not in repr(service.master) + repr(service.status())
    # Registered with the kernel's redaction: even a careless log line is masked.
    assert master_key not in redact_text(f"oops: {master_key}")


class PreCodec:
    """Publishes a cache codec in a ``tryfirst`` set-up that runs before the
    encryption plugin's (pluggy calls the later registered first)."""

    @hookimpl(tryfirst=True)
    def plugin_setup(self, manager: ProviderManager) -> None:
        manager.extensions["cache_codec"] = self

    def encode(self, data: bytes) -> bytes:
        return data

    def decode(self, data: bytes) -> bytes:
        return data


async def test_a_cache_codec_from_elsewhere_is_a_plugin_error(make_config: Config, drivers: Any) -> None:
    with pytest.raises(PluginError, match="already published"):
        async with ProviderManager(
            make_config(), drivers=drivers, plugins=[EncryptionPlugin(background=False), PreCodec()]
        ):
            pass
    other = PreCodec()
    async with ProviderManager(
        make_config(encryptCache=False), drivers=drivers, plugins=[EncryptionPlugin(background=False), other]
    ) as manager:
        assert isinstance(manager.extensions["encryption"], EncryptionService)
        assert manager.extensions["cache_codec"] is other


async def test_the_entry_point(make_config: Config, drivers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-encryption")
    async with ProviderManager(make_config(), drivers=drivers) as manager:
        assert isinstance(manager.extensions["encryption"], EncryptionService)
        names = {info.name: info.distribution for info in manager.plugins.plugins()}
        assert names.get("encryption") == "swarmgate-encryption"
