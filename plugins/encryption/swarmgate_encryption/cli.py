"""``qwen-swarm-enhanced encryption ...``: the master key and the keyring.

* ``generate-key`` -- print a new random master key (base64 of 32 bytes).
* ``status`` -- the current data key, the next rotation, the keyring, the
  master key's fingerprint (never the key).
* ``rotate`` -- make a new data key now. It becomes current after two
  refresh intervals, so every running gateway sharing the keyring has
  loaded it before anyone encrypts with it (``--now``: at once).
* ``rotate-master --new-key-env VAR`` -- re-wrap every data key under the
  master key in ``$VAR`` (the records themselves are not touched). Then
  give the gateways the new key and restart them. Resumable: run it again
  if it was interrupted.

``status`` and ``rotate`` build a manager from the config (``--config``,
``$SWARMGATE_CONFIG``); ``rotate-master`` reads only the config, the two
master keys and the keyring (it must work while the gateways hold the old
key). All act on the keyring the gateways use: the SQLite file, or the
StateStore when it is shared (``state.backend: redis``).

Exit status: 0, or 2 for a config error (one line on stderr).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click
from rich.console import Console
from rich.table import Table

from swarmgate import ConfigError, ProviderManager, registry
from swarmgate.config import SwarmgateConfig, load_config
from swarmgate.state import StateStore
from swarmgate_encryption.plugin import open_keystore, read_settings
from swarmgate_encryption.settings import SECTION

# The keyring, master key and service (and cryptography) are imported when a
# command runs: registering the commands costs a gateway no memory.
if TYPE_CHECKING:
    from swarmgate_encryption.service import EncryptionService

ConfigSource = str | Path | dict[str, Any] | SwarmgateConfig | None

_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SWARMGATE_CONFIG",
    help="Config file (JSON or YAML); default: $SWARMGATE_CONFIG.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def add_commands(cli: click.Group) -> None:
    """Add the ``encryption`` group to ``cli``."""
    group = click.Group("encryption", help="Encryption at rest: master key, data keys, rotation (security.encryption).")
    for command in (generate_key_command, status_command, rotate_command, rotate_master_command):
        group.add_command(command)
    cli.add_command(group)


def _not_enabled(source: str | None) -> ConfigError:
    return ConfigError(
        [(SECTION, 'encryption is not enabled in this config; add "security": {"encryption": {"enabled": true}}')],
        source=source,
    )


def encryption_service(manager: ProviderManager) -> EncryptionService:
    """The manager's encryption service; ConfigError when the config does not enable it."""
    from swarmgate_encryption.service import EncryptionService

    service = manager.extensions.get("encryption")
    if not isinstance(service, EncryptionService):
        raise _not_enabled(manager.config.source)
    return service


async def read_status(config: ConfigSource) -> dict[str, Any]:
    """The service's :meth:`~EncryptionService.status` under ``config``."""
    async with ProviderManager(config) as manager:
        return encryption_service(manager).status()


async def rotate_data_key(config: ConfigSource, *, now: bool = False) -> dict[str, Any]:
    """Make a new data key: ``{"key_id", "activates_in_s"}`` (two refresh
    intervals, or 0 with ``now``)."""
    async with ProviderManager(config) as manager:
        service = encryption_service(manager)
        grace = 0.0 if now else 2 * service.settings.refresh_seconds
        key_id = await service.rotate(activate_in=grace)
        return {"key_id": key_id, "activates_in_s": grace}


async def rotate_master_key(config: ConfigSource, new_key_env: str) -> dict[str, Any]:
    """Re-wrap the keyring of ``config`` under the master key in ``$new_key_env``."""
    from swarmgate_encryption.keyring import MasterMismatchError, rotate_master
    from swarmgate_encryption.masterkey import key_from_env, load_master_key

    if config is None:
        raise ConfigError([("--config", "give the config the gateways run with (or set $SWARMGATE_CONFIG)")])
    loaded = load_config(config)
    raw = loaded.section(SECTION)
    if raw is None:
        raise _not_enabled(loaded.source)
    settings = read_settings(raw, source=loaded.source)
    if not settings.enabled:
        raise _not_enabled(loaded.source)
    old = load_master_key(settings)
    new = key_from_env(new_key_env, os.environ, path="--new-key-env")
    state: StateStore = registry.load_driver(registry.STATE, loaded.state.backend)(loaded.state.options)
    try:
        store = open_keystore(settings, loaded.state.backend, state)
        try:
            result = await rotate_master(store, old, new)
        except MasterMismatchError as exc:
            kind, where = settings.master_key_source
            setting = "masterKeyFile" if kind == "file" else "masterKeyEnv"
            raise ConfigError([(f"{SECTION}.{setting}", f"{exc} (the old key comes from {kind} {where})")]) from None
    finally:
        await state.aclose()
    kind, where = settings.master_key_source
    return {
        **result.as_dict(),
        "keyring": store.description,
        "old_source": f"{kind}:{where}",
        "new_source": f"env:{new_key_env}",
    }


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command("generate-key")
def generate_key_command() -> None:
    """Print a new random master key (base64 of 32 bytes) for SWARMGATE_MASTER_KEY or a key file."""
    from swarmgate_encryption.masterkey import generate_key_text

    click.echo(generate_key_text())


@click.command("status")
@_config_option
@_json_option
def status_command(config_path: Path | None, as_json: bool) -> None:
    """The current data key, the next rotation, the keyring and the master key's fingerprint."""
    status = anyio.run(read_status, config_path)
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    table = Table(title=f"encryption at rest ({status['algorithm']})")
    table.add_column("item")
    table.add_column("value")
    table.add_row("current data key", f"{status['current_key']} (since {_when(status['current_since'])})")
    upcoming = status["next_key"]
    table.add_row("next data key", "-" if upcoming is None else f"{upcoming} (from {_when(status['next_rotation'])})")
    rotation = status["key_rotation_ms"]
    table.add_row("rotation", "manual only" if rotation is None else f"every {rotation / 1000:g} s")
    table.add_row("data keys", str(status["keys"]))
    table.add_row("keyring", status["keyring"])
    table.add_row("master key", f"{status['master_key']['source']} (fingerprint {status['master_key']['fingerprint']})")
    for label, name in (("unusable keys", "unusable_keys"), ("foreign keys", "foreign_keys")):
        if status[name]:
            table.add_row(label, ", ".join(f"{k}: {v}" for k, v in status[name].items()))
    Console().print(table)


@click.command("rotate")
@click.option("--now", is_flag=True, help="Make the new key current at once (only safe with a single gateway).")
@_config_option
@_json_option
def rotate_command(now: bool, config_path: Path | None, as_json: bool) -> None:
    """Make a new data key; old keys stay for decryption."""

    async def run() -> dict[str, Any]:
        return await rotate_data_key(config_path, now=now)

    result = anyio.run(run)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    elif now:
        click.echo(f"data key {result['key_id']} is current")
    else:
        click.echo(
            f"data key {result['key_id']} becomes current in {result['activates_in_s']:g} s "
            "(once every running gateway has loaded it)"
        )


@click.command("rotate-master")
@click.option(
    "--new-key-env",
    required=True,
    metavar="VAR",
    help="Environment variable holding the new master key (base64 of 32 bytes).",
)
@_config_option
@_json_option
def rotate_master_command(new_key_env: str, config_path: Path | None, as_json: bool) -> None:
    """Re-wrap every data key under a new master key (records are not re-encrypted)."""

    from swarmgate_encryption.keyring import KeyringError

    async def run() -> dict[str, Any]:
        return await rotate_master_key(config_path, new_key_env)

    try:
        result = anyio.run(run)
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(
        f"re-wrapped {result['rewrapped']} data key(s) under master key {result['new_fingerprint']} "
        f"({result['already']} already were) in {result['keyring']}"
    )
    if result["unusable"]:
        click.echo(f"not re-wrapped (unusable): {result['unusable']}")
    click.echo(
        f"now put the new key where {result['old_source']} points (or point the config at "
        f"{result['new_source']}) and restart every gateway; keep the old key until they all run with the new one"
    )
