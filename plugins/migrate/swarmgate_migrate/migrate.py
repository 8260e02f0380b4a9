"""Reading a source file, converting it, and checking the result."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from swarmgate_migrate.litellm import convert as convert_litellm
from swarmgate_migrate.model import Migration, MigrationError

#: The formats ``migrate --from`` reads, and their converters.
SOURCES: Final[Mapping[str, Callable[[Any], Migration]]] = {"litellm": convert_litellm}


def read_source(path: Path) -> Any:
    """The parsed document of a YAML (or JSON, which YAML reads too) file.
    Raises :class:`MigrationError` for a missing or unparseable file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MigrationError([("", "no such file")], source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MigrationError([("", f"cannot read it: {exc}")], source=str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise MigrationError([("", f"invalid YAML: {where}{problem}")], source=str(path)) from None


def check(config: Mapping[str, Any], *, plugins: bool) -> tuple[list[tuple[str, str]], str | None]:
    """Problems of a converted config, ``(path, message)`` each, and a
    warning when the plugins' check could not run: the kernel's strict
    loader, then (with ``plugins``) every installed plugin's section and
    provider type's keys, as ``config validate`` does. Unset ``${ENV}``
    references are not problems: the variables belong to the machine that
    runs the gateway."""
    from swarmgate.cli import check_config

    return check_config(dict(config), plugins=plugins, strict_env=False)


def migrate(path: Path, source: str = "litellm", *, plugins: bool = False) -> Migration:
    """Convert the ``source``-format file at ``path`` and check the result
    (the kernel's loader; with ``plugins`` the plugins' sections too).
    Raises :class:`MigrationError` for an unreadable source, and for a
    result the checks refuse (paths in the converted config)."""
    converter = SOURCES.get(source)
    if converter is None:
        raise MigrationError([("", f"unknown source format {source!r} (known: {', '.join(sorted(SOURCES))})")])
    doc = read_source(path)
    try:
        migration = converter(doc)
    except MigrationError as exc:
        raise MigrationError(exc.problems, source=str(path)) from None
    problems, warning = check(migration.config, plugins=plugins)
    if problems:
        raise MigrationError(
            [(f"converted config: {p}" if p else "converted config", m) for p, m in problems], source=str(path)
        )
    if warning:
        from swarmgate_migrate.model import Note

        return Migration(
            migration.config,
            (*migration.notes, Note("", warning)),
            deployments=migration.deployments,
            groups=migration.groups,
        )
    return migration
