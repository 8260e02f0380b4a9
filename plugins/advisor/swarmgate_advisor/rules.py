"""The recommendation rules. Each is a pure function of the window's figures
and the config, returning recommendations as JSON-ready dicts:

* ``type`` -- ``cheaper-target``, ``latency-sla``, ``caching``,
  ``budget-burn`` or ``error-rate``;
* ``description`` -- what is wrong and what to do, in a sentence;
* ``impact`` -- quantified (``costSavedPerDay``, ``requestsAffected``,
  ``failedAttemptsAvoided``, ``projectedOverrun``, ... and ``percent``)
  plus ``summary``, a sentence;
* ``action`` -- a config change ``{"path": ..., "value": ...}`` or a list
  of them, to apply with ``qwen-swarm-enhanced config set PATH VALUE``
  (``commands`` lists those command lines);
* ``evidence`` -- the figures the rule read.

Rules act only on figures with at least ``minSamples`` observations.
"""

from __future__ import annotations

import json
import math
import shlex
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from swarmgate import SwarmgateConfig, Target
from swarmgate_advisor.duplicates import DuplicateTotals
from swarmgate_advisor.figures import TRANSIENT_KINDS, Figures, TargetFigures, quantile
from swarmgate_advisor.settings import AdvisorSettings, CacheModel
from swarmgate_advisor.topology import (
    WEIGHTED_BALANCERS,
    WRR,
    PriceBook,
    config_path,
    plan,
    priority_of,
    provider_weight,
)

CLI: Final = "qwen-swarm-enhanced"
#: Latency differences below this many milliseconds are noise, not "slower".
LATENCY_SLACK_MS: Final = 10.0
#: The order recommendations are listed in (then by impact).
ORDER: Final = ("budget-burn", "error-rate", "latency-sla", "cheaper-target", "caching")


def config_command(path: str, value: Any) -> str:
    """The CLI line that applies one change."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return f"{CLI} config set {path} {shlex.quote(text)}"


def recommendation(
    kind: str,
    description: str,
    impact: dict[str, Any],
    summary: str,
    action: dict[str, Any] | list[dict[str, Any]],
    evidence: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """One recommendation in the shared shape."""
    changes = action if isinstance(action, list) else [action]
    return {
        "type": kind,
        "description": description,
        "impact": {**impact, "summary": summary},
        "action": action,
        "commands": [config_command(c["path"], c["value"]) for c in changes],
        "evidence": evidence,
        **extra,
    }


def _money(amount: float) -> str:
    if amount == 0:
        return "$0"
    if abs(amount) >= 100:
        return f"${amount:,.0f}"
    if abs(amount) >= 1:
        return f"${amount:,.2f}"
    return f"${amount:.4g}"


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _share(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def _weights_action(config: SwarmgateConfig, weights: Mapping[str, float]) -> list[dict[str, Any]]:
    """Set these provider weights, switching the balancer to weighted round
    robin when the configured one ignores weights."""
    out: list[dict[str, Any]] = []
    if config.routing.load_balancing.algorithm not in WEIGHTED_BALANCERS:
        out.append({"path": "routing.loadBalancing.algorithm", "value": WRR})
    out += [{"path": config_path("routing", "loadBalancing", "weights", p), "value": w} for p, w in weights.items()]
    return out


# -- 1. a cheaper target, as reliable and as fast ------------------------------------


def cheaper_targets(figures: Figures, config: SwarmgateConfig, settings: AdvisorSettings) -> list[dict[str, Any]]:
    """For each traffic group, a target answering at least ``minSamples``
    requests that has a candidate of the same group (one the router could
    pick for it) costing at least ``minSavings`` less per request at the
    group's mean tokens, with a success rate at most
    ``reliabilityTolerance`` lower and a p95 latency at most
    ``latencyTolerance`` (plus :data:`LATENCY_SLACK_MS`) higher, both observed on the group's own traffic
    (at least ``minSamples`` attempts). The action shifts the pair's weights
    so the cheaper one takes ``shiftShare`` of their traffic (same priority
    tier when ``priority`` separates them); in an ordered route it puts the
    cheaper target before the other.
    Impact: cost saved per day at the observed volume."""
    prices = PriceBook(config, figures)
    out: list[dict[str, Any]] = []
    n_min = settings.min_samples
    for key in sorted(figures.groups):
        group = figures.groups[key]
        group_plan = plan(config, key)
        candidates = [t for t in group_plan.primary if t in group.targets]
        mean_in, mean_out = group.mean_tokens
        cost = {t: prices.price(t, mean_in, mean_out) for t in candidates}
        for current, answered in sorted(group.answered.items(), key=lambda kv: (-kv[1], str(kv[0]))):
            a = group.targets.get(current)
            cost_a = cost.get(current)
            if answered < n_min or a is None or a.attempts < n_min or not cost_a:
                continue
            best: tuple[float, Target, TargetFigures] | None = None
            for other in candidates:
                b = group.targets[other]
                cost_b = cost[other]
                if other == current or cost_b is None or b.attempts < n_min:
                    continue
                if not _as_good(a, b, settings) or cost_b > cost_a * (1.0 - settings.min_savings):
                    continue
                if best is None or cost_b < best[0]:
                    best = (cost_b, other, b)
            if best is None:
                continue
            found = _cheaper(figures, config, settings, key, group_plan.ordered, current, a, cost_a, *best)
            if found is not None:
                out.append(found)
    return out


def _as_good(a: TargetFigures, b: TargetFigures, settings: AdvisorSettings) -> bool:
    rate_a, rate_b = a.success_rate, b.success_rate
    p95_a, p95_b = a.latency(0.95), b.latency(0.95)
    if rate_a is None or rate_b is None or p95_a is None or p95_b is None:
        return False
    slower_ok = p95_a * (1.0 + settings.latency_tolerance) + LATENCY_SLACK_MS
    return rate_b >= rate_a - settings.reliability_tolerance and p95_b <= slower_ok


def _cheaper(
    figures: Figures,
    config: SwarmgateConfig,
    settings: AdvisorSettings,
    key: str,
    ordered: bool,
    current: Target,
    a: TargetFigures,
    cost_a: float,
    cost_b: float,
    cheaper: Target,
    b: TargetFigures,
) -> dict[str, Any] | None:
    group = figures.groups[key]
    n_a = group.answered[current]
    n_b = group.answered.get(cheaper, 0)
    share = settings.shift_share
    action: dict[str, Any] | list[dict[str, Any]]
    how: str
    if key in config.routes and ordered:
        order = list(plan(config, key).primary)
        if order.index(cheaper) < order.index(current):
            return None  # already tried first: the current one answers its failures
        targets = [str(t) for t in order if t != cheaper]
        targets.insert(targets.index(str(current)), str(cheaper))
        action = {"path": config_path("routes", key, "targets"), "value": targets}
        moved = float(n_a)
        how = f"try {cheaper} before {current} in route {key!r}"
    elif current.provider == cheaper.provider:
        return None  # two models of one provider in an unordered route: no weight separates them
    else:
        moved = n_a - (1.0 - share) * (n_a + n_b)
        if moved < 1.0:
            return None  # the cheaper one already takes its share
        total = provider_weight(config, current.provider) + provider_weight(config, cheaper.provider)
        if total <= 0:
            total = 2.0
        changes = _weights_action(
            config,
            {cheaper.provider: round(share * total, 3), current.provider: round((1.0 - share) * total, 3)},
        )
        if config.routing.strategy == "priority":
            p_a, p_b = priority_of(config, current.provider), priority_of(config, cheaper.provider)
            if p_b > p_a:
                changes.append({"path": config_path("providers", cheaper.provider, "priority"), "value": p_a})
        action = changes
        how = (
            f"shift weight to {cheaper.provider} so it takes {share:.0%} of the traffic "
            f"{current.provider} and {cheaper.provider} share"
        )
    saved = moved * (cost_a - cost_b)
    per_day = figures.per_day(saved)
    percent = _share(saved, group.cost)
    impact = {
        "costSavedPerDay": round(per_day, 6),
        "costSaved": round(saved, 6),
        "percent": percent,
        "requestsMovedPerDay": round(figures.per_day(moved), 1),
    }
    summary = (
        f"about {_money(per_day)} a day saved ({percent:g}% of the cost of {key!r}) by moving "
        f"{moved:.0f} of {n_a} requests from {current} ({_money(cost_a)} each) to {cheaper} ({_money(cost_b)} each)"
    )
    description = (
        f"{cheaper} serves {key!r} as reliably ({_pct(b.success_rate)} vs {_pct(a.success_rate)}) and as fast "
        f"(p95 {b.latency(0.95):.0f} ms vs {a.latency(0.95):.0f} ms) as {current} for "
        f"{(1.0 - cost_b / cost_a):.0%} less per request: {how}"
    )
    mean_in, mean_out = group.mean_tokens
    evidence = {
        "group": key,
        "from": str(current),
        "to": str(cheaper),
        "costPerRequest": {str(current): cost_a, str(cheaper): cost_b},
        "successRate": {str(current): a.success_rate, str(cheaper): b.success_rate},
        "p95LatencyMs": {str(current): _ms(a.latency(0.95)), str(cheaper): _ms(b.latency(0.95))},
        "attempts": {str(current): a.attempts, str(cheaper): b.attempts},
        "answered": {str(current): n_a, str(cheaper): n_b},
        "meanTokens": {"input": round(mean_in, 1), "output": round(mean_out, 1)},
        "groupCost": group.cost,
        "spanSeconds": figures.span_seconds,
    }
    return recommendation("cheaper-target", description, impact, summary, action, evidence)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


# -- 2. latency SLA -------------------------------------------------------------------


def latency_sla(figures: Figures, config: SwarmgateConfig, settings: AdvisorSettings) -> list[dict[str, Any]]:
    """Each provider whose p95 latency over its successful attempts (at
    least ``minSamples``) exceeds its SLA (``latencySla``, else
    ``routing.sla.maxLatency``). The action lowers its weight in proportion
    (``SLA / p95``, at least a tenth of it) and, when at least half of its
    attempts were streamed, sets ``timeouts.firstToken`` to the SLA so a
    slow start fails over. Impact: the requests answered over the SLA."""
    out: list[dict[str, Any]] = []
    for provider, targets in sorted(figures.providers().items()):
        sla = settings.sla_for(provider, config)
        if sla is None or provider not in config.providers:
            continue  # no SLA, or a provider the config no longer has: nothing to change
        latencies = sorted(x for t in targets for x in t.latencies)
        if len(latencies) < settings.min_samples:
            continue
        p95 = quantile(latencies, 0.95)
        assert p95 is not None
        if p95 <= sla:
            continue
        ttfts = sorted(x for t in targets for x in t.ttfts)
        attempts = sum(t.attempts for t in targets)
        streams = sum(t.streams for t in targets)
        affected = sum(1 for x in latencies if x > sla)
        weight = provider_weight(config, provider)
        new_weight = round(weight * max(0.1, sla / p95), 3)
        changes = _weights_action(config, {provider: new_weight})
        streamed = attempts > 0 and streams * 2 >= attempts
        provider_config = config.providers.get(provider)
        current_first = provider_config.timeouts.first_token if provider_config is not None else None
        if current_first is None:
            current_first = config.routing.timeouts.first_token
        if streamed and (current_first is None or current_first > sla):
            changes.append({"path": config_path("providers", provider, "timeouts", "firstToken"), "value": sla})
        per_day = figures.per_day(affected)
        percent = _share(affected, len(latencies))
        impact = {
            "requestsAffected": affected,
            "requestsAffectedPerDay": round(per_day, 1),
            "percent": percent,
        }
        summary = f"{affected} answers ({percent:g}% of {provider}'s, about {per_day:.0f} a day) took longer than {sla:.0f} ms"
        description = (
            f"{provider} breaches its latency SLA: p95 {p95:.0f} ms over {len(latencies)} answers, SLA {sla:.0f} ms; "
            f"lower its weight from {weight:g} to {new_weight:g}"
            + (
                f" and fail over when the first token takes more than {sla:.0f} ms"
                if len(changes) > 1 and streamed
                else ""
            )
        )
        evidence = {
            "provider": provider,
            "slaMs": sla,
            "p50LatencyMs": _ms(quantile(latencies, 0.5)),
            "p95LatencyMs": _ms(p95),
            "p99LatencyMs": _ms(quantile(latencies, 0.99)),
            "p95TtftMs": _ms(quantile(ttfts, 0.95)),
            "answers": len(latencies),
            "streamedAttempts": streams,
            "attempts": attempts,
            "weight": weight,
        }
        out.append(recommendation("latency-sla", description, impact, summary, changes, evidence))
    return out


# -- 3. caching -------------------------------------------------------------------


def caching(
    totals: DuplicateTotals, figures: Figures, cache: CacheModel, settings: AdvisorSettings, window_seconds: float
) -> list[dict[str, Any]]:
    """With caching off: when at least ``minSamples`` requests were
    fingerprinted and the simulated cache (``optimization.caching``'s ttl
    and maxSize, else the defaults) would have answered at least
    ``duplicateThreshold`` of them, enable caching. Impact: the cost the
    hits would have saved, per day."""
    if cache.enabled or totals.requests < settings.min_samples or totals.hits == 0:
        return []
    ratio = totals.hits / totals.requests
    if ratio < settings.duplicate_threshold:
        return []
    if figures.records:
        per_day = figures.per_day(totals.saved)
        served_per_day = figures.per_day(totals.hits)
    else:
        factor = 86_400.0 / max(window_seconds, 3600.0)
        per_day, served_per_day = totals.saved * factor, totals.hits * factor
    ttl = int(cache.ttl_ms) if cache.ttl_ms.is_integer() else cache.ttl_ms
    action: dict[str, Any] | list[dict[str, Any]]
    if not cache.present:
        action = {
            "path": "optimization.caching",
            "value": {"enabled": True, "ttl": ttl, "maxSize": cache.max_size, "strategy": "lru"},
        }
    else:
        action = [{"path": "optimization.caching.enabled", "value": True}]
    percent = _share(totals.saved, figures.cost) if figures.cost else None
    impact = {
        "costSavedPerDay": round(per_day, 6),
        "costSaved": round(totals.saved, 6),
        "percent": percent,
        "requestsServedPerDay": round(served_per_day, 1),
    }
    summary = (
        f"{totals.hits} of {totals.requests} requests ({ratio:.0%}) repeated a prompt a cache would still have held: "
        f"about {_money(per_day)} a day"
        + (f" ({percent:g}% of the spend)" if percent is not None else "")
        + " and their upstream latency saved"
    )
    description = (
        f"caching is off but {ratio:.0%} of requests were exact repeats within {ttl / 60000:g} minutes: "
        f"enable optimization.caching (ttl {ttl} ms, maxSize {cache.max_size})"
    )
    evidence = {
        "requests": totals.requests,
        "cacheable": totals.cacheable,
        "notCacheable": totals.requests - totals.cacheable,
        "hits": totals.hits,
        "hitRatio": round(ratio, 4),
        "costSaved": totals.saved,
        "ttlMs": ttl,
        "maxSize": cache.max_size,
        "cacheNonDeterministic": cache.non_deterministic,
        "byModel": {
            m: {"requests": r, "cacheable": c, "hits": h, "costSaved": s} for m, (r, c, h, s) in totals.by_model.items()
        },
        "topRepeats": [
            {"fingerprint": fp[:16], "model": model, "hits": hits, "costSaved": saved}
            for fp, model, hits, saved in totals.top
        ],
    }
    return [recommendation("caching", description, impact, summary, action, evidence)]


# -- 4. budget burn ---------------------------------------------------------------


@attrs.frozen
class BudgetStatus:
    """One budget as the rule reads it: its limit and spend in the current
    period ``[start, end)`` (unix seconds), and the config path of its limit."""

    name: str
    scope: str
    subject: str | None
    period: str
    limit: float
    spent: float
    start: float
    end: float
    path: str | None


def limit_path(scope: str, subject: str | None, period: str) -> str | None:
    """Where the limit of a budget is configured."""
    if scope == "global":
        return config_path("routing", "budgetLimits", period)
    if scope == "provider" and subject:
        return config_path("providers", subject, "budget", period)
    if scope == "caller" and subject:
        return config_path("routing", "budgetLimits", "callers", subject, period)
    return None


def period_bounds(period: str, now: float) -> tuple[float, float]:
    """The UTC calendar day or month containing ``now``."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day.timestamp(), day.timestamp() + 86_400.0
    start = day.replace(day=1)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start.timestamp(), end.timestamp()


def _iso(ts: float) -> str:
    """ISO 8601 UTC to the second."""
    return datetime.fromtimestamp(round(ts), UTC).isoformat().replace("+00:00", "Z")


def budget_burn(
    budgets: Sequence[BudgetStatus],
    config: SwarmgateConfig,
    settings: AdvisorSettings,
    now: float,
    cost_ratio: float | None,
    strategies: Sequence[str],
) -> list[dict[str, Any]]:
    """Each budget whose spend so far (at least ``budgetMinSpent`` of the
    limit) projects, at the period's burn rate, past its limit before the
    period ends. The action switches ``routing.strategy`` to
    ``cost-optimized`` when that is installed, not already configured, and
    its replayed cost (``cost_ratio`` of today's) would keep the projection
    under the limit; otherwise it raises the limit to the projected spend
    (the other action is listed under ``alternatives``). Impact: the
    projected overrun and when the limit runs out."""
    out: list[dict[str, Any]] = []
    for budget in budgets:
        if budget.limit <= 0 or budget.spent < settings.budget_min_spent * budget.limit:
            continue
        elapsed = max(now - budget.start, 60.0)
        remaining = max(budget.end - now, 0.0)
        burn = budget.spent / elapsed
        projected = budget.spent + burn * remaining
        if projected <= budget.limit:
            continue
        exhausts = now if budget.spent >= budget.limit else now + (budget.limit - budget.spent) / burn
        overrun = projected - budget.limit
        raise_to = math.ceil(round(projected * 100.0, 6)) / 100.0  # cents, up (float noise aside)
        raise_change = {"path": budget.path, "value": raise_to} if budget.path is not None else None
        switch: dict[str, Any] | None = None
        switched_projection: float | None = None
        if (
            config.routing.strategy != "cost-optimized"
            and "cost-optimized" in strategies
            and cost_ratio is not None
            and cost_ratio < 1.0
        ):
            switched_projection = budget.spent + burn * cost_ratio * remaining
            if switched_projection <= budget.limit:
                switch = {"path": "routing.strategy", "value": "cost-optimized"}
        if switch is not None:
            action, alternatives = switch, [raise_change] if raise_change is not None else []
            how = "switch routing to cost-optimized" + (
                f" (replayed cost {cost_ratio:.0%} of today's keeps it under the limit)"
                if cost_ratio is not None
                else ""
            )
        elif raise_change is not None:
            action, alternatives = raise_change, []
            how = f"raise the limit to {_money(raise_to)}"
        else:
            continue
        hours_left = (exhausts - now) / 3600.0
        impact = {
            "projectedSpend": round(projected, 6),
            "projectedOverrun": round(overrun, 6),
            "percent": _share(overrun, budget.limit),
            "exhaustsAt": _iso(exhausts),
            "hoursUntilExhausted": round(hours_left, 2),
        }
        summary = (
            f"at {_money(burn * 3600)}/h the {budget.period} budget {budget.name!r} reaches its {_money(budget.limit)} "
            f"limit at {_iso(exhausts)} and would end the period at {_money(projected)} ({_money(overrun)} over)"
        )
        state = "has run out" if budget.spent >= budget.limit else "will run out before the period ends"
        description = (
            f"the {budget.period} budget {budget.name!r} {state} "
            f"({_money(budget.spent)} of {_money(budget.limit)} spent): {how}"
        )
        evidence = {
            "budget": budget.name,
            "scope": budget.scope,
            "subject": budget.subject,
            "period": budget.period,
            "limit": budget.limit,
            "spent": budget.spent,
            "burnRatePerHour": burn * 3600.0,
            "periodStart": _iso(budget.start),
            "resetsAt": _iso(budget.end),
            "costOptimizedRatio": cost_ratio,
            "projectedWithCostOptimized": switched_projection,
        }
        out.append(
            recommendation("budget-burn", description, impact, summary, action, evidence, alternatives=alternatives)
        )
    return out


# -- 5. error rate ----------------------------------------------------------------


@attrs.frozen
class BreakerModel:
    """The breaker the rule suggests (and simulates over the log)."""

    failure_threshold: int = 5
    failure_rate: float = 0.5
    minimum_requests: int = 10
    window_s: float = 60.0
    timeout_s: float = 60.0
    success_threshold: int = 2

    def config(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "failureThreshold": self.failure_threshold,
            "failureRateThreshold": self.failure_rate,
            "minimumRequests": self.minimum_requests,
            "window": int(self.window_s * 1000),
            "timeout": int(self.timeout_s * 1000),
        }


@attrs.frozen
class BreakerReplay:
    """What the simulated breaker would have done to one target's attempts."""

    opened: int = 0
    avoided_failures: int = 0
    diverted_successes: int = 0


def simulate_breaker(events: Sequence[tuple[float, bool, str | None]], model: BreakerModel) -> BreakerReplay:
    """Replay a target's attempts ``(time, ok, kind)`` (time order) through
    the breaker of swarmgate-breaker: it opens after ``failureThreshold``
    consecutive transient failures or when at least ``minimumRequests``
    attempts of the last ``window`` failed at ``failureRate`` or more; while
    open (``timeout``) attempts are ruled out (a failure avoided, or a success
    that goes elsewhere); then one probe at a time: ``successThreshold``
    successes close it, a failure reopens it."""
    opened = avoided = diverted = 0
    streak = 0
    window: deque[tuple[float, bool]] = deque()
    failures = 0  # counted failures in window
    open_until: float | None = None
    half_ok = 0
    for at, ok, kind in events:
        counted_failure = not ok and kind in TRANSIENT_KINDS
        if open_until is not None:
            if at < open_until:
                if counted_failure:
                    avoided += 1
                elif ok:
                    diverted += 1
                continue
            # half-open: this attempt is a probe
            if counted_failure:
                open_until = at + model.timeout_s
                opened += 1
                half_ok = 0
            elif ok:
                half_ok += 1
                if half_ok >= model.success_threshold:
                    open_until = None
                    half_ok = 0
                    streak = 0
                    window.clear()
                    failures = 0
            continue
        window.append((at, counted_failure))
        failures += counted_failure
        while window and window[0][0] <= at - model.window_s:
            failures -= window.popleft()[1]
        if counted_failure:
            streak += 1
        elif ok:
            streak = 0
        if streak >= model.failure_threshold or (
            len(window) >= model.minimum_requests and failures / len(window) >= model.failure_rate
        ):
            open_until = at + model.timeout_s
            opened += 1
            streak = 0
            window.clear()
            failures = 0
    return BreakerReplay(opened, avoided, diverted)


def _breaker_configured(config: SwarmgateConfig) -> bool:
    raw = config.section("routing.circuitBreaker")
    if isinstance(raw, Mapping):
        return raw.get("enabled", True) is not False
    return config.section("routing.fallback.circuitBreaker") is True


def error_rate(figures: Figures, config: SwarmgateConfig, settings: AdvisorSettings) -> list[dict[str, Any]]:
    """Each provider whose transient failure rate over its attempts (at
    least ``minSamples``) reaches ``errorRate``. Without a circuit breaker
    configured, and when a breaker replayed over its attempts would have cut
    some failures off, the action turns ``routing.circuitBreaker`` on
    (impact: the failed attempts it would have avoided). Otherwise (a breaker
    is on, or the failures are too scattered to trip one) it lowers the
    provider's weight by its failure rate (impact: the failed attempts the
    traffic moved away would have been)."""
    out: list[dict[str, Any]] = []
    breaker_on = _breaker_configured(config)
    model = BreakerModel()
    for provider, targets in sorted(figures.providers().items()):
        attempts = sum(t.attempts for t in targets)
        faults = sum(t.transient_faults for t in targets)
        if attempts < settings.min_samples or faults == 0 or provider not in config.providers:
            continue
        rate = faults / attempts
        if rate < settings.error_rate:
            continue
        by_kind: dict[str, int] = {}
        for t in targets:
            for kind, count in t.by_kind.items():
                if kind in TRANSIENT_KINDS:
                    by_kind[kind] = by_kind.get(kind, 0) + count
        replays = {str(t.target): simulate_breaker(t.events, model) for t in targets}
        avoided = sum(r.avoided_failures for r in replays.values())
        evidence: dict[str, Any] = {
            "provider": provider,
            "attempts": attempts,
            "failures": faults,
            "failureRate": round(rate, 4),
            "byKind": dict(sorted(by_kind.items())),
            "targets": {
                str(t.target): {"attempts": t.attempts, "failures": t.transient_faults, "successRate": t.success_rate}
                for t in targets
            },
            "breakerConfigured": breaker_on,
        }
        action: dict[str, Any] | list[dict[str, Any]]
        if not breaker_on and avoided > 0:
            action = {"path": "routing.circuitBreaker", "value": model.config()}
            evidence["breakerReplay"] = {k: attrs.asdict(v) for k, v in replays.items()}
            how = (
                f"turn the circuit breaker on: replayed over the log it would have opened "
                f"{sum(r.opened for r in replays.values())} times"
            )
            avoided_attempts = float(avoided)
        else:
            weight = provider_weight(config, provider)
            new_weight = round(weight * (1.0 - rate), 3)
            action = _weights_action(config, {provider: new_weight})
            how = f"lower its weight from {weight:g} to {new_weight:g}"
            avoided_attempts = faults * (1.0 - (new_weight / weight if weight > 0 else 1.0))
        per_day = figures.per_day(avoided_attempts)
        percent = _share(avoided_attempts, faults)
        impact = {
            "failedAttemptsAvoided": round(avoided_attempts, 1),
            "failedAttemptsAvoidedPerDay": round(per_day, 1),
            "percent": percent,
        }
        summary = (
            f"about {avoided_attempts:.0f} of {faults} failed attempts ({percent:g}%, {per_day:.0f} a day) avoided"
        )
        description = f"{provider} failed {rate:.1%} of {attempts} attempts ({_kinds(by_kind)}): {how}"
        out.append(recommendation("error-rate", description, impact, summary, action, evidence))
    return out


def _kinds(by_kind: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0])))


def rank(recommendations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Recommendations in :data:`ORDER`, each type by its impact (largest first)."""

    def size(rec: dict[str, Any]) -> float:
        impact = rec["impact"]
        for key in ("projectedOverrun", "failedAttemptsAvoided", "requestsAffected", "costSavedPerDay"):
            value = impact.get(key)
            if isinstance(value, int | float):
                return float(value)
        return 0.0

    return sorted(recommendations, key=lambda r: (ORDER.index(r["type"]), -size(r)))
