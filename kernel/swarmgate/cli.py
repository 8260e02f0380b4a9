"""The CLI core: ``qwen-swarm-enhanced`` (alias ``swarmgate``).

The kernel adds ``plugins list`` and ``test provider NAME``; every other
command comes from plugins
through the ``register_commands`` hook, so installing a plugin adds its
commands. Errors a user can cause (bad config, missing plugin) print one
clear message and exit with status 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import click
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from swarmgate.errors import ConfigError, NoProviderAvailableError, PluginError, SwarmgateError, UnknownModelError
from swarmgate.logs import ensure_redaction
from swarmgate.manager import ProviderManager
from swarmgate.models import CompletionResponse, FinishEvent
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


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SWARMGATE_CONFIG",
    help="Config file (JSON or YAML); default: $SWARMGATE_CONFIG, else the embedded default.",
)


@cli.group("test")
def test_group() -> None:
    """Try things out against the configured providers."""


@test_group.command("provider")
@click.argument("name")
@config_option
@click.option("--model", help="Model to ask (default: the provider's default model).")
@click.option("--prompt", default="Reply with one short sentence: are you there?", show_default=True)
@click.option("--stream/--no-stream", default=False, help="Send the request streamed.")
def test_provider(name: str, config_path: Path | None, model: str | None, prompt: str, stream: bool) -> None:
    """Probe provider NAME's health, then send it one real request.

    Exits 0 when both succeed, 1 when either fails, 2 on a config error.
    """
    ok = anyio.run(_test_provider, name, config_path, model, prompt, stream)
    sys.exit(0 if ok else 1)


async def _test_provider(name: str, config_path: Path | None, model: str | None, prompt: str, stream: bool) -> bool:
    console = Console()
    async with ProviderManager(config_path) as manager:
        if name not in manager.config.providers:
            raise UnknownModelError(f"unknown provider {name!r} (configured: {sorted(manager.config.providers)})")
        if name not in manager.providers():
            raise UnknownModelError(f"provider {name!r} is disabled in the config")
        table = Table(title=f"test provider {name} ({manager.config.providers[name].type})", show_header=False)
        table.add_column("step")
        table.add_column("result")
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as progress:
            task = progress.add_task(f"probing {name}'s health", total=None)
            health = (await manager.check_health(name))[name]
            table.add_row(
                "health",
                ("[green]healthy[/]" if health.healthy else "[red]unhealthy[/]")
                + f" in {health.latency or 0:.0f} ms"
                + (f": {escape(health.detail)}" if health.detail else ""),
            )
            progress.update(task, description=f"sending one {'streamed ' if stream else ''}request to {name}")
            request = {"prompt": prompt, "provider": name, "model": model or "auto", "max_tokens": 64}
            try:
                response = await _one_request(manager, request, stream)
            except SwarmgateError as error:
                failure = (
                    error.last_error if isinstance(error, NoProviderAvailableError) and error.last_error else error
                )
                table.add_row("request", f"[red]{failure.kind.value}[/]: {escape(failure.message)}")
                console.print(table)
                return False
        table.add_row(
            "request",
            f"[green]ok[/] {response.provider}/{response.model} in {response.latency:.0f} ms"
            + (f" (first token {response.ttft:.0f} ms)" if response.ttft is not None else ""),
        )
        table.add_row(
            "tokens",
            f"{response.tokens.input} in, {response.tokens.output} out"
            + (" (estimated)" if response.metadata.get("usage_estimated") else ""),
        )
        table.add_row("cost", f"${response.cost:.6f}")
        table.add_row("answer", escape(response.content[:200]) + ("..." if len(response.content) > 200 else ""))
        console.print(table)
        return health.healthy


async def _one_request(manager: ProviderManager, request: dict[str, Any], stream: bool) -> CompletionResponse:
    if not stream:
        return await manager.complete(request)
    async for event in manager.stream(request):
        if isinstance(event, FinishEvent) and event.response is not None:
            return event.response
    raise NoProviderAvailableError("the stream ended without a response")


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
