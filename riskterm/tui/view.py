"""What the dashboard shows, computed from the engine's state as plain values (no Textual here).

Every flush reads the engine directly: that *is* the "latest value per key" fold, since the
engine holds only the latest state. Rows are tuples of plain values so a table can compare them
with the previous flush and touch only the cells that changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from riskterm.account import AccountState
    from riskterm.engine import Engine


class AccountRow(NamedTuple):
    account: str
    state: str
    balance: float | None
    equity: float | None
    realized: float
    unrealized: float
    total: float
    limit_used: float | None  # fraction of the daily loss limit used, None without such a rule
    lockout: str | None  # the rules locking the account, the longest lasting first: "a, b"
    lockout_until: float | None
    permanent: bool


class PositionRow(NamedTuple):
    account: str
    symbol: str
    qty: int
    avg_price: float
    mark: float | None
    unrealized: float
    stop: float | None  # the working stop on the closing side (nearest), None without one
    opened: float | None  # engine seconds the position has been open


def _cents(value: float) -> float:
    return round(value, 2)


def daily_limit_used(acct: AccountState) -> float | None:
    """How much of the daily loss limit the day's P&L has used (0.5 = half, 1.0 = reached).

    The larger of daily_total_loss (realized + unrealized against its effective limit, which can
    be a share of the start-of-day balance) and daily_realized_loss; None when neither applies.
    """
    fractions: list[float] = []
    realized = acct.realized
    total = realized + acct.unrealized
    params = acct.rules.get("daily_total_loss")
    if params is not None:
        limit = params.effective_limit(acct.sod_balance)
        if limit:
            fractions.append(max(0.0, -total) / abs(limit))
    params = acct.rules.get("daily_realized_loss")
    if params is not None and params.limit:
        fractions.append(max(0.0, -realized) / abs(params.limit))
    return max(fractions) if fractions else None


def account_row(engine: Engine, acct: AccountState) -> AccountRow:
    unrealized = acct.unrealized
    locks = engine.lockouts.active(acct.name)
    lockout = None
    lock_until = None
    permanent = False
    if locks:
        # the lockout that lasts longest decides when the account trades again
        main = max(locks, key=lambda lk: float("inf") if lk.until is None else lk.until)
        rules = [main.rule, *sorted({lk.rule for lk in locks} - {main.rule})]
        lockout = ", ".join(rules)  # every one named, never "rule +1"
        lock_until = main.until
        permanent = main.until is None
    # an account the broker no longer reports is kept but neither judged nor enforced (§9)
    state = acct.state if acct.reported else "unreported"
    return AccountRow(
        acct.name, state, acct.balance, acct.live_equity, _cents(acct.realized),
        _cents(unrealized), _cents(acct.realized + unrealized),
        None if (used := daily_limit_used(acct)) is None else round(used, 3),
        lockout, lock_until, permanent,
    )


def account_rows(engine: Engine) -> dict[str, AccountRow]:
    return {name: account_row(engine, engine.accounts[name]) for name in sorted(engine.accounts)}


def position_rows(engine: Engine, account: str | None = None) -> dict[str, PositionRow]:
    """The open positions of every account, or of `account` alone."""
    now = engine.now()
    rows: dict[str, PositionRow] = {}
    names = sorted(engine.accounts) if account is None else (
        [account] if account in engine.accounts else [])
    for name in names:
        acct = engine.accounts[name]
        for symbol in sorted(acct.positions):
            pos = acct.positions[symbol]
            if not pos.qty:
                continue
            closing = "sell" if pos.qty > 0 else "buy"
            stops = [o.stop_price for o in acct.orders.values()
                     if o.symbol == symbol and o.side == closing and o.is_stop
                     and o.stop_price is not None]
            stop = None
            if stops:
                stop = max(stops) if pos.qty > 0 else min(stops)
            opened = None if pos.opened_ts is None else int(max(0.0, now - pos.opened_ts))
            rows[position_key(name, symbol)] = PositionRow(
                name, symbol, pos.qty, round(pos.avg_price, 6), pos.mark, _cents(pos.unrealized),
                stop, opened,
            )
    return rows


def position_key(account: str, symbol: str) -> str:
    return f"{account}\x1f{symbol}"


def account_of_position_key(key: str) -> str:
    return key.split("\x1f", 1)[0]


# -- records -------------------------------------------------------------------------------

#: severity of a record in the live feed, most severe first
SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "dark_orange",
    "low": "yellow",
    "info": "green",
}
_HIGH_ACTIONS = {"flatten", "close_position", "reduce_position"}


def severity(rec: dict[str, Any]) -> str | None:
    """How the feed colours a record; None for records the feed does not show."""
    kind = rec.get("kind")
    if kind == "lockout":
        return "critical" if rec.get("state") == "halted" else "high"
    if kind == "violation":
        return "high" if _HIGH_ACTIONS.intersection(rec.get("action") or ()) else "medium"
    if kind == "warning":
        return "low"
    if kind == "unlock":
        return "info"
    if kind == "enforcement" and rec.get("status") == "failed":
        return "high"
    return None


# -- rules -----------------------------------------------------------------------------------

RULE_STATES = ("armed", "warning", "breached", "off")


def rule_states(
    engine: Engine, rules: list[str], accounts: list[str]
) -> dict[str, tuple[str, ...]]:
    """rule id -> the state for each account, in `accounts` order (one pass over fired/warned)."""
    fired: set[tuple[str, str]] = {(k[0], k[1]) for k in engine.fired}
    warned: set[tuple[str, str]] = {(k[0], k[1]) for k in engine.warned}
    locked: set[tuple[str, str]] = {(lk.rule, lk.account) for lk in engine.lockouts.all()}
    out: dict[str, tuple[str, ...]] = {}
    for rule in rules:
        states = []
        for name in accounts:
            acct = engine.accounts.get(name)
            if acct is None or rule not in acct.rules:
                states.append("off")
            elif (rule, name) in locked or (rule, name) in fired:
                states.append("breached")
            elif (rule, name) in warned:
                states.append("warning")
            else:
                states.append("armed")
        out[rule] = tuple(states)
    return out
