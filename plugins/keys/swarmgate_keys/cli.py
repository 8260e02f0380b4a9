"""The ``keys`` command group.

* ``keys create --name N [--models a,b] [--rpm N] [--tpm N] [--burst N]
  [--daily X] [--monthly X] [--expires 30d] [--meta k=v ...] [--json]`` --
  create a caller key and print it, the only time it is shown;
* ``keys list [--status S] [--json]`` -- every key: id, name, fingerprint,
  status, limits, times (never the key);
* ``keys revoke ID|FINGERPRINT|NAME [--json]`` -- revoke it; every gateway
  reading the store refuses it from its next request;
* ``keys rotate PROVIDER [--key-env VAR ...] [--json]`` -- rotate a
  provider's API keys (``ProviderManager.rotate_provider_keys``): with
  ``--url``, on the running gateway; without, in a manager built from the
  config, which re-reads the key sources and shows the fingerprints a
  gateway would now use.

``create``, ``list`` and ``revoke`` work on a store file (``--store PATH``,
else ``security.callerKeys.path`` of ``--config``/``$SWARMGATE_CONFIG``,
else ``keys.db`` under the data directory), hashing with the pepper of the
config or ``$SWARMGATE_KEY_PEPPER``; or, with ``--url``/``$SWARMGATE_URL``
and the admin key (``--admin-key``/``$SWARMGATE_ADMIN_KEY``), on a running
gateway through its admin API. Mistakes print one line and exit with status 2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import anyio
import attrs
import click
from click.core import ParameterSource
from rich import box
from rich.console import Console
from rich.table import Table

from swarmgate import ProviderManager, SwarmgateConfig, load_config
from swarmgate_keys.plugin import open_store
from swarmgate_keys.routes import enforcement_warnings, issued_json
from swarmgate_keys.settings import SECTION, settings_of
from swarmgate_keys.spec import KeySpec, parse_expiry, spec_from_json
from swarmgate_keys.store import KeyStore
from swarmgate_server.client import admin_options, admin_request

F = TypeVar("F", bound=Callable[..., Any])

STATUSES = ("active", "expired", "revoked")


@click.group("keys")
def keys_group() -> None:
    """Caller keys (virtual keys the gateway issues) and provider key rotation."""


def _store_options(func: F) -> F:
    func = admin_options(func)
    func = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="SWARMGATE_CONFIG",
        help="Config file: where the store is (security.callerKeys.path) and its pepper. Default: $SWARMGATE_CONFIG.",
    )(func)
    func = click.option(
        "--store",
        "store_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The store's SQLite file (default: security.callerKeys.path, else keys.db under the data directory).",
    )(func)
    return func


def _remote(url: str | None, store_path: Path | None) -> bool:
    """Whether to talk to a gateway (``--url``) rather than a store file."""
    if url is None:
        return False
    if store_path is None:
        return True
    source = click.get_current_context().get_parameter_source("url")
    if source is ParameterSource.COMMANDLINE:
        raise click.UsageError("give --url (a running gateway) or --store (a store file), not both")
    return False  # --store given, the URL only came from $SWARMGATE_URL


def _config(config_path: Path | None) -> SwarmgateConfig | None:
    return load_config(config_path) if config_path is not None else None


def _open(store_path: Path | None, config: SwarmgateConfig | None) -> KeyStore:
    settings = settings_of(config)
    base_dir = Path(config.source).parent if config is not None and config.source else None
    if store_path is not None:
        settings = attrs.evolve(settings, path=str(store_path.expanduser().resolve()))
    return open_store(settings, base_dir=base_dir)


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%MZ")


def _limits(row: dict[str, Any]) -> str:
    parts = [
        f"{row[key]:g} {unit}"
        for key, unit in (
            ("requestsPerMinute", "req/min"),
            ("burstCapacity", "burst"),
            ("tokensPerMinute", "tok/min"),
            ("dailyBudget", "/day"),
            ("monthlyBudget", "/month"),
        )
        if row[key] is not None
    ]
    return ", ".join(parts) or "-"


def _local_warnings(spec: KeySpec, config: SwarmgateConfig | None) -> list[str]:
    if config is None:
        return []
    warnings = []
    if not settings_of(config).enabled:
        warnings.append(f"{SECTION} is not enabled in {config.source}: the gateway will not accept this key")
    # With the store on, the ratelimit and budget plugins switch on by
    # themselves (the store is a caller directory) unless not installed or
    # their section says enabled: false.
    extensions = {}
    if _would_run("swarmgate-ratelimit", config.section("optimization.rateLimiting")):
        extensions["ratelimit"] = True
    if _would_run("swarmgate-budget", config.section("routing.budgetLimits")):
        extensions["budget"] = True
    return warnings + enforcement_warnings(spec, extensions)


def _would_run(distribution: str, section: Any) -> bool:
    """Whether the plugin ``distribution`` is installed and ``section`` (its
    raw config) does not switch it off."""
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return not (isinstance(section, Mapping) and section.get("enabled") is False)


def _split_models(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    models = tuple(m.strip() for m in text.split(",") if m.strip())
    if not models:
        raise click.BadParameter("give at least one model name", param_hint="--models")
    return models


def _metadata(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--meta")
        out[key] = value
    return out


@keys_group.command("create")
@click.option("--name", required=True, help="The caller's name (request.caller: limits, budgets, usage).")
@click.option("--models", help="Comma-separated models, provider/model targets or routes it may use (* wildcards).")
@click.option("--rpm", type=float, help="Requests per minute.")
@click.option("--tpm", type=float, help="Tokens per minute.")
@click.option("--burst", type=float, help="Requests its bucket holds (default: --rpm).")
@click.option("--daily", type=float, help="Budget per UTC day.")
@click.option("--monthly", type=float, help="Budget per UTC month.")
@click.option("--expires", help="When it stops working: 90m, 12h, 30d, 2w, or an ISO 8601 date/time (UTC).")
@click.option("--meta", "meta", multiple=True, help="KEY=VALUE stored with it (repeatable; shown by list).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_store_options
def create_command(
    name: str,
    models: str | None,
    rpm: float | None,
    tpm: float | None,
    burst: float | None,
    daily: float | None,
    monthly: float | None,
    expires: str | None,
    meta: tuple[str, ...],
    as_json: bool,
    store_path: Path | None,
    config_path: Path | None,
    url: str | None,
    admin_key: str | None,
) -> None:
    """Create a caller key and print it: it is shown this once and never stored."""
    body: dict[str, Any] = {"name": name, "metadata": _metadata(meta)}
    for key, value in (
        ("models", _split_models(models)),
        ("requestsPerMinute", rpm),
        ("tokensPerMinute", tpm),
        ("burstCapacity", burst),
        ("dailyBudget", daily),
        ("monthlyBudget", monthly),
    ):
        if value is not None:
            body[key] = list(value) if isinstance(value, tuple) else value
    if expires is not None:
        try:
            body["expiresAt"] = parse_expiry(expires)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--expires") from None
    if _remote(url, store_path):
        answer = admin_request("POST", "/admin/keys", url=url, admin_key=admin_key, json=body)
    else:
        config = _config(config_path)
        spec = spec_from_json(body)
        with _open(store_path, config) as store:
            issued = store.create(spec)
        answer = issued_json(issued, _local_warnings(spec, config))
    for warning in answer.get("warnings") or ():
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    record = answer["record"]
    click.echo(f"created caller key {record['id']} {record['name']!r} ({record['fingerprint']})")
    click.echo("the key (shown this once; only its hash is stored):")
    click.echo(answer["key"])


@keys_group.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only keys in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_store_options
def list_command(
    status: str | None,
    as_json: bool,
    store_path: Path | None,
    config_path: Path | None,
    url: str | None,
    admin_key: str | None,
) -> None:
    """Every caller key (never the key: its fingerprint)."""
    if _remote(url, store_path):
        rows: list[dict[str, Any]] = admin_request(
            "GET", "/admin/keys", url=url, admin_key=admin_key, params={"status": status}
        )["keys"]
    else:
        with _open(store_path, _config(config_path)) as store:
            rows = [k.to_json() for k in store.list()]
        if status is not None:
            rows = [row for row in rows if row["status"] == status]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="caller keys", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("id", "name", "fingerprint", "status", "models", "limits", "expires"):
        table.add_column(column, no_wrap=column in ("id", "fingerprint", "status"))
    for row in rows:
        table.add_row(
            row["id"],
            row["name"],
            row["fingerprint"],
            row["status"],
            ", ".join(row["models"]) if row["models"] is not None else "any",
            _limits(row),
            _when(row["expiresAt"]),
        )
    Console().print(table)


@keys_group.command("revoke")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_store_options
def revoke_command(
    ref: str,
    as_json: bool,
    store_path: Path | None,
    config_path: Path | None,
    url: str | None,
    admin_key: str | None,
) -> None:
    """Revoke the key REF names: its id, its fingerprint, or the name of a key not revoked."""
    if _remote(url, store_path):
        from urllib.parse import quote

        answer = admin_request("DELETE", "/admin/keys/" + quote(ref, safe=":"), url=url, admin_key=admin_key)
    else:
        with _open(store_path, _config(config_path)) as store:
            key, changed = store.revoke(ref)
        answer = {"revoked": key.to_json(), "changed": changed}
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    record = answer["revoked"]
    state = "revoked" if answer["changed"] else "was already revoked"
    click.echo(f"{record['id']} {record['name']!r} ({record['fingerprint']}) {state}")


@keys_group.command("rotate")
@click.argument("provider")
@click.option(
    "--key-env",
    "key_envs",
    multiple=True,
    help="Use the key in this environment variable (repeatable) instead of re-reading the provider's key sources.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SWARMGATE_CONFIG",
    help="Config file (without --url). Default: $SWARMGATE_CONFIG, else the embedded default.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@admin_options
def rotate_command(
    provider: str,
    key_envs: tuple[str, ...],
    config_path: Path | None,
    as_json: bool,
    url: str | None,
    admin_key: str | None,
) -> None:
    """Rotate PROVIDER's API keys now, without a restart or a dropped request.

    With --url: on that running gateway (re-read its key sources, or use the
    keys given). Without: build a manager from the config and rotate there,
    which checks the key sources and shows the fingerprints a gateway would
    now use (it does not change a running gateway)."""
    keys: list[str] | None = None
    if key_envs:
        keys = []
        for name in key_envs:
            value = os.environ.get(name)
            if not value:
                raise click.BadParameter(f"the environment variable {name} is not set", param_hint="--key-env")
            keys.append(value)
    if url is not None:
        body = {"keys": keys} if keys is not None else None
        answer = admin_request(
            "POST", f"/admin/providers/{provider}/keys/rotate", url=url, admin_key=admin_key, json=body
        )
        where = url
    else:
        answer = {"provider": provider, "keys": anyio.run(_rotate_locally, config_path, provider, keys)}
        where = None
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    fingerprints = ", ".join(answer["keys"]) or "none"
    if where is not None:
        click.echo(f"{provider}: rotated on {where}; keys in use now: {fingerprints}")
    else:
        click.echo(f"{provider}: its key sources give {fingerprints} (this process only: --url rotates a gateway)")


async def _rotate_locally(config_path: Path | None, provider: str, keys: list[str] | None) -> list[str]:
    async with ProviderManager(config_path) as manager:
        return await manager.rotate_provider_keys(provider, keys)
