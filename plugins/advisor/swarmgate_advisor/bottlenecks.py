"""Bottleneck analysis: where the recorded traffic loses time, fails, or
multiplies its attempts. Each finding is a dict with ``type``, ``sentence``
(what it means, in words) and ``figures`` (the numbers behind it):

* ``slow-target`` -- the slowest targets by p95 latency of their answers;
* ``slow-first-token`` -- the slowest by p95 time to first token (streams);
* ``failure-hotspot`` -- the (target, error kind) pairs that failed most;
* ``refusals`` -- attempts refused locally (budgets, rate limits) per target;
* ``amplification`` -- attempts per request (failover), overall and for the
  traffic groups that failed over most, with what the extra attempts cost;
* ``queue-depth`` -- requests in flight per provider (live only).

Latency and time-to-first-token findings need ``minSamples`` answers of a target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from swarmgate_advisor.figures import Figures, quantile

#: How many entries each kind of finding lists at most.
TOP: Final = 3


def _ordinal(i: int) -> str:
    return "the slowest" if i == 0 else f"the {i + 1}{'nd' if i == 1 else 'rd' if i == 2 else 'th'} slowest"


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def analyse(
    figures: Figures, *, min_samples: int, inflight: Mapping[str, int] | None = None, top: int = TOP
) -> dict[str, Any]:
    """The findings over ``figures`` (see the module docstring), with the
    window they cover."""
    findings: list[dict[str, Any]] = []
    findings += _slow(figures, min_samples, top)
    findings += _slow_first_token(figures, min_samples, top)
    findings += _hotspots(figures, top + 2)
    findings += _refusals(figures)
    findings += _amplification(figures, top)
    if inflight is not None:
        findings.append(_queue(inflight))
    return {
        "since": figures.since,
        "until": figures.until,
        "requests": figures.requests,
        "cacheHits": figures.cache_hits,
        "findings": findings,
    }


def _slow(figures: Figures, min_samples: int, top: int) -> list[dict[str, Any]]:
    rows = [
        (t, p95)
        for t in figures.targets.values()
        if len(t.latencies) >= min_samples and (p95 := t.latency(0.95)) is not None
    ]
    if not rows:
        return []
    rows.sort(key=lambda r: (-r[1], str(r[0].target)))
    p95s = sorted(p for _, p in rows)
    median = quantile(p95s, 0.5) or 0.0
    out = []
    for i, (t, p95) in enumerate(rows[:top]):
        p50 = t.latency(0.5)
        ratio = p95 / median if median > 0 else None
        sentence = (
            f"{t.target} is {_ordinal(i)} target: p95 {p95:.0f} ms (p50 {p50:.0f} ms) over {len(t.latencies)} answers"
        )
        if ratio is not None and len(rows) > 1:
            sentence += f", {ratio:.1f}x the median target's p95"
        out.append(
            {
                "type": "slow-target",
                "sentence": sentence,
                "figures": {
                    "target": str(t.target),
                    "p50LatencyMs": _round(p50),
                    "p95LatencyMs": _round(p95),
                    "p99LatencyMs": _round(t.latency(0.99)),
                    "meanLatencyMs": _round(t.mean_latency),
                    "answers": len(t.latencies),
                    "medianTargetP95Ms": _round(median),
                },
            }
        )
    return out


def _slow_first_token(figures: Figures, min_samples: int, top: int) -> list[dict[str, Any]]:
    rows = [
        (t, p95) for t in figures.targets.values() if len(t.ttfts) >= min_samples and (p95 := t.ttft(0.95)) is not None
    ]
    rows.sort(key=lambda r: (-r[1], str(r[0].target)))
    out = []
    for t, p95 in rows[:top]:
        p50 = t.ttft(0.5)
        out.append(
            {
                "type": "slow-first-token",
                "sentence": f"{t.target} starts slowly: p95 time to first token {p95:.0f} ms (p50 {p50:.0f} ms) over {len(t.ttfts)} streamed answers",
                "figures": {
                    "target": str(t.target),
                    "p50TtftMs": _round(p50),
                    "p95TtftMs": _round(p95),
                    "streamedAnswers": len(t.ttfts),
                },
            }
        )
    return out


def _hotspots(figures: Figures, top: int) -> list[dict[str, Any]]:
    total = sum(sum(t.by_kind.values()) for t in figures.targets.values())
    rows = [(t, kind, count) for t in figures.targets.values() for kind, count in t.by_kind.items() if count > 0]
    rows.sort(key=lambda r: (-r[2], str(r[0].target), r[1]))
    out = []
    for t, kind, count in rows[:top]:
        tried = t.attempts + t.request_errors
        share_target = count / tried if tried else 0.0
        share_all = count / total if total else 0.0
        out.append(
            {
                "type": "failure-hotspot",
                "sentence": (
                    f"{t.target} failed {count} times with {kind}: {share_target:.0%} of its attempts, "
                    f"{share_all:.0%} of all failures"
                ),
                "figures": {
                    "target": str(t.target),
                    "errorKind": kind,
                    "failures": count,
                    "attempts": tried,
                    "shareOfTarget": round(share_target, 4),
                    "shareOfAllFailures": round(share_all, 4),
                },
            }
        )
    return out


def _refusals(figures: Figures) -> list[dict[str, Any]]:
    refused = {str(t.target): t.refused for t in figures.targets.values() if t.refused}
    if not refused:
        return []
    total = sum(refused.values())
    worst = max(refused.items(), key=lambda kv: (kv[1], kv[0]))
    return [
        {
            "type": "refusals",
            "sentence": (
                f"{total} attempts were refused locally before reaching a provider (budgets, rate limits); "
                f"most at {worst[0]} ({worst[1]})"
            ),
            "figures": {"refused": total, "byTarget": dict(sorted(refused.items()))},
        }
    ]


def _amplification(figures: Figures, top: int) -> list[dict[str, Any]]:
    requests = sum(g.requests - g.cache_hits for g in figures.groups.values())
    if requests == 0:
        return []
    attempts = sum(g.attempts for g in figures.groups.values())
    failovers = sum(g.failovers for g in figures.groups.values())
    extra_cost = sum(g.extra_attempt_cost for g in figures.groups.values())
    extra_latency = sum(g.extra_attempt_latency for g in figures.groups.values())
    per_request = attempts / requests
    out = [
        {
            "type": "amplification",
            "sentence": (
                f"{per_request:.2f} attempts per request: {failovers} of {requests} requests "
                f"({failovers / requests:.0%}) needed more than one attempt"
                + (
                    f"; the extra attempts took {extra_latency / failovers:.0f} ms per such request"
                    f" and cost {extra_cost:.4g} in all"
                    if failovers
                    else ""
                )
            ),
            "figures": {
                "group": None,
                "requests": requests,
                "attempts": attempts,
                "attemptsPerRequest": round(per_request, 4),
                "failovers": failovers,
                "extraAttemptCost": extra_cost,
                "extraLatencyMsPerFailover": _round(extra_latency / failovers) if failovers else 0.0,
            },
        }
    ]
    groups = [g for g in figures.groups.values() if g.failovers]
    groups.sort(key=lambda g: (-g.failovers / max(g.requests - g.cache_hits, 1), g.key))
    if len(figures.groups) > 1:
        for g in groups[:top]:
            n = g.requests - g.cache_hits
            out.append(
                {
                    "type": "amplification",
                    "sentence": (
                        f"requests for {g.key!r} took {g.attempts / n:.2f} attempts each: {g.failovers} of {n} "
                        f"({g.failovers / n:.0%}) failed over, adding {g.extra_attempt_latency / g.failovers:.0f} ms each"
                    ),
                    "figures": {
                        "group": g.key,
                        "requests": n,
                        "attempts": g.attempts,
                        "attemptsPerRequest": round(g.attempts / n, 4),
                        "failovers": g.failovers,
                        "extraAttemptCost": g.extra_attempt_cost,
                        "extraLatencyMsPerFailover": _round(g.extra_attempt_latency / g.failovers),
                    },
                }
            )
    return out


def _queue(inflight: Mapping[str, int]) -> dict[str, Any]:
    busy = {p: n for p, n in sorted(inflight.items()) if n > 0}
    total = sum(inflight.values())
    if busy:
        worst = max(busy.items(), key=lambda kv: (kv[1], kv[0]))
        sentence = f"{total} requests in flight now; the deepest queue is {worst[0]} with {worst[1]}"
    else:
        sentence = "no request is in flight now"
    return {"type": "queue-depth", "sentence": sentence, "figures": {"inflight": dict(sorted(inflight.items()))}}
