"""The seam for encryption at rest: every cached value's bytes pass through
a codec on their way into and out of the StateStore.

A plugin that encrypts the cache (``swarmgate-encryption``) publishes its
codec as ``manager.extensions["cache_codec"]`` in its ``plugin_setup``; the
cache plugin's ``plugin_setup`` runs last (``trylast``) and picks it up.
Without one, values are stored as they are (:data:`IDENTITY`).
"""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable


@runtime_checkable
class CacheCodec(Protocol):
    """Turns cached values into stored bytes and back.

    ``decode`` must raise (any exception) when the stored bytes were not
    produced by ``encode`` with the same secret, e.g. an authenticated
    cipher's tag check failing: the cache then treats the entry as tampered
    (logged, counted in ``stats()["tampered"]``, deleted, answered as a
    miss). A codec may also carry a ``hash_key: bytes`` attribute: cache
    keys are then keyed BLAKE2b hashes, so the store's key names reveal
    nothing about the prompts to someone without the key. A codec with
    ``binds_key = True`` is called as ``encode(data, aad)`` and
    ``decode(data, aad)``, ``aad`` being the entry's store key name (bytes):
    an authenticated cipher binds the value to it, so an entry copied under
    another key (another request's answer) fails to decode as tampered.
    """

    def encode(self, data: bytes) -> bytes:
        """The bytes to store for ``data``."""
        ...

    def decode(self, data: bytes) -> bytes:
        """The original bytes of stored ``data``; raises if they were tampered with."""
        ...


class IdentityCodec:
    """Stores values as they are (no encryption at rest)."""

    def encode(self, data: bytes) -> bytes:
        return data

    def decode(self, data: bytes) -> bytes:
        return data

    def __repr__(self) -> str:
        return "IdentityCodec()"


#: The codec used when no plugin publishes ``extensions["cache_codec"]``.
IDENTITY: Final = IdentityCodec()
