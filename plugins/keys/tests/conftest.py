"""Shared set-up of the keys plugin's tests: a store on a temporary file,
a pepper, a fake OpenAI-wire upstream and gateway configs in front of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV
from swarmgate.testing import FakeUpstream, OpenAIWire
from swarmgate_keys import Hasher, KeyStore

#: Only these plugins load from entry points; a test that wants more widens it.
PLUGINS = "swarmgate-openai,swarmgate-server,swarmgate-keys"
PEPPER = "pepper-for-the-tests-0123456789"
ADMIN_KEY = "sk-admin-keys-tests-0123456789"
CONFIG_KEY = "sk-config-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def _plugin_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, PLUGINS)
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    monkeypatch.delenv("SWARMGATE_KEY_PEPPER", raising=False)
    monkeypatch.delenv("SWARMGATE_URL", raising=False)
    monkeypatch.delenv("SWARMGATE_ADMIN_KEY", raising=False)
    monkeypatch.delenv("SWARMGATE_CONFIG", raising=False)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "keys.db"


@pytest.fixture(scope="session")
def pepper() -> str:
    """The pepper the tests hash with (a gateway reads it from ``$KEYS_TEST_PEPPER``)."""
    return PEPPER


@pytest.fixture
def store(store_path: Path) -> Iterator[KeyStore]:
    with KeyStore(store_path, Hasher(PEPPER.encode())) as opened:
        yield opened


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.in_thread(OpenAIWire()) as running:
        yield running


@pytest.fixture(scope="session")
def make_config() -> Callable[..., dict[str, Any]]:
    """:func:`gateway_config`."""
    return gateway_config


def gateway_config(upstream: FakeUpstream, store_path: Path, **sections: Any) -> dict[str, Any]:
    """One OpenAI-wire provider ``primary`` serving ``gpt-4o-mini`` (priced)
    and ``gpt-4o``; a route ``fast``; caller keys from ``store_path`` with the
    test pepper (``$KEYS_TEST_PEPPER``); an admin key and one config key."""
    config: dict[str, Any] = {
        "providers": {
            "primary": {
                "type": "openai",
                "endpoint": upstream.url,
                "apiKey": "sk-upstream-primary-000",
                "models": {
                    "gpt-4o-mini": {"inputCostPerToken": 0.001, "outputCostPerToken": 0.002},
                    "gpt-4o": {"costPerToken": 0.001},
                },
            }
        },
        "routes": {"fast": ["primary/gpt-4o-mini"]},
        "security": {"callerKeys": {"path": str(store_path), "pepperEnv": "KEYS_TEST_PEPPER"}},
        "server": {
            "adminKey": ADMIN_KEY,
            "apiKeys": [{"key": CONFIG_KEY, "name": "from-config"}],
            "shutdownTimeout": 2000,
        },
    }
    for name, value in sections.items():
        config[name] = {**config.get(name, {}), **value}
    return config
