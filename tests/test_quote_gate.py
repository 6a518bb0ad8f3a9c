"""The quote gate (Engine._quote_rules) skips quote rules that cannot change their outcome yet.

It is an optimisation only: the same stream must give exactly the same records with the gate
and with every quote rule re-run on every quote. Checked on the simulator's mixed stream (the
benchmark workload) under the default rules and under tight limits that make every P&L rule
warn, fire and re-arm many times.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from riskterm.bench.workload import events, to_line
from riskterm.brokers.replay import DryRunBroker
from riskterm.config import RulesConfig, load_rules, load_rules_text
from riskterm.engine import Changes, Engine, RestoredState
from riskterm.events import parse_line
from riskterm.lockouts import Lockout
from riskterm.sources.sim import Simulator

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


# --------------------------------------------------------------------------- differential test
#
# Random streams from the simulator, judged with the gate and with every quote rule on every
# quote, with the three things that change a judgement without a quote in the middle: a rules
# reload (tighter and looser limits), a restart (the engine's changes saved as the recorder
# saves them and restored into a new engine) and a new trading day (the daily reset falls in
# the stream). The records must be the same.

STREAM_START = 1_772_563_800.0  # 2026-03-03T18:50:00Z, 12:50 in Chicago: inside the session


def _rules(scale: float, reset: str) -> str:
    """The tight rules with every money limit scaled (below 1: tighter)."""
    def m(x: float) -> str:
        return f"{x * scale:.2f}"

    return f"""
timezone: America/Chicago
daily_reset: "{reset}"
instruments:
  MNQ: {{tick_size: 0.25, tick_value: 0.5}}
  MES: {{tick_size: 0.25, tick_value: 1.25}}
  NQ:  {{tick_size: 0.25, tick_value: 5.0}}
  ES:  {{tick_size: 0.25, tick_value: 12.5}}
  MCL: {{tick_size: 0.01, tick_value: 1.0}}
  CL:  {{tick_size: 0.01, tick_value: 10.0}}
  MGC: {{tick_size: 0.1, tick_value: 1.0}}
  GC:  {{tick_size: 0.1, tick_value: 10.0}}
accounts:
  "*1": {{trailing_drawdown: {{mode: intraday, amount: {m(200)}}},
         max_position_loss: {{limit_pct: {0.001 * scale:.6f}}}}}
  "*2": {{daily_total_loss: {{limit_pct: {0.002 * scale:.6f}}}}}
rules:
  daily_total_loss: {{limit: -{m(150)}, warn_at: 0.5, lockout: none}}
  daily_unrealized_loss: {{limit: -{m(120)}, warn_at: 0.6, lockout: 2m}}
  max_position_loss: {{limit: -{m(40)}, warn_at: 0.5}}
  max_unrealized_profit: {{target: {m(60)}, warn_at: 0.5}}
  trailing_drawdown: {{amount: {m(250)}, warn_at: 0.6, lockout: none}}
  max_position_value_pct: {{max_pct: {0.4 * scale:.4f}, warn_at: 0.7}}
  max_total_exposure: {{limit: {m(60000)}, warn_at: 0.8}}
"""


class _Store:
    """What the recorder keeps of the engine's changes, and what a restart reads back."""

    def __init__(self) -> None:
        self.accounts: dict[str, str] = {}
        self.positions: dict[tuple[str, str], tuple[str, str, int, float, float | None]] = {}
        self.lockouts: dict[int, Lockout] = {}
        self.max_id = 0
        self.engine_state = "{}"

    def save(self, changes: Changes) -> list[dict[str, Any]]:
        self.accounts.update(changes.accounts)
        for row in changes.positions:
            self.positions[(row[0], row[1])] = row
        for lk in changes.lockouts_added:
            self.lockouts[lk.id] = Lockout(lk.id, lk.account, lk.rule, lk.state, lk.kind,
                                           lk.until, lk.created)
            self.max_id = max(self.max_id, lk.id)
        for lid, _, _ in changes.lockouts_lifted:
            self.lockouts.pop(lid, None)
        if changes.engine_state is not None:
            self.engine_state = changes.engine_state
        return changes.records

    def restored(self) -> RestoredState:
        engine_state = json.loads(self.engine_state)
        engine_state["next_lockout_id"] = self.max_id + 1
        return RestoredState(
            accounts={name: json.loads(data) for name, data in self.accounts.items()},
            positions=list(self.positions.values()),
            lockouts=[Lockout(lk.id, lk.account, lk.rule, lk.state, lk.kind, lk.until,
                              lk.created) for lk in self.lockouts.values()],
            engine_state=engine_state)


def _stream(seed: int, n: int) -> tuple[list[dict[str, Any]], str]:
    """n parsed events, shifted in time so that a minute starts just after the event at 60 %
    of the stream, and that minute as the daily reset: the reset falls inside the stream."""
    evs = []
    for i, raw in enumerate((to_line(ev).encode() for ev in _sim_events(seed, n)), 1):
        ev = parse_line(raw, i)
        assert isinstance(ev, dict), ev
        evs.append(ev)
    mid = evs[int(n * 0.6)]["ts"]
    shift = math.ceil(mid / 60) * 60 - mid - 1e-3
    for ev in evs:
        ev["ts"] += shift
    at = datetime.fromtimestamp(mid + shift + 1, ZoneInfo("America/Chicago"))
    return evs, at.strftime("%H:%M")


@functools.cache
def _config(scale: float, reset: str) -> RulesConfig:
    return load_rules_text(_rules(scale, reset), "gate.yaml")


def _sim_events(seed: int, n: int) -> list[dict[str, Any]]:
    sim = Simulator(seed=seed, speed=0, start=STREAM_START, accounts=6, rate=40.0)
    return list(itertools.islice(sim.steps(), n))


def _differential_run(evs: list[dict[str, Any]], plan: list[tuple[int, str, float]],
                      reset: str, gate: bool) -> list[dict[str, Any]]:
    def engine_for(scale: float) -> Engine:
        engine = Engine(_config(scale, reset), DryRunBroker())
        engine.gate_quotes = gate
        return engine

    store = _Store()
    engine = engine_for(1.0)
    engine.process(dict(evs[0]))
    first_day = engine.trading_day
    steps = dict((i, (what, scale)) for i, what, scale in plan)
    out: list[dict[str, Any]] = []
    for i, ev in enumerate(evs):
        step = steps.get(i)
        if step is not None:
            what, scale = step
            if what == "reload":
                engine.set_config(_config(scale, reset))
            else:  # a restart, with the rules file as it is now
                out += store.save(engine.take_changes())
                engine = engine_for(scale)
                engine.restore(store.restored())
        if i:
            engine.process(dict(ev))
        if i % 97 == 0:
            out += store.save(engine.take_changes())
    assert engine.trading_day != first_day  # the daily reset fell inside the stream
    return out + store.save(engine.take_changes())


def _plan(seed: int, n: int) -> list[tuple[int, str, float]]:
    """Two reloads and a restart at random points, each to a random tighter or looser limit."""
    rnd = random.Random(seed)
    points = sorted(rnd.sample(range(n // 10, n - n // 10), 3))
    kinds = ["reload", "reload", "restart"]
    rnd.shuffle(kinds)
    scales = [rnd.choice([0.4, 0.6, 0.8, 1.25, 1.6]) for _ in kinds]
    return list(zip(points, kinds, scales, strict=True))


@pytest.mark.parametrize("seed", range(40))
def test_the_gate_changes_no_record_across_reloads_restarts_and_resets(seed: int) -> None:
    n = 2500
    evs, reset = _stream(seed, n)
    plan = _plan(seed, n)
    gated = _differential_run(evs, plan, reset, gate=True)
    full = _differential_run(evs, plan, reset, gate=False)
    assert [r for r in full if r["kind"] == "warning"], "the stream must exercise the rules"
    for a, b in zip(gated, full, strict=False):
        assert a == b, (plan, reset)
    assert len(gated) == len(full)


# --------------------------------------------------------------------------- the cases pinned
#
# An account holds ES and MNQ. ES is quoted first after each change (so the quote rules run for
# ES only), then MNQ at the price it already had: the MNQ position must be judged at that quote.

PINNED = """
timezone: America/Chicago
daily_reset: "17:00"
instruments:
  MNQ: {{tick_size: 0.25, tick_value: 0.5}}
  ES:  {{tick_size: 0.25, tick_value: 12.5}}
rules:
  max_position_loss: {{limit: {limit}, warn_at: 0.5}}
"""
DAY = "2026-03-03T"


STORE = "_store"  # each engine's saved changes, for a restart


def _pinned(limit: float, gate: bool) -> Engine:
    engine = Engine(load_rules_text(PINNED.format(limit=limit)), DryRunBroker())
    engine.gate_quotes = gate
    setattr(engine, STORE, _Store())
    return engine


def _quote(engine: Engine, t: str, symbol: str, last: float) -> list[tuple[str, str, str]]:
    engine.process({"type": "quote", "ts": datetime.fromisoformat(DAY + t).timestamp(),
                    "symbol": symbol, "last": last})
    return [(r["kind"], r["rule"], r["symbol"])
            for r in getattr(engine, STORE).save(engine.take_changes())
            if r["kind"] in ("violation", "warning")]


def _holding(engine: Engine) -> None:
    for symbol in ("ES", "MNQ"):
        engine.process({"type": "fill", "ts": datetime.fromisoformat(DAY + "15:00:00Z")
                        .timestamp(), "account": "A1", "symbol": symbol, "order_id": symbol,
                        "side": "buy", "qty": 1, "price": 100.0})
    assert _quote(engine, "15:00:01Z", "MNQ", 90.0) == []  # -20: inside -100, warning at -50
    assert _quote(engine, "15:00:02Z", "ES", 100.0) == []


MNQ_BREACH = [("violation", "max_position_loss", "MNQ")]


@pytest.mark.parametrize("gate", [True, False])
def test_a_reload_judges_a_position_already_past_the_new_limit(gate: bool) -> None:
    engine = _pinned(-100, gate)
    _holding(engine)
    engine.set_config(load_rules_text(PINNED.format(limit=-15)))  # MNQ at -20 is past it
    assert _quote(engine, "15:00:03Z", "ES", 100.0) == []
    assert _quote(engine, "15:00:04Z", "MNQ", 90.0) == MNQ_BREACH


@pytest.mark.parametrize("gate", [True, False])
def test_a_restart_with_a_tighter_limit_judges_a_position_already_past_it(gate: bool) -> None:
    engine = _pinned(-100, gate)
    _holding(engine)
    again = _pinned(-15, gate)
    again.restore(getattr(engine, STORE).restored())
    assert _quote(again, "15:00:03Z", "ES", 100.0) == []
    assert _quote(again, "15:00:04Z", "MNQ", 90.0) == MNQ_BREACH


@pytest.mark.parametrize("gate", [True, False])
def test_a_position_warning_is_written_again_after_the_daily_reset(gate: bool) -> None:
    engine = _pinned(-100, gate)
    _holding(engine)
    assert _quote(engine, "15:00:03Z", "MNQ", 70.0) == [("warning", "max_position_loss", "MNQ")]
    # the reset (17:00 in Chicago, 23:00Z) re-arms the warning; the price does not move
    assert _quote(engine, "23:00:01Z", "ES", 100.0) == []
    assert _quote(engine, "23:00:02Z", "MNQ", 70.0) == [("warning", "max_position_loss", "MNQ")]
