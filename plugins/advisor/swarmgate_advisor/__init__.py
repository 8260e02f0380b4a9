"""swarmgate-advisor: optimization recommendations, routing replay and
bottleneck analysis over the durable usage log.

* :class:`AdvisorPlugin` -- the hook plugin (entry point ``advisor`` in the
  ``swarmgate`` group), configured by ``monitoring.advisor``: publishes the
  :class:`Advisor` as ``manager.extensions["advisor"]`` and, while response
  caching is off, fingerprints answered requests to measure duplicates;
* :class:`Advisor` -- ``recommendations()``, ``replay(target)``,
  ``bottlenecks()``;
* :class:`ReplayReport` -- what a replay returns;
* :class:`AdvisorSettings` -- the configuration section;
* :func:`fingerprint` -- the request fingerprint the duplicate count uses.

The public API is exactly ``__all__``.
"""

from swarmgate_advisor.advisor import Advisor, UsageSource
from swarmgate_advisor.duplicates import DuplicateTotals, DuplicateTracker, fingerprint
from swarmgate_advisor.plugin import EXTENSION, AdvisorPlugin
from swarmgate_advisor.replay import CandidateResult, Outcome, ReplayReport
from swarmgate_advisor.settings import AdvisorSettings

__all__ = [
    "EXTENSION",
    "Advisor",
    "AdvisorPlugin",
    "AdvisorSettings",
    "CandidateResult",
    "DuplicateTotals",
    "DuplicateTracker",
    "Outcome",
    "ReplayReport",
    "UsageSource",
    "fingerprint",
]
