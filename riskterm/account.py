"""Per-account state the engine keeps: balances, the day's P&L, positions, working orders."""

from __future__ import annotations

from typing import Any

from riskterm.book import Order, Position

# Trade ids remembered per account, to ignore a fill delivered twice (CONTRACT section 1): the
# ids of the current trading day and of the last earlier day with fills. A re-sync after a
# reconnect or a restart replays the trades since the last one applied, minutes and at most a
# weekend back, so two trading days cover it; an account with more than TRADE_IDS_PER_SET fills
# in a day rotates early, keeping at least that many of the latest ids and at most twice as
# many. The row is re-serialised with each commit that changes the account, so it stays small.
TRADE_IDS_PER_SET = 10_000


class AccountState:
    __slots__ = (
        "balance",
        "cash_moved",
        "drift",
        "equity",
        "name",
        "orders",
        "positions",
        "quote_gate",
        "quote_rules",
        "realized",
        "reported",
        "rule_state",
        "rules",
        "slack",
        "sod_balance",
        "sod_from_event",
        "stale",
        "state",
        "trade_ids",
        "trade_ids_before",
        "trading_day",
    )

    def __init__(self, name: str, rules: dict[str, Any]) -> None:
        self.name = name
        self.rules = rules  # rule id -> effective params for this account (enabled only)
        self.positions: dict[str, Position] = {}
        self.orders: dict[str, Order] = {}
        self.balance: float | None = None
        self.equity: float | None = None
        self.sod_balance: float | None = None  # start-of-day balance
        self.sod_from_event = False  # set by the first `account` event of the trading day
        self.realized = 0.0  # realized P&L of the trading day, after fees
        # `cash` events' amounts since the last daily reset: in the balance, not in the P&L
        self.cash_moved = 0.0
        self.trading_day: str | None = None
        self.state = "active"  # active / reducing / halted, derived from lockouts
        # False: restored, but the broker's last re-sync did not report it (CONTRACT section 9):
        # kept in the database, neither judged nor enforced until an event names it again
        self.reported = True
        self.rule_state: dict[str, Any] = {}  # per-rule counters that must survive a restart
        self.trade_ids: set[str] = set()  # applied fills' trade ids: this trading day's
        self.trade_ids_before: set[str] = set()  # the last earlier day's (or the first batch)
        # quote gate (Engine._quote_rules): [rule, params, due] per quote rule; `drift` sums
        # how far marks moved this account's P&L, `slack` is the smallest `due`, and `stale`
        # asks for every quote rule on the next quote (after any other event)
        self.quote_rules: list[list[Any]] = []
        self.quote_gate: dict[str, list[Any]] = {}
        self.slack = 0.0
        self.drift = 0.0
        self.stale = True

    @property
    def unrealized(self) -> float:
        return sum(p.unrealized for p in self.positions.values() if p.qty)

    @property
    def live_equity(self) -> float | None:
        """Equity as reported by the broker, else balance plus open P&L."""
        if self.equity is not None:
            return self.equity
        if self.balance is not None:
            return self.balance + self.unrealized
        return None

    def has_stop(self, symbol: str, qty: int) -> bool:
        """Is a stop or stop_limit working on the closing side of a position of `qty`?"""
        closing = "sell" if qty > 0 else "buy"
        return any(
            o.symbol == symbol and o.side == closing and o.is_stop for o in self.orders.values()
        )

    def seen_trade(self, trade_id: str) -> bool:
        """Was a fill with this trade id already applied to this account?"""
        return trade_id in self.trade_ids or trade_id in self.trade_ids_before

    def add_trade(self, trade_id: str) -> None:
        if len(self.trade_ids) >= TRADE_IDS_PER_SET:
            self._rotate_trades()
        self.trade_ids.add(trade_id)

    def _rotate_trades(self) -> None:
        self.trade_ids_before = self.trade_ids
        self.trade_ids = set()

    def new_day(self, day: str) -> None:
        if self.trade_ids:  # a day without fills keeps the last day with fills
            self._rotate_trades()
        self.trading_day = day
        self.realized = 0.0
        self.cash_moved = 0.0
        self.sod_balance = self.balance
        self.sod_from_event = False

    def to_json(self) -> dict[str, Any]:
        return {
            "balance": self.balance,
            "equity": self.equity,
            "sod_balance": self.sod_balance,
            "sod_from_event": self.sod_from_event,
            "realized": self.realized,
            "cash_moved": self.cash_moved,
            "trading_day": self.trading_day,
            "rule_state": self.rule_state,
            "reported": self.reported,
            "orders": [o.to_dict() | {"ts": o.ts} for o in self.orders.values()],
            "trade_ids": list(self.trade_ids),
            "trade_ids_before": list(self.trade_ids_before),
        }

    def load_json(self, data: dict[str, Any]) -> None:
        self.balance = data.get("balance")
        self.equity = data.get("equity")
        self.sod_balance = data.get("sod_balance")
        self.sod_from_event = bool(data.get("sod_from_event"))
        self.realized = float(data.get("realized") or 0.0)
        self.cash_moved = float(data.get("cash_moved") or 0.0)
        self.trading_day = data.get("trading_day")
        self.rule_state = dict(data.get("rule_state") or {})
        self.reported = data.get("reported") is not False
        self.trade_ids = {str(t) for t in data.get("trade_ids") or ()}
        self.trade_ids_before = {str(t) for t in data.get("trade_ids_before") or ()}
        for od in data.get("orders") or []:
            order = Order(od)
            self.orders[order.order_id] = order
