"""swarmgate-retry: what happens after a failed attempt.

* :class:`RetryPlugin` -- the hook plugin (entry point ``retry`` in the
  ``swarmgate`` group): exponential backoff with full jitter honouring
  ``Retry-After``, a retry budget shared through the StateStore,
  context-window switching, credential refresh, the guide's
  ``errorClassification`` and ``recoveryActions``;
* :class:`RetryService` -- what it publishes as ``manager.extensions["retry"]``;
* :class:`Policy` / :class:`Action` -- the resolved per-provider behaviour;
* :class:`RetryBudget` -- the budget itself.

The public API is exactly ``__all__``.
"""

from swarmgate_retry.plugin import RequestRetries, RetryBudget, RetryCounters, RetryPlugin, RetryService
from swarmgate_retry.settings import GUIDE_NAMES, Action, Policy

__all__ = [
    "GUIDE_NAMES",
    "Action",
    "Policy",
    "RequestRetries",
    "RetryBudget",
    "RetryCounters",
    "RetryPlugin",
    "RetryService",
]
