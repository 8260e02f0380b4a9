"""Shared set-up of the performance strategy's tests."""

from __future__ import annotations

import pytest

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _kernel_predict_and_performance_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kernel, the predictor and this strategy load: another
    installed plugin must not change what these tests observe."""
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-predict,swarmgate-performance")
    monkeypatch.delenv(BLOCK_ENV, raising=False)
