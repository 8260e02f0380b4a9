"""Helpers shared by the budget plugin's tests (imported by name: the
conftest puts this directory on ``sys.path``): a fake wall clock, scripted
providers priced at 1 per token, a fake usage log, and managers built with a
BudgetPlugin passed in code."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel
import attrs

from swarmgate import MemoryStateStore, ProviderManager, TokenUsage, hookimpl
from swarmgate.models import ProviderReply
from swarmgate.provider import ProviderCall
from swarmgate.testing import ScriptedProvider
from swarmgate_budget import BudgetPlugin

#: 2026-11-25T12:00:00Z: the middle of a UTC day, in the last week of a month.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Metered(ScriptedProvider):
    """Answers after a short random delay with 1 input token and a random
    number (1..9) of output tokens: at 1 per token, a cost of 2..10."""

    rng = random.Random(7)

    async def complete(self, call: ProviderCall) -> ProviderReply:
        self.calls.append(call)
        await anyio.sleep(self.rng.uniform(0.0, 0.004))
        return ProviderReply("ok", TokenUsage.of(1, self.rng.randint(1, 9)))


class Gated(ScriptedProvider):
    """Waits for ``gate`` before answering (a request held in flight)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = anyio.Event()
        self.entered = anyio.Event()

    async def complete(self, call: ProviderCall) -> ProviderReply:
        self.entered.set()
        await self.gate.wait()
        return await super().complete(call)


class YieldingStore:
    """A StateStore that yields to the event loop before every operation, as
    a networked store (Redis) does: other requests run between two calls of
    one request, and a cancellation can land there. Not a MemoryStateStore,
    so the budget plugin shields its reservations."""

    def __init__(self) -> None:
        self.inner = MemoryStateStore()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            await anyio.lowlevel.checkpoint()
            return await method(*args, **kwargs)

        return call


def drivers(store: Any = None) -> dict[str, Any]:
    """The scripted provider types and (optionally) one shared store."""

    def memory(options: Any) -> Any:
        return store if store is not None else MemoryStateStore(options)

    return {
        "swarmgate.providers": {"scripted": ScriptedProvider, "metered": Metered, "gated": Gated},
        "swarmgate.state": {"memory": memory},
    }


def provider(priority: int = 1, kind: str = "scripted", **extra: Any) -> dict[str, Any]:
    """A provider with one model ``m`` priced at 1 per token."""
    return {"type": kind, "priority": priority, "models": {"m": {"costPerToken": 1.0}}, **extra}


def config(limits: dict[str, Any] | None = None, **providers: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {"providers": providers or {"a": provider()}}
    if limits is not None:
        cfg["routing"] = {"budgetLimits": limits}
    return cfg


@attrs.frozen
class Spend:
    """One past request in the fake usage log."""

    ts: float
    cost: float
    provider: str | None = None
    caller: str | None = None


class FakeUsage:
    """Stands in for swarmgate-usage: ``manager.extensions["usage"].spend()``
    over a fixed list of past requests (the shared interface's filters)."""

    def __init__(self, records: list[Spend]) -> None:
        self.records = records
        self.queries: list[tuple[float, str | None, str | None]] = []

    @hookimpl
    def plugin_setup(self, manager: ProviderManager) -> None:
        manager.extensions["usage"] = self

    async def spend(self, *, since: float, provider: str | None = None, caller: str | None = None) -> float:
        self.queries.append((since, provider, caller))
        await anyio.lowlevel.checkpoint()
        return sum(
            r.cost
            for r in self.records
            if r.ts >= since and (provider is None or r.provider == provider) and (caller is None or r.caller == caller)
        )


async def open_manager(
    cfg: dict[str, Any],
    clock: Clock | None = None,
    *,
    store: Any = None,
    extra: tuple[object, ...] = (),
) -> tuple[ProviderManager, BudgetPlugin]:
    plugin = BudgetPlugin(clock=clock or Clock())
    manager = ProviderManager(cfg, drivers=drivers(store), plugins=(*extra, plugin))
    await manager.initialize()
    return manager, plugin


async def counter(manager: ProviderManager, key: str) -> float:
    raw = await manager.state.get(key)
    return float(raw) if raw is not None else 0.0


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in stream]
