"""The quote gate (Engine._quote_rules) skips quote rules that cannot change their outcome yet.

It is an optimisation only: the same stream must give exactly the same records with the gate
and with every quote rule re-run on every quote. Checked on the simulator's mixed stream (the
benchmark workload) under the default rules and under tight limits that make every P&L rule
warn, fire and re-arm many times.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from riskterm.bench.workload import events, to_line
from riskterm.broker import DryRunBroker
from riskterm.config import RulesConfig, load_rules, load_rules_text
from riskterm.engine import Engine
from riskterm.events import parse_line

ROOT = Path(__file__).resolve().parent.parent

TIGHT = """
timezone: America/Chicago
daily_reset: "17:00"
instruments:
  MNQ: {tick_size: 0.25, tick_value: 0.5}
  MES: {tick_size: 0.25, tick_value: 1.25}
  NQ:  {tick_size: 0.25, tick_value: 5.0}
  ES:  {tick_size: 0.25, tick_value: 12.5}
  MCL: {tick_size: 0.01, tick_value: 1.0}
  CL:  {tick_size: 0.01, tick_value: 10.0}
  MGC: {tick_size: 0.1, tick_value: 1.0}
  GC:  {tick_size: 0.1, tick_value: 10.0}
accounts:
  "*1": {trailing_drawdown: {mode: eod, amount: 200}, max_position_loss: {limit_pct: 0.001}}
  "*2": {daily_total_loss: {limit_pct: 0.002}}
rules:
  daily_total_loss: {limit: -150, warn_at: 0.5, lockout: none}
  daily_unrealized_loss: {limit: -120, warn_at: 0.6}
  max_position_loss: {limit: -40, warn_at: 0.5}
  max_unrealized_profit: {target: 60, warn_at: 0.5}
  trailing_drawdown: {amount: 250, warn_at: 0.6, lockout: none}
  max_position_value_pct: {max_pct: 0.4}
  max_total_exposure: {limit: 60000}
"""


def _run(config: RulesConfig, lines: list[bytes], gate: bool) -> list[dict[str, Any]]:
    engine = Engine(config, DryRunBroker(), live=False)
    engine.gate_quotes = gate
    out: list[dict[str, Any]] = []
    for n, raw in enumerate(lines, 1):
        ev = parse_line(raw, n)
        assert isinstance(ev, dict), ev
        engine.process(ev)
        if n % 997 == 0:
            out += engine.take_changes().records
    return out + engine.take_changes().records


@pytest.mark.parametrize("rules", ["default", "tight"])
@pytest.mark.parametrize("seed", [3, 11])
def test_the_gate_changes_no_record(rules: str, seed: int) -> None:
    config = (load_rules(ROOT / "riskterm" / "default_rules.yaml") if rules == "default"
              else load_rules_text(TIGHT, "tight.yaml"))
    lines = [to_line(ev).encode() for ev in events(30_000, seed=seed, accounts=12)]
    gated = _run(config, lines, gate=True)
    full = _run(config, lines, gate=False)
    judged = [r for r in full if r["kind"] in ("violation", "warning")]
    assert len(judged) > 100, "the stream must exercise the rules"
    if rules == "tight":  # every quote rule fires at least once
        fired = {r["rule"] for r in judged if r["kind"] == "violation"}
        assert {"daily_total_loss", "daily_unrealized_loss", "max_position_loss",
                "max_unrealized_profit", "trailing_drawdown", "max_position_value_pct",
                "max_total_exposure"} <= fired, fired
    assert gated == full
