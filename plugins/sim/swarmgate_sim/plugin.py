"""``SimPlugin``: the sim distribution's hooks (entry point ``sim`` in ``swarmgate``).

It offers the embedded default config (``default_config``) and adds the
``demo`` command to the CLI (``register_commands``). The provider type
itself is a separate entry point (``sim`` in ``swarmgate.providers``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from swarmgate import hookimpl
from swarmgate_sim.defaults import embedded_default


class SimPlugin:
    """The embedded default and the ``demo`` command."""

    @hookimpl
    def default_config(self) -> Mapping[str, Any]:
        """The embedded default (four simulated providers); see :mod:`swarmgate_sim.defaults`."""
        return embedded_default()

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        """Add ``demo``."""
        from swarmgate_sim.demo import demo

        cli.add_command(demo)
