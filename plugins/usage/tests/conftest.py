"""Shared set-up of the usage plugin's tests: only the kernel, the sim
provider type and this plugin load from entry points (another installed
plugin must not change what is recorded), every log lives in ``tmp_path``."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # usage_helpers (tests run with --import-mode=importlib)

from usage_helpers import ALLOWED, DRIVERS, config

from swarmgate import ProviderManager
from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _only_us(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, ALLOWED)
    monkeypatch.delenv(BLOCK_ENV, raising=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "usage.db"


@pytest.fixture
async def manager(db: Path) -> AsyncIterator[ProviderManager]:
    async with ProviderManager(config(db), drivers=DRIVERS) as m:
        yield m
