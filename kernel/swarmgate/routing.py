"""Routing strategies and load balancers: the driver interfaces and the
kernel's built-in ones (``priority`` and ``round-robin``).

A strategy (entry point in ``swarmgate.strategies``) sorts candidates into
*tiers*, best first; a balancer (entry point in ``swarmgate.balancers``)
orders the targets inside one tier, where the strategy sees no difference.
The kernel's ``select_provider`` default concatenates the balanced tiers.
Both are synchronous: they run on every request and must not do I/O; what
they need (statistics, weights) is kept in memory and updated by hooks.

Drivers are instantiated once per manager as ``cls(manager)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from swarmgate.models import CompletionRequest, Target

if TYPE_CHECKING:
    from swarmgate.manager import ProviderManager, RequestContext


class Strategy(Protocol):
    """Sorts candidate targets into tiers of equal preference, best first."""

    def rank(
        self, request: CompletionRequest, candidates: Sequence[Target], context: RequestContext
    ) -> list[list[Target]]:
        """Tiers of targets, best first; every candidate appears at most once.
        A target left out is not tried."""
        ...


class Balancer(Protocol):
    """Orders the targets of one tier (spreads load among equals)."""

    def order(self, request: CompletionRequest, tier: list[Target], context: RequestContext) -> list[Target]:
        """The tier's targets in the order to try them."""
        ...


class PriorityStrategy:
    """Tiers by the providers' configured ``priority`` (lower first); within
    a priority, the order the candidates came in."""

    def __init__(self, manager: ProviderManager) -> None:
        self._manager = manager

    def rank(
        self, request: CompletionRequest, candidates: Sequence[Target], context: RequestContext
    ) -> list[list[Target]]:
        priority = self._manager.priority_of
        tiers: dict[int, list[Target]] = {}
        for target in candidates:
            tiers.setdefault(priority(target.provider), []).append(target)
        return [tiers[p] for p in sorted(tiers)]


class RoundRobinBalancer:
    """Rotates the start of each tier on every request (one counter per
    distinct tier), so equal targets share the load evenly."""

    def __init__(self, manager: ProviderManager) -> None:
        self._counters: dict[tuple[Target, ...], itertools.count[int]] = {}

    def order(self, request: CompletionRequest, tier: list[Target], context: RequestContext) -> list[Target]:
        if len(tier) < 2:
            return tier
        key = tuple(tier)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = itertools.count()
        start = next(counter) % len(tier)
        return tier[start:] + tier[:start]
