"""swarmgate.batching.insert_rows: several rows per INSERT, same effect as executemany."""

from __future__ import annotations

import sqlite3

import pytest

from swarmgate.batching import INSERT_CHUNK, insert_rows

INSERT = "INSERT INTO t (a, b, c) VALUES"


def _table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c REAL)")
    return conn


@pytest.mark.parametrize("count", [0, 1, 2, 3, INSERT_CHUNK - 1, INSERT_CHUNK, INSERT_CHUNK + 1, 5 * INSERT_CHUNK + 37])
def test_every_row_goes_in_once_in_order(count: int) -> None:
    conn = _table()
    rows = [(i, f"row {i}", i / 3 if i % 2 else None) for i in range(count)]
    insert_rows(conn, INSERT, 3, rows)
    assert conn.execute("SELECT a, b, c FROM t ORDER BY rowid").fetchall() == rows


def test_a_connection_that_binds_few_parameters_gets_smaller_statements() -> None:
    conn = _table()
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 7)  # two rows of three a statement
    rows = [(i, "x", 1.0) for i in range(11)]
    insert_rows(conn, INSERT, 3, rows)
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 11


def test_a_constraint_violation_raises_integrity_error() -> None:
    conn = _table()
    conn.execute("BEGIN")
    with pytest.raises(sqlite3.IntegrityError):
        insert_rows(conn, INSERT, 3, [(1, "a", 0.0), (2, "b", 0.0), (1, "again", 0.0)])
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
