"""The analytics CLI: ``analytics providers``, ``analytics costs``,
``analytics load-balancing`` and ``export metrics``.

Each reads a recorded usage log, without a manager: ``--log PATH``, else
``monitoring.usageLog.path`` of ``--config`` (or ``$SWARMGATE_CONFIG``),
else ``usage.db`` in the data directory. The figures come from the same
aggregation as the live ``get_analytics()``
(:class:`~swarmgate_analytics.service.RecordsSource`), so they match. The
config, when given, adds the configured providers and models (shown even
without traffic) and the load-balancing weights.

With ``--url`` (or ``$SWARMGATE_URL``) each command asks a running
gateway instead: ``GET /admin/analytics?window=`` (and ``/admin/config``
for the weights; ``/admin/export?format=`` for ``export metrics``) with the
admin key (``--admin-key``, ``$SWARMGATE_ADMIN_KEY``), and prints the same
table or JSON. Without ``--window`` a gateway's figures cover its life since
start; a window longer than its live windows comes from its usage log.

Exit status: 0, or 2 for a bad option, config or log, or a gateway that
cannot be reached or refuses (one line on stderr).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swarmgate import PluginError, SwarmgateConfig, load_config
from swarmgate import registry as _registry
from swarmgate.cli import config_option, gateway_options, gateway_request, reject_local_options
from swarmgate_analytics.service import RecordReader, RecordsSource

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
    help="Only the last SPAN: <n>[smhd], e.g. 1h, 1d, 7d (default: the whole log).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def add_commands(cli: click.Group) -> None:
    """Add the ``analytics`` group and ``export metrics`` to ``cli`` (into
    existing groups of those names when another plugin made them)."""
    analytics = cli.commands.get("analytics")
    if not isinstance(analytics, click.Group):
        analytics = click.Group("analytics", help="Provider figures from the usage log: traffic, latency, cost.")
        cli.add_command(analytics)
    for command in (providers_command, costs_command, load_balancing_command):
        analytics.add_command(command)
    export = cli.commands.get("export")
    if not isinstance(export, click.Group):
        export = click.Group("export", help="Export gateway data.")
        cli.add_command(export)
    export.add_command(export_metrics_command)


# -- plumbing ---------------------------------------------------------------------


def _config(config_path: Path | None) -> SwarmgateConfig | None:
    return load_config(config_path) if config_path is not None else None


@contextmanager
def _opened(config: SwarmgateConfig | None, log_path: Path | None) -> Iterator[RecordReader]:
    """The usage log to read (closed afterwards); exits 2 when there is none."""
    try:
        import swarmgate_usage
    except ImportError:
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
    try:
        yield usage
    finally:
        usage.close()


def _run(config_path: Path | None, log_path: Path | None, work: Callable[[RecordsSource], Awaitable[T]]) -> T:
    config = _config(config_path)
    with _opened(config, log_path) as reader:
        source = RecordsSource(reader, config)
        return anyio.run(work, source)


def _num(value: float | None) -> str:
    """Milliseconds without the unit (the column says it)."""
    return "-" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.2f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{_num(value)} ms"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.6f}" if value < 1 else f"${value:,.2f}"


def _title(what: str, window: str | None, url: str | None = None) -> str:
    if url:
        return f"{what} ({'last ' + window if window else 'since start'}, gateway at {url})"
    return f"{what} ({'last ' + window if window else 'whole log'})"


def _report(url: str | None, admin_key: str | None, window: str | None, log_path: Path | None) -> dict[str, Any] | None:
    """The running gateway's analytics document (``GET /admin/analytics``)
    when ``url`` is given, else ``None`` (read the local log)."""
    if not url:
        return None
    reject_local_options(click.get_current_context(), "log_path")
    report: dict[str, Any] = gateway_request(
        "GET", "/admin/analytics", url=url, admin_key=admin_key, params={"window": window}
    )
    return report


# -- analytics providers ----------------------------------------------------------------


@click.command("providers")
@click.option("--detailed", is_flag=True, help="More columns, and a table per provider/model.")
@window_option
@json_option
@config_option
@log_option
@gateway_options
def providers_command(
    detailed: bool,
    window: str | None,
    as_json: bool,
    config_path: Path | None,
    log_path: Path | None,
    url: str | None,
    admin_key: str | None,
) -> None:
    """Per-provider success rate, latency and cost from the usage log (or a
    running gateway with --url); --detailed: every figure, per provider and
    per model."""

    async def work(source: RecordsSource) -> dict[str, Any]:
        return await source.analytics(window)

    report = _report(url, admin_key, window, log_path) or _run(config_path, log_path, work)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    console = Console()
    if detailed:
        console.print(_detail_table(_title("providers", window, url), report["providers"]))
        console.print(_detail_table(_title("models", window, url), report["models"]))
    else:
        console.print(_figures_table(_title("providers", window, url), report["providers"], "provider"))
    totals = report["totals"]
    console.print(
        f"{totals['requests']} requests: {totals['successes']} answered ({totals['cacheHits']} from cache), "
        f"{totals['failures']} failed, {totals['cancelled']} cancelled; success {_pct(totals['successRate'])}; "
        f"cost {_money(totals['totalCost'])}"
    )


def _figures_table(title: str, rows: list[dict[str, Any]], first: str) -> Table:
    """One row per provider (or model): the guide's summary figures."""
    table = Table(title=title)
    table.add_column(first, no_wrap=True)
    for column in ("requests", "success", "avg ms", "p95 ms", "avg cost", "total cost"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            escape(row["name"]),
            str(row["totalRequests"]),
            _pct(row["successRate"]),
            _num(row["avgLatency"]),
            _num(row["p95Latency"]),
            _money(row["avgCost"]),
            _money(row["totalCost"]),
        )
    return table


#: The rows of a ``--detailed`` table: label and how to show the figure.
_DETAILS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("requests", lambda r: str(r["totalRequests"])),
    ("successes", lambda r: str(r["successes"])),
    ("failures", lambda r: str(r["failures"])),
    ("refused", lambda r: str(r["refused"])),
    ("cancelled", lambda r: str(r["cancelled"])),
    ("success rate", lambda r: _pct(r["successRate"])),
    ("latency avg (ms)", lambda r: _num(r["avgLatency"])),
    ("latency p50 (ms)", lambda r: _num(r["p50Latency"])),
    ("latency p95 (ms)", lambda r: _num(r["p95Latency"])),
    ("latency p99 (ms)", lambda r: _num(r["p99Latency"])),
    ("first token avg (ms)", lambda r: _num(r["avgTtft"])),
    ("first token p95 (ms)", lambda r: _num(r["p95Ttft"])),
    ("cost per request", lambda r: _money(r["avgCost"])),
    ("total cost", lambda r: _money(r["totalCost"])),
    ("tokens in", lambda r: str(r["inputTokens"])),
    ("tokens out", lambda r: str(r["outputTokens"])),
    ("errors", lambda r: "\n".join(f"{k} {v}" for k, v in r["errorsByKind"].items()) or "-"),
    ("refusals", lambda r: "\n".join(f"{k} {v}" for k, v in r["refusedByKind"].items()) or "-"),
)


def _detail_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """Every figure as a row, one column per provider (or model): readable
    in a terminal of any width for the handful of providers a gateway has."""
    table = Table(title=title)
    table.add_column("", no_wrap=True)
    for row in rows:
        table.add_column(escape(row["name"]), justify="right", overflow="fold")
    for label, show in _DETAILS:
        table.add_row(label, *(escape(show(row)) for row in rows))
    return table


# -- analytics costs ---------------------------------------------------------------------


def cost_rows(report: dict[str, Any], by_provider: bool) -> dict[str, Any]:
    """The cost breakdown of an analytics document: per provider (or per
    provider/model), cost, share of the total, requests, cost per request,
    tokens and cost per 1000 tokens."""
    rows = report["providers"] if by_provider else report["models"]
    total = sum(row["totalCost"] for row in rows)
    out = []
    for row in sorted(rows, key=lambda r: (-r["totalCost"], r["name"])):
        tokens = row["inputTokens"] + row["outputTokens"]
        out.append(
            {
                "name": row["name"],
                "totalCost": row["totalCost"],
                "share": row["totalCost"] / total if total else None,
                "totalRequests": row["totalRequests"],
                "avgCost": row["avgCost"],
                "inputTokens": row["inputTokens"],
                "outputTokens": row["outputTokens"],
                "costPer1kTokens": row["totalCost"] * 1000.0 / tokens if tokens else None,
            }
        )
    totals = report["totals"]
    return {
        "window": report["window"],
        "groupBy": "provider" if by_provider else "model",
        "rows": out,
        "totalCost": totals["totalCost"],
        "costSaved": totals["costSaved"],
        "requests": totals["requests"],
    }


@click.command("costs")
@click.option("--by-provider", is_flag=True, help="One row per provider (default: per provider/model).")
@window_option
@json_option
@config_option
@log_option
@gateway_options
def costs_command(
    by_provider: bool,
    window: str | None,
    as_json: bool,
    config_path: Path | None,
    log_path: Path | None,
    url: str | None,
    admin_key: str | None,
) -> None:
    """Spend per provider or model from the usage log (or a running gateway
    with --url), largest first."""

    async def work(source: RecordsSource) -> dict[str, Any]:
        return cost_rows(await source.analytics(window), by_provider)

    remote = _report(url, admin_key, window, log_path)
    costs = cost_rows(remote, by_provider) if remote is not None else _run(config_path, log_path, work)
    if as_json:
        click.echo(json.dumps(costs, indent=2))
        return
    table = Table(title=_title("costs by " + costs["groupBy"], window, url))
    for column in ("provider" if by_provider else "provider/model", "cost", "share", "requests", "per request"):
        table.add_column(column, justify="left" if column.startswith("provider") else "right")
    for column in ("tokens in", "tokens out", "per 1k tokens"):
        table.add_column(column, justify="right")
    for row in costs["rows"]:
        table.add_row(
            escape(row["name"]),
            _money(row["totalCost"]),
            _pct(row["share"]),
            str(row["totalRequests"]),
            _money(row["avgCost"]),
            str(row["inputTokens"]),
            str(row["outputTokens"]),
            _money(row["costPer1kTokens"]),
        )
    console = Console()
    console.print(table)
    console.print(
        f"total {_money(costs['totalCost'])} over {costs['requests']} requests; "
        f"saved by the cache {_money(costs['costSaved'])}"
    )


# -- analytics load-balancing ----------------------------------------------------------------


def balance_rows(report: dict[str, Any], config: SwarmgateConfig | None) -> dict[str, Any]:
    """Each provider's share of the traffic (attempts that reached it) next
    to its share of the configured load-balancing weights
    (``routing.loadBalancing.weights``, else the provider's ``weight``) among
    the enabled providers; ``None`` weights without a config."""
    weights: dict[str, float] = {}
    algorithm = None
    if config is not None:
        balancing = config.routing.load_balancing
        algorithm = balancing.algorithm
        for name, provider in config.providers.items():
            if provider.enabled:
                weights[name] = balancing.weights.get(name, provider.weight)
    return _balance(report, algorithm, weights)


def document_weights(document: Mapping[str, Any]) -> tuple[str | None, dict[str, float]]:
    """The balancer and the enabled providers' weights of a config document
    as a gateway's ``GET /admin/config`` answers it (camelCase, every key)."""
    routing = document.get("routing") or {}
    balancing = routing.get("loadBalancing") or {}
    if isinstance(balancing, str):
        balancing = {"algorithm": balancing}
    explicit = balancing.get("weights") or {}
    weights: dict[str, float] = {}
    for name, provider in (document.get("providers") or {}).items():
        if isinstance(provider, Mapping) and provider.get("enabled", True):
            weight = explicit.get(name, provider.get("weight", 1.0))
            weights[name] = float(weight) if isinstance(weight, int | float) else 1.0
    algorithm = balancing.get("algorithm")
    return (algorithm if isinstance(algorithm, str) else "round-robin"), weights


def _balance(report: dict[str, Any], algorithm: str | None, weights: dict[str, float]) -> dict[str, Any]:
    rows = report["providers"]
    traffic = sum(row["totalRequests"] for row in rows)
    weight_total = sum(weights.values())
    out = []
    for row in rows:
        name = row["name"]
        share = row["totalRequests"] / traffic if traffic else None
        weight = weights.get(name)
        weight_share = None if weight is None or not weight_total else weight / weight_total
        out.append(
            {
                "name": name,
                "requests": row["totalRequests"],
                "share": share,
                "weight": weight,
                "weightShare": weight_share,
                "deviation": None if share is None or weight_share is None else share - weight_share,
                "successRate": row["successRate"],
                "avgLatency": row["avgLatency"],
            }
        )
    return {"window": report["window"], "algorithm": algorithm, "requests": traffic, "rows": out}


@click.command("load-balancing")
@window_option
@json_option
@config_option
@log_option
@gateway_options
def load_balancing_command(
    window: str | None,
    as_json: bool,
    config_path: Path | None,
    log_path: Path | None,
    url: str | None,
    admin_key: str | None,
) -> None:
    """Each provider's share of the traffic against its configured weight
    (from the usage log and the config, or a running gateway with --url)."""
    remote = _report(url, admin_key, window, log_path)
    if remote is not None:
        assert url is not None
        document = gateway_request("GET", "/admin/config", url=url, admin_key=admin_key)
        balance = _balance(remote, *document_weights(document))
    else:
        config = _config(config_path)

        async def work(source: RecordsSource) -> dict[str, Any]:
            return balance_rows(await source.analytics(window), config)

        with _opened(config, log_path) as reader:
            balance = anyio.run(work, RecordsSource(reader, config))
    if as_json:
        click.echo(json.dumps(balance, indent=2))
        return
    algorithm = balance["algorithm"] or "unknown: no --config"
    table = Table(title=_title(f"load balancing ({algorithm})", window, url))
    for column in ("provider", "requests", "share", "weight", "weight share", "deviation", "success", "avg latency"):
        table.add_column(column, justify="left" if column == "provider" else "right")
    for row in balance["rows"]:
        deviation = row["deviation"]
        table.add_row(
            escape(row["name"]),
            str(row["requests"]),
            _pct(row["share"]),
            "-" if row["weight"] is None else f"{row['weight']:g}",
            _pct(row["weightShare"]),
            "-" if deviation is None else f"{deviation * 100:+.1f} pp",
            _pct(row["successRate"]),
            _ms(row["avgLatency"]),
        )
    Console().print(table)


# -- export metrics ------------------------------------------------------------------------------


@click.command("metrics")
@click.option(
    "--format",
    "format_name",
    default="json",
    show_default=True,
    help="An exporter in the entry-point group swarmgate.exporters: json, csv, prometheus (swarmgate-prometheus).",
)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE instead of stdout.")
@config_option
@log_option
@gateway_options
def export_metrics_command(
    format_name: str,
    output: Path | None,
    config_path: Path | None,
    log_path: Path | None,
    url: str | None,
    admin_key: str | None,
) -> None:
    """Render the usage log's metrics with an exporter (json, csv,
    prometheus); with --url, a running gateway's (its exporter renders them)."""
    if url:
        reject_local_options(click.get_current_context(), "log_path")
        answer = gateway_request("GET", "/admin/export", url=url, admin_key=admin_key, params={"format": format_name})
        text = answer if isinstance(answer, str) else json.dumps(answer, indent=2)
        _emit(text, format_name, output)
        return
    exporter = _registry.load_driver(_registry.EXPORTERS, format_name)()
    render = getattr(exporter, "render_source", None)
    if render is None:
        raise PluginError(
            f"metrics exporter {format_name!r} cannot render a usage log (it has no render_source())",
            namespace=_registry.EXPORTERS,
            name=format_name,
        )

    async def work(source: RecordsSource) -> str:
        text: str = await render(source)
        return text

    _emit(_run(config_path, log_path, work), format_name, output)


def _emit(text: str, format_name: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        output.expanduser().write_text(text, encoding="utf-8")
        click.echo(f"wrote {format_name} metrics to {output}", err=True)
