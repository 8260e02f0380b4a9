"""swarmgate-audit: the tamper-evident audit log.

* :class:`AuditPlugin` -- the hook plugin (entry point ``audit`` in the
  ``swarmgate`` group), configured by ``security.audit``: one record per
  request (who, what, when, from where; bodies only when configured,
  redacted under GDPR, encrypted when the encryption plugin is active),
  written off the event loop, group-committed;
* :class:`AuditLog` -- the log, published as ``manager.extensions["audit"]``:
  ``record_admin()``, ``records()``, ``verify()``, ``purge()``,
  ``forget()``, ``flush()``, ``stats()``, ``path``;
* :class:`AuditRecord`, :class:`VerifyReport`, :class:`ChainBreak` -- what it
  holds and what verification finds; :func:`open_bodies` -- a record's
  prompt and completion (decrypted);
* :func:`open_log` -- open a recorded log without a manager;
  :func:`default_path` -- where the log of a config lives;
* :func:`redact_personal` -- the GDPR redaction of text;
* :class:`AuditSettings` -- the configuration section.

The public API is exactly ``__all__``.
"""

from swarmgate_audit.chain import GENESIS, canonical_json
from swarmgate_audit.log import (
    AAD_PREFIX,
    SCHEMA_VERSION,
    AuditLog,
    AuditLogError,
    AuditStats,
    default_path,
    open_bodies,
    open_log,
)
from swarmgate_audit.plugin import AuditPlugin
from swarmgate_audit.records import ADMIN, REQUEST, AuditRecord, ChainBreak, Encryptor, VerifyReport
from swarmgate_audit.redact import redact_personal, redact_value
from swarmgate_audit.settings import AuditSettings

__all__ = [
    "AAD_PREFIX",
    "ADMIN",
    "GENESIS",
    "REQUEST",
    "SCHEMA_VERSION",
    "AuditLog",
    "AuditLogError",
    "AuditPlugin",
    "AuditRecord",
    "AuditSettings",
    "AuditStats",
    "ChainBreak",
    "Encryptor",
    "VerifyReport",
    "canonical_json",
    "default_path",
    "open_bodies",
    "open_log",
    "redact_personal",
    "redact_value",
]
