"""Shared set-up of the advisor's tests: only the kernel, the usage log, the
advisor and the strategy and balancer plugins the replay models load from
entry points (another installed plugin must not change the recorded
traffic); every file lives in ``tmp_path``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # advisor_helpers (tests run with --import-mode=importlib)

from advisor_helpers import ALLOWED

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _only_these(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, ALLOWED)
    monkeypatch.delenv(BLOCK_ENV, raising=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "usage.db"
