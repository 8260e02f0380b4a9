"""Shared set-up of the cost plugin's tests."""

from __future__ import annotations

import pytest

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _kernel_predict_and_cost_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kernel, the predictor and this strategy (with its budget
    guard) load: another installed plugin must not change what these tests
    observe."""
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-predict,swarmgate-cost")
    monkeypatch.delenv(BLOCK_ENV, raising=False)
