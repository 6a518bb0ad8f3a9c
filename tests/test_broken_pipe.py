"""Output into a closed pipe ends quietly, without a traceback (CONTRACT §3; issue 12, item 17).

`riskterm jobs list | head -1` printed a BrokenPipeError traceback when head had gone before the
output was flushed. Here the reader is gone before the command starts (a pipe whose read end is
closed), so every run meets the broken pipe the shell only sometimes produces.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from riskterm.tui.demo import write_demo


def run_into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    read, write = os.pipe()
    os.close(read)  # the reader went away: every write to stdout is EPIPE
    try:
        return subprocess.run([sys.executable, "-m", "riskterm", *args], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A database with a few jobs (from a real replay and real `jobs enqueue` commands), and
    the id of one."""
    directory = tmp_path_factory.mktemp("pipe")
    events, rules = write_demo(directory)
    path = directory / "pipe.db"
    run = subprocess.run([sys.executable, "-m", "riskterm", "--no-ui", "--source",
                          f"replay:{events}", "--rules", str(rules), "--db", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    for account in ("EVAL-101", "LIVE-301", "PA-APEX-201"):
        enq = subprocess.run([sys.executable, "-m", "riskterm", "jobs", "enqueue", "--db",
                              str(path), "--account", account], capture_output=True, text=True,
                             timeout=60)
        assert enq.returncode == 0, enq.stderr
    return path, enq.stdout.strip()


def assert_quiet(run: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in run.stderr and "BrokenPipeError" not in run.stderr, run.stderr
    assert "Exception ignored" not in run.stderr, run.stderr


@pytest.mark.parametrize("args", [["jobs", "list"], ["jobs", "list", "--json"],
                                  ["jobs", "show", "ID"], ["jobs", "show", "ID", "--json"]],
                         ids=" ".join)
def test_jobs_commands_end_quietly_into_a_closed_pipe(db: tuple[Path, str],
                                                      args: list[str]) -> None:
    path, job_id = db
    args = [job_id if a == "ID" else a for a in args]
    run = run_into_closed_pipe(*args, "--db", str(path))
    assert_quiet(run)
    assert run.returncode == 0


def test_check_rules_ends_quietly_into_a_closed_pipe(tmp_path: Path) -> None:
    _, rules = write_demo(tmp_path)
    run = run_into_closed_pipe("check-rules", str(rules))
    assert_quiet(run)
    assert run.returncode == 0


def test_headless_records_into_a_closed_pipe_are_still_stored(tmp_path: Path) -> None:
    events, rules = write_demo(tmp_path)
    db = tmp_path / "headless.db"
    run = run_into_closed_pipe("--no-ui", "--source", f"replay:{events}", "--rules", str(rules),
                               "--db", str(db))
    assert_quiet(run)
    assert run.returncode == 0
    with sqlite3.connect(db) as conn:
        kinds = [json.loads(b)["kind"] for (b,) in conn.execute("SELECT body FROM records")]
    assert kinds.count("violation") == 4 and kinds[-1] == "summary"
