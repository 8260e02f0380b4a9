"""``ServerPlugin``: the entry point ``server`` in the ``swarmgate`` group.

It adds the ``serve`` command to the CLI. It has no request hooks: the
gateway is an ASGI application around the manager, not a hook in its
pipeline, so installing this plugin costs a library user nothing.
"""

from __future__ import annotations

from pathlib import Path

import click

from swarmgate import hookimpl


@click.command("serve")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SWARMGATE_CONFIG",
    help="Config file (JSON or YAML); default: $SWARMGATE_CONFIG, else the embedded default.",
)
@click.option("--host", help="Interface to listen on (default: server.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: server.port, 8000; 0 picks a free one).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes.")
@click.option(
    "--access-log/--no-access-log", default=None, help="uvicorn's access log (default: server.accessLog, off)."
)
def serve_command(
    config_path: Path | None, host: str | None, port: int | None, workers: int, access_log: bool | None
) -> None:
    """Run the HTTP gateway (OpenAI- and Anthropic-compatible) until interrupted.

    Prints the URL once listening. SIGINT/SIGTERM stop accepting requests,
    let in-flight ones and streams finish (server.shutdownTimeout), then exit.
    """
    from swarmgate_server.serving import serve

    serve(config_path, host=host, port=port, workers=workers, access_log=access_log, echo=click.echo)


class ServerPlugin:
    """Adds ``serve`` to the CLI."""

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        """Add ``serve``."""
        cli.add_command(serve_command)
