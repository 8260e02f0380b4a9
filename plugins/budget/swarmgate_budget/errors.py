"""The refusals of the budget plugin.

Both are :class:`~swarmgate.BudgetExceededError` (kind ``budget_exceeded``,
HTTP 429, ``retry_after`` = seconds until the budget resets):

* :class:`BudgetExhaustedError`: a global or caller budget cannot take the
  attempt; no other target helps, so the request fails (``failover`` false);
* :class:`ProviderBudgetExhaustedError`: one provider's budget cannot take it;
  another provider may (``failover`` true: the kernel moves on to the next
  target, and returns this refusal itself when every target was refused).
"""

from __future__ import annotations

from typing import Any

from swarmgate import BudgetExceededError


class BudgetExhaustedError(BudgetExceededError):
    """A budget refused an attempt. Names the budget (``budget``, e.g.
    ``global:daily``), its ``scope`` (``global``/``provider``/``caller``),
    ``subject`` (the provider or caller, ``None`` for global), ``period``,
    ``limit``, what was ``spent`` and ``reserved`` by attempts in flight,
    the worst-case cost ``requested`` by the refused attempt, and
    ``resets_at`` (ISO 8601 UTC)."""

    def __init__(
        self,
        message: str,
        *,
        budget: str,
        scope: str,
        subject: str | None,
        period: str,
        limit: float,
        spent: float,
        reserved: float,
        requested: float,
        resets_at: str,
        retry_after: float | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model, retry_after=retry_after)
        self.budget = budget
        self.scope = scope
        self.subject = subject
        self.period = period
        self.limit = limit
        self.spent = spent
        self.reserved = reserved
        self.requested = requested
        self.resets_at = resets_at

    def budget_dict(self) -> dict[str, Any]:
        """The budget's figures, JSON-ready."""
        return {
            "budget": self.budget,
            "scope": self.scope,
            "subject": self.subject,
            "period": self.period,
            "limit": self.limit,
            "spent": self.spent,
            "reserved": self.reserved,
            "requested": self.requested,
            "resets_at": self.resets_at,
        }

    def to_dict(self) -> dict[str, object]:
        data = super().to_dict()
        data["budget"] = self.budget_dict()
        return data


class ProviderBudgetExhaustedError(BudgetExhaustedError):
    """A provider's budget refused an attempt at it: the request fails over."""

    failover = True
