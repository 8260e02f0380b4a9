"""The kernel's essential plugin, ``core``: registered through the kernel's
own entry point like any third-party plugin, but never blocked.

It supplies the ``trylast`` defaults: ``select_provider`` applies the
configured (or per-request) strategy and the load balancer, and
``health_probe`` asks the driver's own ``health_check()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from swarmgate.hookspecs import hookimpl
from swarmgate.models import CompletionRequest, HealthStatus, Target

if TYPE_CHECKING:
    from swarmgate.manager import ProviderManager, RequestContext
    from swarmgate.provider import Provider


class CorePlugin:
    """Default routing and health probing."""

    @hookimpl(trylast=True)
    def select_provider(
        self, request: CompletionRequest, candidates: Sequence[Target], context: RequestContext
    ) -> list[Target]:
        manager = context.manager
        tiers = manager.strategy(request.strategy).rank(request, candidates, context)
        balancer = manager.balancer
        ordered: list[Target] = []
        for tier in tiers:
            ordered.extend(balancer.order(request, tier, context) if len(tier) > 1 else tier)
        return ordered

    @hookimpl(trylast=True)
    async def health_probe(self, manager: ProviderManager, name: str, provider: Provider) -> HealthStatus:
        return await provider.health_check()
