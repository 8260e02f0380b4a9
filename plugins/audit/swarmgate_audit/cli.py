"""The ``audit`` CLI commands: ``audit verify``, ``audit tail`` and ``audit purge``.

They act on a recorded log without a manager: ``--path PATH`` names the
file, else it is ``security.audit.path`` of ``--config`` (or
``$SWARMGATE_CONFIG``), else ``audit.db`` in the data directory. Safe to
run while a gateway writes the same file.
"""

from __future__ import annotations

import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swarmgate import load_config
from swarmgate.cli import config_option
from swarmgate_audit.log import AuditLog, AuditLogError, open_log
from swarmgate_audit.records import REQUEST, AuditRecord
from swarmgate_audit.settings import AuditSettings

path_option = click.option(
    "--path",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The audit log file (default: security.audit.path of the config, else audit.db in the data directory).",
)


def _resolve(config_path: Path | None, log_path: Path | None) -> tuple[Path, AuditSettings]:
    config = load_config(config_path) if config_path is not None else None
    settings = AuditSettings.from_config(config)
    return (log_path.expanduser() if log_path is not None else settings.resolved_path()), settings


def _open(path: Path) -> AuditLog:
    try:
        return open_log(path)
    except AuditLogError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@click.group("audit")
def audit_group() -> None:
    """Verify, read and maintain the tamper-evident audit log."""


@audit_group.command("verify")
@config_option
@path_option
@click.option(
    "--head",
    metavar="HASH",
    help="A head hash printed by an earlier verify (kept elsewhere): require the chain to still contain it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(config_path: Path | None, log_path: Path | None, head: str | None, as_json: bool) -> None:
    """Recompute the hash chain and name the first broken record (exit status 1 if broken)."""
    path, _ = _resolve(config_path, log_path)
    audit = _open(path)
    try:
        report = audit.verify_sync(head=head)
    finally:
        audit.close()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif report.broken is None:
        start = f"from anchor seq {report.anchor_seq}" if report.anchor_seq is not None else "from the start"
        span = f" (seq {report.first_seq}..{report.last_seq})" if report.first_seq is not None else ""
        erased = f"; {report.erased} with personal fields erased" if report.erased else ""
        click.echo(f"ok: {report.checked} record(s) verified{span} {start}{erased}; head {report.head_hash}")
    else:
        click.echo(f"BROKEN: {report.broken.describe()}")
        click.echo(f"({report.checked} record(s) before it verified)")
    if not report.ok:
        sys.exit(1)


def _fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _what(record: AuditRecord) -> str:
    data = record.data
    if record.kind != REQUEST:
        target = (record.personal or {}).get("target")
        return f"{data.get('action')}" + (f" {target}" if target else "")
    provider, model = data.get("provider"), data.get("model")
    answered = f"{provider}/{model}" if provider and model else (provider or "-")
    return f"{data.get('requested_model')} -> {answered}"


def _outcome(record: AuditRecord) -> str:
    data = record.data
    if record.kind != REQUEST:
        return ""
    status = data.get("status")
    if data.get("ok"):
        return f"{status}" + (" cache" if data.get("cache_hit") else "")
    return f"[red]{status} {escape(str(data.get('error_kind') or ''))}[/]"


@audit_group.command("tail")
@config_option
@path_option
@click.option("-n", "count", type=click.IntRange(min=1), default=20, show_default=True, help="How many records.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one array of records) instead of a table.")
def tail(config_path: Path | None, log_path: Path | None, count: int, as_json: bool) -> None:
    """The last N records (requests and admin actions), oldest first."""
    path, _ = _resolve(config_path, log_path)
    audit = _open(path)
    try:
        records = audit.records_sync(limit=count, latest=True)
    finally:
        audit.close()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    table = Table(title=f"audit log {path} (last {len(records)})")
    for column in ("seq", "time", "id", "kind", "who", "from", "what", "outcome", "cost", "bodies"):
        table.add_column(column, justify="right" if column in ("seq", "cost") else "left")
    for r in records:
        cost = r.data.get("cost")
        bodies: Any = r.data.get("bodies")
        if isinstance(bodies, dict):
            shown = "encrypted" if bodies.get("encrypted") else "stored"
            if bodies.get("redacted"):
                shown += ", redacted"
        else:
            shown = str(bodies or "-")
        who = escape(r.who) if r.who else ("[dim](erased)[/]" if r.erased else "-")
        table.add_row(
            str(r.seq),
            _fmt_time(r.ts),
            escape(r.id),
            r.kind,
            who,
            escape(r.client or "-"),
            escape(_what(r)),
            _outcome(r),
            f"${cost:.6f}" if isinstance(cost, int | float) else "",
            shown if r.kind == REQUEST else "",
        )
    Console().print(table)


@audit_group.command("purge")
@config_option
@path_option
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(min=0),
    help="Delete records older than DAYS days (default: the configured retention, 90 days).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a sentence.")
def purge(config_path: Path | None, log_path: Path | None, days: float | None, as_json: bool) -> None:
    """Delete old records, keeping the rest verifiable (an anchor and an audit.purge record)."""
    path, settings = _resolve(config_path, log_path)
    if days is None:
        if settings.retention is None:
            raise click.UsageError("retention is null (keep everything) in the config: pass --older-than DAYS")
        seconds = settings.retention / 1000.0
    else:
        seconds = days * 86400.0
    audit = _open(path)
    try:
        deleted = anyio.run(lambda: audit.purge(seconds, actor=_actor()))
    except AuditLogError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finally:
        audit.close()
    if as_json:
        click.echo(json.dumps({"path": str(path), "deleted": deleted, "older_than_s": seconds}))
    else:
        click.echo(f"deleted {deleted} record(s) older than {seconds / 86400.0:g} day(s) from {path}")
