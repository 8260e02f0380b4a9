"""swarmgate-least-outstanding: the ``least-outstanding`` load balancer.

Orders a tier by the number of requests each target has in flight in this
process (``manager.stats(target).inflight``, kept by the kernel), fewest
first. Ties go to the higher weight (``routing.loadBalancing.weights``, else
the provider's ``weight``), then to the target that was put first least
recently (then tier order), so an idle gateway (every count 0, equal
weights) still spreads sequential requests like round robin instead of
sending them all to the first target, and targets tied while another is
busy share evenly.

The in-flight counts are the kernel's per-process figures; the only state
of its own is, per distinct tier, when each target was last put first, in
memory, reset when the configuration changes. Nothing is shared between gateway
instances: each balances the requests it is itself waiting on.

The public API is exactly ``__all__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from swarmgate import CompletionRequest, SwarmgateConfig, Target

if TYPE_CHECKING:
    from swarmgate import ProviderManager, RequestContext

__all__ = ["MAX_TIERS", "LeastOutstandingBalancer", "provider_weight"]

#: The most distinct tiers tracked; past it the per-tier state is dropped
#: and rebuilt on demand (a bound on memory).
MAX_TIERS = 4096


def provider_weight(config: SwarmgateConfig, provider: str) -> float:
    """The balancing weight of ``provider``: its entry in
    ``routing.loadBalancing.weights``, else its own ``weight``, else 1.0
    (a provider the config does not know)."""
    weight = config.routing.load_balancing.weights.get(provider)
    if weight is not None:
        return weight
    provider_config = config.providers.get(provider)
    return provider_config.weight if provider_config is not None else 1.0


class _Tier:
    """Per-tier constants (negated weights, so one ascending sort does it),
    the request counter and, per target, the count when it last went first."""

    __slots__ = ("last_first", "neg_weights", "turn")

    def __init__(self, neg_weights: tuple[float, ...]) -> None:
        self.neg_weights = neg_weights
        self.last_first = [0] * len(neg_weights)
        self.turn = 0


class LeastOutstandingBalancer:
    """Balancer ``least-outstanding`` (entry point in ``swarmgate.balancers``).

    Built once per manager as ``cls(manager)``. :meth:`order` is synchronous,
    does no I/O and is deterministic for given in-flight counts.
    """

    def __init__(self, manager: ProviderManager) -> None:
        self._manager = manager
        self._config: SwarmgateConfig | None = None
        self._tiers: dict[tuple[Target, ...], _Tier] = {}

    def order(self, request: CompletionRequest, tier: list[Target], context: RequestContext) -> list[Target]:
        """Every target of ``tier`` once, by (in-flight count ascending,
        weight descending, least recently first, tier position). Tiers of
        fewer than two targets are returned as they are."""
        n = len(tier)
        if n < 2:
            return tier
        config = self._manager.config
        if config is not self._config:
            self._tiers.clear()
            self._config = config
        key = tuple(tier)
        state = self._tiers.get(key)
        if state is None:
            if len(self._tiers) >= MAX_TIERS:
                self._tiers.clear()
            state = self._tiers[key] = _Tier(tuple(-provider_weight(config, t.provider) for t in key))
        stats = self._manager.stats
        neg_weights = state.neg_weights
        last_first = state.last_first
        ranked = sorted((stats(target).inflight, neg_weights[i], last_first[i], i) for i, target in enumerate(tier))
        state.turn += 1
        last_first[ranked[0][3]] = state.turn
        return [tier[entry[3]] for entry in ranked]
