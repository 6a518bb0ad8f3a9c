"""kill -9 in the middle of a replay loses nothing and repeats nothing."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from riskterm.bench.workload import write_file

RULES = Path(__file__).parent.parent / "rules.yaml"


def _stored(db: Path) -> list[dict]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [json.loads(b) for (b,) in conn.execute(
            "SELECT body FROM records WHERE kind != 'summary' ORDER BY id")]


def _cmd(events: Path, db: Path) -> list[str]:
    return [sys.executable, "-m", "riskterm", "--no-ui", "--source", f"replay:{events}",
            "--rules", str(RULES), "--db", str(db)]


def test_kill_9_mid_replay_then_restart_matches_an_uninterrupted_run(tmp_path):
    events = write_file(tmp_path / "e.jsonl", 60_000)
    reference = tmp_path / "ref.db"
    subprocess.run(_cmd(events, reference), capture_output=True, check=True, timeout=120)
    expected = _stored(reference)
    assert len(expected) > 300  # the workload really fires rules

    crashed = tmp_path / "crash.db"
    proc = subprocess.Popen(_cmd(events, crashed), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    reported = [json.loads(proc.stdout.readline()) for _ in range(200)]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stored = _stored(crashed)
    # everything reported before the kill was committed first
    assert stored[: len(reported)] == reported
    assert len(stored) < len(expected)  # it really was cut off mid-way

    res = subprocess.run(_cmd(events, crashed), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr
    # no record lost, none written twice (no enforcement sent again)
    assert _stored(crashed) == expected
