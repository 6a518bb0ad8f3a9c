"""Risk arithmetic on an account snapshot, shared by the heuristic planner and the guardrails."""

from __future__ import annotations

import math
from typing import Any

from riskterm import symbols


def position(snapshot: dict[str, Any], symbol: str) -> dict[str, Any] | None:
    for pos in snapshot.get("positions") or []:
        if pos.get("symbol") == symbol and pos.get("qty"):
            return pos
    return None


def known_symbols(snapshot: dict[str, Any]) -> set[str]:
    syms = {p.get("symbol") for p in snapshot.get("positions") or []}
    syms |= {o.get("symbol") for o in snapshot.get("working_orders") or []}
    syms |= set(snapshot.get("price_history") or {})
    return {s for s in syms if s}


def reference_price(pos: dict[str, Any]) -> float | None:
    """The mark, else the average price."""
    for key in ("mark", "avg_price"):
        value = pos.get(key)
        if isinstance(value, int | float) and math.isfinite(value) and value > 0:
            return float(value)
    return None


def instrument_limit(limits: dict[str, Any], symbol: str) -> int | None:
    """max_contracts_per_instrument limit for a symbol (a contract month falls back to its root)."""
    rule = limits.get("max_contracts_per_instrument")
    if not rule:
        return None
    found = symbols.lookup(rule.get("limits") or {}, symbol)
    if found is not None:
        return int(found)
    if rule.get("default_limit") is not None:
        return int(rule["default_limit"])
    return 0 if rule.get("unknown_symbol") == "block" else None


def daily_loss_limit(snapshot: dict[str, Any]) -> tuple[float, str, float] | None:
    """The tightest daily loss limit: (limit in money, < 0; rule id; warn fraction)."""
    limits = snapshot.get("limits") or {}
    found: list[tuple[float, str, float]] = []
    realized = limits.get("daily_realized_loss")
    if realized and realized.get("limit") is not None:
        found.append((float(realized["limit"]), "daily_realized_loss",
                      float(realized.get("warn_at") or 0.8)))
    total = limits.get("daily_total_loss")
    if total:
        warn = float(total.get("warn_at") or 0.8)
        if total.get("limit") is not None:
            found.append((float(total["limit"]), "daily_total_loss", warn))
        start = snapshot.get("start_balance")
        if total.get("limit_pct") is not None and start:
            found.append((-float(total["limit_pct"]) * float(start), "daily_total_loss", warn))
    return max(found, key=lambda f: f[0]) if found else None


def daily_pnl(snapshot: dict[str, Any]) -> float:
    """Realized plus open P&L of the trading day."""
    return float(snapshot.get("realized_pnl") or 0.0) + float(snapshot.get("unrealized_pnl") or 0.0)


def round_to_tick(price: float, tick: float | None, *, up: bool) -> float:
    """Round onto the tick grid (or to cents when the tick size is unknown)."""
    step = tick if tick and tick > 0 else 0.01
    n = price / step
    n = math.ceil(n - 1e-9) if up else math.floor(n + 1e-9)
    return round(n * step, 10)
