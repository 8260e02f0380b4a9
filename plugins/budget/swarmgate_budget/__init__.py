"""swarmgate-budget: daily and monthly spend budgets.

* :class:`BudgetPlugin` -- the hook plugin (entry point ``budget`` in the
  ``swarmgate`` group), configured by ``routing.budgetLimits`` and
  ``providers.<name>.budget``: reserves each attempt's worst-case cost
  against the global, provider and caller budgets before the provider is
  called, refuses what does not fit, settles the actual cost, raises
  threshold alerts, resumes after a restart from the usage log;
* :class:`BudgetService` -- what it publishes as ``manager.extensions["budget"]``
  (``await status()``, ``budgets()``);
* :class:`BudgetExhaustedError` / :class:`ProviderBudgetExhaustedError` --
  its refusals (a provider's fails over to another provider);
* :class:`BudgetSettings`, :class:`Limits` -- the configuration;
  :class:`Budget`, :class:`Period` -- one budget, one period.

The public API is exactly ``__all__``.
"""

from swarmgate_budget.errors import BudgetExhaustedError, ProviderBudgetExhaustedError
from swarmgate_budget.periods import Period, period_of
from swarmgate_budget.plugin import BUDGET_EXHAUSTED, Budget, BudgetPlugin, BudgetService
from swarmgate_budget.settings import DEFAULT_THRESHOLDS, BudgetSettings, Limits

__all__ = [
    "BUDGET_EXHAUSTED",
    "DEFAULT_THRESHOLDS",
    "Budget",
    "BudgetExhaustedError",
    "BudgetPlugin",
    "BudgetService",
    "BudgetSettings",
    "Limits",
    "Period",
    "ProviderBudgetExhaustedError",
    "period_of",
]
