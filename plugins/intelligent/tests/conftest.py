"""Shared set-up of the intelligent strategy's tests."""

from __future__ import annotations

import pytest

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _kernel_predict_and_strategies_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kernel, the predictor and the strategies load (the other
    three strategies too: a test swaps between them); another installed
    plugin must not change what these tests observe."""
    monkeypatch.setenv(
        ALLOW_ENV,
        "swarmgate,swarmgate-predict,swarmgate-intelligent,swarmgate-cost,swarmgate-performance,swarmgate-reliability",
    )
    monkeypatch.delenv(BLOCK_ENV, raising=False)
