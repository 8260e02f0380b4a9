"""Value types: requests, responses, usage, attempts and stream events.

All are frozen attrs classes with slots: cheap to build on the hot path,
safe to share between hooks. ``attrs.evolve`` makes a changed copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

import attrs

Role: TypeAlias = Literal["system", "user", "assistant", "tool", "developer"]
#: Text, or a list of content parts (OpenAI style: ``{"type": "text", ...}``,
#: ``{"type": "image_url", ...}``) passed through to providers that support them.
Content: TypeAlias = str | list[dict[str, Any]] | None

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})


@attrs.frozen
class Message:
    """One chat message. ``content`` may be ``None`` for assistant tool calls."""

    role: Role
    content: Content = None
    name: str | None = None
    tool_calls: tuple[dict[str, Any], ...] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The text parts of ``content`` joined together (images etc. skipped)."""
        content = self.content
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        return "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")

    def to_openai(self) -> dict[str, Any]:
        """This message in the OpenAI Chat Completions wire format."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            out["name"] = self.name
        if self.tool_calls is not None:
            out["tool_calls"] = list(self.tool_calls)
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@attrs.frozen
class Constraints:
    """Hard limits a target must meet to be tried.

    ``max_cost`` in currency units per request (predicted worst case),
    ``max_latency`` in milliseconds (predicted), ``min_reliability`` in [0, 1].
    """

    max_cost: float | None = None
    max_latency: float | None = None
    min_reliability: float | None = None


NO_CONSTRAINTS = Constraints()


@attrs.frozen
class Preferences:
    """Caller preferences: ``providers`` are tried first (in that order),
    ``exclude`` are never tried, ``constraints`` filter the rest."""

    providers: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    constraints: Constraints = NO_CONSTRAINTS


NO_PREFERENCES = Preferences()


@attrs.frozen
class RequestTimeouts:
    """Per-request timeouts in milliseconds, overriding the configured ones
    (``firstToken``, ``streamIdle``, ``total``); ``None`` keeps the config's."""

    first_token: float | None = None
    stream_idle: float | None = None
    total: float | None = None


@attrs.frozen
class CacheControl:
    """Per-request cache control: ``bypass`` neither reads nor writes the
    cache, ``refresh`` skips the read but stores the new answer, ``ttl``
    (seconds) overrides the configured lifetime, ``allow`` caches a request
    that is not deterministic (temperature above 0)."""

    bypass: bool = False
    refresh: bool = False
    ttl: float | None = None
    allow: bool = False


@attrs.frozen
class CompletionRequest:
    """A completion request, provider-neutral.

    ``model`` is a model name (any provider that serves it), ``provider/model``,
    a route name from the ``routes`` config, or ``"auto"`` (every enabled
    provider's default model). ``provider`` forces one provider. ``strategy``
    overrides ``routing.strategy`` for this request. ``metadata`` is free-form
    (caller key, user id, trace ids) and ``tags`` label the request for
    analytics and cache invalidation. ``extra`` carries provider-specific body
    fields passed through unchanged. ``caller`` says who is asking (a caller
    key's id set by the gateway, or any label a library user picks): rate
    limits, budgets and usage records are kept per caller; it is never sent
    upstream. ``cache`` controls the response cache for this request.
    """

    messages: tuple[Message, ...]
    model: str = "auto"
    provider: str | None = None
    preferences: Preferences = NO_PREFERENCES
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    stream: bool = False
    tools: tuple[dict[str, Any], ...] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    strategy: str | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    tags: tuple[str, ...] = ()
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    timeouts: RequestTimeouts | None = None
    caller: str | None = None
    cache: CacheControl | None = None

    @classmethod
    def create(
        cls,
        prompt: str | None = None,
        *,
        messages: Sequence[Message | Mapping[str, Any]] | None = None,
        system: str | None = None,
        **fields: Any,
    ) -> CompletionRequest:
        """Build a request from a plain ``prompt`` or from ``messages``
        (``Message`` objects or OpenAI-style dicts); ``system`` prepends a
        system message. Other keyword arguments are request fields."""
        msgs: list[Message] = []
        if system is not None:
            msgs.append(Message("system", system))
        if messages:
            msgs.extend(m if isinstance(m, Message) else message_from_dict(m) for m in messages)
        if prompt is not None:
            msgs.append(Message("user", prompt))
        if not msgs:
            from swarmgate.errors import InvalidRequestError

            raise InvalidRequestError("a request needs a 'prompt' or at least one message")
        return cls(messages=tuple(msgs), **fields)

    def prompt_text(self) -> str:
        """All message text joined by newlines (for estimates and cache keys)."""
        return "\n".join(m.text() for m in self.messages)


def message_from_dict(data: Mapping[str, Any]) -> Message:
    """An OpenAI-style message dict as a :class:`Message`; raises
    :class:`~swarmgate.errors.InvalidRequestError` naming the bad field."""
    from swarmgate.errors import InvalidRequestError

    role = data.get("role")
    if role not in _ROLES:
        raise InvalidRequestError(f"message role must be one of {sorted(_ROLES)}, got {role!r}")
    content = data.get("content")
    if content is not None and not isinstance(content, str | list):
        raise InvalidRequestError(f"message content must be a string or a list of parts, got {type(content).__name__}")
    tool_calls = data.get("tool_calls")
    return Message(
        role=role,
        content=content,
        name=data.get("name"),
        tool_calls=tuple(tool_calls) if tool_calls else None,
        tool_call_id=data.get("tool_call_id"),
    )


@attrs.frozen
class TokenUsage:
    """Token counts: ``input`` (prompt), ``output`` (completion), ``total``."""

    input: int = 0
    output: int = 0
    total: int = 0

    @classmethod
    def of(cls, input: int, output: int) -> TokenUsage:  # noqa: A002 - the guide's field name
        return cls(input, output, input + output)

    def to_dict(self) -> dict[str, int]:
        return {"input": self.input, "output": self.output, "total": self.total}


ZERO_USAGE = TokenUsage()


@attrs.frozen(cache_hash=True)
class Target:
    """One place a request can go: a configured provider and one of its models."""

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


@attrs.frozen
class Attempt:
    """One try at one target, successful or not.

    ``latency`` and ``ttft`` are milliseconds; ``cost`` is what this attempt
    cost upstream (failed attempts normally 0, partial streams their partial
    usage); ``error_kind``/``error`` are set for failures.
    """

    provider: str
    model: str
    ok: bool
    latency: float
    cost: float = 0.0
    tokens: TokenUsage = ZERO_USAGE
    ttft: float | None = None
    error_kind: str | None = None
    error: str | None = None
    status: int | None = None
    #: Refused locally by a ``before_attempt`` hook (budget, rate limit):
    #: the upstream was never called.
    refused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "ok": self.ok,
            "latency": self.latency,
            "cost": self.cost,
            "tokens": self.tokens.to_dict(),
            "ttft": self.ttft,
            "error_kind": self.error_kind,
            "error": self.error,
            "status": self.status,
            "refused": self.refused,
        }


FinishReason: TypeAlias = str
"""``stop``, ``length``, ``tool_calls``, ``content_filter`` or a provider's own value."""


@attrs.frozen
class CompletionResponse:
    """A normalised answer.

    ``latency`` is wall-clock milliseconds for the whole request (all
    attempts); ``ttft`` the time to first token of the answering attempt.
    ``cost`` is what the answering attempt cost; ``total_cost`` adds partial
    costs of failed attempts. ``cached`` marks an answer served from a cache
    (``cost`` 0). ``metadata`` holds plugin and provider extras (e.g.
    ``simulated: True``).
    """

    content: str
    provider: str
    model: str
    cost: float
    latency: float
    tokens: TokenUsage
    finish_reason: FinishReason
    attempts: tuple[Attempt, ...] = ()
    id: str = ""
    ttft: float | None = None
    cached: bool = False
    tool_calls: tuple[dict[str, Any], ...] | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def total_cost(self) -> float:
        """Cost of every attempt, including partial costs of failed ones."""
        return sum(a.cost for a in self.attempts) if self.attempts else self.cost

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "content": self.content,
            "provider": self.provider,
            "model": self.model,
            "cost": self.cost,
            "latency": self.latency,
            "ttft": self.ttft,
            "tokens": self.tokens.to_dict(),
            "finish_reason": self.finish_reason,
            "cached": self.cached,
            "tool_calls": list(self.tool_calls) if self.tool_calls else None,
            "attempts": [a.to_dict() for a in self.attempts],
            "metadata": dict(self.metadata),
        }


# ---------------------------------------------------------------------------
# What a provider driver returns


@attrs.frozen
class ProviderReply:
    """A provider driver's normalised answer to one call. ``model`` is the
    name the upstream reported, if any. ``cost`` is normally ``None``: the
    kernel prices ``tokens`` from the model config. A meta-provider that
    made priced calls of its own (a composite) sets it to their real total."""

    content: str
    tokens: TokenUsage
    finish_reason: FinishReason = "stop"
    tool_calls: tuple[dict[str, Any], ...] | None = None
    model: str | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    cost: float | None = None


# ---------------------------------------------------------------------------
# Stream events


@attrs.frozen
class StreamStart:
    """First event of a stream: which target is answering (after failover
    before the first token, this names the target that finally answered).
    ``cached`` marks an answer a ``before_request`` hook produced (a cache
    hit); ``attempts`` counts the attempts made so far, the answering one
    included (0 for a cache hit), so a gateway can report both before the
    first token is sent on."""

    provider: str
    model: str
    id: str
    cached: bool = False
    attempts: int = 1


@attrs.frozen
class TextDelta:
    """A piece of generated text."""

    text: str


@attrs.frozen
class ToolCallDelta:
    """A fragment of a tool call, OpenAI style (``index`` plus partial fields)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@attrs.frozen
class UsageEvent:
    """Token usage for the stream so far (normally once, near the end).
    Providers leave ``cost`` ``None`` and the kernel prices the tokens;
    a meta-provider that knows the real cost of its calls sets it."""

    tokens: TokenUsage
    cost: float | None = None


@attrs.frozen
class FinishEvent:
    """End of a successful stream. From a provider: the reason, and optional
    ``metadata`` merged into the response's (a meta-provider's decision, say).
    From the manager: also the full :class:`CompletionResponse`, assembled
    from the stream."""

    finish_reason: FinishReason
    response: CompletionResponse | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class StreamFailover:
    """The answering target failed after output started and the stream goes
    on at another one (``routing.streamFailover: "continue"``).

    ``mode`` is ``"continue"`` when the new target continues the partial
    answer (assistant prefill: the text so far stands) or ``"restart"``
    when it answers afresh: the consumer must discard the text received so
    far. ``error`` is the failure that caused it."""

    provider: str
    model: str
    mode: Literal["continue", "restart"]
    error: Exception


@attrs.frozen
class ErrorEvent:
    """A stream ended with an error (only yielded by ``manager.stream(...,
    errors="event")``; by default the error is raised). ``partial`` holds the
    text delivered before the error."""

    error: Exception
    partial: str = ""


ProviderEvent: TypeAlias = TextDelta | ToolCallDelta | UsageEvent | FinishEvent
"""What a provider driver's ``stream()`` yields."""

StreamEvent: TypeAlias = (
    StreamStart | TextDelta | ToolCallDelta | UsageEvent | FinishEvent | ErrorEvent | StreamFailover
)
"""What ``ProviderManager.stream()`` yields."""


@attrs.frozen
class HealthStatus:
    """Result of a health probe. ``latency`` in milliseconds."""

    healthy: bool
    latency: float | None = None
    detail: str = ""
