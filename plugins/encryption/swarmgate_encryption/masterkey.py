"""The master key: where it comes from and what is derived from it.

The master key (32 random bytes, given base64-encoded) never encrypts a
record itself. HKDF-SHA256 derives, with a distinct ``info`` each:

* the key-wrapping key (AES-256-GCM) that wraps the data keys in the keyring;
* a fingerprint (16 hex digits) stored with each wrapped data key, so a
  wrong master key is a clear start-up error instead of every record
  looking tampered;
* the cache index key: the response cache hashes its key names with it
  (keyed BLAKE2b), so the store's key names reveal nothing about prompts.

The key's text is registered with the log redaction, so it cannot appear
in a log line even by mistake; errors name the source, never the value.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from swarmgate.errors import ConfigError
from swarmgate.logs import get_logger, register_secret
from swarmgate_encryption.settings import SECTION, EncryptionSettings

log = get_logger("swarmgate.encryption")

KEY_SIZE: Final = 32
_INFO: Final = b"swarmgate-encryption/v1/"

GENERATE_HINT: Final = "generate one with `qwen-swarm-enhanced encryption generate-key`"


def _derive(master: bytes, purpose: bytes, length: int = KEY_SIZE) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=_INFO + purpose).derive(master)


class MasterKey:
    """A loaded master key. ``source`` says where it came from
    (``env:NAME``, ``file:PATH``); ``fingerprint`` identifies it without
    revealing it. ``wrapper`` is the AES-GCM key-wrapping cipher;
    ``index_key`` keys the cache's key-name hashes. ``repr`` shows only the
    source and the fingerprint."""

    __slots__ = ("fingerprint", "index_key", "source", "wrapper")

    def __init__(self, raw: bytes, source: str) -> None:
        if len(raw) != KEY_SIZE:
            raise ValueError(f"a master key is {KEY_SIZE} bytes, got {len(raw)}")
        self.source = source
        self.fingerprint = _derive(raw, b"fingerprint", 8).hex()
        self.wrapper = AESGCM(_derive(raw, b"key-wrap"))
        self.index_key = _derive(raw, b"cache-index")

    def __repr__(self) -> str:
        return f"MasterKey(source={self.source!r}, fingerprint={self.fingerprint!r})"


def generate_key_text() -> str:
    """A new random master key, base64-encoded (what ``generate-key`` prints)."""
    return base64.b64encode(os.urandom(KEY_SIZE)).decode("ascii")


def decode_key_text(text: str) -> bytes:
    """The 32 bytes of a base64 (standard or URL-safe, padding optional)
    master key; raises ValueError naming what is wrong, never the value."""
    compact = "".join(text.split())
    if not compact:
        raise ValueError("is empty")
    padded = compact + "=" * (-len(compact) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"is not base64 (a master key is base64 of {KEY_SIZE} random bytes)") from None
    if len(raw) != KEY_SIZE:
        raise ValueError(f"decodes to {len(raw)} bytes; a master key is base64 of {KEY_SIZE} random bytes")
    return raw


def key_from_env(name: str, environ: Mapping[str, str], *, path: str) -> MasterKey:
    """The master key in environment variable ``name``; ConfigError at
    ``path`` when it is unset or malformed."""
    text = environ.get(name)
    if text is None or not text.strip():
        raise ConfigError(
            [
                (
                    path,
                    f"${name} is not set: encryption is enabled, so the gateway will not start without its "
                    f"master key (base64 of {KEY_SIZE} bytes; {GENERATE_HINT})",
                )
            ]
        )
    register_secret(text.strip())
    try:
        raw = decode_key_text(text)
    except ValueError as exc:
        raise ConfigError([(path, f"${name} {exc}")]) from None
    return MasterKey(raw, f"env:{name}")


def key_from_file(name: str, *, path: str) -> MasterKey:
    """The master key in file ``name`` (base64 text, or exactly 32 raw
    bytes); ConfigError at ``path`` when it is missing or malformed. A file
    others may read is accepted with a warning."""
    file = Path(name).expanduser()
    try:
        data = file.read_bytes()
        mode = file.stat().st_mode
    except OSError as exc:
        raise ConfigError(
            [(path, f"cannot read the master key file {str(file)!r}: {exc.strerror or exc}; {GENERATE_HINT}")]
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("master_key_file_permissions", path=str(file), mode=oct(mode & 0o777), advice="chmod 600")
    if len(data) == KEY_SIZE:  # the raw bytes (base64 of 32 bytes is 44 characters)
        return MasterKey(data, f"file:{file}")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(
            [(path, f"the master key file {str(file)!r} holds {len(data)} bytes that are not base64 text")]
        ) from None
    register_secret(text.strip())
    try:
        raw = decode_key_text(text)
    except ValueError as exc:
        raise ConfigError([(path, f"the master key file {str(file)!r} {exc}")]) from None
    return MasterKey(raw, f"file:{file}")


def load_master_key(settings: EncryptionSettings, environ: Mapping[str, str] | None = None) -> MasterKey:
    """The master key ``settings`` point at; ConfigError naming the setting
    when it is missing or malformed (never a fallback to plaintext)."""
    kind, where = settings.master_key_source
    if kind == "file":
        return key_from_file(where, path=f"{SECTION}.masterKeyFile")
    key_path = f"{SECTION}.masterKeyEnv"
    return key_from_env(where, os.environ if environ is None else environ, path=key_path)
