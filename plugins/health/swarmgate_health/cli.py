"""``qwen-swarm-enhanced debug providers [--health] [--config PATH] [--json]``.

The guide's troubleshooting command. Builds a manager from the config (or
the embedded default), and

* without ``--health``: lists the configured providers (no network);
* with ``--health``: runs every live provider's configured checks once
  (``ping``, and ``request`` where configured), concurrently, as a one-shot
  diagnosis (one result decides), and prints provider, type, healthy,
  latency, detail and uptime (covering this run only; the background
  monitor of a long-running gateway keeps the real figures).

With ``--url`` (or ``$SWARMGATE_URL``) it asks that running gateway
instead (admin key from ``--admin-key`` or ``$SWARMGATE_ADMIN_KEY``): its
providers (``GET /admin/providers``), and with ``--health`` a probe of each
now (``POST /admin/health/check``) next to the uptime and last check
results its background monitor keeps (``GET /health/providers``).

Exit status: 0 when every probed provider is healthy (always, without
``--health``), 1 otherwise, 2 on a config or plugin error, or a gateway
that cannot be reached or refuses (the kernel's CLI group maps those).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

import anyio
import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swarmgate import ProviderManager
from swarmgate.cli import gateway_options, gateway_request
from swarmgate_health.monitor import HealthMonitor, RoundResult
from swarmgate_health.settings import load_settings

#: What the command publishes as ``manager.extensions["health"]`` before the
#: manager starts, so that the plugin leaves health to the command.
RESERVED: Final = "reserved by 'debug providers'"


def add_commands(cli: click.Group) -> None:
    """Add ``providers`` to the ``debug`` group of ``cli`` (creating the
    group when no other plugin did)."""
    debug = cli.commands.get("debug")
    if not isinstance(debug, click.Group):
        debug = click.Group("debug", help="Troubleshoot the gateway: inspect providers and their health.")
        cli.add_command(debug)
    debug.add_command(providers_command)


@click.command("providers")
@click.option("--health", is_flag=True, help="Probe every provider once with its configured checks.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SWARMGATE_CONFIG",
    help="Config file (JSON or YAML); default: $SWARMGATE_CONFIG, else the embedded default.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@gateway_options
def providers_command(
    health: bool, config_path: Path | None, as_json: bool, url: str | None, admin_key: str | None
) -> None:
    """List the configured providers; with --health, probe each once (a
    running gateway's providers with --url).

    Exits 0 when every probed provider is healthy, 1 when one is not,
    2 on a config error.
    """
    rows = _remote_rows(url, admin_key, health) if url else anyio.run(_rows, config_path, health)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_table(rows, health)
    healthy = all(row["healthy"] is not False for row in rows)
    sys.exit(0 if healthy else 1)


async def _rows(config_path: Path | None, health: bool) -> list[dict[str, Any]]:
    manager = ProviderManager(config_path)
    # Published before initialize(): the plugin then starts no background
    # monitor of its own (a one-shot command must not probe twice).
    manager.extensions["health"] = RESERVED
    async with manager:
        rounds: dict[str, RoundResult] = {}
        snapshot: dict[str, dict[str, Any]] = {}
        if health:
            settings = load_settings(manager.config, manager.providers()).diagnosis()
            monitor = HealthMonitor(manager, settings, log_events=False)
            manager.extensions["health"] = monitor
            rounds = await monitor.probe_round()
            snapshot = monitor.snapshot()
        rows = []
        for name, config in manager.config.providers.items():
            row: dict[str, Any] = {
                "provider": name,
                "type": config.type,
                "enabled": config.enabled,
                "priority": config.priority,
                "models": list(config.models),
            }
            if health:
                result = rounds.get(name)
                if result is None:
                    row.update(healthy=None, latency_ms=None, detail="disabled in the config", uptime=None, checks=[])
                else:
                    row.update(
                        healthy=result.healthy,
                        latency_ms=None if result.latency is None else round(result.latency, 3),
                        detail=result.detail,
                        uptime=snapshot[name]["uptime"],
                        checks=[r.to_dict() for r in result.results],
                    )
            else:
                row["healthy"] = None
            rows.append(row)
        return rows


def _remote_rows(url: str, admin_key: str | None, health: bool) -> list[dict[str, Any]]:
    """The rows of :func:`_rows` from the gateway at ``url``: its providers;
    with ``health`` a probe of each now, the uptime its monitor keeps and
    the last result of each configured check."""
    listed = gateway_request("GET", "/admin/providers", url=url, admin_key=admin_key)["providers"]
    probes: dict[str, Any] = {}
    monitored: dict[str, Any] = {}
    if health:
        probes = gateway_request("POST", "/admin/health/check", url=url, admin_key=admin_key)
        monitored = {
            row["name"]: row
            for row in gateway_request("GET", "/health/providers", url=url, admin_key=admin_key)["providers"]
        }
    rows = []
    for provider in listed:
        name = provider["name"]
        config = provider.get("config") or {}
        row: dict[str, Any] = {
            "provider": name,
            "type": provider["type"],
            "enabled": provider["enabled"],
            "priority": config.get("priority", 100),
            "models": list(config.get("models") or {}),
        }
        if health:
            probe = probes.get(name)
            if probe is None:
                row.update(healthy=None, latency_ms=None, detail="disabled in the config", uptime=None, checks=[])
            else:
                state = monitored.get(name) or {}
                snapshot = state.get("health") or {}
                latency = probe.get("latency")
                row.update(
                    healthy=probe["healthy"],
                    latency_ms=None if latency is None else round(latency, 3),
                    detail=probe.get("detail") or "",
                    uptime=state.get("uptime"),
                    checks=[c["last"] for c in snapshot.get("checks", []) if c.get("last") is not None],
                )
        else:
            row["healthy"] = None
        rows.append(row)
    return rows


def _print_table(rows: list[dict[str, Any]], health: bool) -> None:
    console = Console()
    if not health:
        table = Table(title="providers")
        for column in ("provider", "type", "enabled", "priority", "models"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                row["provider"],
                row["type"],
                "yes" if row["enabled"] else "no",
                str(row["priority"]),
                ", ".join(row["models"]) or "(any)",
            )
        console.print(table)
        return
    table = Table(title="provider health")
    for column in ("provider", "type", "healthy", "latency", "detail", "uptime"):
        table.add_column(column)
    for row in rows:
        healthy = row["healthy"]
        mark = "-" if healthy is None else ("[green]yes[/]" if healthy else "[red]no[/]")
        latency = "-" if row["latency_ms"] is None else f"{row['latency_ms']:.0f} ms"
        uptime = "-" if row["uptime"] is None else f"{row['uptime'] * 100:.1f}%"
        table.add_row(row["provider"], row["type"], mark, latency, escape(row["detail"]), uptime)
    console.print(table)
    probed = [row for row in rows if row["healthy"] is not None]
    down = [row["provider"] for row in probed if not row["healthy"]]
    summary = f"{len(probed) - len(down)}/{len(probed)} healthy"
    console.print(summary + (f"; unhealthy: {', '.join(down)}" if down else ""))
