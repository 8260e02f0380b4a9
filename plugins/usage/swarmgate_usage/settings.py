"""The usage log's configuration (``monitoring.usageLog``).

Durations are milliseconds, like every duration in the config.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs

from swarmgate import SwarmgateConfig, parse_section
from swarmgate.config import InvalidValue
from swarmgate.paths import data_path

#: Where the usage log lives when ``path`` is not set (under the data directory).
DEFAULT_FILE = "usage.db"
#: 90 days, in milliseconds.
DEFAULT_RETENTION_MS = 90 * 24 * 3600 * 1000.0
#: The config path of the section.
SECTION = "monitoring.usageLog"


@attrs.frozen
class UsageLogSettings:
    """``monitoring.usageLog``.

    ``enabled`` records every request (default true). ``path`` is the SQLite
    file, relative paths under the data directory (default ``usage.db``).
    ``commitInterval`` is the group-commit window in ms: a recorded request
    is committed at most this long after it ended (default 200).
    ``maxBatch`` commits early when that many requests are pending (default
    500). ``retention`` (ms, default 90 days; ``null`` keeps everything)
    purges older requests at start-up and then every hour.
    """

    enabled: bool = True
    path: str | None = None
    commit_interval: float = 200.0
    max_batch: int = 500
    retention: float | None = DEFAULT_RETENTION_MS

    def __attrs_post_init__(self) -> None:
        if not (self.commit_interval >= 0 and math.isfinite(self.commit_interval)):
            raise InvalidValue(
                "commitInterval", f"must be a non-negative number of milliseconds, got {self.commit_interval}"
            )
        if self.max_batch < 1:
            raise InvalidValue("maxBatch", f"must be at least 1, got {self.max_batch}")
        if self.retention is not None and not (self.retention > 0 and math.isfinite(self.retention)):
            raise InvalidValue(
                "retention", f"must be a positive number of milliseconds or null (keep forever), got {self.retention}"
            )
        if self.path is not None and not self.path.strip():
            raise InvalidValue("path", "must be a file path, got an empty string")

    @classmethod
    def from_config(cls, config: SwarmgateConfig | None) -> UsageLogSettings:
        """The section of ``config`` (defaults when absent). Raises
        ConfigError naming bad values."""
        raw: Any = config.section(SECTION) if config is not None else None
        return parse_section(cls, raw, SECTION, source=config.source if config is not None else None)

    def resolved_path(self) -> Path:
        """``path`` resolved under the data directory (its parent created)."""
        return data_path(self.path or DEFAULT_FILE)
