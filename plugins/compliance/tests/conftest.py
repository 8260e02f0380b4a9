"""Shared set-up of the compliance plugin's tests: the kernel, the sim
provider type, the cache, the usage and audit logs and this plugin load from
entry points (nothing else may change what is observed); every file lives
in ``tmp_path``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # compliance_helpers (tests run with --import-mode=importlib)

from compliance_helpers import ALLOWED

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _only_these(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ALLOW_ENV, ALLOWED)
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    monkeypatch.setenv("SWARMGATE_HOME", str(tmp_path / "home"))
