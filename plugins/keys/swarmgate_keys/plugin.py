"""``KeysPlugin``: the entry point ``keys`` in the ``swarmgate`` group.

With ``security.callerKeys`` switched on, ``plugin_setup`` opens the store
and publishes a :class:`CallerKeyService` as
``manager.extensions["caller_keys"]``, where the gateway (swarmgate-server)
asks it about every key it does not know from ``server.apiKeys``; the same
object is registered with ``manager.add_caller_directory``, so the
ratelimit and budget plugins switch on and apply each key's limits to its
caller (the gateway sets ``request.caller`` to the key's name).

The plugin has no request hooks: it costs a request nothing unless the
gateway asks it about a key. It always adds the ``keys`` CLI group and the
admin routes under ``/admin/keys`` (the gateway serves them behind its
admin key); with the store switched off they answer 409 saying so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import click

from swarmgate import CallerPolicy, ConfigError, ProviderManager, hookimpl
from swarmgate.logs import get_logger, register_secret
from swarmgate_keys.settings import SECTION, CallerKeysSettings, resolve_hasher, settings_of
from swarmgate_keys.spec import CallerKey, IssuedKey, KeySpec
from swarmgate_keys.store import KeyStore

log = get_logger("swarmgate.keys")

#: Where the service is published (the gateway's caller-key seam).
EXTENSION = "caller_keys"


class CallerKeyService:
    """What the plugin publishes as ``manager.extensions["caller_keys"]``:
    the gateway's key authenticator, a caller directory, and the store's
    administration for async code (run in worker threads)."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store

    @property
    def path(self) -> Path:
        """The store's file."""
        return self.store.path

    def authenticate(self, key: str) -> str | None:
        """The caller name (the key's name) of ``key`` if it is a usable
        caller key, else ``None``. Synchronous and cheap (see
        :mod:`swarmgate_keys.store`); a revoked or expired key is logged
        (id and name, never the key) and refused."""
        found = self.store.lookup(key)
        if found is None:
            return None
        status = found.status()
        if status != "active":
            log.info("caller_key_refused", id=found.id, name=found.name, fingerprint=found.fingerprint, status=status)
            return None
        return found.name

    def policy(self, caller: str) -> CallerPolicy | None:
        """The limits of the live key named ``caller`` (``CallerDirectory``)."""
        return self.store.policy(caller)

    async def create(self, spec: KeySpec) -> IssuedKey:
        """Create a key (see :meth:`KeyStore.create`). The new key is
        registered with the log redaction, so it is masked should it ever
        reach a log line of this process."""
        issued = await anyio.to_thread.run_sync(self.store.create, spec)
        register_secret(issued.key)
        log.info("caller_key_created", id=issued.record.id, name=spec.name, fingerprint=issued.record.fingerprint)
        return issued

    async def list(self, *, include_revoked: bool = True) -> list[CallerKey]:
        """Every key (see :meth:`KeyStore.list`)."""
        return await anyio.to_thread.run_sync(lambda: self.store.list(include_revoked=include_revoked))

    async def get(self, ref: str) -> CallerKey:
        """The key ``ref`` names (see :meth:`KeyStore.get`)."""
        return await anyio.to_thread.run_sync(self.store.get, ref)

    async def revoke(self, ref: str) -> tuple[CallerKey, bool]:
        """Revoke a key (see :meth:`KeyStore.revoke`)."""
        key, changed = await anyio.to_thread.run_sync(self.store.revoke, ref)
        if changed:
            log.info("caller_key_revoked", id=key.id, name=key.name, fingerprint=key.fingerprint)
        return key, changed


def open_store(settings: CallerKeysSettings, *, base_dir: Path | None = None) -> KeyStore:
    """Open the store ``settings`` name with the pepper they call for.
    Raises ConfigError (naming the path) when it cannot be used."""
    import sqlite3

    hasher = resolve_hasher(settings, base_dir=base_dir)
    path = settings.resolved_path()
    try:
        return KeyStore(path, hasher)
    except sqlite3.Error as exc:
        raise ConfigError([(f"{SECTION}.path", f"cannot use {str(path)!r} as the caller-key store: {exc}")]) from None
    except OSError as exc:
        raise ConfigError([(f"{SECTION}.path", f"cannot create {str(path)!r}: {exc.strerror or exc}")]) from None


class KeysPlugin:
    """Caller keys (see the module docstring)."""

    def __init__(self) -> None:
        self.manager: ProviderManager | None = None
        self.settings = CallerKeysSettings(enabled=False)
        self.service: CallerKeyService | None = None

    @hookimpl
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Read ``security.callerKeys``; when on, open the store (file,
        schema and hashing scheme checked), publish the service and register
        it as a caller directory. Raises ConfigError naming the path of a
        bad setting, a missing pepper or an unusable file."""
        self.manager = manager
        config = manager.config
        self.settings = settings = settings_of(config)
        if not settings.enabled:
            return
        base_dir = Path(config.source).parent if config.source else None
        store = await anyio.to_thread.run_sync(lambda: open_store(settings, base_dir=base_dir))
        service = self.service = CallerKeyService(store)
        manager.extensions[EXTENSION] = service
        manager.add_caller_directory(service)
        log.info(
            "caller_keys_ready", path=str(store.path), keys=store.count(), hashing=store.hasher.scheme.split(":")[0]
        )
        if not store.hasher.peppered:
            log.warning(
                "caller_keys_unpeppered",
                detail="keys are hashed with plain SHA-256: set $SWARMGATE_KEY_PEPPER (or pepperEnv/pepperFile) "
                "so that someone who can write the store cannot add a key of their own",
            )
        self._warn_shared_names(manager, store)

    @staticmethod
    def _warn_shared_names(manager: ProviderManager, store: KeyStore) -> None:
        keys = manager.config.section("server.apiKeys")
        if not isinstance(keys, list):
            return
        configured = {entry.get("name") for entry in keys if isinstance(entry, dict)}
        shared = sorted(k.name for k in store.list(include_revoked=False) if k.name in configured)
        if shared:
            log.warning(
                "caller_key_names_shared",
                names=shared,
                detail="server.apiKeys entries with these names get the store keys' limits (the store answers first)",
            )

    @hookimpl
    async def plugin_shutdown(self, manager: ProviderManager) -> None:
        """Close the store."""
        service = self.service
        if service is None:
            return
        self.service = None
        store = service.store
        if manager.extensions.get(EXTENSION) is service:
            manager.extensions.pop(EXTENSION, None)
        await anyio.to_thread.run_sync(store.close)

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        """Add the ``keys`` group."""
        from swarmgate_keys.cli import keys_group

        cli.add_command(keys_group)

    @hookimpl
    def gateway_routes(self, manager: ProviderManager) -> list[Any]:
        """``/admin/keys`` and ``/admin/keys/{ref}`` (behind the admin key)."""
        from swarmgate_keys.routes import build_routes

        return build_routes(self)
