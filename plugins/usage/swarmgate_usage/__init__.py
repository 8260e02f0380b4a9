"""swarmgate-usage: the durable usage log.

* :class:`UsagePlugin` -- the hook plugin (entry point ``usage`` in the
  ``swarmgate`` group), configured by ``monitoring.usageLog``: records every
  request and every attempt in SQLite, off the event loop, group-committed;
* :class:`UsageLog` -- the log, published as ``manager.extensions["usage"]``:
  ``records()``, ``spend()``, ``flush()``, ``purge()``, ``forget()``, ``stats()``, ``path``;
* :class:`UsageRecord`, :class:`AttemptRecord` -- what it holds;
* :func:`open_log` -- open a recorded log without a manager;
  :func:`default_path` -- where the log of a config lives;
* :class:`UsageLogSettings` -- the configuration section.

The public API is exactly ``__all__``.
"""

from swarmgate_usage.log import (
    SCHEMA_VERSION,
    UsageLog,
    UsageLogError,
    UsageStats,
    default_path,
    open_log,
)
from swarmgate_usage.plugin import UsagePlugin
from swarmgate_usage.records import AttemptRecord, UsageRecord
from swarmgate_usage.settings import UsageLogSettings

__all__ = [
    "SCHEMA_VERSION",
    "AttemptRecord",
    "UsageLog",
    "UsageLogError",
    "UsageLogSettings",
    "UsagePlugin",
    "UsageRecord",
    "UsageStats",
    "default_path",
    "open_log",
]
