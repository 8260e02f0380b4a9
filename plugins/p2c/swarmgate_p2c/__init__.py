"""swarmgate-p2c: the ``p2c-ewma`` load balancer.

Power of two choices on a decaying latency average, as in Finagle's
``P2CPeakEwma``: for each request two distinct targets of the tier are drawn
at random and the one with the lower *score* goes first; the others follow
by score. Drawing two instead of taking the global best avoids herding:
every gateway instance (and every request in a burst) does not pile onto
the same momentarily-best target.

The score of a target is ``latency x (inflight + 1)``:

* ``latency`` is a *peak EWMA* of its attempts' latencies (milliseconds): a
  sample above the current average replaces it at once (a slowdown shows
  immediately), a lower one is blended in with weight ``1 - exp(-dt/decay)``
  (``dt``: seconds since the previous sample), and between samples the
  average decays toward 0 with the same time constant, so a target that got
  no traffic for a while is tried again instead of starving. A failed
  attempt counts as a sample of at least ``failurePenalty`` ms.
* ``inflight`` is the kernel's count of this target's attempts under way in
  this process (``manager.stats(target).inflight``).
* A target with no latency yet scores 0 when idle (so it is probed) and
  ``PENALTY_MS + inflight`` when busy (an unknown target already loaded is
  not piled onto).

The samples come from :class:`P2CObserver`, this distribution's hook plugin
(entry point ``p2c-ewma`` in ``swarmgate``), which attaches itself to the
balancer in ``plugin_setup``. Without it (blocked by
``SWARMGATE_DISABLE_PLUGINS``, say) the balancer uses the kernel's own
moving average (``manager.stats(target).latency``; per attempt, not
decaying with time, successes only).

All state is in memory, per process: the averages (one small record per
target) and the random generator. It is not shared through the
``StateStore``: the balancer runs synchronously on every request and must
not do I/O, and each gateway instance measures the latency it itself sees.

The public API is exactly ``__all__``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from swarmgate import (
    CompletionRequest,
    CompletionResponse,
    ConfigError,
    SwarmgateConfig,
    Target,
    hookimpl,
    parse_section,
)
from swarmgate.config import InvalidValue

if TYPE_CHECKING:
    from swarmgate import ProviderManager, RequestContext

__all__ = ["MAX_TARGETS", "PENALTY_MS", "SECTION", "P2CEwmaBalancer", "P2CObserver", "P2CSettings", "load_settings"]

#: Where the settings live until ``routing.loadBalancing`` accepts them.
SECTION: Final = "plugins.p2c"

#: The most targets whose averages are kept; past it every average is
#: dropped and relearned (a bound on memory: a provider without a model list
#: serves any model name a caller sends, each a target of its own).
MAX_TARGETS = 4096

#: The score of a busy target with no latency sample yet (plus its in-flight
#: count): worse than any realistic ``latency x (inflight + 1)``.
PENALTY_MS: Final = 1e7


def _check_decay(_instance: object, _attribute: object, value: float) -> None:
    if not value > 0 or math.isinf(value):
        raise InvalidValue("decay", f"must be a positive number of seconds, got {value:g}")


def _check_penalty(_instance: object, _attribute: object, value: float) -> None:
    if not value >= 0 or math.isinf(value):
        raise InvalidValue("failurePenalty", f"must be a non-negative number of milliseconds, got {value:g}")


@attrs.frozen
class P2CSettings:
    """The balancer's settings (camelCase in JSON).

    ``decay``: the averages' time constant in seconds (an observation's
    weight falls to 1/e after this long). ``failure_penalty``: milliseconds
    a failed attempt counts as at least (``0``: failures are not observed).
    ``seed``: seeds the random draws (``None``: a fresh seed per manager).
    """

    decay: float = attrs.field(default=10.0, validator=_check_decay)
    failure_penalty: float = attrs.field(default=5000.0, validator=_check_penalty)
    seed: int | None = None


def load_settings(config: SwarmgateConfig) -> P2CSettings:
    """The settings from ``plugins.p2c``, or from the extra keys of
    ``routing.loadBalancing`` once the kernel keeps them there
    (``LoadBalancingConfig.settings``). Raises :class:`ConfigError` naming
    the path of every bad value, or when both places are used."""
    inline: Mapping[str, Any] | None = getattr(config.routing.load_balancing, "settings", None)
    section = config.section(SECTION)
    if inline:
        if section is not None:
            raise ConfigError(
                [(SECTION, "the p2c settings are already given in routing.loadBalancing; keep them in one place")],
                source=config.source,
            )
        return parse_section(P2CSettings, inline, "routing.loadBalancing", source=config.source)
    return parse_section(P2CSettings, section, SECTION, source=config.source)


class _PeakEwma:
    """One target's average: ``cost`` (ms) as of ``stamp`` (clock seconds)."""

    __slots__ = ("cost", "stamp")

    def __init__(self, cost: float, stamp: float) -> None:
        self.cost = cost
        self.stamp = stamp


class P2CEwmaBalancer:
    """Balancer ``p2c-ewma`` (entry point in ``swarmgate.balancers``).

    Built once per manager as ``cls(manager)``; reads its settings then (see
    :func:`load_settings`), so a bad value fails ``initialize()``. ``clock``
    (seconds, monotonic) and ``rng`` may be injected for tests; ``rng``
    defaults to ``random.Random(settings.seed)``. :meth:`order` is
    synchronous and does no I/O; with a fixed seed and clock it is
    deterministic.
    """

    settings_class = P2CSettings

    def __init__(
        self,
        manager: ProviderManager,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._manager = manager
        self.settings = load_settings(manager.config)
        self._decay = self.settings.decay
        self._penalty = self.settings.failure_penalty
        self._clock = clock
        self._random = (rng if rng is not None else random.Random(self.settings.seed)).random
        self._averages: dict[Target, _PeakEwma] = {}
        self._observed = False

    @property
    def observed(self) -> bool:
        """Whether the balancer's own averages are fed (an observer is
        attached); otherwise it reads the kernel's moving averages."""
        return self._observed

    def attach(self) -> None:
        """Switch to the balancer's own averages: from now on every attempt
        is reported through :meth:`observe`. Called by :class:`P2CObserver`."""
        self._observed = True

    def observe(self, target: Target, latency: float, *, failed: bool = False) -> None:
        """Fold one attempt of ``latency`` ms into ``target``'s average; a
        failed attempt counts as at least ``failurePenalty`` ms (and is
        ignored when that is 0)."""
        if failed:
            if not self._penalty:
                return
            latency = max(latency, self._penalty)
        now = self._clock()
        average = self._averages.get(target)
        if average is None:
            if len(self._averages) >= MAX_TARGETS:
                self._averages.clear()
            self._averages[target] = _PeakEwma(latency, now)
            return
        weight = math.exp(-max(now - average.stamp, 0.0) / self._decay)
        decayed = average.cost * weight
        average.cost = latency if latency > decayed else decayed + latency * (1.0 - weight)
        average.stamp = now

    def latency(self, target: Target, now: float | None = None) -> float | None:
        """``target``'s current latency estimate in ms (decayed to ``now``,
        default the clock's), or ``None`` before its first sample."""
        if not self._observed:
            return self._manager.stats(target).latency
        average = self._averages.get(target)
        if average is None:
            return None
        if now is None:
            now = self._clock()
        return average.cost * math.exp(-max(now - average.stamp, 0.0) / self._decay)

    def score(self, target: Target, now: float | None = None) -> float:
        """``latency x (inflight + 1)``; with no latency yet, 0 when idle and
        ``PENALTY_MS + inflight`` when busy. Lower is better."""
        inflight = self._manager.stats(target).inflight
        latency = self.latency(target, now)
        if not latency:
            return PENALTY_MS + inflight if inflight else 0.0
        return latency * (inflight + 1)

    def order(self, request: CompletionRequest, tier: list[Target], context: RequestContext) -> list[Target]:
        """Every target of ``tier`` once: the better of two distinct random
        picks first (a tie is broken at random), then the rest by score,
        lowest first (ties in tier order). Tiers of fewer than two targets
        are returned as they are."""
        n = len(tier)
        if n < 2:
            return tier
        now = self._clock()
        stats = self._manager.stats
        if self._observed:
            # score() inlined: this runs on every request.
            averages = self._averages
            exp = math.exp
            decay = self._decay
            scores = []
            for target in tier:
                inflight = stats(target).inflight
                average = averages.get(target)
                latency = average.cost * exp(-max(now - average.stamp, 0.0) / decay) if average is not None else 0.0
                if latency:
                    scores.append(latency * (inflight + 1))
                else:
                    scores.append(PENALTY_MS + inflight if inflight else 0.0)
        else:
            score = self.score
            scores = [score(target, now) for target in tier]
        draw = self._random
        if n == 2:
            a, b = 0, 1
        else:
            a = int(draw() * n)
            b = int(draw() * (n - 1))
            if b >= a:
                b += 1
        if scores[a] < scores[b]:
            chosen = a
        elif scores[b] < scores[a]:
            chosen = b
        else:
            chosen = a if draw() < 0.5 else b
        rest = sorted((scores[i], i) for i in range(n) if i != chosen)
        return [tier[chosen], *(tier[i] for _, i in rest)]


class P2CObserver:
    """Hook plugin ``p2c-ewma`` (entry point in ``swarmgate``): reports every
    attempt's latency to the ``p2c-ewma`` balancer. When another balancer is
    configured it unregisters itself in ``plugin_setup``, so an installed
    but unused p2c costs the request pipeline nothing.

    Successful attempts are taken from ``after_response`` (cached answers
    are skipped), failed ones from ``on_failure``, which runs ``tryfirst``
    and always returns ``None`` (it never decides what happens next). A
    failure another ``tryfirst`` plugin answers before it is not seen.
    """

    def __init__(self) -> None:
        self._balancer: P2CEwmaBalancer | None = None

    @hookimpl
    def plugin_setup(self, manager: ProviderManager) -> None:
        """Attach to the configured balancer if it is ``p2c-ewma``; else leave."""
        balancer = manager.balancer
        if isinstance(balancer, P2CEwmaBalancer):
            balancer.attach()
            self._balancer = balancer
            return
        self._balancer = None
        host = manager.plugins
        for info in host.plugins():
            if host.get(info.name) is self:
                host.unregister(info.name)
                break

    @hookimpl
    def after_response(self, response: CompletionResponse) -> None:
        """Report the answering attempt's latency."""
        balancer = self._balancer
        if balancer is None or response.cached:
            return
        for attempt in response.attempts:
            if attempt.ok:
                balancer.observe(Target(attempt.provider, attempt.model), attempt.latency)

    @hookimpl(tryfirst=True)
    def on_failure(self, target: Target, context: RequestContext) -> None:
        """Report a failed attempt (``context.attempts[-1]``); decide nothing."""
        balancer = self._balancer
        if balancer is not None and context.attempts:
            balancer.observe(target, context.attempts[-1].latency, failed=True)
