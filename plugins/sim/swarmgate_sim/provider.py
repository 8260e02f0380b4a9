"""``SimProvider``: the ``sim`` provider type, a provider that is simulated.

It talks to nothing. Each instance follows the profile in its
:class:`~swarmgate_sim.settings.SimSettings`: time to first token, output
pace, output length, random failures of the kernel's error kinds, outage
windows and broken streams, all drawn from a per-instance seeded RNG. It is
honest about it: every reply starts with ``[simulated <provider>/<model>]``
and carries ``metadata["simulated"] = True``.

Token counts follow the kernel's estimate (:func:`swarmgate.stats.estimate_tokens`):
input from the prompt text, output from the generated text after the
``[simulated ...]`` marker (the marker is not billed, so output never
exceeds ``max_tokens``). Tools, ``stop`` and sampling options are accepted
and ignored.
"""

from __future__ import annotations

import bisect
import math
import os
import random
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import anyio

from swarmgate import (
    ConfigError,
    FinishEvent,
    HealthStatus,
    Provider,
    ProviderCall,
    ProviderConfig,
    ProviderConnectionError,
    ProviderReply,
    SwarmgateError,
    TextDelta,
    TokenUsage,
    UsageEvent,
)
from swarmgate.stats import estimate_tokens
from swarmgate_sim.filler import Filler, filler
from swarmgate_sim.settings import FAILURE_CLASSES, MAX_OUTPUT_TOKENS, Outage, SimSettings, problems

#: What each simulated failure says (the provider and model are added by the error).
_MESSAGES = {
    "rate_limited": "simulated rate limit: too many requests",
    "overloaded": "simulated overload: the upstream is busy",
    "server_error": "simulated server error: internal error",
    "timeout": "simulated timeout: no answer in time",
    "connection_error": "simulated connection error: connection refused",
    "authentication": "simulated authentication failure: invalid API key",
    "permission": "simulated permission error: this key may not use this model",
    "not_found": "simulated not-found error: no such model",
    "invalid_request": "simulated invalid request: the upstream rejected the body",
    "context_length_exceeded": "simulated context-length error: prompt too long for this model",
    "content_filtered": "simulated content filter: the prompt was refused",
}

Clock = Callable[[], float]


class _Reply(NamedTuple):
    """One planned reply: the marker (and its delta), the filler pieces
    ``[first, end)`` (``end == first`` when cut inside the first word), the
    body text, usage and finish reason."""

    marker: str
    marker_delta: TextDelta
    first: int
    end: int
    body: str
    usage: TokenUsage
    finish: str


class SimProvider(Provider):
    """A simulated provider (``"type": "sim"``); see the module docstring.

    ``clock`` (seconds, monotonic; default :func:`time.monotonic`) times the
    outage windows, so tests can move time without waiting. The windows
    count from :meth:`start` (or from construction, if never started).

    Raises :class:`~swarmgate.ConfigError` naming ``providers.<name>.<key>``
    for settings the simulation cannot use (see
    :func:`swarmgate_sim.settings.problems`).
    """

    settings_class = SimSettings

    def __init__(self, name: str, config: ProviderConfig, settings: Any = None, *, clock: Clock | None = None) -> None:
        profile = SimSettings() if settings is None else settings
        if not isinstance(profile, SimSettings):
            raise TypeError(f"SimProvider settings must be SimSettings, got {type(profile).__name__}")
        bad = problems(profile)
        if bad:
            raise ConfigError([(f"providers.{name}.{path}", message) for path, message in bad])
        super().__init__(name, config, profile)
        self.profile = profile
        self._clock: Clock = clock or time.monotonic
        self._started = self._clock()
        seed = profile.seed if profile.seed is not None else int.from_bytes(os.urandom(8), "big")
        self._rng = random.Random(f"{seed}/{name}")
        # Everything below is derived once so that a call does no set-up work.
        self._scale = profile.time_scale
        self._rate = profile.failure_rate
        self._mid_rate = profile.mid_stream_failure_rate
        self._outages = profile.outages
        kinds = [(kind, weight) for kind, weight in profile.failure_kinds.items() if weight > 0]
        self._kinds = tuple(kind for kind, _ in kinds)
        cumulative: list[float] = []
        total = 0.0
        for _, weight in kinds:
            total += weight
            cumulative.append(total)
        self._cumulative = tuple(cumulative)
        self._ttft_mu = math.log(profile.ttft_ms) if profile.ttft_ms > 0 else None
        self._error_mu = math.log(profile.error_latency_ms) if profile.error_latency_ms > 0 else None
        self._seconds_per_token = 1.0 / profile.tokens_per_second
        self._range = profile.output_tokens
        self._filler: Filler = filler()
        self._models: dict[str, tuple[str, TextDelta, int]] = {}

    async def start(self) -> None:
        """Start the outage clock."""
        self._started = self._clock()

    # -- the simulation ------------------------------------------------------

    def _model(self, model: str) -> tuple[str, TextDelta, int]:
        """The marker, its delta, and the checksum salt of ``model`` (cached)."""
        entry = self._models.get(model)
        if entry is None:
            marker = f"[simulated {self.name}/{model}]"
            entry = self._models[model] = (marker, TextDelta(marker), zlib.crc32(marker.encode()))
        return entry

    def elapsed(self) -> float:
        """Simulated seconds since start: real seconds divided by ``timeScale``
        (real seconds when it is 0)."""
        real = self._clock() - self._started
        return real / self._scale if self._scale > 0 else real

    def current_outage(self) -> tuple[Outage, float] | None:
        """The outage window covering now and the simulated seconds it has
        left, or ``None``."""
        if not self._outages:
            return None
        now = self.elapsed()
        for outage in self._outages:
            if outage.active(now):
                return outage, outage.ends(now) - now
        return None

    def _lognormal(self, mu: float | None) -> float:
        if mu is None:
            return 0.0
        sigma = self.profile.ttft_jitter
        return math.exp(mu + sigma * self._rng.gauss()) if sigma > 0 else math.exp(mu)

    def _error(self, kind: str, message: str, call: ProviderCall, retry_after: float | None = None) -> SwarmgateError:
        cls, status = FAILURE_CLASSES[kind]
        if kind == "rate_limited" and retry_after is None:
            retry_after = self.profile.retry_after_s * self._scale
        return cls(message, provider=self.name, model=call.model, retry_after=retry_after, upstream_status=status)

    def _failure(self, call: ProviderCall) -> tuple[SwarmgateError, float] | None:
        """The error this call fails with and the simulated seconds before it
        surfaces, or ``None`` when the call succeeds."""
        if self._outages:
            current = self.current_outage()
            if current is not None:
                outage, remaining = current
                error = self._error(
                    outage.kind,
                    f"{_MESSAGES[outage.kind]} (simulated outage, {remaining:.1f}s left)",
                    call,
                    retry_after=remaining * self._scale if self._scale > 0 else remaining,
                )
                return error, self._failure_delay(outage.kind, call)
        if self._rate and self._rng.random() < self._rate:
            pick = self._rng.random() * self._cumulative[-1]
            kind = self._kinds[min(bisect.bisect_right(self._cumulative, pick), len(self._kinds) - 1)]
            return self._error(kind, _MESSAGES[kind], call), self._failure_delay(kind, call)
        return None

    def _failure_delay(self, kind: str, call: ProviderCall) -> float:
        if not self._scale:
            return 0.0
        if kind == "timeout":
            return call.timeout
        return self._lognormal(self._error_mu) / 1000.0

    def _length(self, call: ProviderCall) -> tuple[int, bool]:
        """Output tokens to write and whether ``max_tokens`` cut them short."""
        limit = call.max_tokens
        if self._range is not None:
            low, high = self._range
        else:
            basis = min(limit or 256, MAX_OUTPUT_TOKENS * 2)
            low = max(1, basis // 4)
            high = max(low, basis // 2)
        tokens = low + int(self._rng.random() * (high - low + 1))
        if limit is not None and tokens > limit:
            return limit, True
        return tokens, False

    def _compose(self, call: ProviderCall) -> _Reply:
        """Plan one reply (its text is a slice of the shared filler)."""
        marker, marker_delta, salt = self._model(call.model)
        prompt = call.request.prompt_text()
        tokens, cut = self._length(call)
        text = self._filler
        first, end, end_char = text.span(text.start(zlib.crc32(prompt.encode(), salt)), tokens, whole_sentences=not cut)
        body = text.text[text.offsets[first] : end_char]
        usage = TokenUsage.of(estimate_tokens(prompt), estimate_tokens(body))
        return _Reply(marker, marker_delta, first, end, body, usage, "length" if cut else "stop")

    def _duration(self, output_tokens: int) -> tuple[float, float]:
        """Scaled seconds: (time to first token, time for the rest)."""
        scale = self._scale
        return (
            self._lognormal(self._ttft_mu) / 1000.0 * scale,
            output_tokens * self._seconds_per_token * scale,
        )

    # -- the driver interface ----------------------------------------------------

    async def complete(self, call: ProviderCall) -> ProviderReply:
        """Answer after time to first token plus output time (scaled), or
        raise the simulated failure. Never sleeps when ``timeScale`` is 0."""
        failure = self._failure(call) if self._rate or self._outages else None
        if failure is not None:
            error, delay = failure
            if delay > 0:
                await anyio.sleep(delay * self._scale)
            raise error
        reply = self._compose(call)
        if self._scale:
            ttft, rest = self._duration(reply.usage.output)
            await anyio.sleep(ttft + rest)
        # A fresh metadata dict per reply: responses are handed to plugins and
        # serialised, so sharing one mutable mapping between them is unsafe.
        return ProviderReply(reply.marker + reply.body, reply.usage, reply.finish, metadata={"simulated": True})

    async def stream(self, call: ProviderCall) -> AsyncIterator[TextDelta | UsageEvent | FinishEvent]:
        """The reply as the marker then one :class:`TextDelta` per word, paced
        at ``tokensPerSecond`` after the time to first token, then a
        :class:`UsageEvent` and a :class:`FinishEvent`. A failure before the
        first token raises like :meth:`complete`; a mid-stream failure raises
        :class:`~swarmgate.ProviderConnectionError` after some words."""
        failure = self._failure(call) if self._rate or self._outages else None
        if failure is not None:
            error, delay = failure
            if delay > 0:
                await anyio.sleep(delay * self._scale)
            raise error
        reply = self._compose(call)
        usage = reply.usage
        deltas = self._filler.deltas[reply.first : reply.end] if reply.end > reply.first else (TextDelta(reply.body),)
        count = len(deltas)
        break_after = -1
        if self._mid_rate and self._rng.random() < self._mid_rate:
            break_after = int(self._rng.random() * count)
        scale = self._scale
        interval = t0 = 0.0
        if scale:
            ttft, rest = self._duration(usage.output)
            await anyio.sleep(ttft)
            interval = rest / count
            t0 = anyio.current_time()
        yield reply.marker_delta
        for i, delta in enumerate(deltas):
            if i == break_after:
                raise ProviderConnectionError(
                    f"simulated connection reset mid-stream after {i} of {count} words",
                    provider=self.name,
                    model=call.model,
                )
            if scale:
                await anyio.sleep_until(t0 + (i + 1) * interval)
            yield delta
        yield UsageEvent(usage)
        yield FinishEvent(reply.finish)

    async def health_check(self) -> HealthStatus:
        """Unhealthy during an outage window, healthy otherwise (no waiting)."""
        current = self.current_outage()
        if current is not None:
            outage, remaining = current
            return HealthStatus(
                False, detail=f"simulated outage ({outage.kind}) for another {remaining:.1f}s of simulated time"
            )
        return HealthStatus(True, detail="simulated provider: nothing to probe")
