"""Shared helpers for engine tests: a real Engine on a rules text, events as dicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from riskterm.brokers.replay import DryRunBroker
from riskterm.config import load_rules_text
from riskterm.engine import Engine

HEADER = """\
timezone: America/Chicago
daily_reset: "17:00"
session: {start: "08:30", end: "15:00", days: [mon, tue, wed, thu, fri]}
instruments:
  MNQ: {tick_size: 0.25, tick_value: 0.5}
  ES:  {tick_size: 0.25, tick_value: 12.5}
"""


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def make_engine(rules_yaml: str, broker: Any = None, **kw: Any) -> Engine:
    config = load_rules_text(HEADER + rules_yaml)
    return Engine(config, broker or DryRunBroker(), **kw)


def fill(t: str, side: str, qty: int, price: float, *, account: str = "A1", symbol: str = "MNQ",
         order_id: str = "o", **extra: Any) -> dict[str, Any]:
    return {"type": "fill", "ts": ts(t), "account": account, "symbol": symbol,
            "order_id": order_id, "side": side, "qty": qty, "price": price, **extra}


def records(engine: Engine, kinds: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    recs = engine.take_changes().records
    return [r for r in recs if not kinds or r["kind"] in kinds]
