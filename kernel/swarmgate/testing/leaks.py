"""Scan what a run wrote for secrets it was given.

:func:`assert_no_secrets` looks for every secret, and for every slice of it
of ``min_length`` characters or more (a key cut in half is still a leak),
in each blob: log output, exception texts, config dumps, HTTP answers,
database files. A failure names the blob, the secret's fingerprint and
where the slice sits, with the slice itself masked, so the assertion
message does not leak either::

    from swarmgate.testing.leaks import assert_no_secrets

    assert_no_secrets({"stderr": captured, "usage.db": db_bytes}, [key_a, key_b])
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from swarmgate.logs import fingerprint

#: The shortest slice of a secret that counts as a leak.
MIN_LENGTH = 6

Blob = str | bytes


def _slices(secret: str, min_length: int) -> list[str]:
    """Every substring of ``secret`` of exactly ``min_length`` characters
    (every longer substring contains one), or the secret if shorter."""
    if len(secret) <= min_length:
        return [secret]
    return sorted({secret[i : i + min_length] for i in range(len(secret) - min_length + 1)})


def _bytes_re(pieces: list[str]) -> re.Pattern[bytes]:
    return re.compile(b"(?=(" + b"|".join(re.escape(p.encode()) for p in pieces) + b"))")


def find_secrets(
    blobs: Mapping[str, Blob] | Iterable[Blob], secrets: Iterable[str], *, min_length: int = MIN_LENGTH
) -> list[str]:
    """Every leak found, described without the secret (empty: none).

    ``blobs`` maps a label to text or bytes (or is a plain iterable, labelled
    by position); bytes are searched for the UTF-8 encoding of each slice.
    ``secrets`` shorter than ``min_length`` are searched whole. The
    context shown around a hit has every character of every secret slice
    replaced by ``*``."""
    labelled = dict(blobs) if isinstance(blobs, Mapping) else {f"blob[{i}]": b for i, b in enumerate(blobs)}
    wanted = [s for s in dict.fromkeys(secrets) if s]
    owner: dict[str, str] = {}
    for secret in wanted:
        for piece in _slices(secret, min_length):
            owner.setdefault(piece, secret)
    if not owner:
        return []
    pieces = sorted(owner, key=len, reverse=True)
    alternatives = "|".join(re.escape(p) for p in pieces)
    # A lookahead finds overlapping hits too, so the context shown can be masked completely.
    text_re = re.compile(f"(?=({alternatives}))")
    found: list[str] = []
    for label, blob in labelled.items():
        text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
        hits = [(m.start(), m.group(1)) for m in text_re.finditer(text)]
        if isinstance(blob, bytes) and not hits:
            # Bytes that are not UTF-8 around a hit decode to U+FFFD and keep the hit;
            # this catches a slice straddling an undecodable byte sequence.
            hits = [(m.start(), m.group(1).decode("latin-1")) for m in _bytes_re(pieces).finditer(blob)]
            text = blob.decode("latin-1")
        if not hits:
            continue
        covered = bytearray(len(text))
        for position, piece in hits:
            covered[position : position + len(piece)] = b"\x01" * len(piece)
        seen: set[str] = set()
        for position, piece in hits:
            secret = owner[piece]
            if secret in seen:
                continue
            seen.add(secret)
            whole = "the whole secret" if secret in text else f"a slice of {len(piece)}+ characters"
            start = max(0, position - 30)
            end = min(len(text), position + len(piece) + 30)
            context = "".join("*" if covered[i] else text[i] for i in range(start, end))
            found.append(f"{label}: {whole} of {fingerprint(secret)} at offset {position}: ...{context!r}...")
    return found


def assert_no_secrets(
    blobs: Mapping[str, Blob] | Iterable[Blob], secrets: Iterable[str], *, min_length: int = MIN_LENGTH
) -> None:
    """Fail (``AssertionError``) when any secret, or any slice of one of at
    least ``min_length`` characters, appears in any blob. See :func:`find_secrets`."""
    found = find_secrets(blobs, secrets, min_length=min_length)
    if found:
        raise AssertionError(f"{len(found)} secret leak(s):\n" + "\n".join(found))
