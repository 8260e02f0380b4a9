"""swarmgate-keys: caller keys (virtual keys) the gateway issues to its callers.

* :class:`KeysPlugin` -- the hook plugin (entry point ``keys`` in the
  ``swarmgate`` group), configured by ``security.callerKeys``: opens the
  store, answers the gateway's key checks and is the caller directory the
  ratelimit and budget plugins read each key's limits from; adds the
  ``keys`` CLI group and the ``/admin/keys`` admin API;
* :class:`CallerKeyService` -- what it publishes as
  ``manager.extensions["caller_keys"]``;
* :class:`KeyStore` -- the SQLite store (keys kept only as digests),
  usable on its own; :class:`Hasher` -- how keys are hashed (HMAC-SHA256
  with a pepper, else SHA-256);
* :class:`KeySpec`, :class:`CallerKey`, :class:`IssuedKey` -- a key to
  create, a stored key as shown, a key just created;
* :class:`CallerKeysSettings`, :func:`load_settings`,
  :func:`resolve_hasher` -- the configuration section.

The public API is exactly ``__all__``.
"""

from swarmgate_keys.hashing import KEY_PREFIX, Hasher, generate_key
from swarmgate_keys.plugin import EXTENSION, CallerKeyService, KeysPlugin, open_store
from swarmgate_keys.settings import (
    DEFAULT_FILE,
    DEFAULT_PEPPER_ENV,
    SECTION,
    CallerKeysSettings,
    load_settings,
    resolve_hasher,
)
from swarmgate_keys.spec import CallerKey, IssuedKey, KeySpec, parse_expiry, spec_from_json
from swarmgate_keys.store import KeyNameTakenError, KeyNotFoundError, KeyStore

__all__ = [
    "DEFAULT_FILE",
    "DEFAULT_PEPPER_ENV",
    "EXTENSION",
    "KEY_PREFIX",
    "SECTION",
    "CallerKey",
    "CallerKeyService",
    "CallerKeysSettings",
    "Hasher",
    "IssuedKey",
    "KeyNameTakenError",
    "KeyNotFoundError",
    "KeySpec",
    "KeyStore",
    "KeysPlugin",
    "generate_key",
    "load_settings",
    "open_store",
    "parse_expiry",
    "resolve_hasher",
    "spec_from_json",
]
