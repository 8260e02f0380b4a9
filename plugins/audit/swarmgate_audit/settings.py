"""The audit log's configuration (``security.audit``).

The guide's keys are ``enabled``, ``logLevel`` and ``retention`` (ms); the
rest extend it. Durations are milliseconds, like every duration in the config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from swarmgate import SwarmgateConfig, parse_section
from swarmgate.config import InvalidValue
from swarmgate.paths import data_path

#: The config path of the section.
SECTION: Final = "security.audit"
#: The section whose ``gdpr``/``hipaa`` switches turn on redaction of stored bodies.
COMPLIANCE_SECTION: Final = "security.compliance"
#: Where the audit log lives when ``path`` is not set (under the data directory).
DEFAULT_FILE: Final = "audit.db"
#: 90 days, in milliseconds (the guide's example).
DEFAULT_RETENTION_MS: Final = 90 * 24 * 3600 * 1000.0
#: ``logLevel`` values, least severe first. ``debug`` records what ``info``
#: records: there is nothing more detailed to put in an audit record.
LEVELS: Final = ("debug", "info", "warning", "error")


@attrs.frozen
class AuditSettings:
    """``security.audit``.

    ``enabled`` records requests and admin actions (default true).
    ``logLevel`` chooses which requests are recorded: ``info`` (default,
    and ``debug``) every request; ``warning`` only requests that ended
    without an answer (refused, failed, cancelled); ``error`` only those
    that failed with a gateway or provider fault (status 500 and above).
    Admin actions are recorded whatever the level. ``retention`` (ms,
    default 90 days; ``null`` keeps everything) purges older records at
    start-up and then every hour. ``path`` is the SQLite file, relative
    paths under the data directory (default ``audit.db``).
    ``includeBodies`` stores prompts and completions too (default false).
    ``commitInterval`` is the group-commit window in ms (default 200): a
    record is durable at most this long after its request ended.
    ``maxBatch`` commits early when that many records are pending.
    """

    enabled: bool = True
    log_level: str = "info"
    retention: float | None = DEFAULT_RETENTION_MS
    path: str | None = None
    include_bodies: bool = False
    commit_interval: float = 200.0
    max_batch: int = 500

    def __attrs_post_init__(self) -> None:
        if self.log_level not in LEVELS:
            raise InvalidValue("logLevel", f"must be one of {list(LEVELS)}, got {self.log_level!r}")
        if self.retention is not None and not (self.retention > 0 and math.isfinite(self.retention)):
            raise InvalidValue(
                "retention", f"must be a positive number of milliseconds or null (keep forever), got {self.retention}"
            )
        if not (self.commit_interval >= 0 and math.isfinite(self.commit_interval)):
            raise InvalidValue(
                "commitInterval", f"must be a non-negative number of milliseconds, got {self.commit_interval}"
            )
        if self.max_batch < 1:
            raise InvalidValue("maxBatch", f"must be at least 1, got {self.max_batch}")
        if self.path is not None and not self.path.strip():
            raise InvalidValue("path", "must be a file path, got an empty string")

    @classmethod
    def from_config(cls, config: SwarmgateConfig | None) -> AuditSettings:
        """The section of ``config`` (defaults when absent). Raises
        ConfigError naming bad values."""
        raw: Any = config.section(SECTION) if config is not None else None
        return parse_section(cls, raw, SECTION, source=config.source if config is not None else None)

    def resolved_path(self) -> Path:
        """``path`` resolved under the data directory (its parent created)."""
        return data_path(self.path or DEFAULT_FILE)


def redaction_required(config: SwarmgateConfig | None) -> bool:
    """Whether ``security.compliance`` turns on redaction of personal data
    (``gdpr: true`` or ``hipaa: true``). The compliance plugin validates
    that section; this reads only the two switches, so the audit log
    redacts even when that plugin is not installed."""
    raw: Any = config.section(COMPLIANCE_SECTION) if config is not None else None
    if not isinstance(raw, Mapping):
        return False
    return raw.get("gdpr") is True or raw.get("hipaa") is True
