"""How a webhook request is signed, and how a receiver checks it.

Like Stripe's scheme: the sender takes the Unix time in seconds as a
decimal string ``ts`` and computes ``HMAC-SHA256(secret, ts + "." + body)``
over the raw request body bytes. It sends::

    X-Swarmgate-Timestamp: <ts>
    X-Swarmgate-Signature: sha256=<lower-case hex digest>

A receiver recomputes the digest from the raw body it read (before any JSON
parsing), compares in constant time, and refuses timestamps too far from its
own clock (default: 5 minutes), which defeats replays of a captured
request. Every retry is signed afresh with a new timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import time

#: The header carrying the signature, ``sha256=<hex>``.
SIGNATURE_HEADER = "X-Swarmgate-Signature"
#: The header carrying the signed Unix time (seconds).
TIMESTAMP_HEADER = "X-Swarmgate-Timestamp"
#: Default tolerance of :func:`verify` (seconds).
TOLERANCE = 300.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Swarmgate-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    tolerance: float = TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``signature`` and ``timestamp`` (the two headers' values, as
    received) sign ``body`` with ``secret`` and the timestamp is within
    ``tolerance`` seconds of ``now`` (default: the current time)."""
    if not signature or not timestamp:
        return False
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
