"""Helpers shared by the analytics plugin's tests (put on ``sys.path`` by conftest.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from swarmgate import (
    CompletionRequest,
    CompletionResponse,
    ProviderManager,
    RateLimitedError,
    RequestContext,
    Target,
    TokenUsage,
    hookimpl,
)
from swarmgate.testing import ScriptedProvider
from swarmgate_analytics import CsvExporter, JsonExporter

#: Prices: ``a/m1`` 1 milli per input token and 2 per output token, ``b/m2`` half that.
PRICES_A = {"inputCostPerToken": 0.001, "outputCostPerToken": 0.002}
PRICES_B = {"inputCostPerToken": 0.0005, "outputCostPerToken": 0.001}

DRIVERS: dict[str, dict[str, Any]] = {
    "swarmgate.providers": {"scripted": ScriptedProvider},
    "swarmgate.exporters": {"json": JsonExporter, "csv": CsvExporter},
}


def cost_a(tokens_in: int, tokens_out: int) -> float:
    return tokens_in * 0.001 + tokens_out * 0.002


def cost_b(tokens_in: int, tokens_out: int) -> float:
    return tokens_in * 0.0005 + tokens_out * 0.001


def config(*, db: Path | None = None, **extra: Any) -> dict[str, Any]:
    """Two scripted providers, ``a`` (model ``m1``) first and ``b`` (``m2``)
    as its fallback; the usage log at ``db`` when given (else disabled)."""
    data: dict[str, Any] = {
        "providers": {
            "a": {"type": "scripted", "priority": 1, "weight": 3, "models": {"m1": dict(PRICES_A)}},
            "b": {"type": "scripted", "priority": 2, "weight": 1, "models": {"m2": dict(PRICES_B)}},
        },
        "routing": {"fallbackChains": [["a", "b"]]},
        "monitoring": {"usageLog": {"path": str(db)} if db is not None else {"enabled": False}},
    }
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ProviderLimited(RateLimitedError):
    """A per-provider refusal: the request moves on to the next target."""

    failover = True


class Refuser:
    """Refuses the attempt at ``a`` of requests tagged ``refuse`` (as a
    per-provider rate limit would)."""

    @hookimpl
    def before_attempt(self, request: CompletionRequest, target: Target) -> None:
        if "refuse" in request.tags and target.provider == "a":
            raise ProviderLimited("provider a is at its limit", provider="a")


class FakeCache:
    """Answers requests tagged ``cached`` itself, as a cache hit that saved ``saved``."""

    def __init__(self, saved: float = 0.5) -> None:
        self.saved = saved

    @hookimpl
    def before_request(self, request: CompletionRequest, context: RequestContext) -> CompletionResponse | None:
        if "cached" not in request.tags:
            return None
        return CompletionResponse(
            "from the cache",
            "a",
            "m1",
            0.0,
            0.2,
            TokenUsage.of(3, 3),
            "stop",
            cached=True,
            metadata={"cost_saved": self.saved},
        )


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


def row(report: Mapping[str, Any], section: str, name: str) -> dict[str, Any]:
    """The row called ``name`` in ``report[section]``."""
    for item in report[section]:
        if item["name"] == name:
            return dict(item)
    raise AssertionError(f"no {section} row {name!r} in {[i['name'] for i in report[section]]}")


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The exact nearest-rank ``q``-quantile of ``values``."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]
