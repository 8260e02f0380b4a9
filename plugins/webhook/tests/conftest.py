"""Shared set-up of the webhook plugin's tests."""

from __future__ import annotations

import pytest

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV


@pytest.fixture(autouse=True)
def _kernel_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kernel's own plugins load from entry points: the tests pass
    their WebhookPlugin in code, and another installed plugin (the alerts
    watchers, the breaker, email delivery) must not change what they observe."""
    monkeypatch.setenv(ALLOW_ENV, "swarmgate")
    monkeypatch.delenv(BLOCK_ENV, raising=False)
