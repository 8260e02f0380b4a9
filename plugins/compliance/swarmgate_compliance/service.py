"""``ComplianceService``: what the plugin publishes as ``manager.extensions["compliance"]``."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import attrs

from swarmgate import CompletionRequest, ProviderManager
from swarmgate.logs import get_logger
from swarmgate_compliance.hooks import is_personal, residency_reason
from swarmgate_compliance.settings import ComplianceSettings

if TYPE_CHECKING:
    from swarmgate_compliance.hooks import ResidencyHooks

log = get_logger("swarmgate.compliance")


@attrs.frozen(kw_only=True)
class ForgetReport:
    """What :meth:`ComplianceService.forget` did.

    ``usage_records``: requests deleted from the usage log (``None``: no
    usage log is active); ``audit_records``: audit records whose personal
    fields were erased (``None``: no audit log is active).
    """

    caller: str
    usage_records: int | None
    audit_records: int | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of the fields."""
        return attrs.asdict(self)


class ComplianceService:
    """The compliance controls, for other plugins, the admin API and the CLI."""

    def __init__(self, manager: ProviderManager, settings: ComplianceSettings) -> None:
        self.manager = manager
        self.settings = settings
        self.residency: ResidencyHooks | None = None

    @property
    def allowed_regions(self) -> tuple[str, ...] | None:
        """The regions requests may be served in (``None``: anywhere)."""
        return self.settings.regions

    def is_personal(self, request: CompletionRequest) -> bool:
        """Whether ``request`` is marked personal (``personalDataTag`` in its
        tags, or ``metadata["personal"]`` true)."""
        return is_personal(request, self.settings.personal_data_tag)

    def residency_reason(self, provider: str) -> str | None:
        """Why ``provider`` is outside the allowed regions, or ``None`` (inside,
        or no ``dataResidency``)."""
        if self.residency is not None:
            return self.residency.reason(provider)
        regions = self.settings.regions
        if regions is None:
            return None
        handle = self.manager.handle(provider)
        return residency_reason(
            provider,
            handle.config if handle else None,
            regions,
            self.settings.allow_providers_without_region,
        )

    async def forget(self, caller: str, *, actor: str | None = None) -> ForgetReport:
        """Erase ``caller``'s records (the GDPR right to erasure): delete its
        requests from the usage log (``extensions["usage"].forget``) and
        erase the personal fields of its audit records
        (``extensions["audit"].forget``, which keeps the chain verifiable and
        appends an ``audit.forget`` record by ``actor``). A log that is not
        active is reported as ``None``. Raises ValueError for an empty caller,
        and the logs' own errors when one of them fails."""
        if not isinstance(caller, str) or not caller.strip():
            raise ValueError(f"caller must be a non-empty string, got {caller!r}")
        extensions = self.manager.extensions
        usage_count: int | None = None
        audit_count: int | None = None
        usage = extensions.get("usage")
        if usage is not None:
            forget = getattr(usage, "forget", None)
            if forget is None:
                raise TypeError(f"the usage log {usage!r} cannot erase records (no forget method): upgrade it")
            usage_count = int(await forget(caller))
        audit = extensions.get("audit")
        if audit is not None:
            result = audit.forget(caller, actor=actor)
            audit_count = int(await result) if inspect.isawaitable(result) else int(result)
        report = ForgetReport(caller=caller, usage_records=usage_count, audit_records=audit_count)
        log.info("compliance_forget", usage_records=usage_count, audit_records=audit_count)
        return report
