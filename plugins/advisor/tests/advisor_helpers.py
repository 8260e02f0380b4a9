"""Helpers shared by the advisor's tests (put on ``sys.path`` by conftest.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from swarmgate import ProviderManager, SwarmgateConfig, load_config
from swarmgate.testing import Outcome, ScriptedProvider
from swarmgate_advisor import Advisor, AdvisorSettings
from swarmgate_usage import AttemptRecord, UsageLog, UsageRecord

#: Load only these distributions' entry points in the tests.
ALLOWED = ",".join(
    [
        "swarmgate",
        "swarmgate-usage",
        "swarmgate-advisor",
        "swarmgate-predict",
        "swarmgate-cost",
        "swarmgate-performance",
        "swarmgate-reliability",
        "swarmgate-intelligent",
        "swarmgate-wrr",
    ]
)
DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}
#: 1 milli per input token, 2 per output token: 100 in + 50 out = 0.2.
PRICEY = {"inputCostPerToken": 0.001, "outputCostPerToken": 0.002}
#: A tenth of that: 100 in + 50 out = 0.02.
CHEAP = {"inputCostPerToken": 0.0001, "outputCostPerToken": 0.0002}
#: Every scripted answer uses this many tokens (in, out).
TOKENS = (100, 50)


def config(db: Path, *, advisor: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Providers ``pricey`` and ``cheap`` both serving model ``m`` at one
    priority (round robin alternates them), the usage log at ``db``, and
    ``monitoring.advisor`` with ``minSamples`` 10 unless ``advisor`` says otherwise."""
    data: dict[str, Any] = {
        "providers": {
            "pricey": {"type": "scripted", "priority": 1, "models": {"m": dict(PRICEY)}},
            "cheap": {"type": "scripted", "priority": 1, "models": {"m": dict(CHEAP)}},
        },
        "monitoring": {"usageLog": {"path": str(db)}, "advisor": {"minSamples": 10, **(advisor or {})}},
    }
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(data.get(key), Mapping):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


def answers(manager: ProviderManager, name: str, count: int) -> None:
    """Queue ``count`` answers of :data:`TOKENS` tokens at provider ``name``."""
    scripted(manager, name).push(*[Outcome("ok", usage=TOKENS)] * count)


def advisor_of(manager: ProviderManager) -> Advisor:
    advisor = manager.extensions["advisor"]
    assert isinstance(advisor, Advisor)
    return advisor


def by_type(recommendations: Sequence[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [r for r in recommendations if r["type"] == kind]


def attempt(
    provider: str,
    model: str = "m",
    *,
    ok: bool = True,
    latency: float = 100.0,
    kind: str | None = None,
    tokens: tuple[int, int] = TOKENS,
    cost: float = 0.0,
    ttft: float | None = None,
    refused: bool = False,
) -> AttemptRecord:
    return AttemptRecord(
        provider=provider,
        model=model,
        ok=ok,
        error_kind=None if ok else (kind or "server_error"),
        status=200 if ok else 503,
        input_tokens=tokens[0] if ok else 0,
        output_tokens=tokens[1] if ok else 0,
        cost=cost,
        latency_ms=latency,
        ttft_ms=ttft,
        refused=refused,
    )


def request(
    rid: str,
    ts: float,
    attempts: Sequence[AttemptRecord],
    *,
    requested: str = "m",
    stream: bool = False,
    route: str | None = None,
    cache_hit: bool = False,
    cost_saved: float = 0.0,
) -> UsageRecord:
    """A record from its attempts (the last one answered when it succeeded)."""
    last = attempts[-1] if attempts else None
    ok = cache_hit or (last is not None and last.ok)
    return UsageRecord(
        id=rid,
        ts=ts,
        requested_model=requested,
        provider=last.provider if last else None,
        model=last.model if last else None,
        ok=ok,
        status=200 if ok else 503,
        error_kind=None if ok or last is None else last.error_kind,
        input_tokens=sum(a.input_tokens for a in attempts),
        output_tokens=sum(a.output_tokens for a in attempts),
        cost=sum(a.cost for a in attempts),
        latency_ms=sum(a.latency_ms for a in attempts),
        ttft_ms=last.ttft_ms if last else None,
        cache_hit=cache_hit,
        cost_saved=cost_saved,
        stream=stream,
        attempts=tuple(attempts),
        route=route,
    )


async def write_log(path: Path, records: Sequence[UsageRecord]) -> None:
    """Add ``records`` to the usage log at ``path`` (created if missing),
    written by the usage plugin's own log."""
    usage = UsageLog(path)
    await anyio.to_thread.run_sync(usage.start)
    try:
        for record in records:
            usage.record(record)
        await usage.flush()
    finally:
        await usage.aclose()


def offline(cfg: Mapping[str, Any] | SwarmgateConfig, usage: UsageLog, *, clock: Any = None, **kwargs: Any) -> Advisor:
    """An advisor over a recorded log, as the CLI builds it."""
    config = load_config(cfg) if not isinstance(cfg, SwarmgateConfig) else cfg
    settings = AdvisorSettings.from_config(config)
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return Advisor(lambda: config, settings, usage=lambda: usage, anchor_to_log=True, **extra, **kwargs)
