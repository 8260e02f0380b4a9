"""``qwen-swarm-enhanced cache stats`` and ``cache clear``.

Both build a manager from the config (``--config``, ``$SWARMGATE_CONFIG``,
else the embedded default) and act on the cache it sees through its state
backend. With a shared backend (``state.backend: redis``) that is the cache
every gateway on that backend uses: ``stats`` shows their shared counters
and ``clear`` removes their entries. With the in-process ``memory`` backend
the command sees a cache of its own, empty and private to the command: the
output is correct but says nothing about a running gateway (the tables say
so).

The pieces are separate so other front ends can reuse them: :func:`read_stats`
and :func:`clear_cache` act on a config, :func:`cache_service` finds the
cache of a running manager, :func:`print_stats` and :func:`print_cleared`
render the dictionaries they return (e.g. fetched from a gateway's admin
endpoint instead).

With ``--url`` (or ``$SWARMGATE_URL``) both act on that running gateway's
cache through its admin API (``GET /admin/cache/stats``, ``POST
/admin/cache/invalidate``, with the admin key from ``--admin-key`` or
``$SWARMGATE_ADMIN_KEY``), whatever its state backend, and print the same
table or JSON.

Exit status: 0, or 2 for a config error (the kernel's CLI group prints
one line), e.g. a config without ``optimization.caching``, or a gateway
that cannot be reached or refuses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import click
from rich.console import Console
from rich.table import Table

from swarmgate import ConfigError, ProviderManager
from swarmgate.cli import gateway_options, gateway_request
from swarmgate.config import SwarmgateConfig
from swarmgate_cache.service import ResponseCache

MEMORY_NOTE = (
    "note: the 'memory' state backend lives in this command's own process, so this is not a running "
    "gateway's cache; configure a shared backend (state.backend: redis) to manage that from here"
)

ConfigSource = str | Path | dict[str, Any] | SwarmgateConfig | None


def add_commands(cli: click.Group) -> None:
    """Add the ``cache`` group (``stats``, ``clear``) to ``cli``, or its
    commands to a ``cache`` group another plugin created."""
    group = cli.commands.get("cache")
    if not isinstance(group, click.Group):
        group = click.Group("cache", help="Inspect and clear the response cache (optimization.caching).")
        cli.add_command(group)
    group.add_command(stats_command)
    group.add_command(clear_command)


def cache_service(manager: ProviderManager) -> ResponseCache:
    """The manager's response cache; ConfigError when the config does not enable it."""
    service = manager.extensions.get("cache")
    if not isinstance(service, ResponseCache):
        raise ConfigError(
            [
                (
                    "optimization.caching",
                    "the response cache is not enabled in this config; "
                    'add "optimization": {"caching": {"enabled": true}}',
                )
            ],
            source=manager.config.source,
        )
    return service


async def read_stats(config: ConfigSource) -> dict[str, Any]:
    """The cache's :meth:`~ResponseCache.stats` as seen through ``config``'s state backend."""
    async with ProviderManager(config) as manager:
        return await cache_service(manager).stats()


async def clear_cache(
    config: ConfigSource,
    *,
    key: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    tag: str | None = None,
    older_than: float | None = None,
) -> dict[str, Any]:
    """Invalidate the entries meeting every criterion given (all entries
    when none is): ``{"removed": n, "criteria": {...}, "backend": name}``."""
    criteria = {"key": key, "provider": provider, "model": model, "tag": tag, "older_than": older_than}
    given = {name: value for name, value in criteria.items() if value is not None}
    async with ProviderManager(config) as manager:
        cache = cache_service(manager)
        if given:
            removed = await cache.invalidate(key=key, provider=provider, model=model, tag=tag, older_than=older_than)
        else:
            removed = await cache.invalidate(all=True)
        return {"removed": removed, "criteria": given, "backend": cache.backend, "namespace": cache.settings.namespace}


def print_stats(
    stats: dict[str, Any], as_json: bool = False, console: Console | None = None, *, remote: bool = False
) -> None:
    """Render :func:`read_stats`'s dictionary as JSON or a table (``remote``:
    a running gateway's, so no note about this process's memory backend)."""
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    console = console or Console()
    table = Table(title=f"response cache (namespace {stats['namespace']}, backend {stats['backend']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("entries", f"{stats['entries']} (max {stats['max_size']} per instance, {stats['strategy']})")
    table.add_row("ttl", f"{stats['ttl_ms'] / 1000:g} s")
    table.add_row("hits", str(stats["hits"]))
    table.add_row("misses", str(stats["misses"]))
    table.add_row("hit ratio", f"{stats['hit_ratio'] * 100:.1f}%")
    table.add_row("cost saved", f"${stats['cost_saved']:.6f}")
    for name in ("stores", "evictions", "skipped", "invalidated", "tampered"):
        table.add_row(name, str(stats[name]))
    console.print(table)
    if stats["backend"] == "memory" and not remote:
        console.print(MEMORY_NOTE)


def print_cleared(
    result: dict[str, Any], as_json: bool = False, console: Console | None = None, *, remote: bool = False
) -> None:
    """Render :func:`clear_cache`'s dictionary as JSON or a line of text."""
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    console = console or Console()
    criteria = result["criteria"]
    what = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in criteria.items()) or "all entries"
    removed = result["removed"]
    console.print(f"removed {removed} cached {'entry' if removed == 1 else 'entries'} ({what})")
    if result["backend"] == "memory" and not remote:
        console.print(MEMORY_NOTE)


def clear_remote(url: str, admin_key: str | None, criteria: dict[str, Any]) -> dict[str, Any]:
    """:func:`clear_cache` on the running gateway at ``url``
    (``POST /admin/cache/invalidate``), in the same shape."""
    given = {name: value for name, value in criteria.items() if value is not None}
    body: dict[str, Any] = {"olderThan" if k == "older_than" else k: v for k, v in given.items()} or {"all": True}
    answer = gateway_request("POST", "/admin/cache/invalidate", url=url, admin_key=admin_key, json=body)
    return {
        "removed": answer["invalidated"],
        "criteria": given,
        "backend": answer.get("backend"),
        "namespace": answer.get("namespace"),
    }


_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SWARMGATE_CONFIG",
    help="Config file (JSON or YAML); default: $SWARMGATE_CONFIG, else the embedded default.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.command("stats")
@_config_option
@_json_option
@gateway_options
def stats_command(config_path: Path | None, as_json: bool, url: str | None, admin_key: str | None) -> None:
    """Hits, misses, hit ratio, cost saved, entries, evictions of the
    response cache (a running gateway's with --url)."""
    if url:
        print_stats(gateway_request("GET", "/admin/cache/stats", url=url, admin_key=admin_key), as_json, remote=True)
        return
    print_stats(anyio.run(read_stats, config_path), as_json)


@click.command("clear")
@click.option("--provider", help="Only entries answered by this provider.")
@click.option("--model", help="Only entries answered by this model.")
@click.option("--tag", help="Only entries stored by a request with this tag.")
@click.option(
    "--older-than", type=click.FloatRange(min=0), metavar="SECONDS", help="Only entries stored more than SECONDS ago."
)
@click.option("--key", help="Only the entry with this cache key.")
@_config_option
@_json_option
@gateway_options
def clear_command(
    provider: str | None,
    model: str | None,
    tag: str | None,
    older_than: float | None,
    key: str | None,
    config_path: Path | None,
    as_json: bool,
    url: str | None,
    admin_key: str | None,
) -> None:
    """Remove cached answers: those meeting every filter given, or all of
    them (in a running gateway's cache with --url)."""
    if url:
        criteria = {"key": key, "provider": provider, "model": model, "tag": tag, "older_than": older_than}
        print_cleared(clear_remote(url, admin_key, criteria), as_json, remote=True)
        return

    async def run() -> dict[str, Any]:
        return await clear_cache(config_path, key=key, provider=provider, model=model, tag=tag, older_than=older_than)

    print_cleared(anyio.run(run), as_json)
