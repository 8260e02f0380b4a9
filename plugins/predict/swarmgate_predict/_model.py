"""The online prediction model: what a target will cost, how long it will
take and how likely it is to answer, learned per provider and model.

Per target (``provider/model``) the model keeps

* a sliding window of **base time to first token** (ms): the observed TTFT
  minus the time to read the prompt (``input tokens / promptTokensPerSecond``),
  so a long prompt does not make a provider look slow;
* a sliding window of **time per output token** (ms/token): generation time
  divided by the tokens generated, so a long answer does not either;
* a **time-decayed success ratio**: every outcome's weight halves every
  ``reliabilityHalfLife``.

Each figure is blended with the target's prior in proportion to the data
behind it: ``(k * prior + n * observed) / (k + n)`` with ``k = priorWeight``
and ``n`` the samples in the window (the decayed outcome count for
reliability). A prediction for a request then reads

    ttft       = base_ttft + input_tokens / promptTokensPerSecond
    latency    = ttft + ms_per_token * expected_output_tokens
    cost       = input_tokens * input_price + expected_output_tokens * output_price
    cost_max   = input_tokens * input_price + max_tokens * output_price

docs/routing.md ("Predictions") has the whole story and a worked example.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import attrs

from swarmgate.config import ModelConfig
from swarmgate.models import Attempt, CompletionRequest, Target
from swarmgate.stats import estimate_tokens
from swarmgate_predict._config import MLConfig
from swarmgate_predict._window import SlidingQuantiles

if TYPE_CHECKING:
    from swarmgate.manager import ProviderManager

#: Error kinds that count against a target's reliability: the provider's
#: fault (unavailable, slow, overloaded, refusing our credentials, missing
#: model). Errors caused by the request itself (invalid request, context
#: length, content filter) or by the gateway (budget) say nothing about
#: the provider and are ignored.
RELIABILITY_KINDS = frozenset(
    {
        "timeout",
        "rate_limited",
        "overloaded",
        "server_error",
        "connection_error",
        "authentication",
        "permission",
        "not_found",
    }
)

#: Output tokens assumed for ``cost_max`` when neither the request nor the
#: model config sets ``maxTokens`` (the kernel's ``estimate_cost`` uses the same).
DEFAULT_MAX_TOKENS = 1024


class Prediction(NamedTuple):
    """What a request is expected to cost and take on one target.

    An immutable record like the kernel's attrs values, but a ``NamedTuple``:
    one is built per candidate per request, and a frozen attrs class costs
    four times as much to build (``object.__setattr__`` per field).

    ``cost`` is the expected cost (expected output length), ``cost_max`` the
    worst case (``maxTokens`` of output, as the kernel's ``estimate_cost``).
    ``latency_ms`` = ``ttft_ms`` + ``ms_per_token`` * ``output_tokens`` from
    the medians; ``latency_p95_ms`` the same sum of p95 figures (an upper
    bound of the p95 latency). ``reliability`` is the expected success
    ratio in [0, 1]. ``samples`` counts the latency observations behind the
    figures (0: the prior alone).
    """

    target: Target
    cost: float
    cost_max: float
    latency_ms: float
    latency_p95_ms: float
    ttft_ms: float
    ttft_p95_ms: float
    ms_per_token: float
    output_tokens: float
    reliability: float
    samples: int


@attrs.frozen
class ResolvedPrior:
    """A target's prior in the model's units (ms, ms per token)."""

    ttft_p50: float
    ttft_p95: float
    ms_per_token_p50: float
    ms_per_token_p95: float
    prompt_ms_per_token: float
    reliability: float

    @classmethod
    def resolve(cls, config: MLConfig, target: Target) -> ResolvedPrior:
        """The prior of ``target``: ``priors["provider/model"]``, then
        ``priors["provider"]``, then the ``mlConfig`` defaults, key by key."""
        layers = [p for p in (config.priors.get(str(target)), config.priors.get(target.provider)) if p is not None]

        def pick(name: str, default: float) -> float:
            for layer in layers:
                value: float | None = getattr(layer, name)
                if value is not None:
                    return value
            return default

        factor = pick("p95_factor", config.p95_factor)
        ttft = pick("expected_ttft_ms", config.expected_ttft_ms)
        per_token = 1000.0 / pick("expected_tokens_per_second", config.expected_tokens_per_second)
        return cls(
            ttft_p50=ttft,
            ttft_p95=ttft * factor,
            ms_per_token_p50=per_token,
            ms_per_token_p95=per_token * factor,
            prompt_ms_per_token=1000.0 / pick("prompt_tokens_per_second", config.prompt_tokens_per_second),
            reliability=pick("expected_reliability", config.expected_reliability),
        )


class _TargetModel:
    """Everything learned about one target, plus its blended figures
    (recomputed only after the windows change)."""

    __slots__ = (
        "dirty",
        "expiry",
        "failures",
        "input_price",
        "outcomes",
        "output_price",
        "per_token",
        "per_token_p50",
        "per_token_p95",
        "priced",
        "prior",
        "stamp",
        "successes",
        "ttft",
        "ttft_p50",
        "ttft_p95",
    )

    def __init__(self, prior: ResolvedPrior, size: int, horizon: float, now: float) -> None:
        self.prior = prior
        self.ttft = SlidingQuantiles(size, horizon)
        self.per_token = SlidingQuantiles(size, horizon)
        self.successes = 0.0
        self.outcomes = 0.0
        self.failures = 0
        self.stamp = now
        self.ttft_p50 = prior.ttft_p50
        self.ttft_p95 = prior.ttft_p95
        self.per_token_p50 = prior.ms_per_token_p50
        self.per_token_p95 = prior.ms_per_token_p95
        self.dirty = False
        #: When the oldest sample expires, or earlier (``inf`` while there is none).
        self.expiry = math.inf
        #: The model config the cached prices were read from.
        self.priced: ModelConfig | None = None
        self.input_price = 0.0
        self.output_price = 0.0

    def add(self, now: float, base_ttft: float, per_token: float | None) -> None:
        """Record one answer's base TTFT and (when it had output) ms per token."""
        self.ttft.add(now, base_ttft)
        if per_token is not None:
            self.per_token.add(now, per_token)
        if self.expiry == math.inf:
            # Later evictions by size only make the true expiry later: refresh()
            # may then look a little early, find nothing, and recompute it.
            self.expiry = now + self.ttft.horizon
        self.dirty = True

    def _set_expiry(self) -> None:
        oldest = [t for t in (self.ttft.oldest(), self.per_token.oldest()) if t is not None]
        self.expiry = min(oldest) + self.ttft.horizon if oldest else math.inf

    def prices(self, config: ModelConfig) -> None:
        """Cache ``config``'s per-token prices (once per config object)."""
        self.input_price = config.price(1, 0)
        self.output_price = config.price(0, 1)
        self.priced = config

    def refresh(self, now: float, weight: float) -> None:
        """Expire old samples and recompute the blended figures if needed."""
        if now >= self.expiry:
            self.ttft.expire(now)
            self.per_token.expire(now)
            self._set_expiry()
            self.dirty = True
        if not self.dirty:
            return
        self.dirty = False
        prior = self.prior
        n = len(self.ttft)
        if n:
            self.ttft_p50 = _blend(prior.ttft_p50, self.ttft.quantile(0.5), weight, n)
            self.ttft_p95 = _blend(prior.ttft_p95, self.ttft.quantile(0.95), weight, n)
        else:
            self.ttft_p50, self.ttft_p95 = prior.ttft_p50, prior.ttft_p95
        n = len(self.per_token)
        if n:
            self.per_token_p50 = _blend(prior.ms_per_token_p50, self.per_token.quantile(0.5), weight, n)
            self.per_token_p95 = _blend(prior.ms_per_token_p95, self.per_token.quantile(0.95), weight, n)
        else:
            self.per_token_p50, self.per_token_p95 = prior.ms_per_token_p50, prior.ms_per_token_p95

    def outcome(self, now: float, ok: bool, decay: float) -> None:
        """Fold one success or failure into the decayed counts."""
        factor = math.exp((self.stamp - now) * decay) if now > self.stamp else 1.0
        self.successes = self.successes * factor + (1.0 if ok else 0.0)
        self.outcomes = self.outcomes * factor + 1.0
        self.stamp = max(now, self.stamp)
        if not ok:
            self.failures += 1

    def reliability(self, now: float, decay: float, weight: float) -> float:
        """The blended success ratio at ``now``."""
        factor = math.exp((self.stamp - now) * decay) if now > self.stamp else 1.0
        outcomes = self.outcomes * factor
        total = weight + outcomes
        if total <= 0.0:
            return self.prior.reliability
        return (weight * self.prior.reliability + self.successes * factor) / total


def _blend(prior: float, observed: float, weight: float, n: int) -> float:
    return (weight * prior + n * observed) / (weight + n)


class Predictor:
    """The prediction model of one :class:`~swarmgate.ProviderManager`.

    Published by the ``predict`` plugin as ``manager.extensions["predict"]``;
    strategies get it with :func:`swarmgate_predict.acquire`. Synchronous
    and free of I/O: everything lives in this process's memory (each
    gateway instance learns from the traffic it serves).

    ``clock`` returns seconds (monotonic); tests inject their own.
    ``standalone`` marks a predictor created by a strategy because the
    plugin's hooks are not active: nothing feeds it, so it predicts from
    the priors alone.
    """

    def __init__(
        self,
        manager: ProviderManager,
        config: MLConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        standalone: bool = False,
    ) -> None:
        self.manager = manager
        self.config = config if config is not None else MLConfig.from_manager(manager)
        self.clock = clock
        self.standalone = standalone
        #: Whether a consumer (a strategy) uses the predictions; learning
        #: runs only then (see :meth:`activate`).
        self.active = False
        self._models: dict[Target, _TargetModel] = {}
        self._weight = self.config.prior_weight
        self._horizon = self.config.prediction_window / 1000.0
        self._decay = math.log(2.0) / (self.config.reliability_half_life / 1000.0)
        self._alpha = 2.0 / (self.config.window_size + 1)
        self._output_tokens = self.config.expected_output_tokens
        self._last_request: CompletionRequest | None = None
        self._last_input_tokens = 0

    @classmethod
    def from_manager(cls, manager: ProviderManager, *, standalone: bool = False) -> Predictor:
        """A predictor configured from ``manager``'s ``routing.mlConfig``.
        Raises :class:`~swarmgate.errors.ConfigError` for a bad section."""
        return cls(manager, MLConfig.from_manager(manager), standalone=standalone)

    # -- state ---------------------------------------------------------------

    @property
    def learning(self) -> bool:
        """Whether observations are recorded: ``modelTraining`` is on, a
        strategy uses the predictions, and the plugin's hooks feed them."""
        return self.active and self.config.model_training and not self.standalone

    def activate(self) -> None:
        """Start learning (called when a strategy starts using predictions)."""
        self.active = True

    @property
    def expected_output_tokens(self) -> float:
        """The typical answer length: a moving average of observed output
        tokens (span ``windowSize``), starting at ``expectedOutputTokens``."""
        return self._output_tokens

    def _model(self, target: Target) -> _TargetModel:
        model = self._models.get(target)
        if model is None:
            prior = ResolvedPrior.resolve(self.config, target)
            model = self._models[target] = _TargetModel(prior, self.config.window_size, self._horizon, self.clock())
        return model

    def forget(self, provider: str | None = None) -> None:
        """Drop what was learned about ``provider``'s targets (all when ``None``)."""
        if provider is None:
            self._models.clear()
        else:
            for target in [t for t in self._models if t.provider == provider]:
                del self._models[target]

    # -- predictions -----------------------------------------------------------

    def predict(self, target: Target, request: CompletionRequest) -> Prediction:
        """The prediction for ``request`` on ``target`` (see the module
        docstring for the formulas). O(1); never raises for an unknown target
        (it gets the default prior and no prices)."""
        model = self._models.get(target)
        if model is None:
            model = self._model(target)
        now = self.clock()
        if model.dirty or now >= model.expiry:
            model.refresh(now, self._weight)
        if request is not self._last_request:
            self._last_input_tokens = estimate_tokens(request.prompt_text())
            self._last_request = request
        input_tokens = self._last_input_tokens
        config = self.manager.model_config(target)
        if config is not model.priced:
            model.prices(config)
        cap = request.max_tokens or config.max_tokens
        expected = self._output_tokens
        output = expected if cap is None or cap > expected else float(cap)
        prompt_ms = input_tokens * model.prior.prompt_ms_per_token
        ttft = model.ttft_p50 + prompt_ms
        ttft_p95 = model.ttft_p95 + prompt_ms
        input_cost = input_tokens * model.input_price
        per_token = model.per_token_p50
        reliability = model.reliability(now, self._decay, self._weight) if model.outcomes else model.prior.reliability
        return Prediction(
            target,
            input_cost + output * model.output_price,
            input_cost + (cap or DEFAULT_MAX_TOKENS) * model.output_price,
            ttft + per_token * output,
            ttft_p95 + model.per_token_p95 * output,
            ttft,
            ttft_p95,
            per_token,
            output,
            reliability,
            len(model.ttft),
        )

    def hedge_delay(self, target: Target, request: CompletionRequest | None = None) -> float | None:
        """How long (ms) to wait for ``target`` before hedging, when
        ``routing.hedging`` sets no ``delay``: the predicted p95 latency, for
        ``request`` or (without one) for a typical request (no prompt, the
        expected answer length). ``None`` while no latency sample backs the
        figure: the kernel then falls back to its own statistics."""
        model = self._models.get(target)
        if model is None:
            return None
        model.refresh(self.clock(), self._weight)
        if not len(model.ttft):
            return None
        if request is not None:
            return self.predict(target, request).latency_p95_ms
        cap = self.manager.model_config(target).max_tokens
        output = self._output_tokens if cap is None else min(self._output_tokens, float(cap))
        return model.ttft_p95 + model.per_token_p95 * output

    def predict_many(self, targets: Iterable[Target], request: CompletionRequest) -> list[Prediction]:
        """:meth:`predict` for each target, in order."""
        predict = self.predict
        return [predict(target, request) for target in targets]

    # -- learning --------------------------------------------------------------

    def observe_success(
        self,
        target: Target,
        *,
        latency_ms: float,
        ttft_ms: float | None,
        input_tokens: int,
        output_tokens: int,
    ) -> None:
        """Learn from one answer. ``ttft_ms`` is ``None`` for a non-streamed
        answer: its latency is then split between the first token and the
        generation in the proportion the model currently predicts (see
        docs/routing.md). Recorded whatever :attr:`learning` says."""
        model = self._model(target)
        now = self.clock()
        model.refresh(now, self._weight)
        prompt_ms = max(input_tokens, 0) * model.prior.prompt_ms_per_token
        if ttft_ms is not None:
            base = max(ttft_ms - prompt_ms, 0.0)
            generation = max(latency_ms - ttft_ms, 0.0)
        else:
            rest = max(latency_ms - prompt_ms, 0.0)
            expected_generation = model.per_token_p50 * max(output_tokens, 0)
            whole = model.ttft_p50 + expected_generation
            base = rest * (model.ttft_p50 / whole) if whole > 0.0 else rest
            generation = rest - base
        if output_tokens > 0:
            model.add(now, base, generation / output_tokens)
            self._output_tokens += self._alpha * (output_tokens - self._output_tokens)
        else:
            model.add(now, base, None)
        model.outcome(now, True, self._decay)

    def observe_failure(self, target: Target, kind: str) -> bool:
        """Learn from one failed attempt of error kind ``kind``; returns
        whether it counted (only :data:`RELIABILITY_KINDS` do)."""
        if kind not in RELIABILITY_KINDS:
            return False
        self._model(target).outcome(self.clock(), False, self._decay)
        return True

    def observe_attempt(self, attempt: Attempt) -> None:
        """Learn from one :class:`~swarmgate.Attempt` of ``context.attempts``."""
        target = Target(attempt.provider, attempt.model)
        if attempt.ok:
            self.observe_success(
                target,
                latency_ms=attempt.latency,
                ttft_ms=attempt.ttft,
                input_tokens=attempt.tokens.input,
                output_tokens=attempt.tokens.output,
            )
        elif attempt.error_kind is not None:
            self.observe_failure(target, attempt.error_kind)

    # -- introspection ---------------------------------------------------------

    def snapshot(self, targets: Sequence[Target] | None = None) -> dict[str, dict[str, float | int]]:
        """What the model believes about each target it has observed (or
        each of ``targets``), keyed ``"provider/model"``: blended base TTFT
        p50/p95 (ms), ms per output token p50/p95, tokens per second (p50),
        reliability, latency samples in the window, decayed outcome count
        and failures seen."""
        now = self.clock()
        out: dict[str, dict[str, float | int]] = {}
        if targets is None:
            targets = [t for t, m in self._models.items() if m.outcomes > 0.0 or len(m.ttft)]
        for target in targets:
            model = self._model(target)
            model.refresh(now, self._weight)
            factor = math.exp((model.stamp - now) * self._decay) if now > model.stamp else 1.0
            out[str(target)] = {
                "ttft_p50_ms": model.ttft_p50,
                "ttft_p95_ms": model.ttft_p95,
                "ms_per_token_p50": model.per_token_p50,
                "ms_per_token_p95": model.per_token_p95,
                "tokens_per_second": 1000.0 / model.per_token_p50 if model.per_token_p50 > 0 else math.inf,
                "reliability": model.reliability(now, self._decay, self._weight),
                "samples": len(model.ttft),
                "outcomes": model.outcomes * factor,
                "failures": model.failures,
            }
        return out
