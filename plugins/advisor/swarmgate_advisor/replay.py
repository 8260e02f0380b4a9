"""Routing replay: what the recorded traffic would have cost, how fast and
how reliable it would have been under other strategies and weights.

The model (expected values, no sampling, so a replay is deterministic given
the log and the config):

* Each recorded request (cache hits excluded: routing did not matter) keeps
  its traffic group (requested model or route) and its tokens (the
  answering attempt's, else the group's mean). Its candidates are the ones
  the kernel plans for the group (:func:`~swarmgate_advisor.topology.plan`)
  that the log has observed; a candidate never tried cannot be projected
  and is left out (listed in the notes).
* Each candidate target has, from the log (the group's own attempts when
  there are at least ``minSamples`` of them, else all of the target's): a
  success probability, the latency distribution of its successes, the mean
  latency and cost of its failures, and a price per call (the configured
  prices, else the observed cost per token).
* A *policy* is a strategy and a balancer. It orders the candidates: the
  ``priority`` strategy in tiers of equal priority; a scored strategy
  (``cost-optimized``, ``performance-optimized``, ``reliability-optimized``,
  ``intelligent``: the classes' own ``default_weights`` with
  ``routing.parameters`` over them, as after switching to it) by the score
  the strategies share, ``1 - wc*cost/max - wp*latency/max -
  wr*failure/max`` over expected cost at the group's mean tokens, p50
  latency and failure rate, cut in tiers within ``tolerance``;
  ``performance-optimized`` ranks candidates missing ``routing.sla`` last.
  Inside a tier, ``weighted-round-robin`` puts each target first with the
  share of its weight (the others after it by weight), every other balancer
  spreads evenly (each rotation equally likely). The fallback chain follows.
* Along an ordering a request reaches each target with the probability
  that every earlier one failed; it succeeds there with the target's
  success probability, paying its price, after the failed attempts'
  latency. Summing gives each request's expected cost, success probability
  and attempts; the latency of answered requests is the mixture of the
  answering targets' observed latency distributions, shifted by the
  failures before them (its mean and nearest-rank p95 are exact for the
  mixture).

Compared with the *actual* figures of the same requests (recorded cost,
success rate, latency of answered requests), and with the current config
run through the same model (``current``), which shows how far the model is
from reality. Retries on the same target and hedging are not modelled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from swarmgate import SwarmgateConfig, Target
from swarmgate.logs import get_logger
from swarmgate_advisor.figures import Figures, GroupFigures, TargetFigures, group_key, mean, quantile
from swarmgate_advisor.topology import WRR, Plan, PriceBook, config_path, plan, priority_of, provider_weight

if TYPE_CHECKING:
    from swarmgate_usage import UsageRecord

log = get_logger("swarmgate.advisor")

ReplayTarget = Literal["cost", "performance", "reliability"]
TARGETS: Final = ("cost", "performance", "reliability")
#: Score distance within which the scored strategies put candidates in one tier (swarmgate-predict's default).
DEFAULT_TOLERANCE: Final = 0.05


@attrs.frozen
class Policy:
    """A routing policy to replay: a strategy model and a balancer model."""

    name: str
    description: str
    strategy: str
    #: ``(cost, performance, reliability)`` for a scored strategy, normalised; ``None``: priority tiers.
    weights: tuple[float, float, float] | None
    tolerance: float
    balancer: str
    provider_weights: Mapping[str, float]
    priorities: Mapping[str, int]
    #: ``routing.sla`` for a strategy that demotes SLA misses: ``(maxLatency ms, minAvailability)``.
    sla: tuple[float, float] | None = None
    changes: tuple[dict[str, Any], ...] = ()


@attrs.frozen
class Outcome:
    """Projected (or actual) figures of the replayed requests."""

    requests: int
    cost: float
    success_rate: float
    mean_latency_ms: float | None
    p95_latency_ms: float | None
    attempts_per_request: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "cost": self.cost,
            "costPerRequest": self.cost / self.requests if self.requests else 0.0,
            "successRate": self.success_rate,
            "meanLatencyMs": self.mean_latency_ms,
            "p95LatencyMs": self.p95_latency_ms,
            "attemptsPerRequest": self.attempts_per_request,
        }


@attrs.frozen
class CandidateResult:
    """One replayed policy: its projection, the config change that gets it,
    and whether it is the best for the replay's target."""

    name: str
    description: str
    outcome: Outcome
    changes: tuple[dict[str, Any], ...]
    best: bool = False

    def to_dict(self, actual: Outcome, per_day: float) -> dict[str, Any]:
        data = {"name": self.name, "description": self.description, **self.outcome.to_dict()}
        data["costPerDay"] = self.outcome.cost * per_day
        data["costChangePercent"] = _percent_change(self.outcome.cost, actual.cost)
        data["changes"] = list(self.changes)
        data["best"] = self.best
        return data


def _percent_change(new: float, old: float) -> float | None:
    return None if old == 0 else (new - old) / old * 100.0


@attrs.frozen
class ReplayReport:
    """The result of :meth:`Advisor.replay`: the actual figures of the
    replayed requests, each candidate policy's projection, the best one for
    ``target`` and the config changes that get it."""

    target: str
    since: float
    until: float
    span_seconds: float
    requests: int
    excluded: int
    actual: Outcome
    candidates: tuple[CandidateResult, ...]
    notes: tuple[str, ...] = ()

    @property
    def best(self) -> CandidateResult | None:
        """The best candidate for the target (``None`` when nothing was replayed)."""
        return next((c for c in self.candidates if c.best), None)

    @property
    def per_day(self) -> float:
        """The factor turning window totals into daily figures (span floored at 1 h)."""
        return 86_400.0 / max(self.span_seconds, 3600.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, camelCase."""
        best = self.best
        per_day = self.per_day
        return {
            "target": self.target,
            "since": self.since,
            "until": self.until,
            "spanSeconds": self.span_seconds,
            "requests": self.requests,
            "excluded": self.excluded,
            "actual": {**self.actual.to_dict(), "costPerDay": self.actual.cost * per_day},
            "candidates": [c.to_dict(self.actual, per_day) for c in self.candidates],
            "best": best.name if best is not None else None,
            "changes": list(best.changes) if best is not None else [],
            "notes": list(self.notes),
        }


# -- policies ------------------------------------------------------------------


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def scored_weights(defaults: Any, config: SwarmgateConfig) -> tuple[tuple[float, float, float], float] | None:
    """A scored strategy's normalised ``(cost, performance, reliability)``
    weights and tolerance, ``routing.parameters`` over its ``defaults`` (as
    it would run once ``routing.strategy`` names it); ``None`` if they are
    unusable."""
    params = config.routing.parameters
    names = (("costWeight", "cost"), ("performanceWeight", "performance"), ("reliabilityWeight", "reliability"))
    values = []
    for key, attribute in names:
        given = _number(params.get(key))
        values.append(given if given is not None else float(getattr(defaults, attribute)))
    total = sum(values)
    if total <= 0 or any(v < 0 for v in values):
        return None
    tolerance = _number(params.get("tolerance"))
    return (values[0] / total, values[1] / total, values[2] / total), (
        DEFAULT_TOLERANCE if tolerance is None else tolerance
    )


def _sla(config: SwarmgateConfig) -> tuple[float, float] | None:
    raw = config.section("routing.sla")
    if not isinstance(raw, Mapping):
        return None
    latency = _number(raw.get("maxLatency"))
    availability = _number(raw.get("minAvailability"))
    if latency is None and availability is None:
        return None
    return (math.inf if latency is None else latency, 0.0 if availability is None else availability)


@attrs.frozen
class StrategyModel:
    """How to model one installed strategy: scored (weights, tolerance,
    whether it demotes SLA misses) or by priority."""

    name: str
    weights: tuple[float, float, float] | None
    tolerance: float = DEFAULT_TOLERANCE
    demotes: bool = False


def strategy_models(config: SwarmgateConfig) -> tuple[list[StrategyModel], list[str]]:
    """The installed (admitted) strategies that can be modelled, and notes
    about the ones that cannot. ``priority`` is the kernel's own; a strategy
    class with ``default_weights`` is scored."""
    from swarmgate import registry
    from swarmgate.errors import PluginError

    models = [StrategyModel("priority", None)]
    notes: list[str] = []
    for name in registry.available(registry.STRATEGIES):
        if name == "priority":
            continue
        try:
            cls = registry.load_driver(registry.STRATEGIES, name)
        except PluginError as exc:
            notes.append(f"strategy {name!r} not replayed: {exc}")
            continue
        defaults = getattr(cls, "default_weights", None)
        scored = scored_weights(defaults, config) if defaults is not None else None
        if scored is None:
            notes.append(f"strategy {name!r} not replayed: it does not rank by the shared weighted score")
            continue
        demotes = isinstance(cls, type) and "demoted" in vars(cls)
        models.append(StrategyModel(name, scored[0], scored[1], demotes))
    return models, notes


def current_policy(config: SwarmgateConfig, models: Sequence[StrategyModel]) -> Policy | None:
    """The configured strategy and balancer, as a policy (``None`` when the
    configured strategy cannot be modelled)."""
    name = config.routing.strategy
    model = next((m for m in models if m.name == name), None)
    if model is None:
        return None
    return _policy(config, "current", f"the current config ({name}, {config.routing.load_balancing.algorithm})", model)


def _policy(
    config: SwarmgateConfig,
    name: str,
    description: str,
    model: StrategyModel,
    *,
    balancer: str | None = None,
    weights: Mapping[str, float] | None = None,
    priorities: Mapping[str, int] | None = None,
    changes: tuple[dict[str, Any], ...] = (),
) -> Policy:
    providers = [n for n, p in config.providers.items() if p.enabled]
    return Policy(
        name=name,
        description=description,
        strategy=model.name,
        weights=model.weights,
        tolerance=model.tolerance,
        balancer=balancer or config.routing.load_balancing.algorithm,
        provider_weights=dict(weights) if weights is not None else {p: provider_weight(config, p) for p in providers},
        priorities=dict(priorities) if priorities is not None else {p: priority_of(config, p) for p in providers},
        sla=_sla(config) if model.demotes else None,
        changes=changes,
    )


def tuned_weights(target: str, figures: Figures, prices: PriceBook, config: SwarmgateConfig) -> dict[str, float]:
    """Per-provider weights favouring ``target`` (for the enabled providers of
    ``config`` the log has seen), from the providers' observed
    figures over the whole window, normalised to sum to 1 (3 decimals):
    ``cost``: inverse of the mean price of a request at the window's mean
    tokens over the provider's observed models; ``performance``: inverse of
    its p50 latency; ``reliability``: inverse of its failure rate plus 0.01."""
    answered = sum(g.ok - g.cache_hits for g in figures.groups.values())
    tokens_in = sum(g.input_tokens for g in figures.groups.values())
    tokens_out = sum(g.output_tokens for g in figures.groups.values())
    mean_in = tokens_in / answered if answered else 0.0
    mean_out = tokens_out / answered if answered else 0.0
    raw: dict[str, float] = {}
    for provider, targets in sorted(figures.providers().items()):
        observed = [t for t in targets if t.attempts]
        if not observed or provider not in config.providers or not config.providers[provider].enabled:
            continue
        if target == "cost":
            costs = [c for t in observed if (c := prices.price(t.target, mean_in, mean_out)) is not None]
            if not costs:
                continue
            cost = sum(costs) / len(costs)
            raw[provider] = 1.0 / cost if cost > 0 else math.inf
        elif target == "performance":
            latencies = sorted(x for t in observed for x in t.latencies)
            p50 = quantile(latencies, 0.5)
            if p50 is None:
                continue
            raw[provider] = 1.0 / max(p50, 1e-3)
        else:
            attempts = sum(t.attempts for t in observed)
            failures = sum(t.faults for t in observed)
            raw[provider] = 1.0 / (failures / attempts + 0.01)
    if not raw:
        return {}
    if any(math.isinf(v) for v in raw.values()):
        raw = {p: 1.0 if math.isinf(v) else 0.0 for p, v in raw.items()}
    total = sum(raw.values())
    return {p: round(v / total, 3) for p, v in raw.items()}


def candidate_policies(
    config: SwarmgateConfig, target: str, figures: Figures, prices: PriceBook
) -> tuple[list[Policy], list[str]]:
    """The policies a replay compares: the current config, every other
    modelled strategy (with the current balancer), and tuned weights for
    ``target`` under weighted round robin, both within the current strategy
    and with every provider at one priority under ``priority``."""
    models, notes = strategy_models(config)
    policies: list[Policy] = []
    current = current_policy(config, models)
    if current is not None:
        policies.append(current)
    else:
        notes.append(f"the configured strategy {config.routing.strategy!r} cannot be modelled; 'current' is left out")
    for model in models:
        if model.name == config.routing.strategy:
            continue
        policies.append(
            _policy(
                config,
                model.name,
                f"strategy {model.name}",
                model,
                changes=({"path": "routing.strategy", "value": model.name},),
            )
        )
    shares = tuned_weights(target, figures, prices, config)
    # Scaled to the providers' current total weight, so that providers the
    # log has not seen keep their share of the wheel.
    scale = sum(provider_weight(config, p) for p in shares) or float(len(shares))
    weights = {p: round(share * scale, 3) for p, share in shares.items()}
    if weights:
        balancing: list[dict[str, Any]] = []
        if config.routing.load_balancing.algorithm != WRR:
            balancing.append({"path": "routing.loadBalancing.algorithm", "value": WRR})
        balancing += [
            {"path": config_path("routing", "loadBalancing", "weights", p), "value": w}
            for p, w in weights.items()
            if provider_weight(config, p) != w
        ]
        full = {p: provider_weight(config, p) for p, c in config.providers.items() if c.enabled} | weights
        current_model = next((m for m in models if m.name == config.routing.strategy), None)
        if current_model is not None:
            policies.append(
                _policy(
                    config,
                    f"weighted-{target}",
                    f"weights tuned for {target} ({config.routing.strategy}, weighted-round-robin)",
                    current_model,
                    balancer=WRR,
                    weights=full,
                    changes=tuple(balancing),
                )
            )
        priorities = {p: priority_of(config, p) for p, c in config.providers.items() if c.enabled}
        top = min((priorities[p] for p in weights), default=0)
        flat_changes: list[dict[str, Any]] = []
        if config.routing.strategy != "priority":
            flat_changes.append({"path": "routing.strategy", "value": "priority"})
        flat_changes += [
            {"path": config_path("providers", p, "priority"), "value": top}
            for p in sorted(weights)
            if priorities[p] != top
        ]
        flat = dict(priorities) | dict.fromkeys(weights, top)
        policies.append(
            _policy(
                config,
                f"flat-weighted-{target}",
                f"weights tuned for {target}, every observed provider at priority {top} (priority, weighted-round-robin)",
                models[0],
                balancer=WRR,
                weights=full,
                priorities=flat,
                changes=tuple(flat_changes + balancing),
            )
        )
    return policies, notes


# -- the per-target model --------------------------------------------------------


@attrs.frozen
class _Candidate:
    target: Target
    success: float
    latencies: Sequence[float]
    p50: float
    p95: float
    fail_latency: float
    fail_cost: float
    figures: TargetFigures


def _model_target(
    target: Target, group_figures: TargetFigures | None, all_figures: TargetFigures | None, min_samples: int
) -> _Candidate | None:
    chosen = group_figures if group_figures is not None and group_figures.attempts >= min_samples else all_figures
    if chosen is None or chosen.attempts == 0:
        chosen = group_figures if group_figures is not None and group_figures.attempts else None
    if chosen is None:
        return None
    success = chosen.ok / chosen.attempts
    latencies = chosen.latencies
    if not latencies:
        # Never answered: only its failures are known (it always fails in the model).
        return _Candidate(target, 0.0, (), math.inf, math.inf, chosen.mean_fail_latency, chosen.mean_fail_cost, chosen)
    p50 = quantile(latencies, 0.5)
    p95 = quantile(latencies, 0.95)
    assert p50 is not None
    assert p95 is not None
    return _Candidate(target, success, latencies, p50, p95, chosen.mean_fail_latency, chosen.mean_fail_cost, chosen)


def _model_targets(
    targets: Sequence[Target], group: GroupFigures, figures: Figures, min_samples: int, unobserved: set[Target]
) -> tuple[_Candidate, ...]:
    """The observed ones of ``targets`` as modelled candidates; the others go to ``unobserved``."""
    out = []
    for t in targets:
        candidate = _model_target(t, group.targets.get(t), figures.targets.get(t), min_samples)
        if candidate is None:
            unobserved.add(t)
        else:
            out.append(candidate)
    return tuple(out)


def _tiers(policy: Policy, candidates: Sequence[_Candidate], cost_of: Mapping[Target, float]) -> list[list[_Candidate]]:
    if len(candidates) < 2:
        return [list(candidates)] if candidates else []
    if policy.weights is None:
        by_priority: dict[int, list[_Candidate]] = {}
        for c in candidates:
            by_priority.setdefault(policy.priorities.get(c.target.provider, 1_000_000), []).append(c)
        return [by_priority[p] for p in sorted(by_priority)]
    wc, wp, wr = policy.weights
    costs = [cost_of[c.target] for c in candidates]
    latencies = [c.p50 if math.isfinite(c.p50) else 0.0 for c in candidates]
    max_cost = max(costs)
    max_latency = max(latencies)
    max_failure = max(1.0 - c.success for c in candidates)
    kc = wc / max_cost if max_cost > 0 else 0.0
    kp = wp / max_latency if max_latency > 0 else 0.0
    kr = wr / max_failure if max_failure > 0 else 0.0
    scores = [
        1.0 - kc * costs[i] - kp * latencies[i] - kr * (1.0 - c.success) - (1.0 if not math.isfinite(c.p50) else 0.0)
        for i, c in enumerate(candidates)
    ]
    order = sorted(range(len(candidates)), key=lambda i: -scores[i])
    cut = -1
    if policy.sla is not None:
        max_latency_sla, min_availability = policy.sla
        demoted = [i for i in order if candidates[i].p95 > max_latency_sla or candidates[i].success < min_availability]
        if demoted:
            out = set(demoted)
            order = [i for i in order if i not in out] + demoted
            cut = len(order) - len(demoted)
    tiers: list[list[_Candidate]] = []
    tier: list[_Candidate] = []
    floor = 0.0
    for position, i in enumerate(order):
        if not tier or position == cut or scores[i] < floor:
            tier = [candidates[i]]
            tiers.append(tier)
            floor = scores[i] - policy.tolerance
        else:
            tier.append(candidates[i])
    return tiers


def _tier_orderings(policy: Policy, tier: list[_Candidate]) -> list[tuple[float, list[_Candidate]]]:
    n = len(tier)
    if n == 1:
        return [(1.0, tier)]
    if policy.balancer == WRR:
        weights = [max(0.0, policy.provider_weights.get(c.target.provider, 1.0)) for c in tier]
        if not any(w > 0 for w in weights):
            weights = [1.0] * n
        total = sum(weights)
        by_weight = sorted(range(n), key=lambda i: -weights[i])
        out = []
        for i in range(n):
            if weights[i] <= 0:
                continue
            rest = [tier[j] for j in by_weight if j != i]
            out.append((weights[i] / total, [tier[i], *rest]))
        return out
    return [(1.0 / n, tier[i:] + tier[:i]) for i in range(n)]


def orderings(
    policy: Policy,
    primary: Sequence[_Candidate],
    fallback: Sequence[_Candidate],
    ordered: bool,
    cost_of: Mapping[Target, float],
) -> list[tuple[float, list[_Candidate]]]:
    """The orders a request of a group is tried in under ``policy``, each
    with its probability (summing to 1)."""
    if ordered or len(primary) < 2:
        combos: list[tuple[float, list[_Candidate]]] = [(1.0, list(primary))]
    else:
        combos = [(1.0, [])]
        for tier in _tiers(policy, primary, cost_of):
            combos = [(p * q, head + tail) for p, head in combos for q, tail in _tier_orderings(policy, tier)]
    seen_fallback = [c for c in fallback if c.target not in {p.target for p in primary}]
    return [(p, seq + seen_fallback) for p, seq in combos]


@attrs.define
class _Accumulator:
    requests: int = 0
    cost: float = 0.0
    success: float = 0.0
    attempts: float = 0.0
    #: (candidate id, shift ms) -> probability mass of answers there.
    mixture: dict[tuple[int, float], float] = attrs.field(factory=dict)
    candidates: dict[int, _Candidate] = attrs.field(factory=dict)

    def outcome(self) -> Outcome:
        total = sum(self.mixture.values())
        mean_latency: float | None = None
        p95: float | None = None
        if total > 0:
            mean_latency = (
                sum(
                    w * ((mean(self.candidates[cid].latencies) or 0.0) + shift)
                    for (cid, shift), w in self.mixture.items()
                )
                / total
            )
            points: list[tuple[float, float]] = []
            for (cid, shift), w in self.mixture.items():
                samples = self.candidates[cid].latencies
                each = w / len(samples)
                points.extend((x + shift, each) for x in samples)
            points.sort()
            threshold = 0.95 * total - 1e-12 * total
            running = 0.0
            for value, weight in points:
                running += weight
                if running >= threshold:
                    p95 = value
                    break
            else:
                p95 = points[-1][0]
        n = self.requests
        return Outcome(
            requests=n,
            cost=self.cost,
            success_rate=self.success / n if n else 0.0,
            mean_latency_ms=mean_latency,
            p95_latency_ms=p95,
            attempts_per_request=self.attempts / n if n else 0.0,
        )


def _record_tokens(record: UsageRecord, fallback: tuple[float, float]) -> tuple[float, float]:
    if record.ok:
        for attempt in reversed(record.attempts):
            if attempt.ok:
                return float(attempt.input_tokens), float(attempt.output_tokens)
        if record.input_tokens or record.output_tokens:
            return float(record.input_tokens), float(record.output_tokens)
    return fallback


@attrs.frozen
class _GroupModel:
    plan: Plan
    primary: tuple[_Candidate, ...]
    fallback: tuple[_Candidate, ...]
    mean_tokens: tuple[float, float]
    cost_of: Mapping[Target, float]


def replay(
    records: Sequence[UsageRecord],
    figures: Figures,
    config: SwarmgateConfig,
    target: str,
    *,
    min_samples: int,
    prices: PriceBook | None = None,
    policies: Sequence[Policy] | None = None,
) -> ReplayReport:
    """Replay the window's records (those in ``figures``) under each
    candidate policy for ``target`` (``cost``, ``performance`` or
    ``reliability``); see the module docstring for the model."""
    if target not in TARGETS:
        raise ValueError(f"unknown replay target {target!r} (expected one of {', '.join(TARGETS)})")
    prices = prices or PriceBook(config, figures)
    notes: list[str] = []
    if policies is None:
        found, policy_notes = candidate_policies(config, target, figures, prices)
        policies = found
        notes.extend(policy_notes)
    groups: dict[str, _GroupModel | None] = {}
    unobserved: set[Target] = set()
    unpriced: set[Target] = set()
    for key, group in figures.groups.items():
        group_plan = plan(config, key)
        mean_tokens = group.mean_tokens

        primary = _model_targets(group_plan.primary, group, figures, min_samples, unobserved)
        fallback = _model_targets(group_plan.fallback, group, figures, min_samples, unobserved)
        if not primary and not fallback:
            groups[key] = None
            continue
        cost_of: dict[Target, float] = {}
        for c in primary + fallback:
            price = prices.price(c.target, *mean_tokens)
            if price is None:
                unpriced.add(c.target)
            cost_of[c.target] = price or 0.0
        groups[key] = _GroupModel(group_plan, primary, fallback, mean_tokens, cost_of)
    # Every request of a group has the same orderings and probabilities, and a
    # price is linear in the tokens: a group is replayed once, with its request
    # count and token sums.
    volume: dict[str, list[float]] = {}  # group -> [requests, input tokens, output tokens]
    actual_latencies: list[float] = []
    actual_cost = actual_attempts = 0.0
    actual_ok = 0
    replayed = excluded = 0
    for record in records:
        if not figures.since <= record.ts <= figures.until:
            continue
        if record.cache_hit:
            excluded += 1
            continue
        key = group_key(record)
        gm = groups.get(key)
        if gm is None:
            excluded += 1
            continue
        replayed += 1
        actual_cost += record.cost
        actual_attempts += sum(1 for a in record.attempts if not a.refused)
        if record.ok:
            actual_ok += 1
            actual_latencies.append(record.latency_ms)
        tokens_in, tokens_out = _record_tokens(record, gm.mean_tokens)
        slot = volume.get(key)
        if slot is None:
            slot = volume[key] = [0.0, 0.0, 0.0]
        slot[0] += 1
        slot[1] += tokens_in
        slot[2] += tokens_out
    accumulators = [_Accumulator() for _ in policies]
    for policy, acc in zip(policies, accumulators, strict=True):
        for key, (count, tokens_in, tokens_out) in volume.items():
            gm = groups[key]
            assert gm is not None
            acc.requests += int(count)
            for probability, sequence in orderings(policy, gm.primary, gm.fallback, gm.plan.ordered, gm.cost_of):
                reach = probability  # the share of the group's requests that get this far
                shift = 0.0
                for candidate in sequence:
                    acc.attempts += count * reach
                    answered = reach * candidate.success
                    if answered > 0:
                        acc.success += count * answered
                        acc.cost += answered * (prices.price(candidate.target, tokens_in, tokens_out) or 0.0)
                        cid = id(candidate)
                        acc.candidates[cid] = candidate
                        acc.mixture[(cid, shift)] = acc.mixture.get((cid, shift), 0.0) + count * answered
                    acc.cost += count * reach * (1.0 - candidate.success) * candidate.fail_cost
                    shift += candidate.fail_latency
                    reach *= 1.0 - candidate.success
                    if reach <= 0:
                        break
    actual_latencies.sort()
    actual_outcome = Outcome(
        requests=replayed,
        cost=actual_cost,
        success_rate=actual_ok / replayed if replayed else 0.0,
        mean_latency_ms=mean(actual_latencies),
        p95_latency_ms=quantile(actual_latencies, 0.95),
        attempts_per_request=actual_attempts / replayed if replayed else 0.0,
    )
    outcomes = [acc.outcome() for acc in accumulators]
    best = _best(target, outcomes) if replayed else None
    candidates = tuple(
        CandidateResult(p.name, p.description, o, p.changes, best=i == best)
        for i, (p, o) in enumerate(zip(policies, outcomes, strict=True))
    )
    if unobserved:
        notes.append("never tried in the window, not replayed: " + ", ".join(sorted(map(str, unobserved))))
    if unpriced:
        notes.append("no configured or observed price (counted as free): " + ", ".join(sorted(map(str, unpriced))))
    if excluded:
        notes.append(f"{excluded} requests not replayed (cache hits, or no observed candidate)")
    return ReplayReport(
        target=target,
        since=figures.since,
        until=figures.until,
        span_seconds=figures.span_seconds,
        requests=replayed,
        excluded=excluded,
        actual=actual_outcome,
        candidates=candidates,
        notes=tuple(notes),
    )


def _best(target: str, outcomes: Sequence[Outcome]) -> int | None:
    """The index of the best outcome for ``target``, ties broken by the other figures."""
    if not outcomes:
        return None
    inf = math.inf

    def latency(o: Outcome) -> float:
        return o.p95_latency_ms if o.p95_latency_ms is not None else inf

    def mean_latency(o: Outcome) -> float:
        return o.mean_latency_ms if o.mean_latency_ms is not None else inf

    def key(i: int) -> tuple[float, ...]:
        o = outcomes[i]
        if target == "cost":
            return (_round(o.cost), -_round(o.success_rate), _round(latency(o)), i)
        if target == "performance":
            return (_round(latency(o)), _round(mean_latency(o)), -_round(o.success_rate), _round(o.cost), i)
        return (-_round(o.success_rate), _round(latency(o)), _round(o.cost), i)

    return min(range(len(outcomes)), key=key)


def _round(value: float) -> float:
    """Figures equal to 9 significant digits compare equal (float noise)."""
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.9g}")
