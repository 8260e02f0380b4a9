"""The record format: a compact binary envelope around AES-256-GCM.

::

    version (1 byte, 0x01) | key_id (4 bytes, big-endian) | nonce (12 bytes) | ciphertext + tag (16 bytes)

The header (version and key id) is authenticated with the caller's
associated data: the AEAD's associated data is ``header + aad``. Changing
any byte of the record (the version, the key id, the nonce, the ciphertext
or the tag), or decrypting with other associated data (another cache key,
another audit record id), fails authentication. An envelope is 33 bytes
longer than its plaintext.

Nonces are 96 random bits from ``os.urandom``. NIST SP 800-38D bounds the
records one key may encrypt with random nonces to 2**32; the data key
rotation (daily by default) keeps each key far below that.
"""

from __future__ import annotations

import struct
from typing import Final

#: The envelope format version (the first byte).
VERSION: Final = 1
#: ``version | key_id``.
HEADER: Final = struct.Struct(">BI")
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
#: Bytes an envelope adds to its plaintext.
OVERHEAD: Final = HEADER.size + NONCE_SIZE + TAG_SIZE
#: The largest key id the envelope can carry.
MAX_KEY_ID: Final = 2**32 - 1


class TamperedError(Exception):
    """A record failed authentication: it was modified, truncated, made
    with another key or for other associated data, or names a key this
    gateway does not have. Its content must never be used; callers report
    the record as tampered. ``key_id`` is the key the record names (``None``
    when the record is too short to name one); ``reason`` says what failed.
    The message never contains record or key material."""

    def __init__(self, reason: str, key_id: int | None = None) -> None:
        super().__init__(f"encrypted record refused as tampered: {reason}")
        self.reason = reason
        self.key_id = key_id


def header(key_id: int) -> bytes:
    """The envelope header for ``key_id``."""
    return HEADER.pack(VERSION, key_id)


def key_id_of(blob: bytes) -> int:
    """The key id an envelope names; raises :class:`TamperedError` when it
    is too short or of an unknown version (nothing is authenticated here)."""
    if len(blob) < OVERHEAD:
        raise TamperedError(f"too short to be a record ({len(blob)} bytes, at least {OVERHEAD})")
    version, key_id = HEADER.unpack_from(blob)
    if version != VERSION:
        raise TamperedError(f"unknown envelope version {version}", key_id)
    return int(key_id)
