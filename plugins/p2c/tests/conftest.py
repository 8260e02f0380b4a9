"""Shared set-up of the p2c plugin's tests."""

from __future__ import annotations

import pytest

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _kernel_and_p2c_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kernel's plugins and this one (balancer and observer) load:
    another installed plugin (retry, cache, ...) must not change what these
    tests observe."""
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-p2c")
    monkeypatch.delenv(BLOCK_ENV, raising=False)
