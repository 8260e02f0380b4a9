"""Request fingerprints and the simulated cache behind the caching rule:
what a fingerprint covers, ttl and LRU bounds, the counts written to the
advisor's own SQLite database and read back after a restart, retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from swarmgate import CacheControl, CompletionRequest
from swarmgate_advisor import DuplicateTracker, fingerprint
from swarmgate_advisor.duplicates import cacheable, default_path, read_totals

pytestmark = pytest.mark.anyio

HOUR = 3600.0


def req(prompt: str = "hello", **fields: object) -> CompletionRequest:
    return CompletionRequest.create(prompt, model="m", temperature=0, **fields)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def tracker(path: Path, clock: Clock, *, ttl_ms: float = 10_000, max_size: int = 100) -> DuplicateTracker:
    t = DuplicateTracker(
        path,
        ttl_ms=ttl_ms,
        max_size=max_size,
        non_deterministic=False,
        flush_interval_ms=1000,
        retention_ms=24 * HOUR * 1000,
        clock=clock,
    )
    t.start()
    return t


def test_the_fingerprint_covers_what_changes_the_answer_and_nothing_else() -> None:
    base = fingerprint(req())
    assert len(base) == 16
    assert fingerprint(req()) == base
    assert fingerprint(req(caller="someone", metadata={"trace": "x"}, tags=("t",))) == base
    for changed in (
        req("hello!"),
        req(max_tokens=10),
        req(top_p=0.5),
        req(stop=("x",)),
        req(tools=({"type": "function", "function": {"name": "f"}},)),
        req(response_format={"type": "json_object"}),
        req(extra={"seed": 1}),
        req(provider="p"),
        CompletionRequest.create("hello", model="other", temperature=0),
        CompletionRequest.create("hello", model="m", temperature=0.5),
        CompletionRequest.create("hello", model="m", temperature=0, system="be brief"),
    ):
        assert fingerprint(changed) != base


def test_what_counts_as_cacheable() -> None:
    assert cacheable(req(), non_deterministic=False)
    assert not cacheable(CompletionRequest.create("x", model="m"), non_deterministic=False)
    assert cacheable(CompletionRequest.create("x", model="m"), non_deterministic=True)
    assert cacheable(CompletionRequest.create("x", model="m", cache=CacheControl(allow=True)), non_deterministic=False)
    assert not cacheable(req(cache=CacheControl(bypass=True)), non_deterministic=True)


def test_the_database_sits_next_to_the_usage_log(tmp_path: Path) -> None:
    assert default_path(tmp_path / "usage.db") == tmp_path / "usage.advisor.db"
    assert default_path(None).name == "advisor.db"


async def test_a_repeat_is_a_hit_within_the_ttl_and_a_miss_after_it(tmp_path: Path) -> None:
    clock = Clock()
    t = tracker(tmp_path / "a.db", clock, ttl_ms=10_000)
    try:
        assert not t.observe(req(), 0.5)  # stored
        clock.now += 5
        assert t.observe(req(), 0.5)  # 5 s old: a hit
        clock.now += 6
        assert not t.observe(req(), 0.5)  # 11 s after it was stored: expired, stored again
        clock.now += 1
        assert t.observe(req(), 0.25)
        totals = await t.totals(clock.now - HOUR, clock.now)
    finally:
        await t.aclose()
    assert (totals.requests, totals.cacheable, totals.hits) == (4, 4, 2)
    assert totals.saved == pytest.approx(0.75)
    assert totals.by_model == {"m": (4, 4, 2, pytest.approx(0.75))}
    assert len(totals.top) == 1
    assert totals.top[0][1:] == ("m", 2, pytest.approx(0.75))
    assert totals.top[0][0] == fingerprint(req()).hex()


async def test_the_simulated_cache_evicts_the_least_recently_used(tmp_path: Path) -> None:
    clock = Clock()
    t = tracker(tmp_path / "a.db", clock, max_size=2)
    try:
        for prompt in ("a", "b", "c"):  # c evicts a
            assert not t.observe(req(prompt), 1.0)
        assert t.entries == 2
        assert t.observe(req("c"), 1.0)
        assert not t.observe(req("a"), 1.0)  # evicted: a miss (and b goes)
        assert not t.observe(req("b"), 1.0)
    finally:
        await t.aclose()


async def test_counts_survive_a_restart_and_add_up(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    clock = Clock()
    first = tracker(path, clock)
    first.observe(req(), 1.0)
    first.observe(req(), 1.0)
    await first.aclose()
    second = tracker(path, clock)  # a restart: the simulated cache starts empty
    try:
        assert not second.observe(req(), 1.0)
        assert second.observe(req(), 2.0)
        totals = await second.totals(clock.now - HOUR, clock.now)
    finally:
        await second.aclose()
    assert (totals.requests, totals.hits, totals.saved) == (4, 2, pytest.approx(3.0))
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
        # Only repeated prompts are written per fingerprint.
        assert connection.execute("SELECT COUNT(DISTINCT fp) FROM duplicates").fetchone() == (1,)


async def test_counts_are_kept_per_hour_and_old_hours_are_purged(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    clock = Clock()
    t = tracker(path, clock, ttl_ms=48 * HOUR * 1000)
    try:
        t.observe(req(), 1.0)
        t.observe(req(), 1.0)
        await t.flush()
        clock.now += 2 * HOUR
        t.observe(req(), 1.0)
        await t.flush()
        recent = await t.totals(clock.now - 600, clock.now)
        assert (recent.requests, recent.hits) == (1, 1)
        everything = await t.totals(clock.now - 3 * HOUR, clock.now)
        assert (everything.requests, everything.hits) == (3, 2)
        clock.now += 30 * HOUR  # past the 24 h retention: the first hours go at the next write
        t.observe(req("other"), 1.0)
        await t.flush()
    finally:
        await t.aclose()
    totals = read_totals(path, 0, clock.now)
    assert totals.requests == 1
    assert totals.hits == 0


def test_reading_a_missing_database_reads_nothing(tmp_path: Path) -> None:
    totals = read_totals(tmp_path / "absent.db", 0, 1e12)
    assert (totals.requests, totals.hits, totals.top) == (0, 0, ())
