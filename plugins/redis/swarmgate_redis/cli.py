"""``qwen-swarm-enhanced redis status [--config PATH] [--json] [--pings N]``.

Connects to the Redis named by the config's ``state.options`` (the backend
must be ``redis``), and prints the server (URL with the password masked,
version, memory, eviction policy), the round-trip time of ``PING`` and of
a ``take_tokens`` script (medians over ``--pings`` calls) and how many keys
of each kind the namespace holds. It writes nothing but one scratch bucket
(deleted again). Exit status 0, or 2 when the config is wrong or Redis does
not answer.
"""

from __future__ import annotations

import json
import statistics
import uuid
from pathlib import Path
from typing import Any

import anyio
import click
from rich import box
from rich.console import Console
from rich.table import Table

from swarmgate.config import load_config
from swarmgate.errors import ConfigError

#: Eviction policies that never drop a key without an expiry (counters, circuits, budgets).
SAFE_POLICIES = frozenset({"noeviction", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"})


def add_commands(cli: click.Group) -> None:
    """Add the ``redis`` group (``redis status``) to ``cli``."""
    group = cli.commands.get("redis")
    if not isinstance(group, click.Group):
        group = click.Group("redis", help="The Redis state backend: is it there, how fast, what it holds.")
        cli.add_command(group)
    group.add_command(status_command)


@click.command("status")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SWARMGATE_CONFIG",
    help="Config file (JSON or YAML); default: $SWARMGATE_CONFIG.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--pings", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Round trips to time.")
def status_command(config_path: Path | None, as_json: bool, pings: int) -> None:
    """The Redis state backend of the config: server, latency, keys."""
    report = anyio.run(status, config_path, pings)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    table = Table(title="swarmgate Redis state backend", box=box.SIMPLE_HEAD, pad_edge=False, show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value")
    table.add_row("url", report["url"])
    table.add_row("prefix", report["prefix"])
    table.add_row("server", f"Redis {report['server']['redis_version']} ({report['server']['redis_mode']})")
    table.add_row("memory", report["server"]["used_memory_human"])
    table.add_row("eviction", report["server"]["maxmemory_policy"])
    table.add_row("ping", f"{report['ping_ms']:.3f} ms (median of {pings})")
    table.add_row("take_tokens", f"{report['take_tokens_ms']:.3f} ms (median of {pings})")
    keys = report["keys"]
    table.add_row("keys", f"{keys['values']} values/counters, {keys['windows']} windows, {keys['buckets']} buckets")
    console = Console()
    console.print(table)
    if report["warning"]:
        console.print(f"[yellow]warning:[/yellow] {report['warning']}")


async def status(config_path: Path | None, pings: int = 50) -> dict[str, Any]:
    """What ``redis status`` shows, as JSON-ready data."""
    if config_path is None:
        raise ConfigError([("", "no config file: pass --config PATH or set SWARMGATE_CONFIG")])
    config = load_config(config_path)
    if config.state.backend != "redis":
        raise ConfigError(
            [("state.backend", f'is {config.state.backend!r}: \'redis status\' needs "state": {{"backend": "redis"}}')]
        )
    from swarmgate_redis.store import create_store  # redis-py only when the command runs

    store = create_store(config.state.options)
    try:
        ping = [await store.ping() for _ in range(pings)]
        scratch = f"redis-status:{uuid.uuid4().hex}"
        take = []
        for _ in range(pings):
            started = anyio.current_time()
            await store.take_tokens(scratch, rate=1.0, capacity=1e9)
            take.append(anyio.current_time() - started)
        await store.delete(scratch)
        server = await store.server_info()
        keys = await store.count_keys()
    finally:
        await store.aclose()
    warning = None
    if server["maxmemory_policy"] not in SAFE_POLICIES:
        warning = (
            f"maxmemory-policy is {server['maxmemory_policy']}: when Redis fills up it may evict counters, "
            "circuits and budgets that have no expiry; use noeviction or a volatile-* policy"
        )
    return {
        "url": store.display_url,
        "prefix": store.options.prefix,
        "server": server,
        "ping_ms": statistics.median(ping) * 1000.0,
        "take_tokens_ms": statistics.median(take) * 1000.0,
        "keys": keys,
        "warning": warning,
    }
