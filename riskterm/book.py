"""The position and P&L book: positions per (account, symbol) from fills at average cost.

Money is in account currency: price differences times contracts times the symbol's point value.
"""

from __future__ import annotations

from typing import Any


class Position:
    """One (account, symbol) position; qty is signed (+ long, - short)."""

    __slots__ = ("account", "avg_price", "mark", "opened_ts", "point_value", "qty", "symbol")

    def __init__(self, account: str, symbol: str, point_value: float) -> None:
        self.account = account
        self.symbol = symbol
        self.point_value = point_value
        self.qty = 0
        self.avg_price = 0.0
        self.mark: float | None = None
        self.opened_ts: float | None = None

    def apply_fill(self, side: str, qty: int, price: float, ts: float) -> float:
        """Apply an execution; returns the realized P&L (before fees) it closed."""
        signed = qty if side == "buy" else -qty
        old = self.qty
        if old == 0 or (old > 0) == (signed > 0):
            new = old + signed
            self.avg_price = (self.avg_price * abs(old) + price * qty) / abs(new)
            self.qty = new
            if old == 0:
                self.opened_ts = ts
            return 0.0
        closing = min(qty, abs(old))
        direction = 1 if old > 0 else -1
        realized = (price - self.avg_price) * closing * direction * self.point_value
        new = old + signed
        self.qty = new
        if new == 0:
            self.avg_price = 0.0
            self.opened_ts = None
        elif (new > 0) != (old > 0):  # reversed through flat: the remainder opens at this price
            self.avg_price = price
            self.opened_ts = ts
        return realized

    def set_size(self, qty: int, avg_price: float | None, ts: float) -> None:
        """Take the broker's view of the position (it is authoritative for size)."""
        if qty == 0:
            self.avg_price = 0.0
            self.opened_ts = None
        else:
            if self.qty == 0 or (self.qty > 0) != (qty > 0):
                self.opened_ts = ts
            if avg_price is not None:
                self.avg_price = float(avg_price)
            elif self.qty == 0 or (self.qty > 0) != (qty > 0):
                self.avg_price = self.mark if self.mark is not None else self.avg_price
        self.qty = qty

    @property
    def unrealized(self) -> float:
        if self.qty == 0 or self.mark is None:
            return 0.0
        return (self.mark - self.avg_price) * self.qty * self.point_value

    @property
    def notional(self) -> float:
        price = self.mark if self.mark is not None else self.avg_price
        return abs(self.qty) * price * self.point_value

    def to_row(self) -> tuple[str, str, int, float, float | None]:
        return (self.account, self.symbol, self.qty, self.avg_price, self.opened_ts)


class Order:
    """A working order; qty is what remains to be filled."""

    __slots__ = ("order_id", "order_type", "price", "qty", "side", "stop_price", "symbol", "ts")

    def __init__(self, ev: dict[str, Any]) -> None:
        self.order_id: str = ev["order_id"]
        self.symbol: str = ev["symbol"]
        self.side: str = ev["side"]
        self.qty: int = ev["qty"]
        self.order_type: str = ev["order_type"]
        self.price: float | None = ev.get("price")
        self.stop_price: float | None = ev.get("stop_price")
        self.ts: float = ev["ts"]

    @property
    def is_stop(self) -> bool:
        return self.order_type in ("stop", "stop_limit")

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "symbol": self.symbol,
            "side": self.side,
            "qty": self.qty,
            "order_type": self.order_type,
            "price": self.price,
            "stop_price": self.stop_price,
        }
