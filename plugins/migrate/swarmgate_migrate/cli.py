"""``qwen-swarm-enhanced migrate --from litellm config.yaml [--output ours.json]``.

Converts the file, checks the result as ``config validate`` would (the
kernel's strict loader, then every installed plugin's section; unset
``${ENV}`` references are not held against it), and writes it: to
``--output`` (JSON, or YAML for ``.yaml``/``.yml``), else to stdout as
JSON. Every note (what had no equivalent, what works differently) goes to
stderr as ``note: <path in the source>: <message>``, then a summary line.

Exit status: 0 converted; 2 when the source cannot be read as that format,
the result is refused, or ``--output`` exists (without ``--force``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import click
import yaml

from swarmgate_migrate.migrate import SOURCES, migrate
from swarmgate_migrate.model import Migration, MigrationError


def _render(migration: Migration, path: Path | None) -> str:
    if path is not None and path.suffix.lower() in (".yaml", ".yml"):
        return yaml.safe_dump(migration.config, sort_keys=False, allow_unicode=True)
    return json.dumps(migration.config, indent=2, ensure_ascii=False) + "\n"


def _write(path: Path, text: str) -> None:
    """Write ``text`` atomically (a temporary file renamed over ``path``)."""
    target = path.expanduser().resolve()
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.command("migrate")
@click.option(
    "--from",
    "source",
    type=click.Choice(sorted(SOURCES)),
    required=True,
    help="The format of FILE: litellm (a LiteLLM proxy config.yaml).",
)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the converted config to this file (.json, or .yaml/.yml for YAML); default: stdout, as JSON.",
)
@click.option("--force", is_flag=True, help="Overwrite --output when it exists.")
@click.option(
    "--no-plugins",
    is_flag=True,
    help="Check the result with the kernel's strict loader only, not the installed plugins' sections.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document {config, notes, summary} to stdout (with --output: without the config).",
)
@click.option("--quiet", "-q", is_flag=True, help="Do not print the notes (the summary line still says how many).")
def migrate_command(
    source: str, file: Path, output: Path | None, force: bool, no_plugins: bool, as_json: bool, quiet: bool
) -> None:
    """Convert another gateway's config FILE into a swarmgate config.

    \b
    --from litellm reads a LiteLLM proxy config: model_list (deployments ->
    providers and models; model groups -> routes with their targets and
    fallbacks; os.environ/VAR -> ${VAR}; rpm/tpm -> rateLimit; prices),
    router_settings (routing_strategy, retries, cooldowns -> circuit
    breaker, fallbacks, aliases, Redis), litellm_settings (cache, retries,
    timeouts, budget) and general_settings.master_key. What has no
    equivalent is listed as notes on stderr.

    Exits 0 when converted, 2 when FILE cannot be read as that format or
    the result does not validate.
    """
    if output is not None and output.exists() and not force:
        _fail(f"{output} exists: pass --force to overwrite it")
    if output is not None and output.expanduser().resolve() == file.expanduser().resolve():
        _fail("--output is the source file: write the converted config elsewhere")
    try:
        migration = migrate(file, source, plugins=not no_plugins)
    except MigrationError as exc:
        _fail(str(exc))
        return
    text = _render(migration, output)
    if output is not None:
        try:
            _write(output, text)
        except OSError as exc:
            _fail(f"cannot write {output}: {exc.strerror or exc}")
    if as_json:
        document: dict[str, object] = {
            "source": source,
            "file": str(file),
            "output": str(output) if output is not None else None,
            "notes": [note.to_dict() for note in migration.notes],
            "summary": migration.summary(),
        }
        if output is None:
            document["config"] = migration.config
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    if not quiet:
        for note in migration.notes:
            click.echo(f"note: {note}", err=True)
    if output is None:
        click.echo(text, nl=False)
        click.echo(migration.summary(), err=True)
    else:
        click.echo(f"wrote {output}: {migration.summary()}")
        click.echo(f"next: qwen-swarm-enhanced config validate --config {output}")
