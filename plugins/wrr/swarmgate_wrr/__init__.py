"""swarmgate-wrr: the ``weighted-round-robin`` load balancer.

Smooth weighted round robin, the algorithm of nginx's upstream module: on
every request each target of the tier gains its weight as *credit*; the
target with the most credit goes first and pays the tier's total weight.
Over any run of ``sum(weights)`` requests (integer weights) every target is
chosen exactly ``weight`` times, and the picks interleave instead of coming
in bursts: weights 5:1:1 give ``a a b a c a a``, not ``a a a a a b c``.

Weights are per provider: ``routing.loadBalancing.weights[provider]`` when
the provider is listed there, else the provider's own ``weight`` (default
1.0). Every model of a provider carries the provider's weight. A weight of
0 means "only as a fallback": the target is never put first while another
target of the tier has a positive weight (a tier whose weights are all 0 is
balanced as if they were all 1).

State (the credits) is kept in memory, per process and per distinct tier
(the same targets in the same order), and is reset whenever the
configuration changes (a provider added, updated or removed). It is not
shared between gateway instances: each instance interleaves its own
requests, so the aggregate over instances still follows the weights.

The public API is exactly ``__all__``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from swarmgate import CompletionRequest, SwarmgateConfig, Target

if TYPE_CHECKING:
    from swarmgate import ProviderManager, RequestContext

__all__ = ["MAX_TIERS", "WeightedRoundRobinBalancer", "provider_weight"]

#: The most distinct tiers whose credits are kept; past it every credit is
#: dropped and rebuilt on demand (a bound on memory when request filters
#: produce many different tiers).
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


class _Wheel:
    """The smooth-WRR credits of one tier."""

    __slots__ = ("_current", "_indices", "_targets", "_total", "_weights")

    def __init__(self, targets: tuple[Target, ...], weights: Sequence[float]) -> None:
        if not any(w > 0 for w in weights):
            weights = [1.0] * len(targets)
        self._targets = targets
        self._weights = tuple(weights)
        self._total = sum(weights)
        self._current = [0.0] * len(targets)
        self._indices = range(len(targets))

    def turn(self) -> list[Target]:
        """Credit every target, charge the winner; the winner first, then
        the others by remaining credit (highest first, ties in tier order)."""
        current = self._current
        best = 0
        best_credit = float("-inf")
        for i, weight in enumerate(self._weights):
            credit = current[i] + weight
            current[i] = credit
            if credit > best_credit:
                best, best_credit = i, credit
        current[best] -= self._total
        targets = self._targets
        # sorted() with reverse=True is stable: equal credits keep tier order.
        by_credit = sorted(self._indices, key=current.__getitem__, reverse=True)
        return [targets[best]] + [targets[i] for i in by_credit if i != best]


class WeightedRoundRobinBalancer:
    """Balancer ``weighted-round-robin`` (entry point in ``swarmgate.balancers``).

    Built once per manager as ``cls(manager)``. :meth:`order` is synchronous,
    does no I/O and is deterministic: the same sequence of tiers gives the
    same sequence of orders.
    """

    def __init__(self, manager: ProviderManager) -> None:
        self._manager = manager
        self._config: SwarmgateConfig | None = None
        self._wheels: dict[tuple[Target, ...], _Wheel] = {}

    def order(self, request: CompletionRequest, tier: list[Target], context: RequestContext) -> list[Target]:
        """Every target of ``tier`` once: the smooth-WRR pick first, then the
        rest by remaining credit. Tiers of fewer than two targets are
        returned as they are."""
        if len(tier) < 2:
            return tier
        config = self._manager.config
        if config is not self._config:
            # A provider was added, updated or removed: weights may differ.
            self._wheels.clear()
            self._config = config
        key = tuple(tier)
        wheel = self._wheels.get(key)
        if wheel is None:
            if len(self._wheels) >= MAX_TIERS:
                self._wheels.clear()
            wheel = self._wheels[key] = _Wheel(key, [provider_weight(config, t.provider) for t in key])
        return wheel.turn()
