"""The heuristic planner: offline, deterministic risk logic.

Decisions, in this order (positions by symbol):
1. A position over its max_contracts_per_instrument limit is reduced to the limit (closed when
   the limit is 0); then, if the account is over max_contracts (net or gross), the largest
   positions (on the net side, for net) are cut until it is within the limit.
2. When the day's P&L (realized + open) has reached warn_at (default 0.8) of the tightest daily
   loss limit (daily_realized_loss, daily_total_loss), the worst losing position is closed.
3. Every position that stays open and has no working stop on its closing side gets a
   protective stop. Its distance from the mark is the smaller of 1.5x the range of the last 20
   marks and the distance at which the position would lose half the money left before the daily
   loss limit; with neither, 0.5 % of the price. It is at least 2 ticks and is rounded onto the
   tick grid (when the snapshot gives tick_size, else to cents) toward the mark, so the risk
   never exceeds the budget. A halted account gets no new orders (they would be cancelled).

Iteration 1 reads the account with the information tools; iteration 2 proposes and finishes
(both at once when max_iterations is 1).
"""

from __future__ import annotations

from typing import Any

from riskterm.jobs import risk
from riskterm.jobs.actions import describe
from riskterm.jobs.planners import ToolCall, Turn


class HeuristicPlanner:
    name = "heuristic"
    model_used = "heuristic"

    def __init__(self, config: Any) -> None:
        self.step_delay = float(config.step_delay_seconds)
        self.snapshot: dict[str, Any] = {}
        self.max_iterations = 1

    def begin(self, state: dict[str, Any], max_iterations: int) -> None:
        self.snapshot = state["snapshot"]
        self.max_iterations = max_iterations

    async def next_turn(self, iteration: int) -> Turn:
        calls: list[ToolCall] = []
        if iteration == 1:
            names = ["get_positions", "get_working_orders", "get_pnl_and_limits",
                     "get_recent_violations"]
            calls += [ToolCall(f"h{iteration}-{i}", n, {}) for i, n in enumerate(names)]
            for pos in _open_positions(self.snapshot):
                calls.append(ToolCall(f"h{iteration}-{len(calls)}", "get_price_history",
                                      {"symbol": pos["symbol"]}))
        if iteration >= 2 or self.max_iterations == 1:
            proposals, summary = plan(self.snapshot)
            for action, args in proposals:
                calls.append(ToolCall(f"h{iteration}-{len(calls)}", action, args))
            calls.append(ToolCall(f"h{iteration}-{len(calls)}", "finish", {"summary": summary}))
        return Turn(calls)

    def observe(self, turn: Turn, results: list[tuple[bool, str]]) -> None:
        pass

    async def aclose(self) -> None:
        pass


def _open_positions(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted((p for p in snapshot.get("positions") or [] if p.get("qty")),
                  key=lambda p: p["symbol"])


def plan(snapshot: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """The proposals (tool name, arguments) for a snapshot, and a summary."""
    positions = _open_positions(snapshot)
    if not positions:
        return [], "no open positions: nothing to protect"
    limits = snapshot.get("limits") or {}
    held = {p["symbol"]: abs(int(p["qty"])) for p in positions}
    cuts: dict[str, int] = {}
    why: dict[str, list[str]] = {}
    notes: list[str] = []

    def cut(symbol: str, qty: int, reason: str) -> None:
        cuts[symbol] = min(held[symbol], cuts.get(symbol, 0) + qty)
        why.setdefault(symbol, []).append(reason)

    for p in positions:
        sym = p["symbol"]
        lim = risk.instrument_limit(limits, sym)
        if lim is not None and held[sym] > lim:
            cut(sym, held[sym] - lim, f"holds {held[sym]} {sym}, over the "
                f"max_contracts_per_instrument limit of {lim}")
    _account_limit(positions, limits, held, cuts, cut)
    loss = risk.daily_loss_limit(snapshot)
    if loss is not None:
        limit, rule, warn = loss
        pnl = round(risk.daily_pnl(snapshot), 2)
        if pnl <= round(warn * limit, 2):
            losers = [p for p in positions if (p.get("unrealized_pnl") or 0) < 0
                      and cuts.get(p["symbol"], 0) < held[p["symbol"]]]
            if losers:
                worst = min(losers, key=lambda p: (p["unrealized_pnl"], p["symbol"]))
                sym = worst["symbol"]
                cut(sym, held[sym], f"the day's P&L {pnl:.2f} is at {pnl / limit:.0%} of the "
                    f"{rule} limit {limit:.2f}; {sym} is the worst loser "
                    f"({worst['unrealized_pnl']:.2f})")
            else:
                notes.append(f"the day's P&L {pnl:.2f} is near the {rule} limit {limit:.2f}, "
                             "but no open position is losing")
    proposals: list[tuple[str, dict[str, Any]]] = []
    for sym in sorted(cuts):
        reason = "; ".join(why[sym])
        if cuts[sym] >= held[sym]:
            proposals.append(("close_position", {"symbol": sym, "reason": reason,
                                                 "confidence": 0.9}))
        else:
            proposals.append(("reduce_position", {"symbol": sym, "qty": cuts[sym],
                                                  "reason": reason, "confidence": 0.9}))
    for p in positions:
        sym = p["symbol"]
        if cuts.get(sym, 0) >= held[sym] or p.get("stops"):
            continue
        if snapshot.get("state") == "halted":
            notes.append(f"{sym} has no protective stop, but the account is halted")
            continue
        stop = _stop_price(p, held[sym] - cuts.get(sym, 0), snapshot, loss)
        if stop is None:
            notes.append(f"{sym} has no protective stop and no known price to set one")
            continue
        price, basis = stop
        side = "long" if p["qty"] > 0 else "short"
        proposals.append(("set_stop_loss", {
            "symbol": sym, "price": price, "confidence": 0.8,
            "reason": f"no protective stop on the {side} {held[sym]} {sym}; stop at {price:g} "
                      f"({basis})"}))
    return proposals, _summary(snapshot, proposals, notes)


def _account_limit(positions: list[dict[str, Any]], limits: dict[str, Any],
                   held: dict[str, int], cuts: dict[str, int], cut: Any) -> None:
    rule = limits.get("max_contracts")
    if not rule or rule.get("limit") is None:
        return
    limit = int(rule["limit"])
    left = {p["symbol"]: held[p["symbol"]] - cuts.get(p["symbol"], 0) for p in positions}
    sign = {p["symbol"]: 1 if p["qty"] > 0 else -1 for p in positions}
    if rule.get("count") == "gross":
        excess = sum(left.values()) - limit
        side = list(left)
    else:
        net = sum(left[s] * sign[s] for s in left)
        excess = abs(net) - limit
        side = [s for s in left if sign[s] * net > 0]
    for sym in sorted(side, key=lambda s: (-left[s], s)):
        if excess <= 0:
            break
        n = min(excess, left[sym])
        if n > 0:
            cut(sym, n, f"the account holds {excess + limit} contracts "
                f"({rule.get('count') or 'net'}), over the max_contracts limit of {limit}")
            excess -= n


def _stop_price(pos: dict[str, Any], qty: int, snapshot: dict[str, Any],
                loss: tuple[float, str, float] | None) -> tuple[float, str] | None:
    ref = risk.reference_price(pos)
    if ref is None or qty <= 0:
        return None
    point_value = float(pos.get("point_value") or 1.0)
    tick = pos.get("tick_size")
    tick = float(tick) if isinstance(tick, int | float) and tick > 0 else None
    marks = [m for m in ((snapshot.get("price_history") or {}).get(pos["symbol"]) or [])[-20:]
             if isinstance(m, int | float)]
    options: list[tuple[float, str]] = []
    if len(marks) >= 2 and max(marks) > min(marks):
        options.append((1.5 * (max(marks) - min(marks)),
                        f"1.5x the range of the last {len(marks)} marks"))
    if loss is not None:
        room = risk.daily_pnl(snapshot) - loss[0]
        if room > 0:
            options.append((0.5 * room / (qty * point_value),
                            f"risks half of the {room:.2f} left before the {loss[1]} limit"))
    dist, basis = min(options) if options else (0.005 * ref, "0.5% of the price")
    dist = max(dist, 2 * tick) if tick else dist
    step = tick or 0.01
    if pos["qty"] > 0:
        price = risk.round_to_tick(ref - dist, tick, up=True)
        if price >= ref:
            price = risk.round_to_tick(ref - step, tick, up=False)
    else:
        price = risk.round_to_tick(ref + dist, tick, up=False)
        if price <= ref:
            price = risk.round_to_tick(ref + step, tick, up=True)
    return (price, basis) if price > 0 else None


def _summary(snapshot: dict[str, Any], proposals: list[tuple[str, dict[str, Any]]],
             notes: list[str]) -> str:
    account = snapshot.get("account")
    if proposals:
        text = f"{len(proposals)} proposal(s) for {account}: " + ", ".join(
            describe({"action": a, "arguments": args}) for a, args in proposals)
    else:
        text = f"no action needed for {account}: positions are protected and within limits"
    return text + ("; " + "; ".join(notes) if notes else "")
