"""The refusals the rate limiter raises: both are the kernel's
:class:`~swarmgate.errors.RateLimitedError` (HTTP 429, ``retry_after`` set)."""

from __future__ import annotations

from typing import ClassVar

from swarmgate import RateLimitedError
from swarmgate_ratelimit.buckets import Unit


class RateLimitExceededError(RateLimitedError):
    """A gateway or caller limit refused the request (in ``before_request``).
    ``scope`` is ``global`` or ``caller:<id>``; ``unit`` says which bucket
    (``requests`` or ``tokens``) was short."""

    def __init__(
        self,
        message: str,
        *,
        scope: str,
        unit: Unit,
        retry_after: float,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after, provider=provider, model=model)
        self.scope = scope
        self.unit = unit


class ProviderRateLimitExceededError(RateLimitExceededError):
    """A provider's own limit refused one attempt (in ``before_attempt``):
    the request moves on to its next target (``failover``). When every
    target was refused so, the caller gets this error, with the shortest
    wait among the refused providers as ``retry_after``."""

    failover: ClassVar[bool] = True
