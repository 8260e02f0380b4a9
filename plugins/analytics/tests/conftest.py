"""Shared set-up of the analytics plugin's tests: only the kernel loads from
entry points (the tests pass their plugins and drivers in code, with a fake
clock where time matters); the CLI tests widen the list themselves."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # analytics_helpers (tests run with --import-mode=importlib)

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _kernel_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate")
    monkeypatch.delenv(BLOCK_ENV, raising=False)
