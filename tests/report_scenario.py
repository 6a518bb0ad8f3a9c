"""A database made by the real engine for the report tests: a replay of two trading days
(America/Chicago, reset 17:00) with a loss that breaches the daily limits, a Smart Risk Manager
job, fills with fees (one delivered twice), and an account whose name is HTML (account names are
user input). ACC-1 reports no equity, so the engine's equity samples follow
its open P&L at each quote; its balance is updated with the closing fill, as brokers do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import HEADER

EVIL = "<img src=x onerror=alert(1)>"
DAY = "2026-02-03"  # the later trading day, with the records
RULES = HEADER + """\
rules:
  daily_realized_loss: {limit: -500, warn_at: 0.8}
  daily_total_loss: {limit: -750, warn_at: 0.8}
  trailing_drawdown: {amount: 2000}
  max_contracts_per_instrument: {limits: {MNQ: 1, ES: 3}, action: [alert, smart_review]}
smart_risk:
  planner: heuristic
  step_delay_seconds: 0
"""


def _events() -> list[dict[str, object]]:
    def acct(t: str, name: str, balance: float, equity: float | None = None) -> dict[str, object]:
        ev: dict[str, object] = {"type": "account", "ts": t, "account": name, "balance": balance}
        if equity is not None:
            ev["equity"] = equity
        return ev

    def fill(t: str, name: str, symbol: str, oid: str, side: str, qty: int,
             price: float) -> dict[str, object]:
        return {"type": "fill", "ts": t, "account": name, "symbol": symbol, "order_id": oid,
                "side": side, "qty": qty, "price": price, "trade_id": "t" + oid}

    return [
        # 2026-02-02: a winning round trip, no records
        acct("2026-02-02T15:00:00Z", "ACC-1", 50000.0),
        fill("2026-02-02T15:01:00Z", "ACC-1", "MNQ", "a1", "buy", 1, 20000.0),
        fill("2026-02-02T15:20:00Z", "ACC-1", "MNQ", "a2", "sell", 1, 20050.0),
        acct("2026-02-02T15:20:00Z", "ACC-1", 50100.0),
        # 2026-02-03: ACC-1 buys 2 MNQ (over its limit of 1: a job), the market falls
        acct("2026-02-03T14:30:00Z", "ACC-1", 50100.0),  # no equity: balance + open P&L
        acct("2026-02-03T14:30:00Z", EVIL, 25000.0),
        fill("2026-02-03T14:31:00Z", "ACC-1", "MNQ", "1", "buy", 2, 20000.0),
        fill("2026-02-03T14:31:00Z", "ACC-1", "MNQ", "1", "buy", 2, 20000.0),  # delivered twice
        {"type": "position", "ts": "2026-02-03T14:31:00Z", "account": "ACC-1",
         "symbol": "MNQ", "qty": 2, "avg_price": 20000.0},
        {"type": "quote", "ts": "2026-02-03T14:35:00Z", "symbol": "MNQ", "last": 19900.0},
        {"type": "quote", "ts": "2026-02-03T14:40:00Z", "symbol": "MNQ", "last": 19840.0},
        {"type": "quote", "ts": "2026-02-03T14:45:00Z", "symbol": "MNQ", "last": 19810.0},
        fill("2026-02-03T14:46:00Z", "ACC-1", "MNQ", "2", "sell", 2, 19810.0),
        {"type": "position", "ts": "2026-02-03T14:46:00Z", "account": "ACC-1",
         "symbol": "MNQ", "qty": 0},
        acct("2026-02-03T14:46:00Z", "ACC-1", 49340.0),
        {**fill("2026-02-03T15:00:00Z", EVIL, "ES", "e1", "buy", 1, 6000.0), "fee": 2.25},
        {"type": "quote", "ts": "2026-02-03T15:10:00Z", "symbol": "ES", "last": 6004.0},
    ]


def make_scenario(folder: Path) -> tuple[Path, Path]:
    """Run the engine on the replay; returns (database, rules file)."""
    rules = folder / "rules.yaml"
    rules.write_text(RULES)
    events = folder / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in _events()))
    db = folder / "scenario.db"
    done = subprocess.run(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", f"replay:{events}",
         "--rules", str(rules), "--db", str(db)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    kinds = [json.loads(line)["kind"] for line in done.stdout.splitlines()]
    assert kinds.count("violation") == 3 and "job" in kinds, done.stdout
    return db, rules
