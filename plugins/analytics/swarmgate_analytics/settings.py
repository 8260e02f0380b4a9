"""The analytics configuration: ``monitoring.analytics``.

``true``/``false`` is shorthand for ``{"enabled": ...}``; absent means on
(installing the plugin is asking for analytics; the guide's
``analytics: true``). The windows and bins are fixed (see
:mod:`swarmgate_analytics.windows` and :mod:`swarmgate_analytics.histogram`).
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from swarmgate import ConfigError, SwarmgateConfig, parse_section

SECTION: Final = "monitoring.analytics"


@attrs.frozen
class AnalyticsSettings:
    """``monitoring.analytics``: ``enabled`` (default true) turns the live
    windows, ``get_analytics()`` and ``get_metrics()`` on."""

    enabled: bool = True

    @classmethod
    def from_config(cls, config: SwarmgateConfig) -> AnalyticsSettings:
        """The section of ``config``; raises ConfigError naming a bad value."""
        raw: Any = config.section(SECTION)
        if raw is None:
            return cls()
        if isinstance(raw, bool):
            return cls(enabled=raw)
        if not isinstance(raw, dict):
            raise ConfigError([(SECTION, f"expected an object or true/false, got {raw!r}")])
        return parse_section(cls, raw, SECTION)
