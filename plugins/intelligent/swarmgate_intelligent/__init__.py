"""swarmgate-intelligent: the ``intelligent`` routing strategy.

:class:`IntelligentStrategy` (entry point ``intelligent`` in
``swarmgate.strategies``) balances expected cost, predicted latency and
predicted reliability -- all learned online by swarmgate-predict -- with
the weights of ``routing.parameters`` (defaults ``costWeight`` 0.4,
``performanceWeight`` 0.3, ``reliabilityWeight`` 0.3, the guide's).

The public API is exactly ``__all__``.
"""

from __future__ import annotations

from typing import ClassVar

from swarmgate_predict import WeightedStrategy, Weights

__all__ = ["NAME", "IntelligentStrategy"]

#: The strategy's entry-point name.
NAME = "intelligent"


class IntelligentStrategy(WeightedStrategy):
    """A learned blend: cost 0.4, latency 0.3, reliability 0.3 unless
    ``routing.parameters`` says otherwise. Candidates whose scores are
    within ``tolerance`` (0.05) share a tier."""

    name: ClassVar[str] = NAME
    default_weights: ClassVar[Weights] = Weights(cost=0.4, performance=0.3, reliability=0.3)
