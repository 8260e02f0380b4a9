"""Turning tallies into the analytics document (the guide's shape) and the
raw metrics document; shared by the live service and the usage-log reader.

Live facts that no record holds (in-flight count, health, circuit state,
uptime) come from a :class:`LiveFacts`; offline they are ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from swarmgate_analytics import histogram
from swarmgate_analytics.aggregate import TargetKey
from swarmgate_analytics.tally import Tally


@attrs.frozen
class ProviderFacts:
    """What is live about one provider now (``None``: not known)."""

    uptime: float | None = None
    inflight: int | None = None
    healthy: bool | None = None
    breaker: str | None = None


NO_FACTS = ProviderFacts()


@attrs.frozen
class LiveFacts:
    """Live facts by provider, and the circuit state by target."""

    providers: Mapping[str, ProviderFacts] = attrs.field(factory=dict)
    breakers: Mapping[TargetKey, str] = attrs.field(factory=dict)


OFFLINE = LiveFacts()


def _order(keys: Iterable[TargetKey], configured: Mapping[str, Sequence[str]]) -> tuple[list[str], list[TargetKey]]:
    """Providers (configured order first, then the others by name) and targets
    (by that provider order, configured models first, then by name)."""
    seen = set(keys)
    providers = list(configured)
    providers += sorted({p for p, _ in seen} - set(providers))
    targets: list[TargetKey] = []
    for provider in providers:
        models = list(configured.get(provider, ()))
        models += sorted({m for p, m in seen if p == provider} - set(models))
        targets.extend((provider, m) for m in models)
    return providers, targets


def breaker_summary(states: Sequence[str]) -> str | None:
    """A provider's circuit state from its models': ``closed`` or ``open``
    when all agree, ``half_open`` when all are half-open, else ``partial``."""
    if not states:
        return None
    first = states[0]
    return first if all(s == first for s in states) else "partial"


def cache_from_requests(requests: Tally) -> dict[str, Any]:
    """Cache figures from request counts: ``hits`` answered from a cache,
    ``misses`` every other finished request."""
    hits = requests.cache_hits
    misses = requests.finished - hits
    return {
        "hits": hits,
        "misses": misses,
        "hitRatio": hits / (hits + misses) if hits + misses else None,
        "costSaved": requests.cost_saved,
        "source": "requests",
    }


def cache_from_service(stats: Mapping[str, Any]) -> dict[str, Any]:
    """Cache figures from the cache plugin's ``stats()`` (snake_case keys)."""
    hits = int(stats.get("hits", 0))
    misses = int(stats.get("misses", 0))
    ratio = stats.get("hit_ratio", stats.get("hitRatio"))
    if ratio is None and hits + misses:
        ratio = hits / (hits + misses)
    return {
        "hits": hits,
        "misses": misses,
        "hitRatio": ratio,
        "costSaved": float(stats.get("cost_saved", stats.get("costSaved", 0.0))),
        "source": "cache",
    }


def build_report(
    *,
    window: str | None,
    generated_at: float,
    source: str,
    since: float | None,
    targets: Mapping[TargetKey, Tally],
    requests: Tally,
    configured: Mapping[str, Sequence[str]],
    facts: LiveFacts = OFFLINE,
    cache: Mapping[str, Any] | None = None,
    budgets: Any = None,
    rate_limits: Any = None,
) -> dict[str, Any]:
    """The analytics document. ``configured`` maps each provider to its
    configured models (shown even without traffic, in that order)."""
    provider_names, target_keys = _order(targets, configured)
    by_provider: dict[str, list[Tally]] = {name: [] for name in provider_names}
    states: dict[str, list[str]] = {name: [] for name in provider_names}
    empty = Tally()
    models = []
    for key in target_keys:
        provider, model = key
        tally = targets.get(key, empty)
        by_provider[provider].append(tally)
        state = facts.breakers.get(key)
        if state is not None:
            states[provider].append(state)
        models.append(
            {
                "name": f"{provider}/{model}",
                "provider": provider,
                "model": model,
                **tally.target_figures(),
                "breaker": state,
            }
        )
    providers = []
    for name in provider_names:
        live = facts.providers.get(name, NO_FACTS)
        figures = Tally.combined(by_provider[name]).target_figures()
        providers.append(
            {
                "name": name,
                **figures,
                "uptime": live.uptime,
                "inflight": live.inflight,
                "healthy": live.healthy,
                "breaker": live.breaker if live.breaker is not None else breaker_summary(states[name]),
            }
        )
    return {
        "window": window,
        "generatedAt": generated_at,
        "since": since,
        "source": source,
        "providers": providers,
        "models": models,
        "totals": requests.request_figures(),
        "cache": dict(cache) if cache is not None else cache_from_requests(requests),
        "budgets": budgets,
        "rateLimits": rate_limits,
    }


def build_metrics(
    *,
    generated_at: float,
    source: str,
    since: float | None,
    targets: Mapping[TargetKey, Tally],
    requests: Tally,
    configured: Mapping[str, Sequence[str]],
    facts: LiveFacts = OFFLINE,
    cache: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The raw counters document (``metrics()``): per target and for the
    requests, counts by outcome and error kind, cost, tokens and the
    latency / time-to-first-token histograms (sparse ``[upper bound ms,
    count]`` bins of :data:`~swarmgate_analytics.histogram.BOUNDS`)."""
    provider_names, target_keys = _order(targets, configured)
    empty = Tally()
    return {
        "generatedAt": generated_at,
        "since": since,
        "source": source,
        "latencyBoundsMs": list(histogram.BOUNDS),
        "targets": [
            {
                "provider": provider,
                "model": model,
                **targets.get((provider, model), empty).counters(),
                "breaker": facts.breakers.get((provider, model)),
            }
            for provider, model in target_keys
        ],
        "requests": requests.counters(),
        "providers": [
            {
                "name": name,
                "inflight": facts.providers.get(name, NO_FACTS).inflight,
                "healthy": facts.providers.get(name, NO_FACTS).healthy,
                "uptime": facts.providers.get(name, NO_FACTS).uptime,
            }
            for name in provider_names
        ],
        "cache": dict(cache) if cache is not None else cache_from_requests(requests),
    }
