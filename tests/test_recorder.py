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
