"""The ``usage`` CLI commands: ``usage tail`` and ``usage purge``.

Both act on a recorded log without a manager: ``--log PATH`` names the
file, else it is ``monitoring.usageLog.path`` of ``--config`` (or
``$SWARMGATE_CONFIG``), else ``usage.db`` in the data directory.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anyio
import click
from rich.console import Console
from rich.table import Table

from swarmgate import load_config
from swarmgate.cli import config_option
from swarmgate_usage.log import UsageLog, UsageLogError, default_path, open_log
from swarmgate_usage.records import UsageRecord
from swarmgate_usage.settings import UsageLogSettings

log_option = click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The usage log file (default: monitoring.usageLog.path of the config, else usage.db in the data directory).",
)


def _resolve(config_path: Path | None, log_path: Path | None) -> tuple[Path, UsageLogSettings]:
    config = load_config(config_path) if config_path is not None else None
    settings = UsageLogSettings.from_config(config)
    return (log_path.expanduser() if log_path is not None else default_path(config)), settings


def _open(path: Path) -> UsageLog:
    try:
        return open_log(path)
    except UsageLogError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@click.group("usage")
def usage_group() -> None:
    """Read and maintain the usage log (every request and attempt, in SQLite)."""


def _fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _target(record: UsageRecord) -> str:
    if record.provider is None:
        return "-"
    return f"{record.provider}/{record.model}" if record.model else record.provider


@usage_group.command("tail")
@config_option
@log_option
@click.option("-n", "count", type=click.IntRange(min=1), default=20, show_default=True, help="How many records.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one array of records) instead of a table.")
def tail(config_path: Path | None, log_path: Path | None, count: int, as_json: bool) -> None:
    """The last N recorded requests, oldest first."""
    path, _ = _resolve(config_path, log_path)
    usage = _open(path)
    try:
        records = usage.records_sync(limit=count, latest=True)
    finally:
        usage.close()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    table = Table(title=f"usage log {path} (last {len(records)})")
    for column in (
        "time",
        "id",
        "caller",
        "requested",
        "answered by",
        "status",
        "tokens in/out",
        "cost",
        "ms",
        "flags",
    ):
        table.add_column(column, justify="right" if column in ("status", "cost", "ms") else "left")
    for r in records:
        flags = [f for f, on in (("cache", r.cache_hit), ("stream", r.stream)) if on]
        if r.route:
            flags.append(f"route={r.route}")
        if len(r.attempts) > 1:
            flags.append(f"{len(r.attempts)} attempts")
        status = str(r.status) if r.ok else f"[red]{r.status} {r.error_kind or ''}[/]"
        table.add_row(
            _fmt_time(r.ts),
            r.id,
            r.caller or "-",
            r.requested_model,
            _target(r),
            status,
            f"{r.input_tokens}/{r.output_tokens}",
            f"${r.cost:.6f}",
            f"{r.latency_ms:.0f}",
            " ".join(flags),
        )
    Console().print(table)


@usage_group.command("purge")
@config_option
@log_option
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(min=0),
    help="Delete requests older than DAYS days (default: the configured retention, 90 days).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a sentence.")
def purge(config_path: Path | None, log_path: Path | None, days: float | None, as_json: bool) -> None:
    """Delete old requests (and their attempts) from the usage log."""
    path, settings = _resolve(config_path, log_path)
    if days is None:
        if settings.retention is None:
            raise click.UsageError("retention is null (keep everything) in the config: pass --older-than DAYS")
        seconds = settings.retention / 1000.0
    else:
        seconds = days * 86400.0
    usage = _open(path)
    try:
        deleted = anyio.run(usage.purge, seconds)
        remaining = usage.stats()["rows"]
    finally:
        usage.close()
    if as_json:
        click.echo(json.dumps({"path": str(path), "deleted": deleted, "remaining": remaining, "older_than_s": seconds}))
    else:
        click.echo(
            f"deleted {deleted} request(s) older than {seconds / 86400.0:g} day(s) from {path}; {remaining} left"
        )
