"""The prediction model's configuration: ``routing.mlConfig``.

Structured with :func:`swarmgate.config.parse_section`, so a bad value is a
:class:`~swarmgate.errors.ConfigError` naming its path
(``routing.mlConfig.priors.openai/gpt-4o.expectedReliability: ...``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import attrs

from swarmgate.config import InvalidValue, parse_section
from swarmgate.errors import ConfigError

if TYPE_CHECKING:
    from swarmgate.manager import ProviderManager

SECTION = "routing.mlConfig"


def _positive(key: str, value: float | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise InvalidValue(key, f"must be a positive number, got {value!r}")


def _probability(key: str, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise InvalidValue(key, f"must be a probability between 0 and 1, got {value!r}")


def _factor(key: str, value: float | None) -> None:
    if value is not None and not (value >= 1.0 and math.isfinite(value)):
        raise InvalidValue(key, f"must be a number >= 1 (p95 / p50), got {value!r}")


@attrs.frozen
class Prior:
    """What to expect of a target before it has answered (cold start).

    Every key is optional; a missing one falls back to the provider's
    prior, then to the ``mlConfig`` defaults. ``expected_ttft_ms`` is the
    median time to first token of a short prompt, ``expected_tokens_per_second``
    the median output pace, ``prompt_tokens_per_second`` the pace at which a
    prompt is read (it adds ``input tokens / pace`` to the time to first
    token), ``expected_reliability`` the success ratio, ``p95_factor`` the
    ratio p95 / p50 assumed for the latency figures until data arrives.
    """

    expected_ttft_ms: float | None = None
    expected_tokens_per_second: float | None = None
    prompt_tokens_per_second: float | None = None
    expected_reliability: float | None = None
    p95_factor: float | None = None

    def __attrs_post_init__(self) -> None:
        _positive("expectedTtftMs", self.expected_ttft_ms)
        _positive("expectedTokensPerSecond", self.expected_tokens_per_second)
        _positive("promptTokensPerSecond", self.prompt_tokens_per_second)
        _probability("expectedReliability", self.expected_reliability)
        _factor("p95Factor", self.p95_factor)


@attrs.frozen
class MLConfig:
    """``routing.mlConfig``: how the model learns, and its priors.

    Durations are milliseconds, like the rest of the guide's config.

    * ``model_training``: learn from live traffic (``false``: priors only).
    * ``prediction_window``: latency samples older than this are forgotten.
    * ``retrain_interval``: accepted for the guide's format; this model
      learns online on every answer, so there is no batch retraining and
      the value has no effect.
    * ``window_size``: at most this many latency samples per target.
    * ``reliability_half_life``: an outcome's weight halves every this long.
    * ``prior_weight``: how many observations a prior is worth when blended
      with observed figures.
    * ``expected_output_tokens``: the prior of the typical answer length.
    * ``expected_ttft_ms`` ... ``p95_factor``: the default prior (see
      :class:`Prior`); ``priors`` refines it per ``"provider"`` or
      ``"provider/model"``.
    """

    model_training: bool = True
    prediction_window: float = 300_000.0
    retrain_interval: float | None = None
    window_size: int = 64
    reliability_half_life: float = 600_000.0
    prior_weight: float = 10.0
    expected_output_tokens: float = 256.0
    expected_ttft_ms: float = 500.0
    expected_tokens_per_second: float = 50.0
    prompt_tokens_per_second: float = 5000.0
    expected_reliability: float = 0.99
    p95_factor: float = 2.0
    priors: dict[str, Prior] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        _positive("predictionWindow", self.prediction_window)
        _positive("retrainInterval", self.retrain_interval)
        if not 2 <= self.window_size <= 10_000:
            raise InvalidValue("windowSize", f"must be an integer between 2 and 10000, got {self.window_size!r}")
        _positive("reliabilityHalfLife", self.reliability_half_life)
        if not (self.prior_weight >= 0 and math.isfinite(self.prior_weight)):
            raise InvalidValue("priorWeight", f"must be a number >= 0, got {self.prior_weight!r}")
        _positive("expectedOutputTokens", self.expected_output_tokens)
        _positive("expectedTtftMs", self.expected_ttft_ms)
        _positive("expectedTokensPerSecond", self.expected_tokens_per_second)
        _positive("promptTokensPerSecond", self.prompt_tokens_per_second)
        _probability("expectedReliability", self.expected_reliability)
        _factor("p95Factor", self.p95_factor)
        for key in self.priors:
            provider, sep, model = key.partition("/")
            if not provider or (sep and not model):
                raise InvalidValue(f"priors.{key}", "expected a provider name or 'provider/model'")

    @classmethod
    def from_manager(cls, manager: ProviderManager) -> MLConfig:
        """Parse ``routing.mlConfig`` of ``manager``'s config (defaults when
        absent). Raises :class:`ConfigError` naming every bad value, including
        a ``priors`` key that names no configured provider or model."""
        raw: Any = manager.config.section(SECTION)
        config = parse_section(cls, raw, SECTION)
        providers = manager.config.providers
        problems: list[tuple[str, str]] = []
        for key in config.priors:
            provider, _, model = key.partition("/")
            where = f"{SECTION}.priors.{key}"
            provider_config = providers.get(provider)
            if provider_config is None:
                problems.append((where, f"unknown provider {provider!r} (configured: {sorted(providers)})"))
            elif model and provider_config.models and model not in provider_config.models:
                problems.append(
                    (where, f"provider {provider!r} has no model {model!r} (models: {sorted(provider_config.models)})")
                )
        if problems:
            raise ConfigError(problems)
        return config
