"""swarmgate-compliance: compliance controls.

* :class:`CompliancePlugin` -- the hook plugin (entry point ``compliance``
  in the ``swarmgate`` group), configured by ``security.compliance``:
  ``gdpr`` (requests marked personal never cached, audit bodies redacted,
  erasure), ``dataResidency`` (only providers in the allowed regions),
  ``hipaa`` (those controls plus the audit log and encryption at rest,
  required at start-up);
* :class:`ComplianceService` -- what it publishes as
  ``manager.extensions["compliance"]``: ``forget(caller)``,
  ``is_personal(request)``, ``residency_reason(provider)``,
  ``allowed_regions``; :class:`ForgetReport` -- what an erasure did;
* :class:`DataResidencyError` -- a target outside the allowed regions refused;
* :class:`ComplianceSettings` -- the configuration section;
  :func:`region_allowed` -- the region matching rule.

The public API is exactly ``__all__``.
"""

from swarmgate_compliance.hooks import DataResidencyError, is_personal, residency_reason
from swarmgate_compliance.plugin import CompliancePlugin
from swarmgate_compliance.service import ComplianceService, ForgetReport
from swarmgate_compliance.settings import ComplianceSettings, region_allowed

__all__ = [
    "CompliancePlugin",
    "ComplianceService",
    "ComplianceSettings",
    "DataResidencyError",
    "ForgetReport",
    "is_personal",
    "region_allowed",
    "residency_reason",
]
