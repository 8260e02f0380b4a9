"""Shared set-up of the composite plugin's tests."""

from __future__ import annotations

import pytest

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _kernel_openai_and_composite_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kernel's plugins, the openai provider type (the targets of
    the socket tests) and this plugin load: another installed plugin
    (retry, cache, ...) must not change what these tests observe."""
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai,swarmgate-composite")
    monkeypatch.delenv(BLOCK_ENV, raising=False)
