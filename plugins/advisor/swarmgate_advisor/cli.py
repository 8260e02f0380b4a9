"""The advisor's CLI: ``recommendations``, ``optimize routing --target ...``
and ``analyze bottlenecks``.

Each works offline on a recorded usage log, without a manager: ``--log
PATH``, else ``monitoring.usageLog.path`` of ``--config`` (or
``$SWARMGATE_CONFIG``), else ``usage.db`` in the data directory. The config
(``--config``, else the embedded default a plugin offers) gives the prices,
routes, weights and thresholds (``monitoring.advisor``). The fingerprint
database (for the caching rule) is read next to the log. A log with no
request within ``lookback`` of now is analysed as of its newest request.

With ``--url`` (or ``$SWARMGATE_URL``) each command asks a running
gateway's advisor instead (``GET /admin/recommendations``,
``/admin/optimize/routing``, ``/admin/analyze/bottlenecks``, with the admin
key from ``--admin-key`` or ``$SWARMGATE_ADMIN_KEY``): its config and its
usage log, up to the last request it served. The output is the same.

Exit status: 0, or 2 for a bad option, config or log, or a gateway that
cannot be reached or refuses (one line on stderr).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swarmgate import PluginError, SwarmgateConfig, load_config
from swarmgate.cli import config_option, gateway_options, gateway_request, reject_local_options
from swarmgate.paths import data_path
from swarmgate_advisor.advisor import Advisor
from swarmgate_advisor.duplicates import default_path
from swarmgate_advisor.replay import TARGETS, ReplayReport
from swarmgate_advisor.settings import AdvisorSettings

T = TypeVar("T")

log_option = click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The usage log file (default: monitoring.usageLog.path of the config, else usage.db in the data directory).",
)
window_option = click.option(
    "--window",
    default=None,
    metavar="SPAN",
    help="Analyse the last SPAN: <n>[smhd], e.g. 6h, 1d, 30d (default: monitoring.advisor.lookback, 7 days).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def parse_span(text: str) -> float:
    """``<n>[smhd]`` in milliseconds; raises click.BadParameter otherwise."""
    match = _SPAN.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise click.BadParameter(f"expected <n>[smhd] such as 6h or 7d, got {text!r}", param_hint="--window")
    return float(match.group(1)) * _UNIT[match.group(2)] * 1000.0


def add_commands(cli: click.Group) -> None:
    """Add ``recommendations``, ``optimize routing`` and ``analyze
    bottlenecks`` (creating the ``optimize`` and ``analyze`` groups when no
    other plugin did)."""
    cli.add_command(recommendations_command)
    optimize = cli.commands.get("optimize")
    if not isinstance(optimize, click.Group):
        optimize = click.Group("optimize", help="Find a better configuration from the recorded traffic.")
        cli.add_command(optimize)
    optimize.add_command(routing_command)
    analyze = cli.commands.get("analyze")
    if not isinstance(analyze, click.Group):
        analyze = click.Group("analyze", help="Analyse the recorded traffic.")
        cli.add_command(analyze)
    analyze.add_command(bottlenecks_command)


def _config(config_path: Path | None) -> SwarmgateConfig:
    if config_path is not None:
        return load_config(config_path)
    from swarmgate.plugins import PluginHost

    host = PluginHost()
    host.load()
    default = host.default_config()
    return load_config(default if default is not None else {})


def _run(config_path: Path | None, log_path: Path | None, work: Callable[[Advisor], Awaitable[T]]) -> T:
    """Build an offline advisor over the log and run ``work`` with it."""
    config = _config(config_path)
    settings = AdvisorSettings.from_config(config)
    try:
        import swarmgate_usage
    except ImportError:  # pragma: no cover - a declared dependency
        raise PluginError(
            "reading the usage log needs the 'swarmgate-usage' distribution: install it (or 'qwen-swarm-enhanced')",
            namespace="swarmgate",
            name="usage",
            distribution="swarmgate-usage",
        ) from None
    path = log_path.expanduser() if log_path is not None else swarmgate_usage.default_path(config)
    try:
        usage = swarmgate_usage.open_log(path)
    except swarmgate_usage.UsageLogError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    duplicates = data_path(settings.path) if settings.path else default_path(usage.path)
    advisor = Advisor(lambda: config, settings, usage=lambda: usage, duplicates_path=duplicates, anchor_to_log=True)

    async def main() -> T:
        try:
            return await work(advisor)
        finally:
            await usage.aclose()

    return anyio.run(main)


def _lookback(window: str | None) -> float | None:
    return parse_span(window) if window is not None else None


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _remote(url: str, admin_key: str | None, path: str, params: dict[str, Any]) -> Any:
    """``GET path`` on the gateway at ``url``; ``--log`` on the command line is refused."""
    reject_local_options(click.get_current_context(), "log_path")
    return gateway_request("GET", path, url=url, admin_key=admin_key, params=params)


# -- recommendations ------------------------------------------------------------------


@click.command("recommendations")
@config_option
@log_option
@window_option
@json_option
@gateway_options
def recommendations_command(
    config_path: Path | None,
    log_path: Path | None,
    window: str | None,
    as_json: bool,
    url: str | None,
    admin_key: str | None,
) -> None:
    """Data-driven recommendations from the usage log (or a running gateway
    with --url): each with its impact and the config change (`config set`
    command) that applies it."""
    lookback = _lookback(window)
    if url:
        answer = _remote(url, admin_key, "/admin/recommendations", {"window": window})
        found = answer["recommendations"]
    else:
        found = _run(config_path, log_path, lambda advisor: advisor.recommendations(lookback))
    if as_json:
        _json(found)
        return
    console = Console()
    if not found:
        console.print("no recommendation: the recorded traffic gives no reason to change the config")
        return
    table = Table(title="swarmgate recommendations", show_lines=True)
    for column in ("#", "type", "recommendation", "impact", "apply with"):
        table.add_column(column, overflow="fold")
    for i, rec in enumerate(found, 1):
        table.add_row(
            str(i),
            rec["type"],
            escape(rec["description"]),
            escape(rec["impact"]["summary"]),
            escape("\n".join(rec["commands"])),
        )
    console.print(table)


# -- optimize routing ------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _money(value: float) -> str:
    return f"{value:.6g}"


def _change(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


@click.command("routing")
@click.option("--target", type=click.Choice(TARGETS), required=True, help="What to optimise for.")
@config_option
@log_option
@window_option
@json_option
@gateway_options
def routing_command(
    target: str,
    config_path: Path | None,
    log_path: Path | None,
    window: str | None,
    as_json: bool,
    url: str | None,
    admin_key: str | None,
) -> None:
    """Replay the recorded traffic under the other strategies and weights:
    projected cost, latency and success rate of each against the actual
    figures, the best for TARGET, and the config change that gets it (from
    the usage log, or a running gateway with --url)."""
    lookback = _lookback(window)
    if url:
        data = _remote(url, admin_key, "/admin/optimize/routing", {"target": target, "window": window})
    else:
        report: ReplayReport = _run(config_path, log_path, lambda advisor: advisor.replay(target, lookback))
        data = report.to_dict()
    if as_json:
        _json(data)
        return
    print_replay(data)


def print_replay(data: dict[str, Any], console: Console | None = None) -> None:
    """Render a replay report (:meth:`ReplayReport.to_dict`) as a table, the
    best policy and the ``config set`` commands that get it."""
    console = console or Console()
    target = data["target"]
    table = Table(title=f"routing replay for {target}: {data['requests']} recorded requests")
    for column in ("policy", "cost", "cost/day", "vs actual", "mean ms", "p95 ms", "success", "attempts/req", ""):
        table.add_column(column, justify="right" if column not in ("policy", "") else "left")
    actual = data["actual"]
    table.add_row(
        "actual (recorded)",
        _money(actual["cost"]),
        _money(actual["costPerDay"]),
        "",
        _ms(actual["meanLatencyMs"]),
        _ms(actual["p95LatencyMs"]),
        f"{actual['successRate']:.2%}",
        f"{actual['attemptsPerRequest']:.2f}",
        "",
    )
    for row in data["candidates"]:
        table.add_row(
            escape(row["name"]),
            _money(row["cost"]),
            _money(row["costPerDay"]),
            _change(row["costChangePercent"]),
            _ms(row["meanLatencyMs"]),
            _ms(row["p95LatencyMs"]),
            f"{row['successRate']:.2%}",
            f"{row['attemptsPerRequest']:.2f}",
            "[bold green]best[/]" if row["best"] else "",
        )
    console.print(table)
    best = next((row for row in data["candidates"] if row["best"]), None)
    if best is not None:
        if best["changes"]:
            from swarmgate_advisor.rules import config_command

            console.print(
                f"best for {target}: [bold]{escape(best['name'])}[/] ({escape(best['description'])}); apply with:"
            )
            for change in best["changes"]:
                console.print("  " + escape(config_command(change["path"], change["value"])))
        else:
            console.print(f"best for {target}: [bold]{escape(best['name'])}[/]: keep the current config")
    for note in data["notes"]:
        console.print(f"[dim]note: {escape(note)}[/]")


# -- analyze bottlenecks ------------------------------------------------------------------


@click.command("bottlenecks")
@config_option
@log_option
@window_option
@json_option
@gateway_options
def bottlenecks_command(
    config_path: Path | None,
    log_path: Path | None,
    window: str | None,
    as_json: bool,
    url: str | None,
    admin_key: str | None,
) -> None:
    """Where the recorded traffic loses time or fails: the slowest targets
    (p95, time to first token), failure hot spots by error kind, and the
    attempts failover adds per request (from the usage log, or a running
    gateway with --url)."""
    lookback = _lookback(window)
    if url:
        report = _remote(url, admin_key, "/admin/analyze/bottlenecks", {"window": window})
    else:
        report = _run(config_path, log_path, lambda advisor: advisor.bottlenecks(lookback))
    if as_json:
        _json(report)
        return
    console = Console()
    findings = report["findings"]
    if not findings:
        console.print(f"no bottleneck found in {report['requests']} recorded requests")
        return
    table = Table(title=f"bottlenecks in {report['requests']} recorded requests", show_lines=True)
    table.add_column("kind")
    table.add_column("finding", overflow="fold")
    for finding in findings:
        table.add_row(finding["type"], escape(finding["sentence"]))
    console.print(table)
