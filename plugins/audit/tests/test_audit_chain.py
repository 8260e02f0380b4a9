"""The hash chain: verification passes on an intact log and names the first
broken record when the file is edited behind the log's back (a field
changed, a record deleted, personal fields changed, a prefix removed with a
forged anchor); retention purges and erasure keep it verifiable; several
writers on one file make one chain."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest
from audit_helpers import DRIVERS, audit_of, config, sql, started, stored_bytes

from swarmgate import ProviderManager
from swarmgate_audit import GENESIS, AuditLog, canonical_json, open_log
from swarmgate_audit.chain import hashed_form, record_hash

pytestmark = pytest.mark.anyio

DAY = 86400.0


class Clock:
    """A settable wall clock for the log's admin records and purges."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def filled(db: Path, count: int, *, clock: Clock | None = None) -> list[str]:
    """``count`` admin records (callers alternate alice/bob) in a fresh log; their ids."""
    audit = await started(db, clock=clock or time.time)
    ids = [audit.record_admin("keys.rotate", "alice" if i % 2 == 0 else "bob", f"p{i}") for i in range(count)]
    await audit.aclose()
    return ids


def verify(db: Path) -> dict[str, object]:
    audit = open_log(db)
    try:
        return audit.verify_sync().to_dict()
    finally:
        audit.close()


async def test_an_intact_log_verifies(db: Path) -> None:
    async with ProviderManager(config(db, audit={"includeBodies": True}), drivers=DRIVERS) as manager:
        for i in range(5):
            await manager.complete(prompt=f"hello {i}", caller=f"c{i}", metadata={"client": "127.0.0.1"})
        audit = audit_of(manager)
        audit.record_admin("keys.create", "admin", "c9", {"models": ["ma"]})
        await audit.flush()
        report = await audit.verify()
        records = await audit.records()
    assert report.ok
    assert report.broken is None
    assert (report.checked, report.first_seq, report.last_seq, report.anchor_seq) == (6, 1, 6, None)
    assert report.head_hash == records[-1].hash
    assert records[0].prev_hash == GENESIS
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(records))
    # The hash is sha256(prev_hash || canonical_json(record)), recomputable by anyone.
    first = records[0]
    rows = sql(db, "SELECT personal_digest FROM records WHERE seq = 1")
    form = hashed_form(1, first.id, first.ts, first.kind, first.level, first.data, rows[0][0])
    assert record_hash(GENESIS, form) == first.hash


async def test_an_edited_record_is_named(db: Path) -> None:
    ids = await filled(db, 6)
    data = json.loads(sql(db, "SELECT data FROM records WHERE seq = 4")[0][0])
    data["action"] = "keys.list"  # hide what was really done
    sql(db, "UPDATE records SET data = ? WHERE seq = 4", canonical_json(data))
    report = verify(db)
    assert report["ok"] is False
    broken = report["broken"]
    assert isinstance(broken, dict)
    assert (broken["seq"], broken["id"]) == (4, ids[3])
    assert "altered" in broken["problem"]
    assert broken["found"] == sql(db, "SELECT hash FROM records WHERE seq = 4")[0][0]
    assert broken["expected"] != broken["found"]
    assert report["checked"] == 3
    assert ids[3] in broken["message"]


@pytest.mark.parametrize(
    ("column", "value"),
    [("ts", "ts - 3600"), ("level", "'debug'"), ("kind", "'request'"), ("id", "'adm_forged'")],
)
async def test_any_edited_column_is_named(db: Path, column: str, value: str) -> None:
    ids = await filled(db, 4)
    sql(db, f"UPDATE records SET {column} = {value} WHERE seq = 2")
    broken = verify(db)["broken"]
    assert isinstance(broken, dict)
    assert broken["seq"] == 2
    assert broken["id"] in (ids[1], "adm_forged")


async def test_an_edited_hash_breaks_the_next_record(db: Path) -> None:
    """Recomputing the edited record's own hash moves the break to the next one."""
    ids = await filled(db, 4)
    row = sql(db, "SELECT seq, id, ts, kind, level, data, personal_digest, prev_hash FROM records WHERE seq = 2")[0]
    data = json.loads(row[5])
    data["action"] = "keys.list"
    forged = record_hash(row[7], hashed_form(2, row[1], row[2], row[3], row[4], data, row[6]))
    sql(db, "UPDATE records SET data = ?, hash = ? WHERE seq = 2", canonical_json(data), forged)
    broken = verify(db)["broken"]
    assert isinstance(broken, dict)
    assert (broken["seq"], broken["id"]) == (3, ids[2])
    assert "prev_hash" in broken["problem"]
    assert (broken["expected"], broken["found"]) == (
        forged,
        sql(db, "SELECT prev_hash FROM records WHERE seq = 3")[0][0],
    )


async def test_a_deleted_record_is_named(db: Path) -> None:
    ids = await filled(db, 6)
    sql(db, "DELETE FROM records WHERE seq = 3")
    report = verify(db)
    broken = report["broken"]
    assert isinstance(broken, dict)
    assert (broken["seq"], broken["id"]) == (4, ids[3])  # the record after the gap
    assert "seq 3 deleted" in broken["problem"]
    assert (broken["expected"], broken["found"]) == ("seq 3", "seq 4")
    assert report["checked"] == 2


async def test_deleted_records_at_the_end_are_caught_by_a_head_hash_kept_elsewhere(db: Path) -> None:
    """Deleting the newest records (and their personal rows) leaves a valid
    shorter chain: a head hash recorded earlier shows it (documented)."""
    ids = await filled(db, 5)
    head = verify(db)["head_hash"]
    sql(db, "DELETE FROM records WHERE seq = 5")
    broken = verify(db)["broken"]  # its personal row gives it away
    assert isinstance(broken, dict)
    assert broken["seq"] == 5
    assert "missing" in broken["problem"]
    sql(db, "DELETE FROM personal WHERE seq = 5")
    report = verify(db)
    assert report["ok"] is True
    assert report["head_hash"] != head
    audit = open_log(db)
    try:
        checked = audit.verify_sync(head=head)
        assert checked.broken is not None
        assert "not in the chain" in checked.broken.problem
        assert checked.broken.expected == head
        earlier = sql(db, "SELECT hash FROM records WHERE seq = 3")[0][0]
        assert audit.verify_sync(head=earlier).ok
        assert ids[4] not in {r.id for r in audit.records_sync()}
    finally:
        audit.close()


async def test_edited_personal_fields_are_named(db: Path) -> None:
    ids = await filled(db, 4)
    personal = json.loads(sql(db, "SELECT data FROM personal WHERE seq = 2")[0][0])
    personal["actor"] = "someone-else"
    sql(db, "UPDATE personal SET data = ? WHERE seq = 2", canonical_json(personal))
    broken = verify(db)["broken"]
    assert isinstance(broken, dict)
    assert (broken["seq"], broken["id"]) == (2, ids[1])
    assert "personal fields were altered" in broken["problem"]


async def test_personal_fields_added_to_a_record_without_them_are_named(db: Path) -> None:
    audit = await started(db)
    audit.record_admin("keys.rotate", None)
    rid = audit.record_admin("keys.rotate", None)
    await audit.aclose()
    sql(db, "INSERT INTO personal (seq, subject, subject2, data) VALUES (2, 'x', NULL, '{\"actor\":\"x\"}')")
    broken = verify(db)["broken"]
    assert isinstance(broken, dict)
    assert (broken["seq"], broken["id"]) == (2, rid)
    assert "added" in broken["problem"]


async def test_a_prefix_deleted_outside_a_purge_is_caught(db: Path) -> None:
    await filled(db, 6)
    anchor_hash = sql(db, "SELECT hash FROM records WHERE seq = 2")[0][0]
    sql(db, "DELETE FROM records WHERE seq <= 2")
    sql(db, "DELETE FROM personal WHERE seq <= 2")
    sql(db, "INSERT INTO chain_anchor (id, seq, hash, purged_at, purged_total) VALUES (1, 2, ?, 0, 2)", anchor_hash)
    broken = verify(db)["broken"]
    assert isinstance(broken, dict)
    assert broken["seq"] == 3
    assert "no audit.purge record vouches" in broken["problem"] or "vouches" in broken["problem"]


async def test_a_deleted_first_record_is_named(db: Path) -> None:
    ids = await filled(db, 3)
    sql(db, "DELETE FROM records WHERE seq = 1")
    broken = verify(db)["broken"]
    assert isinstance(broken, dict)
    assert (broken["seq"], broken["id"]) == (2, ids[1])


async def test_retention_purge_keeps_verification_passing(db: Path) -> None:
    clock = Clock(time.time() - 100 * DAY)
    audit = await started(db, clock=clock)
    old = [audit.record_admin("keys.create", "alice", f"old{i}") for i in range(4)]
    await audit.flush()
    clock.now = time.time()
    young = [audit.record_admin("keys.create", "bob", f"young{i}") for i in range(3)]
    assert await audit.purge(90 * DAY, actor="tester") == 4
    records = await audit.records()
    assert [r.id for r in records[:3]] == young
    purge_record = records[-1]
    assert purge_record.data == {
        "action": "audit.purge",
        "through_seq": 4,
        "anchor_hash": purge_record.data["anchor_hash"],
        "deleted": 4,
        "cutoff": pytest.approx(clock.now - 90 * DAY),
    }
    assert purge_record.who == "tester"
    anchor = sql(db, "SELECT seq, hash, purged_total FROM chain_anchor")
    assert anchor == [(4, purge_record.data["anchor_hash"], 4)]
    assert records[0].prev_hash == anchor[0][1]
    assert not sql(db, "SELECT seq FROM personal WHERE seq <= 4")
    report = await audit.verify()
    assert report.ok, report.broken
    assert (report.anchor_seq, report.first_seq, report.last_seq, report.checked) == (4, 5, 8, 4)
    # Nothing more to purge: nothing happens (no purge record either).
    assert await audit.purge(90 * DAY) == 0
    # A second purge moves the anchor; the chain still verifies.
    clock.now += 200 * DAY
    audit.record_admin("keys.create", "carol", "later")
    await audit.flush()
    clock.now += 1
    assert await audit.purge(0.5) == 5  # the 3 young, the first purge record... and "later"
    report = await audit.verify()
    assert report.ok, report.broken
    assert report.anchor_seq == 9
    assert old[0] not in {r.id for r in await audit.records()}
    await audit.aclose()


async def test_a_young_record_stops_the_purge_so_the_chain_stays_a_suffix(db: Path) -> None:
    clock = Clock(time.time() - 100 * DAY)
    audit = await started(db, clock=clock)
    audit.record_admin("a", "x")
    clock.now = time.time()
    audit.record_admin("b", "x")
    clock.now = time.time() - 100 * DAY
    audit.record_admin("c", "x")  # old, but after a young one: it stays until that one goes
    clock.now = time.time()
    assert await audit.purge(90 * DAY) == 1
    assert [r.data["action"] for r in await audit.records()] == ["b", "c", "audit.purge"]
    assert (await audit.verify()).ok
    await audit.aclose()


async def test_retention_runs_when_the_writer_starts(db: Path) -> None:
    await filled(db, 3, clock=Clock(time.time() - 10 * DAY))
    audit = await started(db, retention=DAY)
    await audit.flush()
    records = await audit.records()
    assert [r.data["action"] for r in records] == ["audit.purge"]
    assert records[0].who == "retention"
    assert (await audit.verify()).ok
    await audit.aclose()


async def test_purge_on_a_recorded_log(db: Path) -> None:
    await filled(db, 3, clock=Clock(time.time() - 10 * DAY))
    audit = open_log(db)
    try:
        assert await audit.purge(DAY, actor="cli:test") == 3
        assert audit.verify_sync().ok
    finally:
        audit.close()


async def test_forget_erases_personal_fields_and_keeps_the_chain(db: Path) -> None:
    async with ProviderManager(config(db, audit={"includeBodies": True}), drivers=DRIVERS) as manager:
        await manager.complete(prompt="alice's prompt", caller="alice", metadata={"client": "198.51.100.7"})
        await manager.complete(prompt="bob's prompt", caller="bob")
        await manager.complete(prompt="for alice", caller="svc", user="alice")  # alice as the end user
        audit = audit_of(manager)
        audit.record_admin("keys.revoke", "admin", "alice")  # alice as an admin action's target
        assert await audit.forget("alice", actor="dpo") == 3
        records = await audit.records()
        report = await audit.verify()
        live = stored_bytes(db)  # while the gateway still runs: the WAL and freed pages hold nothing either
    assert b"alice's prompt" not in live
    assert b"198.51.100.7" not in live
    assert report.ok, report.broken
    assert report.erased == 3
    erased = [r for r in records if r.erased]
    assert [r.data.get("action") for r in erased] == [None, None, "keys.revoke"]
    assert all(r.personal is None and r.who is None for r in erased)
    bob = next(r for r in records if r.who == "bob")
    assert bob.personal is not None
    assert bob.personal["bodies"]["prompt"][0]["text"] == "bob's prompt"
    forget = records[-1]
    assert forget.data == {"action": "audit.forget", "records": 3}
    assert forget.who == "dpo"
    assert "alice" not in json.dumps(forget.to_dict())
    stored = stored_bytes(db)
    assert b"alice's prompt" not in stored
    assert b"198.51.100.7" not in stored


async def test_several_writers_on_one_file_make_one_chain(db: Path) -> None:
    first = await started(db, commit_interval=0.0)
    second = await started(db, commit_interval=0.0)
    try:
        for i in range(30):
            (first if i % 2 else second).record_admin("x", f"w{i % 2}")
        await first.flush()
        await second.flush()
        report = await first.verify()
    finally:
        await first.aclose()
        await second.aclose()
    assert report.ok, report.broken
    assert report.checked == 30


async def test_a_file_that_is_not_an_audit_log_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sql(other, "CREATE TABLE requests (id TEXT)")
    with pytest.raises(Exception, match="not an audit log"):
        await started(other)
    with pytest.raises(Exception, match="not an audit log"):
        open_log(other)
    with pytest.raises(Exception, match="no audit log"):
        open_log(tmp_path / "missing.db")
    assert AuditLog(tmp_path / "x.db").path.name == "x.db"
