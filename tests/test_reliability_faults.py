"""Storage and dependency faults: a locked database is waited for, a read-only or full one stops
the engine with a clear error and exit 1 (no traceback, nothing reported that is not stored), an
unreachable LLM endpoint fails the job while the engine goes on.

LLM 429 / 5xx / timeouts / refused connections / malformed answers on the wire (retries, backoff,
the final error) are tests/test_srm_openai.py; here the endpoint is down for a whole riskterm.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from riskterm import db as db_module
from riskterm.bench.workload import write_file
from riskterm.config import load_rules_text
from riskterm.host import EngineHost, RunOptions
from tests.helpers import HEADER
from tests.test_reliability_crash import Engine, assert_all_reported_are_stored, ev, stored

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules.yaml"


def fills(n: int, start: int = 0) -> str:
    """Fills on symbols without instruments: each new symbol is an unknown_instrument warning."""
    return "".join(ev(type="fill", ts=1770130800 + i, account="A1", symbol=f"ZZ{i}",
                      order_id=str(i), side="buy", qty=1, price=100.0)
                   for i in range(start, start + n))


def run(args: list[str], *, stdin: str = "", preexec: Any = None, timeout: float = 60,
        python: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [*(python or [sys.executable, "-m", "riskterm"]), *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=preexec, cwd=ROOT)


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in out.splitlines()]


def clean_failure(res: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 1, a sentence on stderr that says why, never a traceback."""
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr and "Exception" not in res.stderr, res.stderr
    assert res.stderr.startswith("riskterm: "), res.stderr
    for word in words:
        assert word in res.stderr, res.stderr


# --- a database locked by another process ------------------------------------------------------


def test_a_write_lock_held_by_another_process_is_waited_for(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    rules = tmp_path / "warn.yaml"
    rules.write_text(HEADER)  # no rules: only the unknown_instrument warning of each fill
    engine = Engine(rules, db)
    engine.send(fills(1))
    engine.wait_for(lambda r: r["kind"] == "warning")
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer (the sqlite3 shell, a backup, a script)
    other.execute("INSERT INTO engine_state (key, value) VALUES ('other', 'x')")
    engine.send(fills(40, start=1))
    time.sleep(1.0)
    # nothing is reported while it cannot be committed ...
    assert engine.lines.empty() and len(engine.seen) == 1
    other.execute("COMMIT")
    other.close()
    # ... and everything is, once the lock is gone
    code, reported, stderr = engine.finish()
    assert code == 0, stderr
    assert [r["kind"] for r in reported] == ["warning"] * 41 + ["summary"]
    assert reported[-1]["events"] == 41
    assert stored(db) == reported  # every record, once, in order


async def test_a_lock_held_longer_than_the_busy_timeout_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite gives up after busy_timeout ("database is locked"); the recorder keeps the batch
    and commits it when the lock is released."""
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 50)
    events = tmp_path / "e.jsonl"
    events.write_text(fills(30))
    reported: list[dict[str, Any]] = []
    host = EngineHost(RunOptions(source=f"replay:{events}", db_path=tmp_path / "l.db"),
                      load_rules_text(HEADER), with_jobs=False, diagnostics=lambda _: None,
                      sinks=[lambda batch: reported.extend(rec for rec, _ in batch)])
    await host.open()
    try:
        other = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        feeder = asyncio.create_task(host.run_source())
        await asyncio.sleep(0.6)  # > 10 busy timeouts
        assert reported == [] and not feeder.done()
        other.execute("ROLLBACK")
        other.close()
        await asyncio.wait_for(feeder, 10)
        await host.finish(wait_for_jobs=False)
    finally:
        await host.close()
    assert len(reported) == 31 and reported[-1]["kind"] == "summary"
    assert stored(tmp_path / "l.db") == reported


# --- read-only database file or directory ------------------------------------------------------


def _no_dac_override() -> None:
    """In the child: drop CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH from the bounding set, so that
    file modes bind even when the tests run as root (as in a container)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP; fails harmlessly when not root


@pytest.fixture
def read_only(tmp_path: Path) -> Any:
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0o444)
    res = run(["-c", f"open({str(probe)!r}, 'a')"], preexec=_no_dac_override,
              python=[sys.executable])
    if res.returncode == 0:
        pytest.skip("cannot make a file read-only for a child process here")
    made: list[Path] = []

    def make(path: Path, mode: int) -> None:
        path.chmod(mode)
        made.append(path)

    yield make
    for path in made:
        path.chmod(0o755)


def _existing_db(tmp_path: Path, name: str) -> Path:
    db = tmp_path / name
    res = run(["--no-ui", "--source", "-", "--rules", str(RULES), "--db", str(db)],
              stdin=fills(3))
    assert res.returncode == 0, res.stderr
    return db


def test_read_only_database_file(tmp_path: Path, read_only: Any) -> None:
    db = _existing_db(tmp_path, "ro.db")
    before = stored(db)
    read_only(db, 0o444)
    res = run(["--no-ui", "--source", "-", "--rules", str(RULES), "--db", str(db)],
              stdin=fills(3, start=3), preexec=_no_dac_override, timeout=30)
    clean_failure(res, str(db), "readonly database")
    assert res.stdout == ""  # nothing reported that could not be stored
    assert stored(db) == before


def test_read_only_directory(tmp_path: Path, read_only: Any) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    read_only(fresh, 0o555)
    res = run(["--no-ui", "--source", "-", "--db", str(fresh / "new.db")], stdin=fills(1),
              preexec=_no_dac_override, timeout=30)
    clean_failure(res, str(fresh / "new.db"), "unable to open database file")
    old = tmp_path / "old"
    old.mkdir()
    db = _existing_db(old, "old.db")
    read_only(old, 0o555)  # the -wal and -shm files cannot be created next to it
    res = run(["--no-ui", "--source", "-", "--db", str(db)], stdin=fills(1),
              preexec=_no_dac_override, timeout=30)
    clean_failure(res, str(db), "readonly database")
    assert res.stdout == ""


# --- a full disk --------------------------------------------------------------------------------

# riskterm with every database connection limited to a few more pages than it has at open:
# SQLite's own "database or disk is full" (SQLITE_FULL), as on a full disk. Room for the first
# group commits (their size varies with timing), far from room for the whole replay.
FULL_AFTER_PAGES = 600
_LIMITED = f"""
import sys
import riskterm.db, riskterm.host, riskterm.jobs.pool
_open = riskterm.db.open_db
async def open_db(path):
    conn = await _open(path)
    async with conn.execute("PRAGMA page_count") as cur:
        (pages,) = await cur.fetchone()
    await conn.execute(f"PRAGMA max_page_count = {{pages + {FULL_AFTER_PAGES}}}")
    return conn
riskterm.host.open_db = riskterm.jobs.pool.open_db = open_db
from riskterm.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_database_full_stops_with_exit_1_and_the_replay_resumes_after(tmp_path: Path) -> None:
    events = write_file(tmp_path / "e.jsonl", 60_000)
    args = ["--no-ui", "--source", f"replay:{events}", "--rules", str(RULES)]
    ref = run([*args, "--db", str(tmp_path / "ref.db")], timeout=120)
    assert ref.returncode == 0, ref.stderr
    expected = [r for r in stored(tmp_path / "ref.db") if r["kind"] != "summary"]

    db = tmp_path / "full.db"
    res = run([*args, "--db", str(db)], python=[sys.executable, "-c", _LIMITED], timeout=120)
    clean_failure(res, "database or disk is full", "run the same replay on this database "
                  "again to resume")
    reported = lines(res.stdout)
    assert reported and "summary" not in {r["kind"] for r in reported}
    assert stored(db) == reported  # reported <=> stored: nothing reported was lost
    assert len(reported) < len(expected)  # it really stopped part way

    # with room again, the same replay resumes after the last committed line: nothing is lost
    again = run([*args, "--db", str(db)], timeout=120)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr
    assert [r for r in stored(db) if r["kind"] != "summary"] == expected


async def test_after_a_failed_commit_nothing_more_is_committed(tmp_path: Path,
                                                               monkeypatch) -> None:
    """The records of a failed commit are gone from memory: a later commit, carrying a later
    replay cursor, would make a resumed replay skip them for ever. So none happens."""
    from riskterm.recorder import Recorder, StorageError

    events = write_file(tmp_path / "e.jsonl", 3_000)
    host = EngineHost(RunOptions(source=f"replay:{events}", db_path=tmp_path / "r.db"),
                      load_rules_text(HEADER + "rules: {max_order_size: {max_qty: 1}}\n"),
                      with_jobs=False, diagnostics=lambda _: None)
    await host.open()
    written: list[int] = []
    real = Recorder._write

    async def full_once(self: Recorder, changes: Any, bodies: list[str]) -> None:
        if not written:
            written.append(0)
            raise sqlite3.OperationalError("database or disk is full")
        written.append(len(bodies))
        await real(self, changes, bodies)

    monkeypatch.setattr(Recorder, "_write", full_once)
    try:
        for line in events.read_bytes().splitlines()[:500]:
            host.engine.process(json.loads(line) | {"ts": 1_772_546_400.0})
        with pytest.raises(StorageError) as first:
            await host.recorder.flush()
        assert first.value.unwritten > 0
        for line in events.read_bytes().splitlines()[500:1000]:
            host.engine.process(json.loads(line) | {"ts": 1_772_546_401.0})
        host.engine.cursor = 1000
        with pytest.raises(StorageError, match="database or disk is full") as again:
            await host.recorder.flush()
        # the lost batch, as the first failure counted it (pending records are counted apart)
        assert again.value.unwritten == first.value.unwritten
        with pytest.raises(StorageError):
            await host.recorder.write_record({"kind": "summary", "ts": "x"})
        assert written == [0]
    finally:
        monkeypatch.undo()
        await host.close()
    assert stored(tmp_path / "r.db") == []


def _file_size_limit(limit: int) -> Any:
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@pytest.mark.parametrize("limit", [40_000, 2_000_000])
def test_file_writes_failing_at_the_os_level(tmp_path: Path, limit: int) -> None:
    """The OS refuses to grow the database files (at open or mid-run): exit 1, a clear error."""
    events = write_file(tmp_path / "e.jsonl", 60_000)
    db = tmp_path / "fs.db"
    res = run(["--no-ui", "--source", f"replay:{events}", "--rules", str(RULES), "--db",
               str(db)], preexec=_file_size_limit(limit), timeout=120)
    clean_failure(res, str(db) if limit < 100_000 else "stopping: cannot write to the database",
                  "disk I/O error")
    reported = lines(res.stdout)
    if limit < 100_000:
        assert reported == []  # it could not even create its tables
    else:
        assert reported
        assert_all_reported_are_stored(reported, db)


# --- the LLM endpoint is down ------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once it is closed


def test_llm_endpoint_down_fails_the_job_while_the_engine_goes_on(tmp_path: Path) -> None:
    port = _closed_port()
    rules = tmp_path / "llm.yaml"
    rules.write_text(HEADER + f"""\
rules:
  daily_realized_loss: {{limit: -100, action: smart_review, lockout: none}}
  max_order_size: {{max_qty: 5}}
smart_risk:
  planner: openai
  base_url: http://127.0.0.1:{port}/v1
  api_key_env: RISKTERM_TEST_UNSET_KEY
  step_delay_seconds: 0
""")
    engine = Engine(rules, tmp_path / "llm.db")
    engine.send(ev(type="fill", ts="2026-02-03T15:00:00Z", account="A1", symbol="MNQ",
                   order_id="1", side="buy", qty=2, price=20000.0)
                + ev(type="fill", ts="2026-02-03T15:00:01Z", account="A1", symbol="MNQ",
                     order_id="2", side="sell", qty=1, price=19900.0))
    job = engine.wait_for(lambda r: r["kind"] == "job" and r["status"] == "running")
    # the engine keeps enforcing while the job retries against the dead endpoint
    engine.send(ev(type="order_placed", ts="2026-02-03T15:00:02Z", account="B2", symbol="ES",
                   order_id="big", side="buy", qty=50, order_type="market"))
    engine.wait_for(lambda r: r["kind"] == "enforcement" and r["order_id"] == "big")
    failed = engine.wait_for(lambda r: r["kind"] == "job" and r["status"] in ("failed",
                                                                             "completed"))
    code, reported, stderr = engine.finish()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert failed["job_id"] == job["job_id"] and failed["status"] == "failed"
    assert failed["attempt"] == 3 and failed["error"] == (
        f"gave up after 3 attempts: cannot reach the planner endpoint "
        f"http://127.0.0.1:{port}/v1/chat/completions: ConnectError: All connection attempts "
        "failed")
    big = next(i for i, r in enumerate(reported) if r.get("order_id") == "big")
    assert big < reported.index(failed)  # enforced while the job was still retrying
    assert reported[-1]["kind"] == "summary" and reported[-1]["jobs"] == 1
    assert_all_reported_are_stored(reported, tmp_path / "llm.db")
