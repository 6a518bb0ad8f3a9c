"""A small, fixed trading morning: three accounts, a halt, a warning, a few violations.

Replayed at speed 0 into a fresh database it gives every screen a known state on the engine's
event-time clock, so the snapshot tests and `scripts/screenshots.py` draw the same pictures on
every run. Nothing here imports Textual.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

DEMO_RULES = """\
timezone: America/Chicago
daily_reset: "17:00"
session: {start: "08:30", end: "15:00", days: [mon, tue, wed, thu, fri]}
instruments:
  MNQ: {tick_size: 0.25, tick_value: 0.5}
  ES:  {tick_size: 0.25, tick_value: 12.5}
  CL:  {tick_size: 0.01, tick_value: 10.0}
accounts:
  "PA-*": {daily_realized_loss: {limit: -1000}}
rules:
  daily_realized_loss: {limit: -500, warn_at: 0.8}
  daily_total_loss: {limit: -750, warn_at: 0.8}
  max_position_loss: {limit: -300, warn_at: 0.8}
  no_stop_loss_grace: {grace_seconds: 30}
  max_contracts_per_instrument: {limits: {MNQ: 10, ES: 2, CL: 1}}
smart_risk:
  planner: heuristic
  execute: false
  workers: 1
  step_delay_seconds: 0
"""

START = datetime.fromisoformat("2026-03-02T14:35:00+00:00")  # a Monday, 08:35 in Chicago


def _ts(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def demo_events() -> list[dict[str, Any]]:
    ev: list[dict[str, Any]] = []

    def add(t: float, type_: str, **fields: Any) -> None:
        ev.append({"type": type_, "ts": _ts(t), **fields})

    def quote(t: float, symbol: str, last: float) -> None:
        add(t, "quote", symbol=symbol, last=last)

    for name, balance in (("EVAL-101", 50_000.0), ("PA-APEX-201", 150_000.0),
                          ("LIVE-301", 100_000.0)):
        add(0, "account", account=name, balance=balance)
    quote(1, "MNQ", 21000.0)
    quote(1, "ES", 6000.0)
    quote(1, "CL", 70.00)
    # EVAL-101: two ES with a stop, closed at a 500 loss -> daily_realized_loss halts it
    add(5, "fill", account="EVAL-101", symbol="ES", order_id="E1", side="buy", qty=2,
        price=6000.0)
    add(6, "order_placed", account="EVAL-101", symbol="ES", order_id="E2", side="sell", qty=2,
        order_type="stop", stop_price=5990.0)
    # PA-APEX-201: three MNQ with a stop; they drift to a warning on max_position_loss
    add(8, "fill", account="PA-APEX-201", symbol="MNQ", order_id="P1", side="buy", qty=3,
        price=21000.0)
    add(9, "order_placed", account="PA-APEX-201", symbol="MNQ", order_id="P2", side="sell",
        qty=3, order_type="stop", stop_price=20950.0)
    # LIVE-301: two CL (limit 1) and no stop, and a resting MNQ limit order
    add(12, "fill", account="LIVE-301", symbol="CL", order_id="L1", side="buy", qty=2,
        price=70.00)
    add(14, "order_placed", account="LIVE-301", symbol="MNQ", order_id="L2", side="buy", qty=2,
        order_type="limit", price=20900.0)
    quote(20, "ES", 5997.5)
    quote(22, "MNQ", 20975.0)
    quote(25, "CL", 70.06)
    add(30, "order_cancelled", account="EVAL-101", order_id="E2")
    add(31, "fill", account="EVAL-101", symbol="ES", order_id="E3", side="sell", qty=2,
        price=5995.0)
    quote(35, "MNQ", 20960.0)
    # EVAL-101 tries again while halted
    add(40, "order_placed", account="EVAL-101", symbol="ES", order_id="E4", side="buy", qty=1,
        order_type="market")
    add(41, "order_cancelled", account="EVAL-101", order_id="E4")
    quote(44, "CL", 70.12)
    quote(50, "MNQ", 20962.5)
    add(60, "clock")
    return ev


def write_demo(directory: Path) -> tuple[Path, Path]:
    """Write the demo's events and rules into `directory`; returns (events, rules) paths."""
    directory.mkdir(parents=True, exist_ok=True)
    events = directory / "demo.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in demo_events()))
    rules = directory / "demo_rules.yaml"
    rules.write_text(DEMO_RULES)
    return events, rules


def demo_app(directory: Path, *, rules_text: str = DEMO_RULES, settings: Any = None) -> Any:
    """The dashboard on the demo replay (speed 0, a fresh database, deterministic settings)."""
    from riskterm.config import load_rules
    from riskterm.host import RunOptions
    from riskterm.tui.app import create_app
    from riskterm.tui.settings import AppSettings

    events, rules = write_demo(directory)
    rules.write_text(rules_text)
    opts = RunOptions(source=f"replay:{events}", rules_path=rules, db_path=directory / "demo.db",
                      speed=0)
    return create_app(opts, load_rules(rules), settings or AppSettings(deterministic=True))
