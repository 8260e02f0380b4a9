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
from swarmgate_encryption.plugin import EncryptionPlugin
from swarmgate_encryption.service import EncryptionService
from swarmgate_encryption.settings import ALGORITHM, DEFAULT_MASTER_KEY_ENV, EncryptionSettings

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
