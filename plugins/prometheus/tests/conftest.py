"""Shared set-up of the prometheus exporter's tests: only the kernel loads
from entry points (the tests pass the analytics plugin and the exporter in
code); the CLI test widens the list itself."""

from __future__ import annotations

import pytest

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _kernel_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate")
    monkeypatch.delenv(BLOCK_ENV, raising=False)
