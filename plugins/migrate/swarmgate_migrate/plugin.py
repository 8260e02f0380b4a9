"""``MigratePlugin``: the entry point ``migrate`` in the ``swarmgate`` group.

It only adds the ``migrate`` command to the CLI (``register_commands``); it
has no request hooks, so installing it costs a gateway nothing.
"""

from __future__ import annotations

import click

from swarmgate import hookimpl


class MigratePlugin:
    """Adds ``migrate --from litellm config.yaml``."""

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        """Add ``migrate``."""
        from swarmgate_migrate.cli import migrate_command

        cli.add_command(migrate_command)
