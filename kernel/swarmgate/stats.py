"""Per-target live statistics the kernel keeps in memory.

Cheap running figures, updated after every attempt, that the constraint
filters (``maxLatency``, ``minReliability``) and the built-in strategies
read. They are per process and start from priors; routing plugins may keep
richer models of their own.
"""

from __future__ import annotations

import attrs

#: Weight of the newest observation in the moving averages.
ALPHA = 0.2


@attrs.define
class TargetStats:
    """Running figures for one target. Latencies in milliseconds.

    ``reliability`` is an exponentially weighted success ratio (1.0 before
    any traffic); ``latency``/``ttft`` are moving averages (``None`` before
    any success); ``inflight`` counts attempts under way.
    """

    requests: int = 0
    failures: int = 0
    inflight: int = 0
    latency: float | None = None
    ttft: float | None = None
    reliability: float = 1.0
    cost: float = 0.0

    def record(self, ok: bool, latency: float, ttft: float | None = None, cost: float = 0.0) -> None:
        """Fold one finished attempt into the figures."""
        self.requests += 1
        self.cost += cost
        self.reliability += ALPHA * ((1.0 if ok else 0.0) - self.reliability)
        if not ok:
            self.failures += 1
            return
        self.latency = latency if self.latency is None else self.latency + ALPHA * (latency - self.latency)
        if ttft is not None:
            self.ttft = ttft if self.ttft is None else self.ttft + ALPHA * (ttft - self.ttft)

    def snapshot(self) -> dict[str, float | int | None]:
        """A JSON-ready copy."""
        return attrs.asdict(self)


def estimate_tokens(text: str) -> int:
    """A conservative token estimate for text when no tokenizer is at hand:
    one token per four characters, at least one for non-empty text."""
    return (len(text) + 3) // 4 if text else 0
