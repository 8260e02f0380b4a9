"""The configuration of encryption at rest (``security.encryption``).

The guide's keys are ``enabled``, ``algorithm`` and ``keyRotation`` (ms);
the rest extend it. The section being present turns encryption on
(``enabled`` defaults to true); absent, the plugin unregisters itself.

The master key never appears in the config: ``masterKeyEnv`` names the
environment variable holding it (default ``SWARMGATE_MASTER_KEY``) or
``masterKeyFile`` names a file holding it. A ``masterKey`` key is refused
(:func:`refuse_key_in_config`), even as a ``${ENV}`` reference, because the
config is a plain-text document that gets printed, copied and committed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import attrs

from swarmgate.config import InvalidValue
from swarmgate.errors import ConfigError

SECTION: Final = "security.encryption"

#: The only algorithm accepted (the guide's spelling; compared case-insensitively).
ALGORITHM: Final = "AES-256-GCM"

#: Where the master key is read from when neither ``masterKeyEnv`` nor ``masterKeyFile`` is given.
DEFAULT_MASTER_KEY_ENV: Final = "SWARMGATE_MASTER_KEY"

#: The keyring stores ``keyring`` accepts: ``auto`` (``sqlite`` with the
#: in-process ``memory`` state backend, ``state`` with a shared one),
#: ``state`` (the StateStore, under ``encryption:keys:``), ``sqlite`` (a file
#: under the data directory, ``keyringPath``).
KEYRINGS: Final = ("auto", "state", "sqlite")

#: Keys that would put a key in the config in clear.
_KEY_IN_CLEAR: Final = ("masterKey", "master_key", "key", "dataKey")

#: The default pause (ms) between two reads of the keyring, when
#: ``keyRotation`` does not call for a shorter one.
DEFAULT_REFRESH_MS: Final = 60_000.0


def refuse_key_in_config(raw: Any, path: str = SECTION) -> None:
    """Raise ConfigError when the raw section carries a key (never echoing it)."""
    if not isinstance(raw, Mapping):
        return
    found = [name for name in _KEY_IN_CLEAR if name in raw]
    if found:
        raise ConfigError(
            [
                (
                    f"{path}.{name}",
                    "a key in the config is refused: the config is plain text that gets printed, copied and "
                    f"committed; put the base64 master key in an environment variable named by masterKeyEnv "
                    f"(default {DEFAULT_MASTER_KEY_ENV}) or in a file named by masterKeyFile",
                )
                for name in found
            ]
        )


def _positive_ms(key: str, value: float | None, minimum: float) -> None:
    if value is not None and not (math.isfinite(value) and value >= minimum):
        raise InvalidValue(key, f"must be a number of milliseconds of at least {minimum:g}, got {value}")


@attrs.frozen
class EncryptionSettings:
    """``security.encryption``.

    * ``algorithm``: ``"AES-256-GCM"``, the only one accepted.
    * ``keyRotation``: how often (ms) a new data key becomes current; old
      keys stay for decryption. ``null``: only manual rotation.
    * ``masterKeyEnv`` / ``masterKeyFile``: where the master key (base64 of
      32 bytes; a file may also hold the 32 raw bytes) comes from; give at
      most one. Neither: ``$SWARMGATE_MASTER_KEY``.
    * ``keyring`` / ``keyringPath``: where the wrapped data keys are kept
      (see :data:`KEYRINGS`); ``keyringPath`` is relative to the data
      directory unless absolute.
    * ``refreshInterval``: how often (ms) a running gateway re-reads the
      keyring (keys made by other gateways, the next scheduled key) and
      provisions the next scheduled key; default ``min(60 s, keyRotation / 4)``.
    * ``encryptCache``: encrypt the response cache's entries (publishes
      ``manager.extensions["cache_codec"]``).
    """

    enabled: bool = True
    algorithm: str = ALGORITHM
    key_rotation: float | None = 86_400_000.0
    master_key_env: str | None = None
    master_key_file: str | None = None
    keyring: str = "auto"
    keyring_path: str = "encryption-keys.db"
    refresh_interval: float | None = None
    encrypt_cache: bool = True

    def __attrs_post_init__(self) -> None:
        if self.algorithm.upper() != ALGORITHM:
            raise InvalidValue("algorithm", f"only {ALGORITHM!r} is supported, got {self.algorithm!r}")
        _positive_ms("keyRotation", self.key_rotation, 1000.0)
        _positive_ms("refreshInterval", self.refresh_interval, 10.0)
        if self.master_key_env is not None and self.master_key_file is not None:
            raise InvalidValue("masterKeyFile", "give either masterKeyEnv or masterKeyFile, not both")
        if self.master_key_env is not None and not self.master_key_env.strip():
            raise InvalidValue("masterKeyEnv", "must name an environment variable")
        if self.master_key_file is not None and not self.master_key_file.strip():
            raise InvalidValue("masterKeyFile", "must name a file")
        if self.keyring not in KEYRINGS:
            raise InvalidValue("keyring", f"must be one of {list(KEYRINGS)}, got {self.keyring!r}")
        if not self.keyring_path.strip():
            raise InvalidValue("keyringPath", "must name a file")
        rotation, refresh = self.key_rotation, self.refresh_interval
        if rotation is not None and refresh is not None and refresh * 2 > rotation:
            raise InvalidValue(
                "refreshInterval",
                f"must be at most half of keyRotation ({rotation:g} ms), so that every gateway learns the next "
                f"data key before it becomes current; got {refresh:g}",
            )

    @property
    def refresh_seconds(self) -> float:
        """The keyring refresh pause in seconds (the default worked out)."""
        if self.refresh_interval is not None:
            return self.refresh_interval / 1000.0
        if self.key_rotation is None:
            return DEFAULT_REFRESH_MS / 1000.0
        return min(DEFAULT_REFRESH_MS, self.key_rotation / 4) / 1000.0

    @property
    def rotation_seconds(self) -> float | None:
        """``keyRotation`` in seconds (``None``: no scheduled rotation)."""
        return None if self.key_rotation is None else self.key_rotation / 1000.0

    @property
    def master_key_source(self) -> tuple[str, str]:
        """``("env", NAME)`` or ``("file", PATH)``."""
        if self.master_key_file is not None:
            return "file", self.master_key_file
        return "env", self.master_key_env or DEFAULT_MASTER_KEY_ENV
