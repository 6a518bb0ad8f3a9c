"""A job queued by a rule's smart_review is reported after the violation that queued it: on
stdout and in the database, even though jobs commit on a connection of their own."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.helpers import HEADER

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = 40


def _events() -> str:
    lines = []
    for i in range(ACCOUNTS):
        acct = f"A{i:02d}"
        t = f"2026-02-03T15:{i // 60:02d}:{i % 60:02d}"
        lines.append({"type": "fill", "ts": f"{t}.000Z", "account": acct, "symbol": "MNQ",
                      "order_id": f"{i}a", "side": "buy", "qty": 2, "price": 20000.0})
        lines.append({"type": "fill", "ts": f"{t}.500Z", "account": acct, "symbol": "MNQ",
                      "order_id": f"{i}b", "side": "sell", "qty": 1, "price": 19900.0})
    # then a long stretch of quotes: the replay runs on while the jobs' own connection commits
    lines += [{"type": "quote", "ts": "2026-02-03T15:30:00Z", "symbol": "ES", "last": 5000.0 + k}
              for k in range(30_000)]
    return "".join(json.dumps(x) + "\n" for x in lines)


def test_violation_comes_before_the_job_it_queued(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(HEADER + """\
rules:
  daily_realized_loss: {limit: -100, action: [alert, smart_review], lockout: none}
smart_risk: {planner: heuristic, step_delay_seconds: 0, workers: 2}
""")
    events = tmp_path / "events.jsonl"
    events.write_text(_events())
    db = tmp_path / "run.db"
    res = subprocess.run(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", f"replay:{events}",
         "--rules", str(rules), "--db", str(db)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    with sqlite3.connect(db) as conn:
        stored = [json.loads(b) for (b,) in conn.execute("SELECT body FROM records ORDER BY id")]
    for name, recs in (("stdout", out), ("database", stored)):
        seen: set[str] = set()
        queued = 0
        for rec in recs:
            if rec["kind"] == "violation" and "smart_review" in rec["action"]:
                seen.add(rec["account"])
            elif rec["kind"] == "job" and rec["status"] == "queued" and rec["attempt"] <= 1:
                queued += 1
                assert rec["account"] in seen, f"{name}: job before its violation: {rec}"
        assert queued == ACCOUNTS, (name, queued)
