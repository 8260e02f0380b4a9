"""Shared set-up of the qwen plugin's tests: only the kernel and this plugin
load, and two factories the test modules use (``manager_for``, ``failure``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from swarmgate import ProviderManager, SwarmgateError
from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV
from swarmgate.testing import attempt_error

#: The model every test configures.
MODEL = "qwen-plus"
#: The API key every test configures (never to appear in an error).
KEY = "sk-qwen-test-0123456789abcdef"

ManagerFactory = Callable[..., ProviderManager]
FailureRunner = Callable[..., Awaitable[SwarmgateError]]


@pytest.fixture(autouse=True)
def _kernel_and_qwen_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kernel's plugins and this one load: another installed plugin
    (retry, cache, ...) must not change what these tests observe."""
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-qwen")
    monkeypatch.delenv(BLOCK_ENV, raising=False)


def _manager_for(url: str, **provider: Any) -> ProviderManager:
    """A manager with one ``qwen`` provider ``qw`` at ``url``, loaded through
    its entry point; keyword arguments are laid over the provider config
    (``None`` removes a key)."""
    config: dict[str, Any] = {
        "type": "qwen",
        "endpoint": url,
        "apiKey": KEY,
        "timeout": 2000,
        "models": {MODEL: {"costPerToken": 0.001}},
    }
    config.update(provider)
    return ProviderManager({"providers": {"qw": {k: v for k, v in config.items() if v is not None}}})


@pytest.fixture
def manager_for() -> ManagerFactory:
    """The factory of managers with one ``qwen`` provider (see ``_manager_for``)."""
    return _manager_for


async def _failure(manager: ProviderManager, *, stream: bool = False, **fields: Any) -> SwarmgateError:
    fields.setdefault("prompt", "Hello?")
    fields.setdefault("model", MODEL)
    try:
        if stream:
            _ = [event async for event in manager.stream(**fields)]
        else:
            await manager.complete(**fields)
    except SwarmgateError as exc:
        return attempt_error(exc)
    raise AssertionError("the request succeeded; an error was expected")


@pytest.fixture
def failure() -> FailureRunner:
    """Run one request that must fail; return the typed attempt error."""
    return _failure
