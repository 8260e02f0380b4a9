"""Shared set-up of the budget plugin's tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV

sys.path.insert(0, str(Path(__file__).parent))  # budget_testkit


@pytest.fixture(autouse=True)
def _kernel_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kernel's own plugins load from entry points: the tests pass
    their BudgetPlugin (with a fake clock) in code, and another installed
    plugin must not change what they observe."""
    monkeypatch.setenv(ALLOW_ENV, "swarmgate")
    monkeypatch.delenv(BLOCK_ENV, raising=False)
