"""The scoring that every predictive strategy shares.

A strategy is a set of default weights over three figures of each
candidate's :class:`~swarmgate_predict.Prediction`: expected cost,
latency (p50) and failure probability (1 - reliability). Each figure is
normalised against the worst candidate of the request (``x / max x``, so
0 is free / instant / never fails and 1 is the worst; all zero when the
worst is 0), and the score is

    score = sum(w * (1 - x / max x)) / sum(w)        in [0, 1], higher is better

Candidates are sorted by score (stable: equal scores keep the order they
came in) and cut into tiers: a tier starts at its best candidate and takes
every following candidate whose score is within ``tolerance`` of it. The
balancer then spreads load inside a tier. Subclasses may demote candidates
(an SLA they are predicted to miss): demoted ones are tiered after all the
others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from swarmgate.config import InvalidValue, parse_section
from swarmgate.errors import ConfigError
from swarmgate.models import CompletionRequest, Target
from swarmgate_predict._model import Prediction, Predictor
from swarmgate_predict._plugin import acquire, predict_plugin_registered

if TYPE_CHECKING:
    from swarmgate.manager import ProviderManager, RequestContext

PARAMETERS = "routing.parameters"

#: Score distance within which candidates share a tier, unless
#: ``routing.parameters.tolerance`` says otherwise.
DEFAULT_TOLERANCE = 0.05


@attrs.frozen
class Weights:
    """Relative importance of cost, performance (latency) and reliability;
    normalised to sum to 1."""

    cost: float
    performance: float
    reliability: float

    def normalised(self) -> Weights:
        total = self.cost + self.performance + self.reliability
        return Weights(self.cost / total, self.performance / total, self.reliability / total)


@attrs.frozen
class StrategyParameters:
    """``routing.parameters`` (every key optional; a missing weight takes
    the strategy's default). Weights must not be negative and not all zero;
    ``tolerance`` is a score distance in [0, 1)."""

    cost_weight: float | None = None
    performance_weight: float | None = None
    reliability_weight: float | None = None
    tolerance: float | None = None

    def __attrs_post_init__(self) -> None:
        for key, value in (
            ("costWeight", self.cost_weight),
            ("performanceWeight", self.performance_weight),
            ("reliabilityWeight", self.reliability_weight),
        ):
            if value is not None and not value >= 0:
                raise InvalidValue(key, f"must not be negative, got {value!r}")
        if self.tolerance is not None and not 0 <= self.tolerance < 1:
            raise InvalidValue("tolerance", f"must be a score distance in [0, 1), got {self.tolerance!r}")

    def weights(self, defaults: Weights) -> Weights:
        """These weights over ``defaults``, normalised. Raises
        :class:`ConfigError` when every weight is zero."""
        weights = Weights(
            defaults.cost if self.cost_weight is None else self.cost_weight,
            defaults.performance if self.performance_weight is None else self.performance_weight,
            defaults.reliability if self.reliability_weight is None else self.reliability_weight,
        )
        if weights.cost + weights.performance + weights.reliability <= 0:
            raise ConfigError(
                [(PARAMETERS, "at least one of costWeight, performanceWeight, reliabilityWeight must be positive")]
            )
        return weights.normalised()


class WeightedStrategy:
    """Base of the predictive strategies: rank by a weighted score over the
    predictions, in tiers of near-equals.

    Subclasses set :attr:`name` (their entry-point name) and
    :attr:`default_weights`. ``routing.parameters`` applies to the strategy
    named in ``routing.strategy``; a strategy chosen per request
    (``strategy=...``) that is not the configured one uses its defaults, so
    switching strategies per request really switches behaviour.
    """

    name: ClassVar[str] = "weighted"
    default_weights: ClassVar[Weights] = Weights(1.0, 1.0, 1.0)
    #: Tells the predict plugin to learn from the start.
    uses_predictions: ClassVar[bool] = True

    def __init__(self, manager: ProviderManager) -> None:
        self.manager = manager
        params = StrategyParameters()
        if manager.config.routing.strategy == self.name:
            raw: Mapping[str, Any] = manager.config.routing.parameters
            params = parse_section(StrategyParameters, dict(raw), PARAMETERS)
        self.weights = params.weights(self.default_weights)
        self.tolerance = DEFAULT_TOLERANCE if params.tolerance is None else params.tolerance
        self._predictor: Predictor | None = None
        self._demotes = type(self).demoted is not WeightedStrategy.demoted
        if not predict_plugin_registered(manager):
            # No hooks will publish one: build the standalone predictor now, so
            # a bad routing.mlConfig fails at start-up, not on the first request.
            self._predictor = acquire(manager)

    @property
    def predictor(self) -> Predictor:
        """The shared predictor (resolved on first use; see :func:`acquire`)."""
        predictor = self._predictor
        if predictor is None:
            predictor = self._predictor = acquire(self.manager)
        return predictor

    def demoted(self, prediction: Prediction) -> bool:
        """Whether ``prediction`` ranks after every non-demoted candidate
        (none by default; performance-optimized demotes SLA misses)."""
        return False

    def scores(self, request: CompletionRequest, candidates: Sequence[Target]) -> list[tuple[float, Prediction]]:
        """Each candidate's score (see the module docstring) and prediction, in candidate order."""
        scores, predictions = self._score(request, candidates)
        return list(zip(scores, predictions, strict=True))

    def _score(self, request: CompletionRequest, candidates: Sequence[Target]) -> tuple[list[float], list[Prediction]]:
        predictor = self._predictor or self.predictor
        predict = predictor.predict
        predictions = []
        max_cost = max_latency = 0.0
        min_reliability = 1.0
        for target in candidates:
            p = predict(target, request)
            predictions.append(p)
            if p.cost > max_cost:
                max_cost = p.cost
            if p.latency_ms > max_latency:
                max_latency = p.latency_ms
            if p.reliability < min_reliability:
                min_reliability = p.reliability
        max_failure = 1.0 - min_reliability
        w = self.weights
        wc = w.cost / max_cost if max_cost > 0 else 0.0
        wp = w.performance / max_latency if max_latency > 0 else 0.0
        wr = w.reliability / max_failure if max_failure > 0 else 0.0
        scores = [1.0 - wc * p.cost - wp * p.latency_ms - wr * (1.0 - p.reliability) for p in predictions]
        return scores, predictions

    def rank(
        self, request: CompletionRequest, candidates: Sequence[Target], context: RequestContext
    ) -> list[list[Target]]:
        """Tiers of candidates, best first (every candidate exactly once)."""
        if len(candidates) < 2:
            return [list(candidates)] if candidates else []
        scores, predictions = self._score(request, candidates)
        order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)  # stable for ties
        cut = -1
        if self._demotes:
            demoted = [i for i in order if self.demoted(predictions[i])]
            if demoted:
                out = set(demoted)
                order = [i for i in order if i not in out] + demoted
                cut = len(order) - len(demoted)
        tolerance = self.tolerance
        tiers: list[list[Target]] = []
        tier: list[Target] = []
        floor = 0.0
        for position, i in enumerate(order):
            score = scores[i]
            if not tier or position == cut or score < floor:
                tier = [candidates[i]]
                tiers.append(tier)
                floor = score - tolerance
            else:
                tier.append(candidates[i])
        return tiers
