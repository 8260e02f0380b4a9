"""Callers: who is asking, and what each caller is allowed.

``CompletionRequest.caller`` names the caller (a caller key's id set by the
gateway, or a label chosen by a library user). A :class:`CallerPolicy` says
what that caller may use: the models or routes it may ask for, its own rate
limit and its own budget. Policies come from *directories* that plugins
register with :meth:`~swarmgate.manager.ProviderManager.add_caller_directory`
(the gateway's configured API keys, the caller-key store); the first
directory that knows a caller answers. The rate-limit and budget plugins
read a caller's limits through :meth:`ProviderManager.caller_policy`.
"""

from __future__ import annotations

from typing import Protocol

import attrs


@attrs.frozen
class CallerPolicy:
    """What one caller may do. ``None`` means "no limit of this kind".

    ``allowed_models``: model names, ``provider/model`` targets or route
    names the caller may request (``None``: any). Rate limit: requests and
    tokens per minute with a burst capacity. Budget: spend per UTC day and
    per UTC month, in the providers' currency units.
    """

    allowed_models: tuple[str, ...] | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    burst_capacity: float | None = None
    daily_budget: float | None = None
    monthly_budget: float | None = None


NO_POLICY = CallerPolicy()


class CallerDirectory(Protocol):
    """Something that knows callers' policies."""

    def policy(self, caller: str) -> CallerPolicy | None:
        """The policy of ``caller``, or ``None`` if this directory does not know it."""
        ...
