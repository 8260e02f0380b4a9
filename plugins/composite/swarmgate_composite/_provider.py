"""The ``composite`` provider: one logical provider made of several targets.

Every inner call goes through the owning :class:`~swarmgate.manager.ProviderManager`
(``manager.complete`` / ``manager.stream`` with ``provider`` and ``model``
forced to one target), so it is a real request: hooked, priced, counted
and failed over exactly like any other. The composite adds up what those
calls cost and reports it (``ProviderReply.cost``, ``UsageEvent.cost``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.abc
import attrs

from swarmgate.config import ProviderConfig, SwarmgateConfig
from swarmgate.errors import (
    ERROR_CLASSES,
    AuthenticationError,
    BudgetExceededError,
    ConfigError,
    ContentFilteredError,
    ContextLengthExceededError,
    ErrorKind,
    InvalidRequestError,
    NoProviderAvailableError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    SwarmgateError,
    UnknownModelError,
)
from swarmgate.models import (
    CompletionRequest,
    CompletionResponse,
    FinishEvent,
    HealthStatus,
    Message,
    ProviderEvent,
    ProviderReply,
    StreamEvent,
    StreamStart,
    Target,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
    UsageEvent,
)
from swarmgate.provider import Provider, ProviderCall
from swarmgate.stats import estimate_tokens
from swarmgate_composite._combine import answer_key, judge_messages, majority, parse_choice, render_refine
from swarmgate_composite._settings import DEFAULT_JUDGE_INSTRUCTIONS, CompositeSettings, raw_references

if TYPE_CHECKING:
    from swarmgate.manager import ProviderManager

#: The request-metadata key that marks an inner call (and the response-metadata key of the decision).
METADATA_KEY = "composite"

#: Default ``candidateTimeout`` as a share of the composite's timeout: the
#: vote is instant, a judge needs a call of its own.
_CANDIDATE_SHARE = {"majority": 0.9, "judge": 0.5}
#: The judge must answer within this share of the composite's timeout, so
#: that a judge that hangs still leaves time to fall back to the vote.
_JUDGE_SHARE = 0.95
#: How much of a judge's reply goes into the metadata.
_JUDGE_REPLY_CHARS = 200

#: When failures differ in kind, the combined error takes the first kind
#: present in this order: retryable kinds first (waiting or retrying may
#: help), then kinds another target may cure, then refusals of the request
#: itself, then "nothing could be tried".
_KIND_PRECEDENCE: tuple[ErrorKind, ...] = (
    ErrorKind.RATE_LIMITED,
    ErrorKind.OVERLOADED,
    ErrorKind.TIMEOUT,
    ErrorKind.CONNECTION_ERROR,
    ErrorKind.SERVER_ERROR,
    ErrorKind.AUTHENTICATION,
    ErrorKind.PERMISSION,
    ErrorKind.NOT_FOUND,
    ErrorKind.CONTEXT_LENGTH_EXCEEDED,
    ErrorKind.BUDGET_EXCEEDED,
    ErrorKind.CONTENT_FILTERED,
    ErrorKind.INVALID_REQUEST,
    ErrorKind.NO_PROVIDER_AVAILABLE,
)

#: Kernel error classes built as ``cls(message, provider=, model=, retry_after=, upstream_status=)``;
#: an error of another class (a plugin's subclass) is re-raised as its kind's kernel class.
_PLAIN_CLASSES: frozenset[type[SwarmgateError]] = frozenset(
    {
        ProviderTimeoutError,
        RateLimitedError,
        OverloadedError,
        ServerError,
        ProviderConnectionError,
        AuthenticationError,
        PermissionDeniedError,
        InvalidRequestError,
        ContextLengthExceededError,
        ContentFilteredError,
        NotFoundError,
        UnknownModelError,
        BudgetExceededError,
    }
)


def _unwrap(error: SwarmgateError) -> SwarmgateError:
    """The typed error behind a target's failure: an inner
    ``NoProviderAvailableError``'s ``last_error`` when it has one."""
    if isinstance(error, NoProviderAvailableError) and error.last_error is not None:
        return error.last_error
    return error


def _sum_usage(usages: Sequence[TokenUsage]) -> TokenUsage:
    return TokenUsage.of(sum(u.input for u in usages), sum(u.output for u in usages))


def _response_usage(response: CompletionResponse) -> tuple[float, TokenUsage]:
    """What one inner request really consumed: every attempt's cost and
    tokens (retries and failed partial streams included); a cache hit
    consumed nothing."""
    if response.attempts:
        return response.total_cost, _sum_usage([a.tokens for a in response.attempts])
    if response.cached:
        return 0.0, TokenUsage()
    return response.cost, response.tokens


@attrs.define(eq=False)
class _Candidate:
    """One inner call and what came of it.

    ``index`` is the target's position in ``targets`` (-1 for the judge);
    ``role`` is ``candidate`` (race, fanout), ``step`` (sequential) or
    ``judge``. Exactly one of ``response`` / ``error`` / ``cancelled``
    describes the end (a race loser may also have been cancelled after
    streaming ``partial`` output). ``cost``/``tokens`` are filled by
    :meth:`CompositeProvider._settle`.
    """

    index: int
    target: Target
    role: str
    started: float = attrs.field(factory=time.perf_counter)
    latency: float = 0.0
    response: CompletionResponse | None = None
    error: SwarmgateError | None = None
    cancelled: bool = False
    output: bool = False
    partial: list[str] = attrs.field(factory=list)
    cost: float = 0.0
    tokens: TokenUsage = attrs.field(factory=TokenUsage)

    @property
    def ok(self) -> bool:
        return self.response is not None

    def finish(self) -> None:
        self.latency = (time.perf_counter() - self.started) * 1000.0

    def to_dict(self) -> dict[str, Any]:
        error = _unwrap(self.error) if self.error is not None else None
        return {
            "provider": self.target.provider,
            "model": self.target.model,
            "ok": self.ok,
            "cost": self.cost,
            "latency": self.latency,
            "cancelled": self.cancelled,
            "tokens": self.tokens.to_dict(),
            "error_kind": error.kind.value if error is not None else None,
            "error": error.message if error is not None else None,
        }


@attrs.define(eq=False)
class _Race:
    """Shared by the racers: who won, and (streaming) the winner's open stream."""

    winner: _Candidate | None = None
    events: AsyncGenerator[StreamEvent, None] | None = None


class CompositeProvider(Provider):
    """One logical provider made of several ``provider/model`` targets.

    ``mode`` decides how they answer (see :class:`CompositeSettings` and the
    package docstring). The targets are checked in :meth:`start`: each must
    name a configured, enabled provider (and one of its models when it lists
    models) and must not lead back to this composite through other
    composites; problems are a :class:`~swarmgate.errors.ConfigError`
    naming ``providers.<name>.targets[i]`` (or ``.combiner.target``).
    """

    settings_class: ClassVar[type | None] = CompositeSettings

    def __init__(self, name: str, config: ProviderConfig, settings: CompositeSettings | None = None) -> None:
        if settings is None:
            raise ConfigError([(f"providers.{name}", "a composite provider needs 'mode' and 'targets'")])
        super().__init__(name, config, settings)
        self.options: CompositeSettings = settings
        #: The targets, parsed, in configured order.
        self.targets: tuple[Target, ...] = settings.target_list
        #: The judge's target (fanout with a judge combiner), else ``None``.
        self.judge: Target | None = settings.combiner_settings.judge

    # -- lifecycle -------------------------------------------------------------------

    @property
    def owner(self) -> ProviderManager:
        """The owning manager (set by the kernel before :meth:`start`)."""
        if self.manager is None:
            raise RuntimeError(
                f"composite provider {self.name!r} has no manager: it only works inside a ProviderManager"
            )
        return self.manager

    async def start(self) -> None:
        """Check the targets against the configuration (see the class docstring).

        Runs while the manager builds its providers, so it reads the
        configuration, not the live provider table.
        """
        problems = self.check_targets(self.owner.config)
        if problems:
            raise ConfigError(problems)

    def check_targets(self, config: SwarmgateConfig) -> list[tuple[str, str]]:
        """``(path, problem)`` for every target (and judge) that is unknown,
        disabled, lacks the model, is this composite, or leads back to it;
        and for a ``candidateTimeout`` that leaves no time to combine."""
        base = f"providers.{self.name}"
        named = [(f"{base}.targets[{i}]", target) for i, target in enumerate(self.targets)]
        if self.judge is not None:
            named.append((f"{base}.combiner.target", self.judge))
        configured = sorted(config.providers)
        problems: list[tuple[str, str]] = []
        for path, target in named:
            if target.provider == self.name:
                problems.append((path, f"a composite cannot target itself ({target})"))
                continue
            provider = config.providers.get(target.provider)
            if provider is None:
                problems.append((path, f"unknown provider {target.provider!r} (configured: {configured})"))
            elif not provider.enabled:
                problems.append((path, f"provider {target.provider!r} is disabled"))
            elif provider.models and target.model not in provider.models:
                problems.append(
                    (
                        path,
                        f"provider {target.provider!r} has no model {target.model!r} (models: {sorted(provider.models)})",
                    )
                )
            elif (cycle := self._cycle_through(target.provider, config)) is not None:
                problems.append((path, "leads back to this composite: " + " -> ".join(cycle)))
        if self.options.candidate_timeout is not None and self.options.candidate_timeout >= self.config.timeout:
            problems.append(
                (
                    f"{base}.candidateTimeout",
                    f"must be less than the composite's timeout ({self.config.timeout:g} ms) to leave time to combine",
                )
            )
        return problems

    def _is_composite(self, name: str, provider: ProviderConfig) -> bool:
        if provider.type == self.config.type:
            return True
        handle = self.owner.handle(name)
        return handle is not None and isinstance(handle.provider, CompositeProvider)

    def _cycle_through(self, start: str, config: SwarmgateConfig) -> list[str] | None:
        """The chain of provider names from this composite through ``start``
        back to this composite, following other composites' targets, or
        ``None``. This composite's own (possibly new) settings are used for
        itself; the configuration for the others."""
        stack: list[tuple[str, list[str]]] = [(start, [self.name, start])]
        seen: set[str] = set()
        while stack:
            name, path = stack.pop()
            if name == self.name:
                return path
            if name in seen:
                continue
            seen.add(name)
            provider = config.providers.get(name)
            if provider is None or not provider.enabled or not self._is_composite(name, provider):
                continue
            stack.extend((ref, [*path, ref]) for ref in raw_references(provider.settings))
        return None

    # -- inner requests --------------------------------------------------------------

    def _check_path(self, request: CompletionRequest) -> None:
        """Refuse a request that already passed through this composite (a
        cycle the start-up check could not see, e.g. a composite type
        registered under another name)."""
        if self.name in _path(request):
            chain = " -> ".join([*_path(request), self.name])
            raise InvalidRequestError(f"composite cycle: {chain}", provider=self.name)

    def _request(
        self,
        call: ProviderCall,
        target: Target,
        role: str,
        *,
        stream: bool,
        messages: Sequence[Message] | None = None,
    ) -> CompletionRequest:
        """The request for one inner call: the caller's request with
        ``provider``/``model`` forced to ``target``, the composite's
        effective ``max_tokens``/``temperature``, and
        ``metadata["composite"] = {"parent", "path", "mode", "role"}`` so
        that hooks can tell inner calls apart."""
        request = call.request
        metadata = {
            **request.metadata,
            METADATA_KEY: {
                "parent": self.name,
                "path": [*_path(request), self.name],
                "mode": self.options.mode,
                "role": role,
            },
        }
        changes: dict[str, Any] = {
            "provider": target.provider,
            "model": target.model,
            "stream": stream,
            "max_tokens": call.max_tokens,
            "temperature": call.temperature,
            "metadata": metadata,
        }
        if messages is not None:
            changes["messages"] = tuple(messages)
        if role == "judge":
            changes.update(
                temperature=0.0,
                max_tokens=None,
                tools=None,
                tool_choice=None,
                response_format=None,
                stop=None,
                extra={},
            )
        return attrs.evolve(request, **changes)

    async def _run_complete(self, candidate: _Candidate, request: CompletionRequest, bound: float | None) -> None:
        """``manager.complete(request)`` into ``candidate``; ``bound``
        (seconds) cuts it off as a timeout."""
        candidate.started = time.perf_counter()
        try:
            with anyio.move_on_after(bound) as scope:
                candidate.response = await self.owner.complete(request)
            if scope.cancelled_caught:
                candidate.cancelled = True
                candidate.error = ProviderTimeoutError(
                    f"no answer within {bound:g}s (the composite's candidate time limit)",
                    provider=candidate.target.provider,
                    model=candidate.target.model,
                )
        except SwarmgateError as exc:
            candidate.error = exc
        finally:
            candidate.finish()

    def _settle(self, candidate: _Candidate, request: CompletionRequest) -> None:
        """Fill ``candidate.cost``/``tokens``: a finished call's attempts;
        a failed one's (partial streams are in its attempts); a cancelled
        stream that had output: the prompt and the partial output,
        estimated (:func:`swarmgate.estimate_tokens`) and priced with the
        target's model config; a call cancelled before any output: 0."""
        if candidate.response is not None:
            candidate.cost, candidate.tokens = _response_usage(candidate.response)
        elif candidate.error is not None:
            attempts = candidate.error.attempts
            candidate.cost = sum(a.cost for a in attempts)
            candidate.tokens = _sum_usage([a.tokens for a in attempts])
        elif candidate.output:
            tokens = TokenUsage.of(estimate_tokens(request.prompt_text()), estimate_tokens("".join(candidate.partial)))
            candidate.tokens = tokens
            candidate.cost = self.owner.model_config(candidate.target).price(tokens.input, tokens.output)

    def _reply(
        self,
        chosen: _Candidate,
        spent: Sequence[_Candidate],
        decision: Mapping[str, Any] | None = None,
    ) -> ProviderReply:
        """The composite's answer: ``chosen``'s content, the cost and
        tokens of every call in ``spent`` summed, ``model`` naming the
        chosen target, and the decision in ``metadata["composite"]``."""
        response = chosen.response
        assert response is not None
        info: dict[str, Any] = {
            "mode": self.options.mode,
            "winner": str(chosen.target),
            "candidates": [c.to_dict() for c in spent if c.role != "judge"],
        }
        if decision is not None:
            info["decision"] = dict(decision)
        return ProviderReply(
            response.content,
            _sum_usage([c.tokens for c in spent]),
            response.finish_reason,
            response.tool_calls,
            model=str(chosen.target),
            metadata={METADATA_KEY: info},
            cost=sum(c.cost for c in spent),
        )

    # -- errors ----------------------------------------------------------------------

    def _error(
        self,
        kind: ErrorKind,
        errors: Sequence[SwarmgateError],
        message: str,
        call: ProviderCall,
    ) -> SwarmgateError:
        """An error of ``kind`` with ``message``: the exact class of
        ``errors`` when they share a kernel class, else the kind's class;
        ``retry_after`` the soonest any of them gave, ``upstream_status``
        when they agree."""
        first = type(errors[0])
        cls: type[SwarmgateError] = (
            first if first in _PLAIN_CLASSES and all(type(e) is first for e in errors) else ERROR_CLASSES[kind]
        )
        waits = [e.retry_after for e in errors if e.retry_after is not None]
        retry_after = min(waits) if waits else None
        statuses = {e.upstream_status for e in errors}
        status = statuses.pop() if len(statuses) == 1 else None
        if cls is NoProviderAvailableError:
            error: SwarmgateError = NoProviderAvailableError(message, last_error=errors[-1], retry_after=retry_after)
            error.provider, error.model, error.upstream_status = self.name, call.model, status
            return error
        return cls(message, provider=self.name, model=call.model, retry_after=retry_after, upstream_status=status)

    def _failed(self, call: ProviderCall, candidates: Sequence[_Candidate], needed: int = 1) -> SwarmgateError:
        """The error when fewer than ``needed`` targets answered: the
        failures' common kind, or the first kind present in
        :data:`_KIND_PRECEDENCE`; the message lists every target's error."""
        failed = [(c, _unwrap(c.error)) for c in candidates if c.error is not None]
        answered = sum(1 for c in candidates if c.ok)
        total = len(candidates)
        details = "; ".join(f"{c.target}: {e.kind.value} ({e.message})" for c, e in failed)
        if answered:
            head = f"only {answered} of {total} targets answered, {needed} needed"
        else:
            head = f"all {total} target(s) failed"
        message = f"composite {self.name!r}: {head}: {details or 'no target was tried'}"
        errors = [e for _, e in failed]
        if not errors:
            return NoProviderAvailableError(message)
        kinds = {e.kind for e in errors}
        kind = next(k for k in (*_KIND_PRECEDENCE, *ErrorKind) if k in kinds)
        return self._error(kind, [e for e in errors if e.kind == kind], message, call)

    def _midstream(self, call: ProviderCall, candidate: _Candidate, error: SwarmgateError) -> SwarmgateError:
        """The streamed winner's own failure after output started, typed as it was."""
        inner = _unwrap(error)
        message = f"composite {self.name!r}: target {candidate.target} failed mid-stream: {inner.message}"
        return self._error(inner.kind, [inner], message, call)

    # -- complete --------------------------------------------------------------------

    async def complete(self, call: ProviderCall) -> ProviderReply:
        """Answer in full according to ``mode``; ``cost`` is the real total
        of every inner call; ``metadata["composite"]`` says who answered."""
        self._check_path(call.request)
        mode = self.options.mode
        if mode == "fanout":
            return await self._fanout(call)
        if mode == "sequential":
            return await self._sequential(call)
        if len(self.targets) == 1:
            # Nothing to race: one plain call (no loser needs a stream).
            only = _Candidate(0, self.targets[0], "candidate")
            await self._run_complete(only, self._request(call, only.target, "candidate", stream=False), None)
            self._settle(only, call.request)
            if not only.ok:
                raise self._failed(call, [only])
            return self._reply(only, [only])
        candidates, winner, _ = await self._race(call, first_output=False)
        for candidate in candidates:
            self._settle(candidate, call.request)
        if winner is None:
            raise self._failed(call, candidates)
        return self._reply(winner, candidates)

    async def _race(
        self, call: ProviderCall, *, first_output: bool
    ) -> tuple[list[_Candidate], _Candidate | None, AsyncGenerator[StreamEvent, None] | None]:
        """Stream every target at once until one wins: the first complete
        answer, or (``first_output``) the first to produce output, whose
        open stream is handed back. The others are cancelled at once
        (their upstream connections closed by the kernel)."""
        candidates = [_Candidate(i, target, "candidate") for i, target in enumerate(self.targets)]
        race = _Race()
        try:
            async with anyio.create_task_group() as tg:
                for candidate in candidates:
                    request = self._request(call, candidate.target, "candidate", stream=True)
                    tg.start_soon(self._racer, candidate, request, race, tg.cancel_scope, first_output)
        except BaseException:
            if race.events is not None:
                with anyio.CancelScope(shield=True):
                    await race.events.aclose()
            raise
        return candidates, race.winner, race.events

    async def _racer(
        self,
        candidate: _Candidate,
        request: CompletionRequest,
        race: _Race,
        scope: anyio.CancelScope,
        first_output: bool,
    ) -> None:
        """One target's stream: record its output; claim the win (and
        cancel the others) at its first output or its end."""
        events = self.owner.stream(request)
        handed_over = False
        try:
            while True:
                try:
                    event = await events.__anext__()
                except StopAsyncIteration:
                    break
                if isinstance(event, StreamStart):
                    candidate.output = True
                    if first_output and race.winner is None:
                        race.winner, race.events, handed_over = candidate, events, True
                        scope.cancel()
                        return
                elif isinstance(event, TextDelta):
                    candidate.partial.append(event.text)
                elif isinstance(event, ToolCallDelta):
                    candidate.partial.append((event.name or "") + event.arguments)
                elif isinstance(event, FinishEvent) and event.response is not None:
                    candidate.response = event.response
                    if race.winner is None:
                        race.winner = candidate
                        scope.cancel()
                    break
        except SwarmgateError as exc:
            candidate.error = exc
        except anyio.get_cancelled_exc_class():
            candidate.cancelled = True
            raise
        finally:
            candidate.finish()
            if not handed_over:
                with anyio.CancelScope(shield=True):
                    await events.aclose()

    async def _fanout(self, call: ProviderCall) -> ProviderReply:
        """Every target answers at once (each within ``candidateTimeout``);
        at least ``minSuccesses`` must; the combiner picks one."""
        combiner = self.options.combiner_settings
        if self.options.candidate_timeout is not None:
            bound = self.options.candidate_timeout / 1000.0
        else:
            bound = call.timeout * _CANDIDATE_SHARE[combiner.type]
        started = time.perf_counter()
        candidates = [_Candidate(i, target, "candidate") for i, target in enumerate(self.targets)]
        async with anyio.create_task_group() as tg:
            for candidate in candidates:
                request = self._request(call, candidate.target, "candidate", stream=False)
                tg.start_soon(self._run_complete, candidate, request, bound)
        for candidate in candidates:
            self._settle(candidate, call.request)
        answers = [c for c in candidates if c.ok]
        if len(answers) < self.options.needed:
            raise self._failed(call, candidates, self.options.needed)
        spent = list(candidates)
        decision: dict[str, Any]
        if self.judge is not None and len(answers) > 1:
            remaining = started + call.timeout * _JUDGE_SHARE - time.perf_counter()
            judge = _Candidate(-1, self.judge, "judge")
            instructions = combiner.instructions or DEFAULT_JUDGE_INSTRUCTIONS
            shown = [(c.response.content, c.response.tool_calls) for c in answers if c.response is not None]
            messages = judge_messages(instructions, call.request.messages, shown)
            request = self._request(call, self.judge, "judge", stream=False, messages=messages)
            await self._run_complete(judge, request, max(remaining, 0.0))
            self._settle(judge, call.request)
            spent.append(judge)
            chosen, decision = self._judged(judge, answers)
        else:
            chosen, decision = self._vote(answers)
            if self.judge is not None:
                decision["judge_skipped"] = "only one candidate answered"
        return self._reply(chosen, spent, decision)

    @staticmethod
    def _vote(answers: Sequence[_Candidate]) -> tuple[_Candidate, dict[str, Any]]:
        keys = [answer_key(c.response.content, c.response.tool_calls) for c in answers if c.response is not None]
        vote = majority(keys)
        chosen = answers[vote.winner]
        return chosen, {
            "combiner": "majority",
            "chosen": chosen.index,
            "votes": {str(c.index): n for c, n in zip(answers, vote.votes, strict=True)},
            "tie": vote.tie,
        }

    def _judged(self, judge: _Candidate, answers: Sequence[_Candidate]) -> tuple[_Candidate, dict[str, Any]]:
        info = judge.to_dict()
        text = judge.response.content if judge.response is not None else ""
        info["reply"] = text[:_JUDGE_REPLY_CHARS]
        choice = parse_choice(text, len(answers)) if judge.ok else None
        if choice is not None:
            chosen = answers[choice - 1]
            return chosen, {"combiner": "judge", "chosen": chosen.index, "choice": choice, "judge": info}
        chosen, decision = self._vote(answers)
        reason = "the judge failed" if not judge.ok else "the judge's reply names no candidate"
        return chosen, {**decision, "combiner": "judge", "fallback": "majority", "reason": reason, "judge": info}

    async def _sequential(self, call: ProviderCall) -> ProviderReply:
        """Each target in turn refines the last successful answer (a failed
        step is skipped: the next refines the answer before it, or answers
        the request itself when none succeeded yet)."""
        steps: list[_Candidate] = []
        previous: _Candidate | None = None
        total = len(self.targets)
        request = call.request
        for index, target in enumerate(self.targets):
            messages: list[Message] | None = None
            if previous is not None and previous.response is not None:
                answer = previous.response
                text = answer.content
                if answer.tool_calls:
                    text = (text + "\n" if text else "") + f"(tool calls: {list(answer.tool_calls)})"
                instructions = render_refine(
                    self.options.refine_template,
                    step=index + 1,
                    steps=total,
                    previous=text,
                    prompt=request.prompt_text(),
                    target=str(previous.target),
                )
                messages = [*request.messages, Message("assistant", text), Message("user", instructions)]
            step = _Candidate(index, target, "step")
            await self._run_complete(step, self._request(call, target, "step", stream=False, messages=messages), None)
            self._settle(step, request)
            steps.append(step)
            if step.ok:
                previous = step
        if previous is None:
            raise self._failed(call, steps)
        return self._reply(previous, steps)

    # -- stream ----------------------------------------------------------------------

    def stream(self, call: ProviderCall) -> AsyncGenerator[ProviderEvent, None]:
        """``race``: the first target to produce output is streamed live
        (the others cancelled at once, their partial cost counted).
        ``fanout``/``sequential``: the answer is computed in full, then
        sent as one text delta (and its tool calls). Either way the stream
        ends with a :class:`UsageEvent` carrying the real total cost."""
        if self.options.mode == "race":
            return self._race_stream(call)
        return self._computed_stream(call)

    async def _computed_stream(self, call: ProviderCall) -> AsyncGenerator[ProviderEvent, None]:
        reply = await self.complete(call)
        if reply.content:
            yield TextDelta(reply.content)
        for index, tool_call in enumerate(reply.tool_calls or ()):
            function = tool_call.get("function") or {}
            yield ToolCallDelta(index, tool_call.get("id"), function.get("name"), str(function.get("arguments") or ""))
        yield UsageEvent(reply.tokens, reply.cost)
        yield FinishEvent(reply.finish_reason)

    async def _race_stream(self, call: ProviderCall) -> AsyncGenerator[ProviderEvent, None]:
        self._check_path(call.request)
        candidates, winner, events = await self._race(call, first_output=True)
        losers = [c for c in candidates if c is not winner]
        for loser in losers:
            self._settle(loser, call.request)
        if winner is None or events is None:
            raise self._failed(call, candidates)
        finish = "stop"
        async with aclosing(events):
            try:
                async for event in events:
                    if isinstance(event, TextDelta | ToolCallDelta):
                        winner.partial.append(event.text if isinstance(event, TextDelta) else event.arguments)
                        yield event
                    elif isinstance(event, FinishEvent) and event.response is not None:
                        winner.response = event.response
                        finish = event.finish_reason
            except SwarmgateError as exc:
                winner.error = exc
                winner.finish()
                self._settle(winner, call.request)
                yield UsageEvent(_sum_usage([c.tokens for c in candidates]), sum(c.cost for c in candidates))
                raise self._midstream(call, winner, exc) from None
        winner.finish()
        self._settle(winner, call.request)
        yield UsageEvent(_sum_usage([c.tokens for c in candidates]), sum(c.cost for c in candidates))
        yield FinishEvent(finish)

    # -- health ----------------------------------------------------------------------

    async def health_check(self) -> HealthStatus:
        """Probe each target's provider through the manager (its own health
        probe, concurrently, within the composite's timeout). Healthy when
        enough targets are: ``minSuccesses`` for fanout, one otherwise
        (race needs one winner; sequential skips failed steps)."""
        manager = self.owner
        timeout = self.config.timeout / 1000.0
        names = list(dict.fromkeys(t.provider for t in self.targets))
        statuses: dict[str, HealthStatus] = {}
        started = time.perf_counter()

        async def probe(name: str) -> None:
            statuses[name] = (await manager.check_health(name))[name]

        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as tg:
                for name in names:
                    tg.start_soon(probe, name)
        latency = (time.perf_counter() - started) * 1000.0
        healthy = sum(1 for t in self.targets if (s := statuses.get(t.provider)) is not None and s.healthy)
        needed = self.options.needed
        parts = []
        for name in names:
            status = statuses.get(name)
            if status is None:
                parts.append(f"{name}: no answer within {timeout:g}s")
            else:
                state = "healthy" if status.healthy else "unhealthy"
                parts.append(f"{name}: {state}" + (f" ({status.detail})" if status.detail else ""))
        detail = f"{healthy} of {len(self.targets)} targets healthy, {needed} needed: " + "; ".join(parts)
        return HealthStatus(healthy >= needed, latency, detail)


def _path(request: CompletionRequest) -> tuple[str, ...]:
    """The composites a request already passed through (``metadata["composite"]["path"]``)."""
    info = request.metadata.get(METADATA_KEY)
    if isinstance(info, Mapping):
        path = info.get("path")
        if isinstance(path, list | tuple):
            return tuple(str(p) for p in path)
    return ()
