"""Helpers shared by the usage plugin's tests (put on ``sys.path`` by conftest.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swarmgate import ProviderManager
from swarmgate.testing import ScriptedProvider
from swarmgate_usage import UsageLog

#: Load only these distributions' entry points in the tests.
ALLOWED = "swarmgate,swarmgate-sim,swarmgate-usage"
#: Prices of the scripted models: 1 milli per input token, 2 per output token.
PRICES = {"inputCostPerToken": 0.001, "outputCostPerToken": 0.002}
DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}


def priced(tokens_in: int, tokens_out: int) -> float:
    """What the scripted models charge."""
    return tokens_in * 0.001 + tokens_out * 0.002


def config(db: Path, *, usage: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Two scripted providers (``a`` first, ``b`` its fallback) with one
    priced model each, a route ``fast`` over both, the log at ``db``."""
    data: dict[str, Any] = {
        "providers": {
            "a": {"type": "scripted", "priority": 1, "models": {"ma": dict(PRICES)}},
            "b": {"type": "scripted", "priority": 2, "models": {"mb": dict(PRICES)}},
        },
        "routing": {"fallbackChains": [["a", "b"]]},
        "routes": {"fast": {"targets": ["a/ma", "b/mb"], "ordered": True}},
        "monitoring": {"usageLog": {"path": str(db), **(usage or {})}},
    }
    data.update(extra)
    return data


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


def usage_of(manager: ProviderManager) -> UsageLog:
    usage = manager.extensions["usage"]
    assert isinstance(usage, UsageLog)
    return usage
