"""The public names of each distribution are exactly the intended ones."""

from __future__ import annotations

import swarmgate_predict


def test_predict_exports() -> None:
    assert sorted(swarmgate_predict.__all__) == sorted(
        [
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
    )
    for name in swarmgate_predict.__all__:
        assert getattr(swarmgate_predict, name) is not None
