"""The budget plugin's configuration.

``routing.budgetLimits`` (the guide's ``{"daily": 10.0, "monthly": 300.0}``)
holds the global limits and the plugin's own keys; ``providers.<name>.budget``
holds one provider's ``{daily, monthly}``. Amounts are in the currency of the
model prices (``costPerToken`` ...); periods are UTC calendar days and months.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from swarmgate import ConfigError, parse_section
from swarmgate.config import InvalidValue

#: ``routing.budgetLimits``: where the global limits and the plugin's keys live.
SECTION = "routing.budgetLimits"

#: The default alert thresholds (fractions of a limit).
DEFAULT_THRESHOLDS = (0.5, 0.8, 1.0)


def _amount(key: str, value: float | None) -> None:
    if value is not None and not (value >= 0 and math.isfinite(value)):
        raise InvalidValue(key, f"must be a non-negative amount, got {value!r}")


@attrs.frozen
class Limits:
    """A ``{daily, monthly}`` pair; ``None`` (or absent) means no limit of that period."""

    daily: float | None = None
    monthly: float | None = None

    def __attrs_post_init__(self) -> None:
        _amount("daily", self.daily)
        _amount("monthly", self.monthly)

    def __bool__(self) -> bool:
        return self.daily is not None or self.monthly is not None


NO_LIMITS = Limits()


@attrs.frozen
class BudgetSettings:
    """``routing.budgetLimits``.

    ``daily`` / ``monthly``: the global limits (all spend through this
    gateway). ``alertThresholds``: fractions of a limit whose crossing raises
    a ``budget_threshold`` alert, once per budget and period (values above 1
    warn about overspend). ``perCaller``: the limits each caller gets by
    default; ``callers``: limits of named callers (over ``perCaller``, field
    by field); a caller policy's ``daily_budget``/``monthly_budget`` (from the
    gateway's API keys) override both. ``routeAround``: rule out targets
    whose provider budget cannot take the request's worst case before
    routing (``filter_targets``); with ``false`` they are tried and refused
    at the attempt (the request fails over). ``enabled: false`` turns every
    budget off, provider budgets included.
    """

    enabled: bool = True
    daily: float | None = None
    monthly: float | None = None
    alert_thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    per_caller: Limits = NO_LIMITS
    callers: dict[str, Limits] = attrs.field(factory=dict)
    route_around: bool = True

    def __attrs_post_init__(self) -> None:
        _amount("daily", self.daily)
        _amount("monthly", self.monthly)
        for i, threshold in enumerate(self.alert_thresholds):
            if not (threshold > 0 and math.isfinite(threshold)):
                raise InvalidValue(
                    f"alertThresholds[{i}]", f"must be a positive fraction of the limit, got {threshold}"
                )
        if len(set(self.alert_thresholds)) != len(self.alert_thresholds):
            raise InvalidValue("alertThresholds", f"has duplicates: {list(self.alert_thresholds)}")

    @property
    def global_limits(self) -> Limits:
        """The global ``daily``/``monthly`` pair."""
        return Limits(self.daily, self.monthly)

    def thresholds(self) -> tuple[float, ...]:
        """The alert thresholds, ascending."""
        return tuple(sorted(self.alert_thresholds))


def load_settings(raw: Any) -> BudgetSettings:
    """Structure ``routing.budgetLimits`` (``None``: the defaults). Raises
    :class:`~swarmgate.ConfigError` naming every bad value."""
    return parse_section(BudgetSettings, raw, SECTION)


def provider_limits(name: str, raw: Any) -> Limits:
    """Structure ``providers.<name>.budget`` (``None``: no limits). Raises
    :class:`~swarmgate.ConfigError` naming every bad value."""
    return parse_section(Limits, raw, f"providers.{name}.budget")


def all_provider_limits(providers: Mapping[str, Any]) -> dict[str, Limits]:
    """Every configured provider's budget (those without one left out);
    every bad value of every provider in one :class:`ConfigError`."""
    out: dict[str, Limits] = {}
    problems: list[tuple[str, str]] = []
    for name, provider in providers.items():
        if provider.budget is None:
            continue
        try:
            limits = provider_limits(name, provider.budget)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if limits:
            out[name] = limits
    if problems:
        raise ConfigError(problems)
    return out
