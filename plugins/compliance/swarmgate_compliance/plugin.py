"""``CompliancePlugin``: the compliance controls (entry point ``compliance``
in the ``swarmgate`` group), configured by ``security.compliance``.

``plugin_setup`` is ``trylast``: it runs after the encryption and audit
plugins published their services, which HIPAA mode requires (a
ConfigError names what is missing). It publishes a
:class:`~swarmgate_compliance.service.ComplianceService` as
``manager.extensions["compliance"]`` (always: erasure is available whatever
the switches say) and registers the request hooks of the controls that are
on (:mod:`swarmgate_compliance.hooks`); this object itself has no request hook.

``gateway_routes`` gives the HTTP gateway the erasure endpoint
``DELETE /admin/callers/{caller}/records`` (:mod:`swarmgate_compliance.routes`,
behind the admin key, listed in ``/openapi.json``).

What the logs contain: the kernel logs no prompt or completion text (a
failed attempt's log line carries the upstream's error message), and its
structlog processor masks credentials; there is no kernel hook to add a
personal-data processor, so GDPR redaction applies to the audit log's
stored bodies, where the text is.
"""

from __future__ import annotations

from typing import Any

import click

from swarmgate import ConfigError, ProviderManager, hookimpl
from swarmgate.logs import get_logger
from swarmgate_compliance.hooks import PERSONAL_HOOKS, RESIDENCY_HOOKS, PersonalDataHooks, ResidencyHooks
from swarmgate_compliance.service import ComplianceService
from swarmgate_compliance.settings import SECTION, ComplianceSettings

log = get_logger("swarmgate.compliance")

#: The ``manager.extensions`` key the service is published under.
EXTENSION = "compliance"


class CompliancePlugin:
    """The compliance controls; see the module docstring."""

    def __init__(self) -> None:
        self.service: ComplianceService | None = None
        self._hooks: list[object] = []

    @hookimpl(trylast=True)
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Read ``security.compliance``, check what HIPAA mode needs, publish
        the service, register the hooks of the controls that are on."""
        config = manager.config
        settings = ComplianceSettings.from_config(config)
        if settings.hipaa:
            problems: list[tuple[str, str]] = []
            if manager.extensions.get("encryption") is None:
                problems.append(
                    (
                        f"{SECTION}.hipaa",
                        "HIPAA mode requires encryption at rest: enable security.encryption "
                        "(install swarmgate-encryption and provide its master key)",
                    )
                )
            if manager.extensions.get("audit") is None:
                problems.append(
                    (
                        f"{SECTION}.hipaa",
                        "HIPAA mode requires the audit log: install swarmgate-audit and leave "
                        "security.audit.enabled on",
                    )
                )
            if problems:
                raise ConfigError(problems, source=config.source)
        service = ComplianceService(manager, settings)
        if settings.personal_controls:
            personal = PersonalDataHooks(settings.personal_data_tag)
            manager.plugins.register(personal, PERSONAL_HOOKS)
            self._hooks.append(personal)
        regions = settings.regions
        if regions is not None:
            residency = ResidencyHooks(manager, regions, settings.allow_providers_without_region)
            manager.plugins.register(residency, RESIDENCY_HOOKS)
            self._hooks.append(residency)
            service.residency = residency
            outside = residency.outside()
            if len(outside) == len(manager.providers()) and outside:
                log.warning(
                    "no_provider_in_allowed_regions",
                    allowed=list(regions),
                    detail="every request will be refused until a provider inside them is added",
                )
        self.service = service
        manager.extensions[EXTENSION] = service

    @hookimpl
    async def plugin_shutdown(self, manager: ProviderManager) -> None:
        """Unregister the request hooks and withdraw the service."""
        for hooks in self._hooks:
            manager.plugins.discard(hooks)
        self._hooks = []
        if self.service is not None and manager.extensions.get(EXTENSION) is self.service:
            del manager.extensions[EXTENSION]
        self.service = None

    @hookimpl
    def gateway_routes(self, manager: ProviderManager) -> list[Any] | None:
        """``DELETE /admin/callers/{caller}/records`` (GDPR erasure), when the
        gateway serving it is swarmgate's (it publishes
        ``manager.extensions["gateway"]``)."""
        if self.service is None:
            return None
        try:
            from swarmgate_server import GATEWAY_EXTENSION, GatewayService
        except ImportError:  # another host asking for routes; the endpoint is swarmgate-server's
            return None
        gateway = manager.extensions.get(GATEWAY_EXTENSION)
        if not isinstance(gateway, GatewayService):
            log.warning("compliance_routes_not_mounted", reason="no swarmgate gateway is serving")
            return None
        from swarmgate_compliance.routes import build_routes

        return build_routes(manager, gateway)

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        """``compliance forget`` and ``compliance check``."""
        from swarmgate_compliance.cli import compliance_group

        cli.add_command(compliance_group)
