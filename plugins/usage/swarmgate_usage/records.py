"""The values of the usage log: one :class:`UsageRecord` per request, one
:class:`AttemptRecord` per attempt at a target.

Costs are in the currency of the model prices, times in milliseconds
(``ts`` excepted: unix seconds).
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class AttemptRecord:
    """One attempt at one target, as logged.

    ``status`` is the upstream's HTTP status when it answered with one, else
    200 for a success and the gateway status of the error kind for a failure
    (502 for a connection error, 504 for a timeout, 499 for a cancellation,
    429 for a local refusal by a budget or rate limit...). ``cost`` is what
    the attempt cost upstream (a failed stream's partial usage included).
    ``refused`` marks an attempt a ``before_attempt`` hook refused locally:
    the upstream was never called.
    """

    provider: str
    model: str
    ok: bool
    error_kind: str | None = None
    status: int = 200
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    refused: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of the fields."""
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class UsageRecord:
    """One request, as logged when it ended (answered, failed, refused or
    cancelled).

    * ``id`` -- the kernel's request id (``context.id``);
    * ``ts`` -- unix seconds when the request started;
    * ``caller`` -- ``request.caller``;
    * ``requested_model`` -- ``request.model`` as asked (``auto``, a model,
      ``provider/model`` or a route name);
    * ``provider``/``model`` -- who answered, or the last target tried
      (``None`` when no target was tried: refused before routing);
    * ``ok`` -- answered; ``status`` -- 200 when answered, else the status
      the gateway answers for the error (:func:`swarmgate.errors.http_status`:
      429, 499, 502, 503...); ``error_kind`` -- the error's kind;
    * ``input_tokens``/``output_tokens``/``cost`` -- summed over every
      attempt: what the request consumed upstream, failed attempts' partial
      usage included (0 for a cache hit);
    * ``latency_ms`` -- wall time of the whole request; ``ttft_ms`` -- time
      to first token of the answering attempt (of the last attempt for a
      failure, ``None`` when it produced none);
    * ``cache_hit`` -- answered from a cache; ``cost_saved`` -- what the
      cached answer cost originally (0 otherwise);
    * ``stream`` -- a streaming request; ``tags`` -- ``request.tags``;
      ``route`` -- the requested model when it names a configured route.
    """

    id: str
    ts: float
    caller: str | None = None
    requested_model: str = "auto"
    provider: str | None = None
    model: str | None = None
    ok: bool = True
    status: int = 200
    error_kind: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    cache_hit: bool = False
    cost_saved: float = 0.0
    stream: bool = False
    attempts: tuple[AttemptRecord, ...] = ()
    tags: tuple[str, ...] = ()
    route: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of the fields (attempts as mappings, tags as a list)."""
        data = attrs.asdict(self, recurse=False)
        data["attempts"] = [a.to_dict() for a in self.attempts]
        data["tags"] = list(self.tags)
        return data
