"""What the configuration says about routing, read without a live manager:
which targets a requested model can go to, the providers' weights and
priorities, and the price of a call at each target.

:func:`plan` mirrors the kernel's planning (``ProviderManager._make_plan``)
for enabled providers, so that an offline replay considers the same
candidates the gateway would.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

from swarmgate import SwarmgateConfig, Target
from swarmgate_advisor.figures import Figures

#: Load balancers that honour ``routing.loadBalancing.weights``.
WEIGHTED_BALANCERS: Final = frozenset({"weighted-round-robin"})
WRR: Final = "weighted-round-robin"


_PLAIN = re.compile(r"^[A-Za-z0-9_-]+$")


def config_path(*segments: str) -> str:
    """A dotted config path as ``config set`` reads it: a segment that is not
    a plain name (``gpt-4.1``, a name with spaces) is written ``["..."]``."""
    out = ""
    for segment in segments:
        if _PLAIN.match(segment):
            out += f".{segment}" if out else segment
        else:
            quote = "'" if '"' in segment else '"'
            out += f"[{quote}{segment}{quote}]"
    return out


@attrs.frozen
class Plan:
    """The targets a requested model can go to: ``primary`` (ranked by the
    strategy) then ``fallback`` (the fallback chain's tail, in order);
    ``ordered`` when a route fixes the order."""

    primary: tuple[Target, ...]
    fallback: tuple[Target, ...] = ()
    ordered: bool = False

    @property
    def all(self) -> tuple[Target, ...]:
        return self.primary + self.fallback


def provider_weight(config: SwarmgateConfig, provider: str) -> float:
    """``routing.loadBalancing.weights[provider]``, else the provider's own
    ``weight``, else 1.0 (the weighted-round-robin balancer's rule)."""
    weight = config.routing.load_balancing.weights.get(provider)
    if weight is not None:
        return weight
    provider_config = config.providers.get(provider)
    return provider_config.weight if provider_config is not None else 1.0


def priority_of(config: SwarmgateConfig, provider: str) -> int:
    """The provider's configured priority (lower is tried first)."""
    provider_config = config.providers.get(provider)
    return provider_config.priority if provider_config is not None else 1_000_000


def _fallback(config: SwarmgateConfig, primary: tuple[Target, ...]) -> tuple[Target, ...]:
    routing = config.routing
    if not routing.fallback_enabled or not routing.fallback_chains or not primary:
        return ()
    first = primary[0].provider
    chain = next((c for c in routing.fallback_chains if c and c[0] == first), None)
    if chain is None:
        chain = next((c[c.index(first) :] for c in routing.fallback_chains if first in c), ())
    seen = {t.provider for t in primary}
    out = []
    for name in chain[1:]:
        provider = config.providers.get(name)
        if name in seen or provider is None or not provider.enabled:
            continue
        default = provider.resolve_default_model()
        if default is not None:
            out.append(Target(name, default))
            seen.add(name)
    return tuple(out)


def plan(config: SwarmgateConfig, requested: str) -> Plan:
    """The candidates for ``requested`` (a route, ``auto``, ``provider/model``
    or a model name) as the kernel plans them; an empty plan when nothing
    configured serves it."""
    live = {n: p for n, p in config.providers.items() if p.enabled}
    route = config.routes.get(requested)
    if route is not None:
        targets = []
        for text in route.targets:
            provider, _, model = text.partition("/")
            if provider in live:
                targets.append(Target(provider, model))
        fallback = []
        for text in getattr(route, "fallbacks", ()):
            provider, _, model = text.partition("/")
            if provider in live:
                fallback.append(Target(provider, model))
        return Plan(tuple(targets), tuple(fallback), route.ordered)
    if requested == "auto":
        auto = tuple(
            Target(name, default) for name, p in live.items() if (default := p.resolve_default_model()) is not None
        )
        return Plan(auto, (), False)
    provider, _, model = requested.partition("/")
    if model and provider in live:
        models = live[provider].models
        if models and model not in models:
            return Plan(())
        primary: tuple[Target, ...] = (Target(provider, model),)
    else:
        primary = tuple(Target(p, requested) for p, c in live.items() if requested in c.models)
        if not primary:
            primary = tuple(Target(p, requested) for p, c in live.items() if not c.models)
    return Plan(primary, _fallback(config, primary), False)


class PriceBook:
    """The price of a call at each target: the model's configured prices
    when it has any, else the cost per token observed in the log (the mean
    over its successful attempts), else unknown."""

    def __init__(self, config: SwarmgateConfig, figures: Figures | None = None) -> None:
        self._config = config
        self._figures = figures

    def configured(self, target: Target) -> bool:
        """Whether the config prices ``target``."""
        provider = self._config.providers.get(target.provider)
        model = provider.models.get(target.model) if provider is not None else None
        return model is not None and (
            model.cost_per_token is not None
            or model.input_cost_per_token is not None
            or model.output_cost_per_token is not None
        )

    def price(self, target: Target, input_tokens: float, output_tokens: float) -> float | None:
        """What a call with these token counts costs at ``target`` (``None``: unknown)."""
        if self.configured(target):
            model = self._config.providers[target.provider].models[target.model]
            base = model.cost_per_token or 0.0
            in_price = model.input_cost_per_token if model.input_cost_per_token is not None else base
            out_price = model.output_cost_per_token if model.output_cost_per_token is not None else base
            return input_tokens * in_price + output_tokens * out_price
        if self._figures is not None:
            observed = self._figures.targets.get(target)
            if observed is not None:
                return observed.observed_price(input_tokens, output_tokens)
        return None
