"""The ``compliance`` CLI commands.

* ``compliance forget CALLER`` -- erase a caller's records. It starts a
  gateway manager from ``--config`` (or ``$SWARMGATE_CONFIG``, else the
  embedded default) without serving anything, so the usage and audit logs
  it erases are the ones that config writes, through their own services;
  safe while a gateway runs on the same files.
* ``compliance check`` -- the controls a config turns on, and where each
  provider stands against ``dataResidency`` (reads the config, or the
  embedded default, only).
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import anyio
import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swarmgate import ProviderManager, SwarmgateConfig, load_config
from swarmgate.cli import config_option
from swarmgate.plugins import PluginHost
from swarmgate_compliance.hooks import residency_reason
from swarmgate_compliance.service import ComplianceService, ForgetReport
from swarmgate_compliance.settings import ComplianceSettings


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@click.group("compliance")
def compliance_group() -> None:
    """GDPR erasure and a view of the compliance controls."""


async def _forget(config_path: Path | None, caller: str, actor: str) -> ForgetReport:
    async with ProviderManager(config_path) as manager:
        service = manager.extensions.get("compliance")
        if not isinstance(service, ComplianceService):
            raise click.ClickException("the compliance plugin is not active in this gateway")
        return await service.forget(caller, actor=actor)


@compliance_group.command("forget")
@config_option
@click.argument("caller")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a sentence.")
def forget(config_path: Path | None, caller: str, yes: bool, as_json: bool) -> None:
    """Erase CALLER's records: its requests in the usage log, the personal
    fields (caller, end user, client address, bodies) of its audit records."""
    if not caller.strip():
        raise click.BadParameter("must not be empty", param_hint="CALLER")
    if not yes:
        click.confirm(f"Erase every record of caller {caller!r}? This cannot be undone", abort=True)
    report = anyio.run(_forget, config_path, caller, _actor())
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    usage = "no usage log" if report.usage_records is None else f"{report.usage_records} usage record(s) deleted"
    audit = "no audit log" if report.audit_records is None else f"{report.audit_records} audit record(s) erased"
    click.echo(f"caller {caller}: {usage}; {audit}")


def _embedded_default() -> SwarmgateConfig | None:
    """The config a gateway started without one uses (a plugin's ``default_config``), if any."""
    host = PluginHost()
    host.load()
    source = host.default_config()
    return load_config(source) if source is not None else None


@compliance_group.command("check")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def check(config_path: Path | None, as_json: bool) -> None:
    """The compliance controls the config turns on, and which providers are
    inside the allowed regions."""
    config = load_config(config_path) if config_path is not None else _embedded_default()
    settings = ComplianceSettings.from_config(config)
    regions = settings.regions
    providers: list[dict[str, Any]] = []
    for name, provider in (config.providers if config is not None else {}).items():
        reason = residency_reason(name, provider, regions, settings.allow_providers_without_region) if regions else None
        providers.append({"provider": name, "region": provider.region, "allowed": reason is None, "reason": reason})
    data = {
        "gdpr": settings.gdpr,
        "hipaa": settings.hipaa,
        "personal_requests_cached": not settings.personal_controls,
        "audit_bodies_redacted": settings.personal_controls,
        "data_residency": list(regions) if regions is not None else None,
        "providers": providers,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    console.print(
        f"gdpr: {settings.gdpr}  hipaa: {settings.hipaa}  personal requests cached: "
        f"{not settings.personal_controls}  data residency: {escape(', '.join(regions)) if regions else 'anywhere'}"
    )
    table = Table(title="providers")
    for column in ("provider", "region", "allowed", "reason"):
        table.add_column(column)
    for row in providers:
        table.add_row(
            escape(row["provider"]),
            escape(row["region"] or "-"),
            "yes" if row["allowed"] else "[red]no[/]",
            escape(row["reason"] or ""),
        )
    console.print(table)
