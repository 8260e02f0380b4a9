"""swarmgate-predict: the online prediction model the routing strategies read.

* :class:`Predictor` -- per provider and model: time to first token and time
  per output token (p50/p95 over a sliding window, normalised by prompt and
  answer length), a time-decayed success ratio, and expected / worst-case
  cost; blended with priors from ``routing.mlConfig`` on cold start;
* :class:`PredictPlugin` -- the hooks (entry point ``predict``) that publish
  it as ``manager.extensions["predict"]`` and feed it live traffic;
* :func:`acquire` -- how a strategy gets it (a standalone, prior-only
  predictor when the hooks are not active);
* :class:`WeightedStrategy` -- the scoring and tiering the four strategy
  distributions (cost-, performance-, reliability-optimized, intelligent)
  share.

The public API is exactly ``__all__``.
"""

from swarmgate_predict._config import MLConfig, Prior
from swarmgate_predict._model import RELIABILITY_KINDS, Prediction, Predictor, ResolvedPrior
from swarmgate_predict._plugin import EXTENSION, PredictPlugin, acquire, predict_plugin_registered
from swarmgate_predict._scoring import DEFAULT_TOLERANCE, StrategyParameters, WeightedStrategy, Weights
from swarmgate_predict._window import SlidingQuantiles

__all__ = [
    "DEFAULT_TOLERANCE",
    "EXTENSION",
    "RELIABILITY_KINDS",
    "MLConfig",
    "PredictPlugin",
    "Prediction",
    "Predictor",
    "Prior",
    "ResolvedPrior",
    "SlidingQuantiles",
    "StrategyParameters",
    "WeightedStrategy",
    "Weights",
    "acquire",
    "predict_plugin_registered",
]
