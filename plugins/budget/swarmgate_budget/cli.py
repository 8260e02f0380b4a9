"""``qwen-swarm-enhanced budget status [--config PATH] [--json]``.

Builds a manager from the config and prints every budget's figures
(``extensions["budget"].status()``). With a shared StateStore (Redis) these
are the live counters every gateway instance uses; with the in-memory
backend they are what the usage log says was spent this period (the plugin
seeds its counters from it), without the reservations of a running gateway.
Exit status 0, or 2 on a config error or when no budget is configured.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import click
from rich import box
from rich.console import Console
from rich.table import Table

from swarmgate import ConfigError, ProviderManager
from swarmgate_budget.plugin import money


def add_commands(cli: click.Group) -> None:
    """Add the ``budget`` group (``budget status``) to ``cli``."""
    group = cli.commands.get("budget")
    if not isinstance(group, click.Group):
        group = click.Group("budget", help="Spend budgets: what is spent, reserved and left.")
        cli.add_command(group)
    group.add_command(status_command)


@click.command("status")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SWARMGATE_CONFIG",
    help="Config file (JSON or YAML); default: $SWARMGATE_CONFIG, else the embedded default.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status_command(config_path: Path | None, as_json: bool) -> None:
    """Every budget: limit, spent, reserved, what is left, reset time, burn
    rate (with --json also the projection: projected_spend, exhausts_at)."""
    rows = anyio.run(_status, config_path)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="swarmgate budgets (periods in UTC)", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("budget", no_wrap=True)
    for column in ("limit", "spent", "held", "left", "used", "resets", "burn/h"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        used = row["used"]
        table.add_row(
            row["name"],
            money(row["limit"]),
            money(row["spent"]),
            money(row["reserved"]),
            money(row["remaining"]),
            "-" if used is None else f"{used:.0%}",
            datetime.fromtimestamp(row["resets_at_ts"], UTC).strftime("%b %d"),  # always at 00:00 UTC
            money(row["burn_rate_per_hour"]),
        )
    Console().print(table)


async def _status(config_path: Path | None) -> list[dict[str, Any]]:
    async with ProviderManager(config_path) as manager:
        service = manager.extensions.get("budget")
        if service is None:
            raise ConfigError(
                [
                    (
                        "routing.budgetLimits",
                        "no budget is configured (set routing.budgetLimits or a provider's budget), "
                        "or the budget plugin is disabled",
                    )
                ]
            )
        rows: list[dict[str, Any]] = await service.status()
        return rows
