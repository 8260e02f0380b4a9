"""Shared set-up of the health plugin's tests.

Only the kernel's plugins and the openai driver load from entry points; the
tests register :class:`~swarmgate_health.HealthPlugin` in code (with an
injected clock where they need one). The CLI tests admit the health
distribution (and sim, for the embedded default) themselves. Helpers live
in each test module (``--import-mode=importlib``: test modules cannot
import each other or this file).
"""

from __future__ import annotations

import pytest

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _kernel_and_openai_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kernel's plugins and the openai driver load: another
    installed plugin (retry, breaker, ...) must not change what these tests
    observe, and the health plugin is registered in code."""
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai")
    monkeypatch.delenv(BLOCK_ENV, raising=False)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fresh :class:`FakeClock` (``clock.now``, ``clock.advance(s)``)."""
    return FakeClock()
