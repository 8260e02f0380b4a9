"""The response cache's codec: cache entries encrypted at rest.

Published as ``manager.extensions["cache_codec"]`` (the seam of
``swarmgate-cache``). ``binds_key = True`` asks the cache to pass each
entry's store key name, which becomes part of the associated data: an entry
copied under another key (another prompt's answer served for this one)
fails authentication like a modified one. ``hash_key`` (derived from the
master key) makes the cache hash its key names with a secret, so the
store's key names reveal nothing about prompts.
"""

from __future__ import annotations

from typing import Final

from swarmgate_encryption.service import EncryptionService

#: The purpose prefix of the cache's associated data: a cache entry cannot
#: pass for a record of another kind (an audit body) with the same key.
CACHE_AAD: Final = b"swarmgate-cache\x00"


class EncryptedCacheCodec:
    """``encode``/``decode`` for the response cache; ``decode`` raises
    :class:`~swarmgate_encryption.TamperedError` for a record that fails
    authentication (the cache then reports it as tampered and answers a miss)."""

    binds_key: Final = True

    def __init__(self, service: EncryptionService) -> None:
        self._service = service
        self.hash_key: bytes = service.index_key

    def encode(self, data: bytes, aad: bytes = b"") -> bytes:
        """``data`` encrypted, bound to ``aad`` (the entry's store key name)."""
        return self._service.encrypt(data, CACHE_AAD + aad)

    def decode(self, data: bytes, aad: bytes = b"") -> bytes:
        """The entry stored as ``data`` under ``aad``; raises TamperedError."""
        return self._service.decrypt(data, CACHE_AAD + aad)

    def __repr__(self) -> str:
        return f"EncryptedCacheCodec(master={self._service.master.fingerprint})"
