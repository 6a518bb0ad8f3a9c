"""Defects a review of the hardening change found, each pinned (they failed before the fix)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import fill, make_engine, records, ts

from riskterm.brokers.base import MarketOrder
from riskterm.db import DatabaseInUse, EngineLock
from riskterm.engine import RestoredState, Snapshot


def test_max_contracts_fires_again_after_a_resync_dropped_its_position() -> None:
    engine = make_engine("rules:\n  max_contracts: {limit: 2, action: alert}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 3, 100.0))
    assert [r["rule"] for r in records(engine, ("violation",))] == ["max_contracts"]
    engine.resync(Snapshot(ts=ts("2026-02-03T15:10:00Z"), accounts=[{"account": "A1"}]))
    records(engine)
    engine.process(fill("2026-02-03T15:20:00Z", "buy", 3, 100.0, order_id="o2"))
    assert [r["rule"] for r in records(engine, ("violation",))] == ["max_contracts"]


class _Broker:
    executes = True

    def __init__(self) -> None:
        self.sent: list[object] = []

    def submit(self, command: object) -> None:
        self.sent.append(command)


def test_an_unanswered_close_is_not_sent_again_six_seconds_later() -> None:
    """A broker slower than a few seconds to fill a close must not get a second full close
    from the next rule that fires (two would reverse the position)."""
    broker = _Broker()
    engine = make_engine("""rules:
  max_contracts: {limit: 2, action: flatten}
  max_position_loss: {limit: -50, action: close_position}
""", broker=broker)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 3, 100.0))
    engine.process({"type": "quote", "ts": ts("2026-02-03T15:00:06Z"), "symbol": "MNQ",
                    "bid": 60.0, "ask": 60.0})
    closes = [c for c in broker.sent if isinstance(c, MarketOrder)]
    assert sum(c.qty for c in closes) == 3, closes


def test_a_symlink_to_a_database_finds_the_same_engine_lock(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    db.touch()
    link = tmp_path / "b.db"
    link.symlink_to(db)
    held = EngineLock.acquire(db)
    try:
        with pytest.raises(DatabaseInUse):
            EngineLock.acquire(link)
    finally:
        held.release()


def test_older_edge_state_of_accounts_left_out_is_kept() -> None:
    """An older database keeps fired keys in engine_state; an engine that loads only some
    accounts (--accounts) must not drop the others' keys (a later run would fire again)."""
    engine = make_engine(
        "rules:\n  daily_realized_loss: {limit: -100, action: flatten, lockout: until_reset}\n")
    engine.restore(RestoredState(
        accounts={"A1": {"balance": 1000}},
        engine_state={"fired": [["daily_realized_loss", "A1", None],
                                ["daily_realized_loss", "B1", None]],
                      "trading_day": "2026-02-03", "next_lockout_id": 1}))
    changes = engine.take_changes()
    assert changes.engine_state is not None
    assert json.loads(changes.engine_state)["fired"] == [["daily_realized_loss", "B1", None]]
    rows = dict(changes.accounts)
    assert json.loads(rows["A1"])["fired"] == [["daily_realized_loss", None]]
