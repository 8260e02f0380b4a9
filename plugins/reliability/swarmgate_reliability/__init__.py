"""swarmgate-reliability: the ``reliability-optimized`` routing strategy.

:class:`ReliabilityOptimizedStrategy` (entry point ``reliability-optimized``
in ``swarmgate.strategies``) ranks candidates by a score weighted towards
predicted reliability -- the time-decayed success ratio learned by
swarmgate-predict -- with defaults ``reliabilityWeight`` 0.8,
``performanceWeight`` 0.2 and ``costWeight`` 0.

The public API is exactly ``__all__``.
"""

from __future__ import annotations

from typing import ClassVar

from swarmgate_predict import WeightedStrategy, Weights

__all__ = ["NAME", "ReliabilityOptimizedStrategy"]

#: The strategy's entry-point name.
NAME = "reliability-optimized"


class ReliabilityOptimizedStrategy(WeightedStrategy):
    """Most reliable first: failure probability weighs 0.8, predicted
    latency 0.2 (cost 0) unless ``routing.parameters`` says otherwise.
    Candidates whose scores are within ``tolerance`` (0.05) share a tier."""

    name: ClassVar[str] = NAME
    default_weights: ClassVar[Weights] = Weights(cost=0.0, performance=0.2, reliability=0.8)
