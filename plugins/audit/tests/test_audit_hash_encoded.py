"""record_hash_encoded assembles the hashed form around the stored data JSON:
it must hash exactly the bytes record_hash(hashed_form(...)) hashes."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from swarmgate_audit.chain import GENESIS, canonical_json, hashed_form, record_hash, record_hash_encoded


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 2 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.randrange(-(10**12), 10**12)
    if kind == 3:
        return rng.choice([0.0, -0.0, 1e16, 1e-7, 123.456, rng.random() * 10 ** rng.randrange(-20, 20)])
    if kind in (4, 5):
        return "".join(rng.choice('aé"\\\n\u2028😀 ') for _ in range(rng.randrange(6)))
    if kind == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {f"k{rng.randrange(100)}é": _value(rng, depth + 1) for _ in range(rng.randrange(4))}


@pytest.mark.parametrize("seed", range(200))
def test_the_encoded_form_hashes_like_the_mapping(seed: int) -> None:
    rng = random.Random(seed)
    data = {f"field{i}": _value(rng) for i in range(rng.randrange(1, 8))}
    personal = None if seed % 3 == 0 else f"{rng.getrandbits(256):064x}"
    ts = rng.choice([1_700_000_000.123456, 1e9, float(seed), math.pi * 1e8])
    prev = GENESIS if seed % 2 else f"{rng.getrandbits(256):064x}"
    args = (seed + 1, f"rec-{seed}-é", ts, rng.choice(["request", "admin"]), rng.choice(["info", "error"]))
    expected = record_hash(prev, hashed_form(*args, data, personal))
    assert record_hash_encoded(prev, *args, canonical_json(data), personal) == expected
