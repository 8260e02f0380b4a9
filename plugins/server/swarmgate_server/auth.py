"""Caller authentication: who is asking, and what they may ask for.

The gateway knows keys from two places:

* ``server.apiKeys`` and ``server.adminKey`` in the config (:class:`KeyRing`),
  kept only as SHA-256 digests and compared with :func:`hmac.compare_digest`
  against every configured digest (no early exit, so the time taken does
  not say which key, if any, matched);
* a caller-key store another plugin publishes as
  ``manager.extensions["caller_keys"]``: any object with
  ``authenticate(key) -> caller name | None`` (sync or async), see
  :class:`KeyAuthenticator`. Its callers' policies come from the caller
  directory that plugin registers with ``manager.add_caller_directory``.

When either holds a key, every API request must carry one, as
``Authorization: Bearer <key>`` or ``x-api-key: <key>``. The KeyRing is
also a :class:`~swarmgate.CallerDirectory`: the ratelimit and budget
plugins read each key's limits through ``manager.caller_policy(name)``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import inspect
import re
from collections.abc import Awaitable, Iterable
from typing import Final, Protocol, runtime_checkable

import attrs

from swarmgate import CallerPolicy
from swarmgate_server.settings import ServerSettings, key_digest

#: The caller name of requests made with the admin key.
ADMIN_CALLER: Final = "admin"
#: Where a caller-key store publishes its authenticator.
AUTHENTICATOR_EXTENSION: Final = "caller_keys"


@runtime_checkable
class KeyAuthenticator(Protocol):
    """A caller-key store the gateway asks about keys it does not know."""

    def authenticate(self, key: str) -> str | Awaitable[str | None] | None:
        """The caller name ``key`` belongs to, or ``None`` (unknown, revoked
        or expired). May be ``async``."""
        ...


class ModelFilter:
    """Which models a caller may request: names, ``provider/model``
    targets or route names, with ``*``/``?`` wildcards. A bare model name
    also admits it on any provider (``gpt-4o`` admits ``openai/gpt-4o``)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._exact = frozenset(p for p in self.patterns if not any(c in p for c in "*?["))
        wild = [fnmatch.translate(p) for p in self.patterns if p not in self._exact]
        self._wild = re.compile("|".join(wild)) if wild else None

    def _match(self, name: str) -> bool:
        return name in self._exact or (self._wild is not None and self._wild.match(name) is not None)

    def allows(self, model: str, provider: str | None = None) -> bool:
        """Whether ``model`` (as requested, with the forced ``provider`` if any) is allowed."""
        if self._match(model):
            return True
        _, _, tail = model.partition("/")
        if tail and self._match(tail):
            return True
        return provider is not None and self._match(f"{provider}/{tail or model}")


@attrs.frozen
class Caller:
    """An authenticated caller: its name (``request.caller``), whether it
    holds the admin key, and the models it may request (``None``: any)."""

    name: str
    admin: bool = False
    models: ModelFilter | None = None


@attrs.define
class _Entry:
    digest: bytes
    caller: Caller


def credentials(authorization: bytes | None, api_key: bytes | None) -> str | None:
    """The key a request presents: ``Authorization: Bearer <key>`` (the
    scheme case-insensitive), else ``x-api-key``; ``None`` when neither."""
    if authorization:
        scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if api_key:
        key = api_key.decode("latin-1").strip()
        return key or None
    return None


class KeyRing:
    """The configured keys (see the module docstring). :meth:`update`
    swaps them on a config reload; the object stays the registered caller
    directory."""

    def __init__(self, settings: ServerSettings) -> None:
        self._entries: tuple[_Entry, ...] = ()
        self._admin: bytes | None = None
        self._policies: dict[str, CallerPolicy] = {}
        self._filters: dict[tuple[str, ...], ModelFilter] = {}
        self.update(settings)

    def update(self, settings: ServerSettings) -> None:
        """Use the keys of ``settings`` from now on."""
        entries = []
        policies = {}
        for entry in settings.api_keys:
            models = ModelFilter(entry.models) if entry.models is not None else None
            entries.append(_Entry(key_digest(entry.key), Caller(entry.name, False, models)))
            policies[entry.name] = CallerPolicy(
                allowed_models=entry.models,
                requests_per_minute=entry.requests_per_minute,
                tokens_per_minute=entry.tokens_per_minute,
                burst_capacity=entry.burst_capacity,
                daily_budget=entry.daily_budget,
                monthly_budget=entry.monthly_budget,
            )
        self._admin = key_digest(settings.admin_key) if settings.admin_key else None
        self._entries = tuple(entries)
        self._policies = policies

    @property
    def has_keys(self) -> bool:
        """Whether any caller key is configured (then every request needs a key)."""
        return bool(self._entries)

    @property
    def has_admin_key(self) -> bool:
        """Whether ``server.adminKey`` is set."""
        return self._admin is not None

    def identify(self, key: str) -> Caller | None:
        """The configured caller ``key`` belongs to (the admin key included),
        or ``None``. Constant time in which key matched: every digest is
        compared."""
        digest = hashlib.sha256(key.encode()).digest()
        found: Caller | None = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.digest):
                found = entry.caller
        if self._admin is not None and hmac.compare_digest(digest, self._admin):
            found = Caller(ADMIN_CALLER, True)
        return found

    def is_admin(self, key: str | None) -> bool:
        """Whether ``key`` is the admin key."""
        if key is None or self._admin is None:
            return False
        return hmac.compare_digest(hashlib.sha256(key.encode()).digest(), self._admin)

    # -- CallerDirectory -----------------------------------------------------------

    def policy(self, caller: str) -> CallerPolicy | None:
        """The configured limits of key ``caller`` (by name), or ``None``."""
        return self._policies.get(caller)

    def model_filter(self, allowed: tuple[str, ...] | None) -> ModelFilter | None:
        """A (cached) filter for a caller policy's ``allowed_models``."""
        if allowed is None:
            return None
        found = self._filters.get(allowed)
        if found is None:
            if len(self._filters) > 1024:
                self._filters.clear()
            found = self._filters[allowed] = ModelFilter(allowed)
        return found


async def authenticate_external(authenticator: KeyAuthenticator, key: str) -> str | None:
    """Ask a caller-key store about ``key`` (its ``authenticate`` may be sync or async)."""
    result = authenticator.authenticate(key)
    if inspect.isawaitable(result):
        result = await result
    return result
