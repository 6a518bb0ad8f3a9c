"""The recorder's statements: every row written, in order, with few statement shapes."""

from __future__ import annotations

import sqlite3

from riskterm.recorder import MAX_ROWS, _multi_row


def test_rows_go_in_power_of_two_statements_in_order() -> None:
    shapes: set[str] = set()
    for n in (1, 2, 3, 7, 100, 1023, 1024, 1025, 3000, 5000):
        rows = [(i, f"r{i}") for i in range(n)]
        statements = _multi_row("INSERT INTO t (a, b)", rows)
        sizes = [sql.count("(?, ?)") for sql, _ in statements]
        assert sum(sizes) == n
        assert all(s <= MAX_ROWS and s & (s - 1) == 0 for s in sizes), sizes
        assert len(statements) <= n // MAX_ROWS + 11
        flat = [v for _, params in statements for v in params[0]]
        assert flat == [v for row in rows for v in row]
        shapes |= {sql for sql, _ in statements}
    # the connection caches one prepared statement per shape: a handful, whatever the sizes
    assert len(shapes) <= MAX_ROWS.bit_length()


def test_the_statements_store_every_row() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    rows = [(i, f"r{i}") for i in range(2_345)]
    for sql, params in _multi_row("INSERT INTO t (a, b)", rows):
        db.executemany(sql, params)
    assert db.execute("SELECT a, b FROM t ORDER BY rowid").fetchall() == rows


def test_a_common_table_expression_tail_is_kept() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE lk (id INTEGER PRIMARY KEY, active INTEGER, reason TEXT)")
    db.executemany("INSERT INTO lk VALUES (?, 1, NULL)", [(i,) for i in range(1, 6)])
    for sql, params in _multi_row(
            "WITH lifted (id, reason) AS (", [(2, "manual"), (4, "expired"), (5, "x")],
            ") UPDATE lk SET active = 0, reason = (SELECT reason FROM lifted "
            "WHERE lifted.id = lk.id) WHERE id IN (SELECT id FROM lifted)"):
        db.executemany(sql, params)
    assert db.execute("SELECT id, active, reason FROM lk").fetchall() == [
        (1, 1, None), (2, 0, "manual"), (3, 1, None), (4, 0, "expired"), (5, 0, "x")]
