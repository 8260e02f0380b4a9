"""What a migration gives: the converted config and the notes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs


@attrs.frozen
class Note:
    """Something in the source file that was not converted as it was:
    ``path`` in the source (``router_settings.retry_policy``), ``message``
    what swarmgate does instead or why it was left out."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def to_dict(self) -> dict[str, str]:
        """JSON-ready."""
        return {"path": self.path, "message": self.message}


@attrs.frozen
class Migration:
    """A converted config (camelCase, as a swarmgate config file holds it),
    the notes on what had no equivalent, and how many deployments and model
    groups of the source were read."""

    config: dict[str, Any]
    notes: tuple[Note, ...] = ()
    deployments: int = 0
    groups: int = 0

    def summary(self) -> str:
        """One line: what went in and what came out."""
        providers = len(self.config.get("providers", {}))
        routes = len(self.config.get("routes", {}))
        return (
            f"{self.deployments} deployment{'s' if self.deployments != 1 else ''} in {self.groups} model "
            f"group{'s' if self.groups != 1 else ''} -> {providers} provider{'s' if providers != 1 else ''}, "
            f"{routes} route{'s' if routes != 1 else ''}; {len(self.notes)} note{'s' if len(self.notes) != 1 else ''}"
        )


class MigrationError(ValueError):
    """The source file cannot be read as the format it was said to be:
    ``problems`` holds one ``(path, message)`` per reason, paths in the
    source file."""

    def __init__(self, problems: Sequence[tuple[str, str]], *, source: str | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        where = f"{source}: " if source else ""
        text = "; ".join(f"{path}: {message}" if path else message for path, message in self.problems)
        super().__init__(f"{where}{text}")
