"""Shared set-up of the audit plugin's tests: only the kernel, the sim
provider type and this plugin load from entry points (another installed
plugin must not change what is recorded); every log lives in ``tmp_path``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # audit_helpers (tests run with --import-mode=importlib)

from audit_helpers import ALLOWED

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _only_us(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, ALLOWED)
    monkeypatch.delenv(BLOCK_ENV, raising=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"
