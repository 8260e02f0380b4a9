"""Shared set-up of the predict plugin's tests."""

from __future__ import annotations

import pytest

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _kernel_and_predict_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kernel's plugins and this one load: another installed plugin
    (retry, breaker, a strategy's budget guard, ...) must not change what
    these tests observe."""
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-predict")
    monkeypatch.delenv(BLOCK_ENV, raising=False)
