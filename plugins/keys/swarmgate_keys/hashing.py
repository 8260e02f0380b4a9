"""Caller keys and how they are hashed.

A caller key is ``sg-`` followed by 32 random bytes from :mod:`secrets`,
base64url-encoded (43 characters): 256 bits, so guessing one is hopeless and
a fast hash is the right one (a slow password hash protects low-entropy
secrets, which these are not, and would cost every request).

The store keeps only a digest of each key:

* with a **pepper** (a server-side secret from the environment or a file,
  never in the database): HMAC-SHA256(pepper, key). A copy of the database
  alone can then neither confirm a leaked key nor be used to mint one: a
  row written by someone who can write the file but does not hold the
  pepper matches no key;
* without one: SHA-256(key). Still safe against reading the database (the
  keys are random 256-bit values, so their digests cannot be reversed or
  guessed), but whoever can *write* the file can add a digest of a key of
  their choosing, and whoever holds a key can check it against a stolen copy.

The scheme a store was written with is recorded in it (``sha256`` or
``hmac-sha256:<pepper id>``), so a gateway started with a different pepper,
or none, refuses the store at start-up instead of refusing every key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

import attrs

#: Every caller key starts with this.
KEY_PREFIX: Final = "sg-"
#: Random bytes in a key.
KEY_BYTES: Final = 32
#: Length of a key: the prefix and 43 base64url characters.
KEY_LENGTH: Final = len(KEY_PREFIX) + 43
#: Scheme label of keys hashed without a pepper.
PLAIN_SCHEME: Final = "sha256"
#: Shortest pepper accepted (characters).
MIN_PEPPER_LENGTH: Final = 16

_PEPPER_ID_LABEL: Final = b"swarmgate-keys pepper id"


def generate_key() -> str:
    """A new caller key: ``sg-`` + 32 random bytes, base64url (no padding)."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def looks_like_key(token: str) -> bool:
    """Whether ``token`` has the shape of a caller key (a cheap test that
    keeps other tokens from reaching the database)."""
    return len(token) == KEY_LENGTH and token.startswith(KEY_PREFIX)


@attrs.frozen
class Hasher:
    """Turns a key into the digest the store keeps (see the module docstring).
    ``pepper`` ``None``: plain SHA-256."""

    pepper: bytes | None = attrs.field(default=None, repr=False)

    @property
    def scheme(self) -> str:
        """``sha256``, or ``hmac-sha256:<pepper id>`` (16 hex digits of an
        HMAC of a fixed label under the pepper: it names the pepper without
        revealing anything about it)."""
        if self.pepper is None:
            return PLAIN_SCHEME
        return "hmac-sha256:" + hmac.digest(self.pepper, _PEPPER_ID_LABEL, "sha256").hex()[:16]

    @property
    def peppered(self) -> bool:
        """Whether a pepper is in use."""
        return self.pepper is not None

    def digest(self, key: str) -> bytes:
        """The 32-byte digest of ``key`` stored and looked up."""
        data = key.encode()
        if self.pepper is None:
            return hashlib.sha256(data).digest()
        return hmac.digest(self.pepper, data, "sha256")
