"""swarmgate-encryption: AES-256-GCM encryption at rest with envelope keys.

* :class:`EncryptionPlugin` -- the hook plugin (entry point ``encryption``
  in the ``swarmgate`` group), configured by ``security.encryption``: loads
  the master key from the environment or a file (a start-up ConfigError
  when missing; never from the config), keeps the data keys wrapped in the
  keyring, rotates them on schedule, encrypts the response cache;
* :class:`EncryptionService` -- what it publishes as
  ``manager.extensions["encryption"]``: ``encrypt(plaintext, aad)``,
  ``decrypt(blob, aad)`` (synchronous), ``await rotate()``, ``status()``;
* :class:`TamperedError` -- raised by ``decrypt`` for a record that fails
  authentication; its content is never returned;
* :class:`EncryptedCacheCodec` -- what it publishes as
  ``manager.extensions["cache_codec"]``;
* :class:`EncryptionSettings` -- the configuration section;
* :class:`KeyRecord`, :class:`KeyStore` (:class:`StateKeyStore`,
  :class:`SqliteKeyStore`), :func:`rotate_master` -- the keyring;
* :class:`MasterKey`, :func:`generate_key_text` -- the master key.

The public API is exactly ``__all__``.
"""

from typing import TYPE_CHECKING, Any

from swarmgate_encryption.plugin import EncryptionPlugin
from swarmgate_encryption.settings import ALGORITHM, DEFAULT_MASTER_KEY_ENV, EncryptionSettings

if TYPE_CHECKING:
    from swarmgate_encryption.codec import CACHE_AAD, EncryptedCacheCodec
    from swarmgate_encryption.envelope import OVERHEAD, VERSION, TamperedError, key_id_of
    from swarmgate_encryption.keyring import (
        KeyRecord,
        KeyringError,
        KeyStore,
        MasterMismatchError,
        MasterRotation,
        SqliteKeyStore,
        StateKeyStore,
        rotate_master,
    )
    from swarmgate_encryption.masterkey import MasterKey, generate_key_text
    from swarmgate_encryption.service import EncryptionService

#: Where each name that needs ``cryptography`` lives; imported on first use
#: (see :mod:`swarmgate_encryption.plugin`: encryption off costs no memory).
_LAZY = {
    "CACHE_AAD": "codec",
    "EncryptedCacheCodec": "codec",
    "OVERHEAD": "envelope",
    "VERSION": "envelope",
    "TamperedError": "envelope",
    "key_id_of": "envelope",
    "KeyRecord": "keyring",
    "KeyringError": "keyring",
    "KeyStore": "keyring",
    "MasterMismatchError": "keyring",
    "MasterRotation": "keyring",
    "SqliteKeyStore": "keyring",
    "StateKeyStore": "keyring",
    "rotate_master": "keyring",
    "MasterKey": "masterkey",
    "generate_key_text": "masterkey",
    "EncryptionService": "service",
}

__all__ = [
    "ALGORITHM",
    "CACHE_AAD",
    "DEFAULT_MASTER_KEY_ENV",
    "OVERHEAD",
    "VERSION",
    "EncryptedCacheCodec",
    "EncryptionPlugin",
    "EncryptionService",
    "EncryptionSettings",
    "KeyRecord",
    "KeyStore",
    "KeyringError",
    "MasterKey",
    "MasterMismatchError",
    "MasterRotation",
    "SqliteKeyStore",
    "StateKeyStore",
    "TamperedError",
    "generate_key_text",
    "key_id_of",
    "rotate_master",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"swarmgate_encryption.{module}"), name)
