"""One engine per database (issue 12, item 2): a second engine is refused with exit 2 naming the
holder, `unlock` and `jobs` still work beside the running one, a kill -9 frees the database, and
a lockout row is never overwritten."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from riskterm.config import load_rules_text
from riskterm.db import DatabaseInUse, EngineLock
from riskterm.host import EngineHost, RunOptions
from riskterm.recorder import StorageError
from tests.helpers import HEADER

ROOT = Path(__file__).resolve().parent.parent
LOCKING = HEADER + "rules: {daily_realized_loss: {limit: -100, lockout: permanent}}\n"


def _fill(i: int, side: str, price: float, account: str = "A") -> str:
    return json.dumps({"type": "fill", "ts": 1770130800 + i, "account": account,
                       "symbol": "MNQ", "order_id": str(i), "side": side, "qty": 1,
                       "price": price}) + "\n"


def _riskterm(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "riskterm", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_a_second_engine_is_refused_while_admin_commands_still_work(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(LOCKING)
    db = tmp_path / "shared.db"
    first = subprocess.Popen(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", "-", "--rules", str(rules),
         "--db", str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    assert first.stdin is not None and first.stdout is not None
    try:
        first.stdin.write(_fill(0, "buy", 1000.0) + _fill(1, "sell", 900.0))
        first.stdin.flush()
        kinds = [json.loads(first.stdout.readline())["kind"] for _ in range(3)]
        assert kinds == ["violation", "enforcement", "lockout"]  # running, and locked A

        second = _riskterm("--no-ui", "--source", "-", "--rules", str(rules), "--db", str(db),
                           stdin=_fill(2, "buy", 1000.0, account="B"))
        assert second.returncode == 2, second.stderr
        assert second.stdout == "" and "Traceback" not in second.stderr
        for word in (str(db), f"pid {first.pid}", socket.gethostname(), "--no-ui"):
            assert word in second.stderr, second.stderr

        # not engines: they work beside it
        listed = _riskterm("jobs", "list", "--json", "--db", str(db))
        assert (listed.returncode, listed.stdout.strip()) == (0, "[]"), listed.stderr
        unlocked = _riskterm("unlock", "A", "--db", str(db))
        assert unlocked.returncode == 0, unlocked.stderr
        assert json.loads(unlocked.stdout)["reason"] == "manual"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    # kill -9 released the lock with the process
    again = _riskterm("--no-ui", "--source", "-", "--rules", str(rules), "--db", str(db),
                      stdin=_fill(3, "buy", 1000.0, account="B"))
    assert again.returncode == 0, again.stderr


async def test_two_hosts_in_one_process_cannot_share_a_database(tmp_path: Path) -> None:
    db = tmp_path / "one.db"
    opts = RunOptions(source="-", db_path=db)
    first = EngineHost(opts, load_rules_text(HEADER), with_jobs=False,
                       diagnostics=lambda _: None)
    await first.open()
    try:
        second = EngineHost(opts, load_rules_text(HEADER), with_jobs=False,
                            diagnostics=lambda _: None)
        with pytest.raises(DatabaseInUse, match="in use by another riskterm engine"):
            await second.open()
    finally:
        await first.close()
    EngineLock.acquire(db).release()  # close() gave it back


async def test_a_lockout_row_is_never_overwritten(tmp_path: Path) -> None:
    """Lockout ids come from the database's MAX(id) at start; a row that appeared with the same
    id since (a writer that did not respect the engine lock) makes the commit fail loudly
    instead of being replaced: a permanent lockout is never silently lost."""
    db = tmp_path / "l.db"
    host = EngineHost(RunOptions(source="-", db_path=db), load_rules_text(LOCKING),
                      with_jobs=False, diagnostics=lambda _: None)
    await host.open()
    try:
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("INSERT INTO lockouts (id, account, rule, state, until_kind, until_ts, "
                      "created_ts, active) VALUES (1, 'OTHER', 'manual_hold', 'halted', "
                      "'permanent', NULL, 0, 1)")
        other.close()
        for line in (_fill(0, "buy", 1000.0), _fill(1, "sell", 900.0)):
            host.engine.process(json.loads(line))
        assert [lk.id for lk in host.engine.lockouts.all()] == [1]  # the colliding id
        with pytest.raises(StorageError):
            await host.recorder.flush()
    finally:
        await host.close()
    with sqlite3.connect(db) as conn:
        rows: list[Any] = conn.execute("SELECT id, account, rule FROM lockouts").fetchall()
    assert rows == [(1, "OTHER", "manual_hold")]


def test_a_forked_child_does_not_keep_the_lock(tmp_path: Path) -> None:
    """The parse-ahead parser is a fork of the engine: once the engine lets go (or dies), the
    child, which may live a moment longer, must not be holding the lock."""
    db = tmp_path / "f.db"
    lock = EngineLock.acquire(db)
    go_r, go_w = os.pipe()
    up_r, up_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child says it runs, waits until told, exits
        os.write(up_w, b"x")
        os.read(go_r, 1)
        os._exit(0)
    os.close(go_r)
    os.close(up_w)
    try:
        assert os.read(up_r, 1) == b"x"  # the child runs (past its fork handlers)
        lock.release()
        EngineLock.acquire(db).release()  # the child is alive and holds nothing
    finally:
        os.write(go_w, b"x")
        os.close(go_w)
        os.close(up_r)
        os.waitpid(pid, 0)


def test_refusal_runs_before_the_dashboard(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    _riskterm("--no-ui", "--source", "-", "--db", str(db))
    lock = EngineLock.acquire(db, command="riskterm (the test)")
    try:
        res = _riskterm("--db", str(db))  # the dashboard: refused before it takes the terminal
    finally:
        lock.release()
    assert res.returncode == 2 and "riskterm (the test)" in res.stderr, res.stderr
