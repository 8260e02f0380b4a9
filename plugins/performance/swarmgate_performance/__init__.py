"""swarmgate-performance: the ``performance-optimized`` routing strategy.

:class:`PerformanceOptimizedStrategy` (entry point ``performance-optimized``
in ``swarmgate.strategies``) ranks candidates by a score weighted towards
predicted latency (defaults ``performanceWeight`` 0.9, ``costWeight`` 0.1,
``reliabilityWeight`` 0) over the shared predictions of swarmgate-predict.
With ``routing.sla`` it ranks every target predicted to miss the SLA
(p95 latency above ``maxLatency`` ms, or reliability below
``minAvailability``) after every target predicted to meet it.

The public API is exactly ``__all__``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from swarmgate.config import InvalidValue, parse_section
from swarmgate_predict import Prediction, WeightedStrategy, Weights

if TYPE_CHECKING:
    from swarmgate.manager import ProviderManager

__all__ = ["NAME", "PerformanceOptimizedStrategy", "SLAConfig"]

#: The strategy's entry-point name.
NAME = "performance-optimized"
SLA = "routing.sla"


@attrs.frozen
class SLAConfig:
    """``routing.sla``: ``maxLatency`` (ms, compared with the predicted p95
    latency) and ``minAvailability`` (in [0, 1], compared with the predicted
    reliability). Either may be left out."""

    max_latency: float | None = None
    min_availability: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.max_latency is not None and not (self.max_latency > 0 and math.isfinite(self.max_latency)):
            raise InvalidValue("maxLatency", f"must be a positive number of milliseconds, got {self.max_latency!r}")
        if self.min_availability is not None and not 0 <= self.min_availability <= 1:
            raise InvalidValue(
                "minAvailability", f"must be a probability between 0 and 1, got {self.min_availability!r}"
            )


class PerformanceOptimizedStrategy(WeightedStrategy):
    """Fastest first: predicted latency weighs 0.9, expected cost 0.1
    (reliability 0) unless ``routing.parameters`` says otherwise; targets
    predicted to miss ``routing.sla`` come last. Candidates whose scores
    are within ``tolerance`` (0.05) share a tier."""

    name: ClassVar[str] = NAME
    default_weights: ClassVar[Weights] = Weights(cost=0.1, performance=0.9, reliability=0.0)

    def __init__(self, manager: ProviderManager) -> None:
        super().__init__(manager)
        raw: Any = manager.config.section(SLA)
        self.sla = parse_section(SLAConfig, raw, SLA)
        self._max_latency = math.inf if self.sla.max_latency is None else self.sla.max_latency
        self._min_availability = 0.0 if self.sla.min_availability is None else self.sla.min_availability

    def demoted(self, prediction: Prediction) -> bool:
        """Whether ``prediction`` misses ``routing.sla``."""
        return prediction.latency_p95_ms > self._max_latency or prediction.reliability < self._min_availability
