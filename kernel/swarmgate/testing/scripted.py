"""An in-process provider whose behaviour a test scripts, call by call.

For testing the pipeline and routing/resilience plugins without a network::

    manager = ProviderManager(config, drivers={"swarmgate.providers": {"scripted": ScriptedProvider}})
    ...
    manager.provider("a").push(Outcome(error=RateLimitedError("slow down")), "second call's text")

Each call takes the next queued outcome (a string is shorthand for a
successful answer with that text); with the queue empty it answers with
``settings.content`` (config key ``content``), or fails with
``settings.fail`` (an error kind) when set. ``calls`` records every
:class:`~swarmgate.provider.ProviderCall`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

import anyio
import attrs

from swarmgate.config import InvalidValue
from swarmgate.errors import ERROR_CLASSES, ErrorKind, SwarmgateError
from swarmgate.models import FinishEvent, HealthStatus, ProviderEvent, ProviderReply, TextDelta, TokenUsage, UsageEvent
from swarmgate.provider import Provider, ProviderCall
from swarmgate.stats import estimate_tokens


@attrs.frozen
class Outcome:
    """One scripted call: answer ``content`` (streamed as ``chunks`` when
    given, else word by word) after ``delay`` seconds, or raise ``error``.
    ``fail_after`` raises ``error`` after that many streamed chunks.
    ``usage`` overrides the token counts; ``cost`` is reported as the
    call's real cost (as a meta-provider would)."""

    content: str = "ok"
    error: SwarmgateError | None = None
    delay: float = 0.0
    chunks: tuple[str, ...] | None = None
    fail_after: int | None = None
    usage: tuple[int, int] | None = None
    finish_reason: str = "stop"
    cost: float | None = None


@attrs.frozen
class ScriptedSettings:
    """Provider-type keys: default answer ``content``, ``fail`` (an error
    kind every unscripted call raises), ``healthy`` for ``health_check``."""

    content: str = "ok"
    fail: str | None = attrs.field(default=None)
    healthy: bool = True

    @fail.validator
    def _check_fail(self, _attribute: object, value: str | None) -> None:
        if value is not None and value not in {k.value for k in ErrorKind}:
            raise InvalidValue("fail", f"unknown error kind {value!r} (kinds: {sorted(k.value for k in ErrorKind)})")


class ScriptedProvider(Provider):
    """See the module docstring."""

    settings_class = ScriptedSettings

    def __init__(self, name: str, config: object, settings: ScriptedSettings | None = None) -> None:
        super().__init__(name, config, settings or ScriptedSettings())  # type: ignore[arg-type]
        self.queue: deque[Outcome] = deque()
        self.calls: list[ProviderCall] = []
        self.closed = False

    def push(self, *outcomes: Outcome | str | SwarmgateError) -> None:
        """Queue outcomes for the next calls (a string answers, an error raises)."""
        for outcome in outcomes:
            if isinstance(outcome, str):
                outcome = Outcome(outcome)
            elif isinstance(outcome, SwarmgateError):
                outcome = Outcome(error=outcome)
            self.queue.append(outcome)

    def _next(self, call: ProviderCall) -> Outcome:
        self.calls.append(call)
        if self.queue:
            return self.queue.popleft()
        settings: ScriptedSettings = self.settings
        if settings.fail is not None:
            cls = ERROR_CLASSES[ErrorKind(settings.fail)]
            return Outcome(error=cls(f"scripted {settings.fail}", provider=self.name))
        return Outcome(settings.content)

    def _usage(self, call: ProviderCall, outcome: Outcome, text: str) -> TokenUsage:
        if outcome.usage is not None:
            return TokenUsage.of(*outcome.usage)
        return TokenUsage.of(estimate_tokens(call.request.prompt_text()), estimate_tokens(text))

    async def complete(self, call: ProviderCall) -> ProviderReply:
        outcome = self._next(call)
        if outcome.delay:
            await anyio.sleep(outcome.delay)
        if outcome.error is not None:
            raise outcome.error
        usage = self._usage(call, outcome, outcome.content)
        return ProviderReply(outcome.content, usage, outcome.finish_reason, cost=outcome.cost)

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        outcome = self._next(call)
        if outcome.delay:
            await anyio.sleep(outcome.delay)
        if outcome.error is not None and outcome.fail_after is None:
            raise outcome.error
        chunks = outcome.chunks if outcome.chunks is not None else tuple(_words(outcome.content))
        sent = []
        for i, chunk in enumerate(chunks):
            if outcome.fail_after is not None and i >= outcome.fail_after:
                assert outcome.error is not None
                raise outcome.error
            sent.append(chunk)
            yield TextDelta(chunk)
            await anyio.lowlevel.checkpoint()
        if outcome.error is not None:
            raise outcome.error
        yield UsageEvent(self._usage(call, outcome, "".join(sent)), outcome.cost)
        yield FinishEvent(outcome.finish_reason)

    async def health_check(self) -> HealthStatus:
        settings: ScriptedSettings = self.settings
        return HealthStatus(settings.healthy, detail="scripted")

    async def aclose(self) -> None:
        self.closed = True


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]] if words else []
