"""The CLI core: ``qwen-swarm-enhanced`` (alias ``swarmgate``).

The kernel adds ``plugins list``; every other command comes from plugins
through the ``register_commands`` hook, so installing a plugin adds its
commands. Errors a user can cause (bad config, missing plugin) print one
clear message and exit with status 2, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from swarmgate.errors import ConfigError, PluginError, SwarmgateError
from swarmgate.logs import ensure_redaction
from swarmgate.plugins import GROUP, PluginHost, admitted, distribution_of, entry_points

NAMESPACES = (
    GROUP,
    "swarmgate.providers",
    "swarmgate.strategies",
    "swarmgate.balancers",
    "swarmgate.state",
    "swarmgate.exporters",
)


class _Group(click.Group):
    """Turns user errors into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, PluginError, SwarmgateError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="swarmgate", prog_name="swarmgate")
def cli() -> None:
    """swarmgate: route LLM requests across providers, with failover."""


@cli.group("plugins")
def plugins_group() -> None:
    """Inspect installed plugins."""


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_list(as_json: bool) -> None:
    """Every installed plugin entry point: group, name, distribution, version, status."""
    rows = []
    for namespace in NAMESPACES:
        for ep in entry_points(namespace):
            dist, version = distribution_of(ep)
            reason = admitted(ep.name, dist)
            rows.append(
                {
                    "group": namespace,
                    "name": ep.name,
                    "distribution": dist,
                    "version": version,
                    "target": ep.value,
                    "status": reason or "enabled",
                }
            )
    if as_json:
        import json

        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="swarmgate plugins")
    for column in ("group", "name", "distribution", "version", "target", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c] or "-") for c in ("group", "name", "distribution", "version", "target", "status")))
    Console().print(table)


def build_cli() -> click.Group:
    """The CLI with every admitted plugin's commands registered."""
    ensure_redaction()
    host = PluginHost()
    host.load()
    host.register_commands(cli)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        group = build_cli()
    except PluginError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    group.main(args=argv, prog_name="qwen-swarm-enhanced")
