"""A replay's resume point belongs to the file's content, not its name (issue 12, item 6): a new
recording saved under yesterday's file name is replayed from its first line, and the same file
replayed again resumes after its last committed line (kill -9 resume: tests/test_crash.py)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import HEADER

ROOT = Path(__file__).resolve().parent.parent


def _orders(day: str, qty: int, n: int = 20) -> str:
    return "".join(json.dumps({"type": "order_placed", "ts": f"{day}T15:00:{i:02d}Z",
                               "account": "A1", "symbol": "MNQ", "order_id": f"{day}-{i}",
                               "side": "buy", "qty": qty, "order_type": "market"}) + "\n"
                   for i in range(n))


def _replay(events: Path, rules: Path, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "riskterm", "--no-ui", "--source",
                           f"replay:{events}", "--rules", str(rules), "--db", str(db)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def _violations(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        return [json.loads(b) for (b,) in conn.execute(
            "SELECT body FROM records WHERE kind = 'violation' ORDER BY id")]


def test_a_new_recording_under_an_old_name_is_replayed_from_its_first_line(
        tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(HEADER + "rules: {max_order_size: {max_qty: 5}}\n")
    day = tmp_path / "day.jsonl"
    db = tmp_path / "same.db"
    day.write_text(_orders("2026-02-03", qty=9))  # yesterday: 20 oversized orders
    assert _replay(day, rules, db).returncode == 0
    assert len(_violations(db)) == 20

    again = _replay(day, rules, db)  # the same file: nothing left to do
    assert again.returncode == 0 and "resuming" in again.stderr
    assert len(_violations(db)) == 20

    day.write_text(_orders("2026-02-04", qty=7))  # today's recording, same name, same length
    res = _replay(day, rules, db)
    assert res.returncode == 0, res.stderr
    assert "resuming" not in res.stderr
    today = [v for v in _violations(db) if v["ts"].startswith("2026-02-04")]
    assert len(today) == 20 and today[0]["value"] == 7
