"""Provider API keys: where they come from, which one an attempt uses, and
how they are set aside and rotated.

A provider's keys come from any mix of (all resolved when the provider is
built, and again on :meth:`~swarmgate.manager.ProviderManager.rotate_provider_keys`):

* ``apiKey``: one key, usually a ``${ENV}`` reference;
* ``apiKeys``: a list of keys, each usually a ``${ENV}`` reference;
* ``apiKeyFile``: a file holding one key per line (``#`` comments and blank
  lines skipped), e.g. a mounted secret;
* ``keySource``: ``{"type": "<name>", ...options}``, a :class:`KeySource`
  driver found by stevedore in the entry-point group
  ``swarmgate.key_sources`` (built in: ``env`` and ``file``), so that a vault
  can be added as a plugin.

Duplicates are dropped, first occurrence first. The manager builds one
provider instance per key (the driver sees only ``config.api_key``, so no
driver needs to know about several keys) and keeps them in a
:class:`KeyRing`: every attempt takes the next key in turn; a key the
upstream rejects (401, or 403 from the upstream) is *set aside* for
``setAsideFor`` ms and the same target is tried again at once with the next
key. When every key is set aside, an attempt still goes out with the one
whose period ends first (so a provider with one key behaves as it always
did, and a key fixed upstream comes back at its first success).

Set-aside state is per gateway process on purpose: it is learnt from one
answer of the upstream, costs nothing to relearn, and reading it from a
shared store would put a round trip on every attempt.

Nothing here ever puts a key in a message: problems name the config path
and, for files, the file path; keys are shown only as :func:`fingerprint`
(``key:1a2b3c4d``).
"""

from __future__ import annotations

import abc
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import attrs

from swarmgate.config import InvalidValue, _substitute
from swarmgate.errors import AuthenticationError, ConfigError, PermissionDeniedError, SwarmgateError
from swarmgate.logs import fingerprint
from swarmgate.registry import KEY_SOURCES as KEY_SOURCES  # keySource.type names an entry point here

if TYPE_CHECKING:
    from swarmgate.provider import Provider

#: How long a rejected key is set aside by default (ms): ten minutes.
DEFAULT_SET_ASIDE_MS = 600_000.0

_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


def check_key(key: object, where: str) -> str:
    """``key`` stripped of surrounding whitespace, or :class:`ConfigError`
    at ``where`` when it is not a usable key (not a string, empty, or with
    whitespace or control characters inside, which no HTTP header can
    carry). The message never shows the value."""
    if not isinstance(key, str):
        raise ConfigError([(where, f"expected a key (a string), got {type(key).__name__}")])
    key = key.strip()
    if not key:
        raise ConfigError([(where, "is empty")])
    if _BAD_CHARS.search(key):
        raise ConfigError([(where, "contains whitespace or a control character (the key is not shown)")])
    return key


# ---------------------------------------------------------------------------
# Sources


class KeySource(abc.ABC):
    """A place provider keys are read from (``keySource`` in a provider's config).

    Register a subclass as an entry point in ``swarmgate.key_sources``;
    ``{"type": "vault", "mount": "llm", ...}`` then builds
    ``cls(settings, provider=..., path=..., env=..., base_dir=...)`` where
    ``settings`` is the mapping without ``type`` structured into
    ``settings_class`` (an attrs class, validated with the usual
    path-naming errors) or, when ``settings_class`` is ``None``, the raw
    mapping. ``path`` is the config path of the ``keySource`` object (name
    it in errors: ``f"{path}.mount"``), ``env`` the environment to read,
    ``base_dir`` the config file's directory (``None`` for a config given
    in code).

    The manager calls :meth:`keys` when it builds the provider and at every
    rotation, then :meth:`aclose`. Contract of :meth:`keys`: return the keys
    in the order to use them (at least one); raise :class:`ConfigError`
    naming the path when they cannot be read; never put a key in a message.
    """

    settings_class: ClassVar[type | None] = None

    def __init__(
        self,
        settings: Any,
        *,
        provider: str,
        path: str,
        env: Mapping[str, str],
        base_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.path = path
        self.env = env
        self.base_dir = base_dir

    @abc.abstractmethod
    async def keys(self) -> list[str]:
        """The provider's current keys."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release what :meth:`keys` opened (a client). Called after every read."""


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _variables(_instance: Any, _attribute: Any, value: tuple[str, ...]) -> None:
    if not value:
        raise InvalidValue("variables", "needs at least one environment variable name")
    for i, name in enumerate(value):
        if not _ENV_NAME.match(name):
            raise InvalidValue(f"variables[{i}]", f"{name!r} is not an environment variable name")


@attrs.frozen
class EnvSourceSettings:
    """``{"type": "env", "variables": ["OPENAI_KEY_1", "OPENAI_KEY_2"]}``: one key per variable."""

    variables: tuple[str, ...] = attrs.field(validator=_variables)


class EnvKeySource(KeySource):
    """Keys from environment variables, read again at every rotation."""

    settings_class = EnvSourceSettings

    async def keys(self) -> list[str]:
        """The variables' values, in order; an unset or empty one is a ConfigError naming it."""
        settings: EnvSourceSettings = self.settings
        out: list[str] = []
        problems: list[tuple[str, str]] = []
        for i, name in enumerate(settings.variables):
            where = f"{self.path}.variables[{i}]"
            value = self.env.get(name)
            if not value:
                problems.append((where, f"environment variable {name} is not set"))
                continue
            out.append(check_key(value, where))
        if problems:
            raise ConfigError(problems)
        return out


@attrs.frozen
class FileSourceSettings:
    """``{"type": "file", "path": "/run/secrets/openai"}``: one key per line."""

    path: str = attrs.field()

    @path.validator
    def _check(self, _attribute: Any, value: str) -> None:
        if not value.strip():
            raise InvalidValue("path", "must name a file")


class FileKeySource(KeySource):
    """Keys from a file (a mounted secret), read again at every rotation."""

    settings_class = FileSourceSettings

    async def keys(self) -> list[str]:
        """The file's keys (see :func:`read_key_file`)."""
        settings: FileSourceSettings = self.settings
        return await read_key_file(settings.path, f"{self.path}.path", base_dir=self.base_dir)


def resolve_path(path: str, base_dir: Path | None) -> Path:
    """``path`` with ``~`` expanded; a relative path is taken from ``base_dir``
    (the config file's directory) when there is one, else from the working directory."""
    resolved = Path(path).expanduser()
    if not resolved.is_absolute() and base_dir is not None:
        resolved = base_dir / resolved
    return resolved


async def read_key_file(path: str, where: str, *, base_dir: Path | None = None) -> list[str]:
    """The keys in the file at ``path``: one per line, surrounding whitespace
    stripped, blank lines and ``#`` comments skipped. A file that cannot be
    read or holds no key is a :class:`ConfigError` at ``where`` naming the
    file (never its content)."""
    file = resolve_path(path, base_dir)
    try:
        text = await anyio.Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError([(where, f"cannot read the key file {str(file)!r}: {reason}")]) from None
    keys: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keys.append(check_key(stripped, f"{where} ({file}, line {number})"))
    if not keys:
        raise ConfigError([(where, f"the key file {str(file)!r} holds no key")])
    return keys


# ---------------------------------------------------------------------------
# Templates: the keys as written, re-resolved at rotation


@attrs.frozen
class KeyTemplates:
    """A provider's ``apiKey`` and ``apiKeys`` as written in the config
    (before ``${ENV}`` substitution); ``None`` where the key is absent."""

    api_key: str | None = attrs.field(default=None, repr=False)
    api_keys: tuple[str, ...] | None = attrs.field(default=None, repr=False)


def key_templates(raw: Any) -> dict[str, KeyTemplates]:
    """Each provider's :class:`KeyTemplates` from a raw config mapping
    (providers without string keys left out)."""
    providers = raw.get("providers") if isinstance(raw, Mapping) else None
    if not isinstance(providers, Mapping):
        return {}
    out: dict[str, KeyTemplates] = {}
    for name, provider in providers.items():
        if not isinstance(provider, Mapping):
            continue
        single = provider.get("apiKey")
        several = provider.get("apiKeys")
        templates = KeyTemplates(
            single if isinstance(single, str) else None,
            tuple(several) if isinstance(several, list) and all(isinstance(k, str) for k in several) else None,
        )
        if templates.api_key is not None or templates.api_keys is not None:
            out[name] = templates
    return out


def literal_key_paths(templates: Mapping[str, KeyTemplates]) -> list[tuple[str, str]]:
    """``(provider, path)`` of every key written literally (no ``${ENV}``)."""
    out: list[tuple[str, str]] = []
    for name, t in templates.items():
        if t.api_key is not None and "${" not in t.api_key:
            out.append((name, f"providers.{name}.apiKey"))
        for i, key in enumerate(t.api_keys or ()):
            if "${" not in key:
                out.append((name, f"providers.{name}.apiKeys[{i}]"))
    return out


def _resolve(template: str, where: str, env: Mapping[str, str]) -> str:
    missing: list[tuple[list[str | int], str]] = []
    value = _substitute(template, [], env, missing)
    if missing:
        raise ConfigError([(where, f"environment variable ${{{name}}} is not set") for _, name in missing])
    return str(value)


def resolve_templates(
    name: str, templates: KeyTemplates, env: Mapping[str, str] | None
) -> tuple[str | None, tuple[str, ...] | None]:
    """``templates`` with ``${ENV}`` substituted from ``env`` (default
    ``os.environ``) now: the new ``apiKey`` and ``apiKeys`` (``None`` where
    there is no template). An unset variable is a :class:`ConfigError` naming the path."""
    source = os.environ if env is None else env
    base = f"providers.{name}"
    single = None if templates.api_key is None else _resolve(templates.api_key, f"{base}.apiKey", source)
    several = None
    if templates.api_keys is not None:
        several = tuple(_resolve(t, f"{base}.apiKeys[{i}]", source) for i, t in enumerate(templates.api_keys))
    return single, several


def unique(keys: Iterable[str]) -> list[str]:
    """``keys`` without duplicates, first occurrence first."""
    return list(dict.fromkeys(keys))


# ---------------------------------------------------------------------------
# The ring


def is_key_error(error: SwarmgateError) -> bool:
    """Whether the upstream rejected the *key*: an authentication error
    (401), or a permission error the upstream answered (403). A 407 is the
    proxy in between asking for *its* credentials: another provider key
    would not help, so it is not a key error."""
    if isinstance(error, AuthenticationError):
        return error.upstream_status != 407
    return isinstance(error, PermissionDeniedError) and error.upstream_status in (None, 403)


@attrs.define(eq=False)
class KeySlot:
    """One key of a provider and the driver instance that uses it.

    ``key`` is ``None`` for a provider without keys. ``inflight`` counts the
    calls running on this instance; a ``retired`` slot (rotated out) is
    closed when its last call ends. ``set_aside_until`` is a
    ``time.monotonic()`` instant (``None``: usable); ``failures`` counts how
    often the key was set aside; ``last_used`` is the unix time of its last pick.
    """

    provider: Provider
    key: str | None = attrs.field(default=None, repr=False)
    fingerprint: str | None = None
    inflight: int = 0
    retired: bool = False
    closed: bool = False
    set_aside_until: float | None = None
    failures: int = 0
    last_used: float | None = None

    def status(self, now: float, wall: float) -> dict[str, Any]:
        """What :meth:`~swarmgate.manager.ProviderManager.provider_key_status` shows for it."""
        until = self.set_aside_until
        aside = until is not None and until > now
        return {
            "fingerprint": self.fingerprint,
            "active": not aside,
            "set_aside_until": wall + (until - now) if aside and until is not None else None,
            "failures": self.failures,
            "last_used": self.last_used,
        }


class KeyRing:
    """A provider's key slots, used in turn (see the module docstring).

    ``slots`` is replaced as a whole on rotation (copy-on-write): an
    attempt keeps the slot it picked. ``set_aside_for`` is in seconds.
    """

    __slots__ = ("set_aside_for", "slots", "turn")

    def __init__(self, slots: Sequence[KeySlot], set_aside_for: float = DEFAULT_SET_ASIDE_MS / 1000.0) -> None:
        if not slots:
            raise ValueError("a key ring needs at least one slot")
        self.slots: tuple[KeySlot, ...] = tuple(slots)
        self.set_aside_for = set_aside_for
        self.turn = 0

    @property
    def keyed(self) -> bool:
        """Whether the provider has keys (as opposed to one keyless slot)."""
        return self.slots[0].key is not None

    def pick(self) -> KeySlot:
        """The slot for a new attempt: the next usable key in turn; when every
        key is set aside, the one whose period ends first (a last try)."""
        slots = self.slots
        count = len(slots)
        if count == 1:
            slot = slots[0]
        else:
            now = time.monotonic()
            start = self.turn % count
            chosen = -1
            soonest = -1
            for step in range(count):
                index = (start + step) % count
                until = slots[index].set_aside_until
                if until is None or until <= now:
                    chosen = index
                    break
                if soonest < 0 or until < (slots[soonest].set_aside_until or 0.0):
                    soonest = index
            if chosen < 0:
                chosen = soonest
            self.turn = chosen + 1
            slot = slots[chosen]
        slot.last_used = time.time()
        return slot

    def set_aside(self, slot: KeySlot) -> None:
        """Set ``slot``'s key aside for ``set_aside_for`` seconds."""
        slot.failures += 1
        slot.set_aside_until = time.monotonic() + self.set_aside_for

    def next_usable(self, tried: Sequence[KeySlot]) -> KeySlot | None:
        """The next key in turn that is neither set aside nor in ``tried``
        (this attempt's rejected keys), or ``None`` when none is left."""
        slots = self.slots
        count = len(slots)
        now = time.monotonic()
        start = self.turn % count
        for step in range(count):
            index = (start + step) % count
            slot = slots[index]
            until = slot.set_aside_until
            if slot not in tried and (until is None or until <= now):
                self.turn = index + 1
                slot.last_used = time.time()
                return slot
        return None

    def active(self) -> KeySlot:
        """A usable slot without taking a turn (health probes): the first
        not set aside, else the first."""
        now = time.monotonic()
        for slot in self.slots:
            until = slot.set_aside_until
            if until is None or until <= now:
                return slot
        return self.slots[0]

    def keys(self) -> list[str | None]:
        """The keys in use, in order (``[None]`` for a keyless provider)."""
        return [slot.key for slot in self.slots]

    def status(self) -> list[dict[str, Any]]:
        """Every key's status (none for a keyless provider)."""
        if not self.keyed:
            return []
        now, wall = time.monotonic(), time.time()
        return [slot.status(now, wall) for slot in self.slots]


def slot_for(provider: Provider, key: str | None) -> KeySlot:
    """A fresh slot for ``provider`` using ``key``."""
    return KeySlot(provider, key, fingerprint(key) if key is not None else None)
