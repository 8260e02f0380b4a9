"""The caller-key store's configuration: ``security.callerKeys``.

```json
{"security": {"callerKeys": {
  "enabled": true,
  "path": "keys.db",
  "pepperEnv": "SWARMGATE_KEY_PEPPER"
}}}
```

``"callerKeys": true`` is the same as ``{}`` (every default); ``false`` or
``"enabled": false`` leave the store unused. ``path``: the SQLite file,
relative paths under the data directory (``$SWARMGATE_HOME``; default
``keys.db``). The pepper (see :mod:`swarmgate_keys.hashing`) comes from the
environment variable ``pepperEnv`` (default ``SWARMGATE_KEY_PEPPER``) or the
file ``pepperFile`` (its whole content, surrounding whitespace stripped; a
relative path starts at the config file's directory). Naming either
explicitly makes it required: a variable that is unset or a file that cannot
be read is a start-up error. With neither given and
``$SWARMGATE_KEY_PEPPER`` unset, keys are hashed with plain SHA-256.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from swarmgate import ConfigError, SwarmgateConfig, parse_section
from swarmgate.config import InvalidValue
from swarmgate.keys import resolve_path
from swarmgate.paths import data_path
from swarmgate_keys.hashing import MIN_PEPPER_LENGTH, Hasher

#: The config path of the section.
SECTION: Final = "security.callerKeys"
#: The store's file when ``path`` is not set (under the data directory).
DEFAULT_FILE: Final = "keys.db"
#: Where the pepper is read from when neither ``pepperEnv`` nor ``pepperFile`` is set.
DEFAULT_PEPPER_ENV: Final = "SWARMGATE_KEY_PEPPER"


@attrs.frozen
class CallerKeysSettings:
    """``security.callerKeys`` (see the module docstring)."""

    enabled: bool = True
    path: str | None = None
    pepper_env: str | None = None
    pepper_file: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.path is not None and not self.path.strip():
            raise InvalidValue("path", "must be a file path, got an empty string")
        if self.pepper_env is not None and not self.pepper_env.strip():
            raise InvalidValue("pepperEnv", "must be an environment variable name, got an empty string")
        if self.pepper_file is not None and not self.pepper_file.strip():
            raise InvalidValue("pepperFile", "must be a file path, got an empty string")
        if self.pepper_env is not None and self.pepper_file is not None:
            raise InvalidValue("pepperFile", "give the pepper through pepperEnv or pepperFile, not both")

    def resolved_path(self) -> Path:
        """``path`` resolved under the data directory (its parent created)."""
        return data_path(self.path or DEFAULT_FILE)


def load_settings(raw: Any, *, source: str | None = None) -> CallerKeysSettings:
    """Structure ``security.callerKeys`` (``None``: absent, so disabled;
    ``true``/``false``: on with the defaults, off). Raises ConfigError
    naming the bad path."""
    if raw is None:
        return CallerKeysSettings(enabled=False)
    if isinstance(raw, bool):
        return CallerKeysSettings(enabled=raw)
    if not isinstance(raw, Mapping):
        raise ConfigError([(SECTION, f"must be an object (or true/false), got {type(raw).__name__}")], source=source)
    return parse_section(CallerKeysSettings, raw, SECTION, source=source)


def settings_of(config: SwarmgateConfig | None) -> CallerKeysSettings:
    """The section of ``config`` (disabled when absent or no config)."""
    if config is None:
        return CallerKeysSettings(enabled=False)
    return load_settings(config.section(SECTION), source=config.source)


def resolve_hasher(
    settings: CallerKeysSettings,
    *,
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Hasher:
    """The :class:`~swarmgate_keys.hashing.Hasher` the settings call for:
    peppered when a pepper is found, plain SHA-256 otherwise. Raises
    ConfigError (naming the path, never the pepper) for a pepper that was
    asked for and is missing, unreadable or shorter than 16 characters."""
    environ = os.environ if env is None else env
    if settings.pepper_file is not None:
        where = f"{SECTION}.pepperFile"
        file = resolve_path(settings.pepper_file, base_dir)
        try:
            pepper = file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigError([(where, f"cannot read the pepper file {str(file)!r}: {reason}")]) from None
        return Hasher(_checked(pepper, where, f"the pepper file {str(file)!r}"))
    name = settings.pepper_env or DEFAULT_PEPPER_ENV
    where = f"{SECTION}.pepperEnv"
    value = environ.get(name)
    if not value:
        if settings.pepper_env is not None:
            raise ConfigError([(where, f"the environment variable {name} is not set (it must hold the pepper)")])
        return Hasher(None)
    return Hasher(_checked(value.strip(), where, f"${name}"))


def _checked(pepper: str, where: str, what: str) -> bytes:
    if len(pepper) < MIN_PEPPER_LENGTH:
        raise ConfigError([(where, f"{what} holds a pepper shorter than {MIN_PEPPER_LENGTH} characters")])
    return pepper.encode()
