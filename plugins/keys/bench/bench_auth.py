"""What checking a caller key costs per request (not a test: run it).

    python plugins/keys/bench/bench_auth.py [--keys 10000] [--rounds 200000]

Measures, on a store of ``--keys`` keys in a temporary directory:

* ``hit``: a key already looked up (the usual case): ``PRAGMA data_version``,
  the HMAC, the cache, ``hmac.compare_digest``, the revocation/expiry check;
* ``miss``: a key looked up in SQLite (first use, or after any write to the store);
* ``reject``: a token not shaped like a caller key (no database access);
* ``unknown``: a well-shaped key that is not in the store (a database lookup);
* ``policy``: ``CallerKeyService.policy`` (the ratelimit and budget plugins ask it);
* ``data_version``: the freshness check alone;
* ``config key``: the gateway's own check of a ``server.apiKeys`` key, for comparison.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from swarmgate_keys import Hasher, KeySpec, KeyStore, generate_key
from swarmgate_server import ApiKeySettings, KeyRing, ServerSettings


def per_call(fn: Callable[[], object], rounds: int) -> float:
    """Microseconds per call of ``fn`` (best of three runs)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, (time.perf_counter() - start) / rounds * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=10_000, help="keys in the store")
    parser.add_argument("--rounds", type=int, default=200_000, help="calls per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        store = KeyStore(Path(home) / "keys.db", Hasher(b"a-pepper-of-at-least-16-chars"))
        keys = [store.create(KeySpec(name=f"caller-{i}")).key for i in range(args.keys)]
        key = keys[len(keys) // 2]
        unknown = generate_key()
        store.authenticate(key)
        store.policy("caller-1")
        reader = store._reader

        def miss() -> object:
            store._by_digest.clear()
            return store.authenticate(key)

        ring = KeyRing(ServerSettings(api_keys=(ApiKeySettings(key="sk-config-key-0123456789", name="c"),)))
        rounds = args.rounds
        results = {
            "hit": per_call(lambda: store.authenticate(key), rounds),
            "miss": per_call(miss, rounds // 4),
            "reject": per_call(lambda: store.authenticate("sk-something-else"), rounds),
            "unknown": per_call(lambda: store.authenticate(unknown), rounds // 4),
            "policy": per_call(lambda: store.policy("caller-1"), rounds),
            "data_version": per_call(lambda: reader.execute("PRAGMA data_version").fetchone(), rounds),
            "config key": per_call(lambda: ring.identify("sk-config-key-0123456789"), rounds),
        }
        store.close()
    print(f"caller-key checks, store of {args.keys} keys (µs per call, best of 3):")
    for name, micros in results.items():
        print(f"  {name:<13} {micros:7.2f}")


if __name__ == "__main__":
    main()
