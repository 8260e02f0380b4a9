"""``EncryptionPlugin``: encryption at rest (entry point ``encryption`` in the
``swarmgate`` group), configured by ``security.encryption``.

* ``plugin_setup`` (``tryfirst``, so the services exist before the cache's
  and the audit log's set-up looks for them): reads the section, stays
  unregistered when it is absent or ``enabled: false``; otherwise loads the
  master key (a ConfigError when it is missing or malformed: never a
  fallback to plaintext), opens the keyring, starts the
  :class:`~swarmgate_encryption.EncryptionService` and publishes it as
  ``manager.extensions["encryption"]``, and its cache codec as
  ``manager.extensions["cache_codec"]`` (unless ``encryptCache: false``);
  then runs the keyring refresh every ``refreshInterval`` in the background.
* ``plugin_shutdown``: stops the refresh. The service keeps working (a
  plugin shutting down after this one may still encrypt its last records).
* ``register_commands``: the ``encryption`` group (``generate-key``,
  ``status``, ``rotate``, ``rotate-master``).

The plugin has no request hook: the cache and the audit log call the
service where they store and read records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from swarmgate import ConfigError, PluginError, ProviderManager, StateStore, hookimpl, parse_section
from swarmgate.logs import get_logger
from swarmgate.paths import data_path
from swarmgate_encryption.settings import SECTION, EncryptionSettings, refuse_key_in_config

# The service, keyring and master key (and with them ``cryptography``, ~7 MB
# of memory) are imported when the config turns encryption on: a gateway
# that loads this plugin with encryption off does not pay for them.
if TYPE_CHECKING:
    import click

    from swarmgate_encryption.keyring import KeyStore
    from swarmgate_encryption.service import EncryptionService

log = get_logger("swarmgate.encryption")


def read_settings(raw: object, *, source: str | None = None) -> EncryptionSettings:
    """``security.encryption`` structured; ConfigError for a key in the
    config (never echoed) or a bad value, naming the path."""
    refuse_key_in_config(raw)
    return parse_section(EncryptionSettings, raw, SECTION, source=source)


def open_keystore(settings: EncryptionSettings, backend: str, state: StateStore) -> KeyStore:
    """The keyring store ``settings`` ask for (``auto``: SQLite with the
    ``memory`` state backend, else the StateStore). ConfigError for the
    StateStore with the ``memory`` backend: its keys would not survive a
    restart, and nothing encrypted with them would be readable again."""
    from swarmgate_encryption.keyring import SqliteKeyStore, StateKeyStore

    choice = settings.keyring
    if choice == "auto":
        choice = "sqlite" if backend == "memory" else "state"
    if choice == "state":
        if backend == "memory":
            raise ConfigError(
                [
                    (
                        f"{SECTION}.keyring",
                        "'state' with the in-process 'memory' state backend would lose every data key at "
                        "restart (and with them every record encrypted); use 'sqlite' (or 'auto'), or a shared "
                        "state backend",
                    )
                ]
            )
        return StateKeyStore(state, backend)
    return SqliteKeyStore(data_path(settings.keyring_path))


class EncryptionPlugin:
    """Encryption at rest; see the module docstring.

    For embedding and tests: ``clock`` (wall-clock seconds) drives the key
    schedule, ``environ`` replaces ``os.environ`` for the master key, and
    ``background=False`` runs no refresh task (call ``service.refresh()``).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
        background: bool = True,
    ) -> None:
        self._clock = clock
        self._environ = environ
        self._background = background
        self._task_group: anyio.abc.TaskGroup | None = None
        #: The running service, or ``None`` while the config leaves encryption off.
        self.service: EncryptionService | None = None

    @hookimpl(tryfirst=True)
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Start encryption when the config enables it (see the module docstring).
        Raises ConfigError naming the setting at fault, PluginError when
        another plugin already published a cache codec."""
        config = manager.config
        raw = config.section(SECTION)
        if raw is None:
            manager.plugins.discard(self)
            return
        settings = read_settings(raw, source=config.source)
        if not settings.enabled:
            manager.plugins.discard(self)
            return
        from swarmgate_encryption.codec import EncryptedCacheCodec
        from swarmgate_encryption.masterkey import load_master_key
        from swarmgate_encryption.service import EncryptionService

        master = load_master_key(settings, self._environ)
        store = open_keystore(settings, config.state.backend, manager.state)
        service = EncryptionService(settings, master, store, clock=self._clock)
        await service.start()
        if settings.encrypt_cache:
            present = manager.extensions.get("cache_codec")
            if present is not None:
                raise PluginError(
                    f"extensions['cache_codec'] is already published ({present!r}); the encryption plugin "
                    f"cannot encrypt the cache as well (set {SECTION}.encryptCache to false to leave it)",
                    namespace="swarmgate",
                    name="encryption",
                )
            manager.extensions["cache_codec"] = EncryptedCacheCodec(service)
        manager.extensions["encryption"] = service
        self.service = service
        if self._background:
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
            self._task_group = task_group
            task_group.start_soon(self._refresh_loop, service, settings.refresh_seconds, name="encryption:refresh")

    @staticmethod
    async def _refresh_loop(service: EncryptionService, interval: float) -> None:
        while True:
            await anyio.sleep(interval)
            await service.refresh()

    @hookimpl
    async def plugin_shutdown(self) -> None:
        """Stop the keyring refresh."""
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            task_group.cancel_scope.cancel()  # a keyring write in a worker thread finishes first
            await task_group.__aexit__(None, None, None)

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        """Add the ``encryption`` commands."""
        from swarmgate_encryption.cli import add_commands

        add_commands(cli)
