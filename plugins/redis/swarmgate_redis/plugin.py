"""The ``redis`` hook plugin: only CLI commands (``redis status``).

The backend itself is not a hook plugin: it is the entry point ``redis`` in
the ``swarmgate.state`` group (:func:`~swarmgate_redis.create_store`), which
the kernel loads when ``state.backend`` is ``"redis"``. This plugin
implements no request hook, so it costs nothing per request.
"""

from __future__ import annotations

import click

from swarmgate import hookimpl


class RedisPlugin:
    """Entry point ``redis`` in the ``swarmgate`` group."""

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        """Add ``redis status [--config PATH] [--json] [--pings N]``."""
        from swarmgate_redis.cli import add_commands

        add_commands(cli)
