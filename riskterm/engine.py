"""The risk engine: a synchronous core fed one event at a time.

It keeps the book, runs timers on the engine clock, dispatches events to the rules registered
for their kind, and turns violations into enforcements and lockouts. It never awaits: records
and state changes collect in memory and the recorder (riskterm.recorder) commits them in batches;
a record is reported only after its commit.
"""

from __future__ import annotations

import heapq
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from riskterm.account import AccountState
from riskterm.book import Order, Position
from riskterm.brokers.base import Broker, Snapshot
from riskterm.calendar import TradingCalendar
from riskterm.config import RulesConfig
from riskterm.confirmations import Confirmations
from riskterm.enforcement import PENDING, Enforcer
from riskterm.events import BelowZero
from riskterm.lockouts import Lockout, LockoutBook
from riskterm.rules import rule_classes
from riskterm.rules.base import Rule
from riskterm.rules.params import format_duration
from riskterm.timefmt import iso

EnqueueJob = Callable[..., tuple[str, bool]]


@dataclass(frozen=True)
class _LockSpec:
    kind: str
    seconds: float | None = None


NO_LOCKOUT = _LockSpec("none")
INF = float("inf")
PRICE_HISTORY = 50
EQUITY_EVERY = 60.0  # seconds of engine time between two equity samples of an account
CATCH_UP = 3 * 86400.0  # a clock jump longer than this collapses recurring calendar timers


@dataclass
class Changes:
    """What the engine changed since the last commit, for the recorder to write in one go."""

    records: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[tuple[str, str]] = field(default_factory=list)
    positions: list[tuple[str, str, int, float, float | None]] = field(default_factory=list)
    lockouts_added: list[Lockout] = field(default_factory=list)
    lockouts_lifted: list[tuple[int, float, str]] = field(default_factory=list)
    engine_state: str | None = None
    cursor: int | None = None  # last input line processed (replays), committed with the rest
    fills: list[tuple[Any, ...]] = field(default_factory=list)  # the fills table's rows
    equity: list[tuple[Any, ...]] = field(default_factory=list)  # the equity table's rows

    def __bool__(self) -> bool:
        return bool(
            self.records or self.fills or self.equity or self.accounts or self.positions
            or self.lockouts_added
            or self.lockouts_lifted or self.engine_state is not None or self.cursor is not None
        )


@dataclass
class RestoredState:
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    positions: list[tuple[str, str, int, float, float | None]] = field(default_factory=list)
    lockouts: list[Lockout] = field(default_factory=list)
    engine_state: dict[str, Any] = field(default_factory=dict)


class Engine:
    def __init__(
        self,
        config: RulesConfig,
        broker: Broker,
        *,
        live: bool = False,
        wall: Callable[[], float] = time.time,
        enqueue_job: EnqueueJob | None = None,
    ) -> None:
        self.broker = broker
        self.live = live
        self.is_replay = not live
        self.wall = wall
        self.enqueue_job = enqueue_job
        self.enforcer = Enforcer(self)
        # enforcements a live broker has yet to confirm (riskterm.confirmations); while any
        # waits, the records from it on and every state change wait with it (take_changes)
        self.confirmations = Confirmations()
        self._adopting: set[str] = set()  # accounts a snapshot introduces (resync)
        # history for exports and reports: fills as applied, and each account's equity every
        # EQUITY_EVERY seconds of engine time when it moved
        self._fills: list[tuple[Any, ...]] = []
        self._equity: list[tuple[Any, ...]] = []
        self._sampled: dict[str, tuple[float | None, float]] = {}  # last (equity, realized)
        self._advancing_to = 0.0  # the `now` advance() is moving the clock to
        self.accounts: dict[str, AccountState] = {}
        self.marks: dict[str, float] = {}
        self.holders: dict[str, dict[str, Position]] = {}  # symbol -> account -> open position
        self.history: dict[str, deque[float]] = {}
        self.recent_violations: deque[dict[str, Any]] = deque(maxlen=200)
        self.lockouts = LockoutBook()
        self.clock: float = 0.0
        self.started = False
        self.trading_day: str | None = None
        self._timers: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self._seq = 0
        self._rearm_floor = 0.0
        self.fired: set[tuple[str, str, str | None]] = set()
        self.warned: set[tuple[str, str, str | None]] = set()
        # account -> its keys in fired or warned (a superset, pruned when saved): the keys are
        # saved with the account's row, so a commit writes the accounts that changed, never
        # every key of every account
        self._edge_keys: dict[str, set[tuple[str, str, str | None]]] = {}
        self._legacy_edge: dict[str, list[Any]] = {}  # older databases' keys of unloaded accounts
        self._unknown_symbols: set[str] = set()
        # called with the new time before the clock moves (the dashboard samples P&L there)
        self.watch_clock: Callable[[float], None] | None = None
        self.gate_quotes = True  # False: every quote re-runs every quote rule (tests compare)
        # pending changes for the recorder
        self._records: list[dict[str, Any]] = []
        self._dirty_accounts: set[str] = set()
        self._dirty_positions: set[tuple[str, str]] = set()
        self._lock_added: list[Lockout] = []
        self._lock_lifted: list[tuple[int, float, str]] = []
        self._state_dirty = False
        self._marks_dirty = False
        self._stamp_clock, self._stamp = -INF, ""
        self.cursor = 0  # the replay's last processed line; the host sets it
        self._cursor_saved = 0
        # counters for the summary
        self.n_events = 0
        self.n_rejected = 0
        self.n_violations = 0
        self.n_warnings = 0
        self.n_enforcements = 0
        self.n_duplicate_fills = 0  # fills ignored as a trade id already applied
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "account": self._on_account,
            "order_placed": self._on_order_placed,
            "order_updated": self._on_order_updated,
            "order_cancelled": self._on_order_gone,
            "order_rejected": self._on_order_gone,
            "fill": self._on_fill,
            "position": self._on_position,
            "quote": self._on_quote,
            "connection": self._on_connection,
            "clock": self._on_clock,
            "cash": self._on_cash,
        }
        self.rules: dict[str, Rule] = {}
        self.dispatch: dict[str, list[Rule]] = {}
        self.set_config(config)

    # -- configuration -------------------------------------------------------------------------

    def set_config(self, config: RulesConfig) -> None:
        """Apply a (re)loaded rules file; rule state that still makes sense is kept."""
        self.config = config
        self.calendar = TradingCalendar(config.tz, config.daily_reset, config.session)
        enabled = config.enabled_rule_ids()
        classes = rule_classes()
        old_rules = self.rules
        self.rules = {
            rid: self.rules.get(rid) or cls(self) for rid, cls in classes.items() if rid in enabled
        }
        dispatch: dict[str, list[Rule]] = {}
        for rule in self.rules.values():
            for etype in rule.events:
                dispatch.setdefault(etype, []).append(rule)
        self.dispatch = dispatch
        for acct in self.accounts.values():
            acct.rules = config.rules_for(acct.name)
            self._gate(acct)
            for pos in acct.positions.values():
                pos.point_value = self._point_value(acct.name, pos.symbol)
        if self.started:
            for rid, rule in self.rules.items():
                start = getattr(rule, "on_start", None)
                if old_rules.get(rid) is not rule and start is not None:
                    start()  # a rule enabled by a reload arms its timers now
        if self.started and self._timers:
            # calendar-derived timers (daily reset) are re-armed from the new calendar
            self._timers = [t for t in self._timers if t[2] != self._daily_reset]
            heapq.heapify(self._timers)
            self.schedule(self.calendar.next_reset(self.clock), self._daily_reset)

    # -- restore -------------------------------------------------------------------------------

    def restore(self, state: RestoredState) -> None:
        for name, data in state.accounts.items():
            acct = self._account(name)
            acct.load_json(data)
        es = state.engine_state
        self.marks = {str(k): float(v) for k, v in (es.get("marks") or {}).items()}
        self._unknown_symbols = set(es.get("unknown_symbols") or ())
        # holders in the order they opened, as in the run that wrote them
        for account, symbol, qty, avg, opened in sorted(
            state.positions, key=lambda row: (row[4] is None, row[4] or 0.0)
        ):
            pos = self._position(self._account(account), symbol)
            pos.qty, pos.avg_price, pos.opened_ts = qty, avg, opened
            pos.mark = self.marks.get(symbol)
            if qty:
                self.holders.setdefault(symbol, {})[account] = pos
        for lk in state.lockouts:
            self.lockouts.add(lk)
            if lk.until is not None:
                self.schedule(lk.until, self._expire_lockout, lk)
        for name in {lk.account for lk in state.lockouts}:
            self._account(name).state = self.lockouts.state(name)
        self.lockouts.next_id = max(self.lockouts.next_id, int(es.get("next_lockout_id", 1)))
        # edge state: with each account's row (older databases: all of it in engine_state)
        self.fired = {tuple(k) for k in es.get("fired", [])}  # type: ignore[misc]
        self.warned = {tuple(k) for k in es.get("warned", [])}  # type: ignore[misc]
        for name, data in state.accounts.items():
            self.fired.update((rule, name, sym) for rule, sym in data.get("fired") or ())
            self.warned.update((rule, name, sym) for rule, sym in data.get("warned") or ())
        self._edge_keys = {}
        for key in self.fired | self.warned:
            self._edge_keys.setdefault(key[1], set()).add(key)
        self.trading_day = es.get("trading_day")
        for acct in self.accounts.values():
            acct.stale = True  # judged afresh at the next quote: the gate knows nothing restored
        self._dirty_accounts.clear()
        self._dirty_positions.clear()
        if "fired" in es or "warned" in es:  # an older database: move the keys to the rows
            self._state_dirty = True
            self._dirty_accounts.update(n for n in self._edge_keys if n in self.accounts)
            # ... of the accounts loaded here; those left out (--accounts) keep theirs in
            # engine_state until an engine that loads them moves them
            self._legacy_edge = {
                kind: [k for k in es.get(kind) or () if k[1] not in self.accounts]
                for kind in ("fired", "warned")}

    # -- re-sync -------------------------------------------------------------------------------

    def resync(self, snap: Snapshot) -> list[str]:
        """Take the broker's view on a connect (CONTRACT section 9); returns the accounts known
        here that it does not report.

        Positions and orders the book has and the snapshot does not list are dropped: no rule
        judges that and nothing is enforced, they no longer exist (one `resync` warning per
        reported account names them). Unreported accounts keep their rows and lockouts but are
        neither judged nor enforced until an event names them. Then the snapshot is applied as
        section 1's events: account, position (a size the book disagrees with is
        position_drift), order_placed for orders not known here, order_updated for changed ones.
        """
        counted = self.n_events  # the snapshot states what exists; it is not the stream's events
        now = self.wall() if self.live else snap.ts
        if not self.started or now > self.clock:
            self.advance(now)  # the drops below are stamped on the engine clock
        names = {a["account"] for a in snap.accounts}
        names.update(p["account"] for p in snap.positions)
        names.update(o["account"] for o in snap.orders)
        held: dict[str, set[str]] = {}
        for p in snap.positions:
            if p["qty"]:
                held.setdefault(p["account"], set()).add(p["symbol"])
        working: dict[str, set[str]] = {}
        for o in snap.orders:
            working.setdefault(o["account"], set()).add(o["order_id"])
        unreported = []
        for name in sorted(self.accounts):
            acct = self.accounts[name]
            if name in names:
                self._drop(acct, held.get(name, set()), working.get(name, set()), now)
                continue
            unreported.append(name)
            if acct.reported:
                acct.reported = False
                self._dirty_accounts.add(name)
            self._drop(acct, set(), set(), None)
        ts = now
        # an account new to this book has nothing its positions could drift from: adopted
        self._adopting = names - self.accounts.keys()
        for a in snap.accounts:
            self.process({**a, "type": "account", "ts": ts})
        for p in snap.positions:
            self.process({**p, "type": "position", "ts": ts})
        self._adopting = set()
        for o in snap.orders:
            acct = self.accounts.get(o["account"])
            known = acct.orders.get(o["order_id"]) if acct is not None else None
            if known is None:
                self.process({**o, "type": "order_placed", "ts": ts})
                continue
            changed = {k: o[k] for k in ("qty", "price", "stop_price")
                       if k in o and o[k] != getattr(known, k)}
            if changed:
                self.process({"type": "order_updated", "ts": ts, "account": o["account"],
                              "order_id": o["order_id"], **changed})
        for acct in self.accounts.values():
            acct.stale = True  # the quote gate judged another book: every quote rule runs again
        self.n_events = counted
        return unreported

    def _drop(self, acct: AccountState, symbols: set[str], order_ids: set[str],
              ts: float | None) -> None:
        """Forget acct's positions outside `symbols` and orders outside `order_ids`; `ts` given
        (a reported account): the orders go as order_cancelled events and one warning names
        what went, else silently."""
        name = acct.name
        gone = []
        for symbol, pos in acct.positions.items():
            if pos.qty and symbol not in symbols:
                gone.append(f"{symbol} {pos.qty:+d}")
                pos.set_size(0, None, self.clock)
                self._track(pos)
                self.enforcer.settle(name, symbol=symbol, qty=0)
                for key in [k for k in self.fired if k[1] == name and k[2] == symbol]:
                    self.fired.discard(key)  # its condition went with the position
                    self._edge_changed(key)
        orders = [oid for oid in acct.orders if oid not in order_ids]
        if ts is None:
            for oid in orders:
                del acct.orders[oid]
                self.enforcer.settle(name, order_id=oid)
            if orders:
                self._dirty_accounts.add(name)
        else:
            for oid in orders:
                self.process({"type": "order_cancelled", "ts": ts, "account": name,
                              "order_id": oid})
            if gone or orders:
                what = []
                if gone:
                    what.append("positions " + ", ".join(gone))
                if orders:
                    what.append("working orders " + ", ".join(orders))
                self.emit_warning(
                    "resync", name, None,
                    f"the broker does not report {name}'s {' and '.join(what)}; dropped "
                    "from the book (not judged, nothing enforced)",
                    len(gone) + len(orders), None)

    # -- clock and timers ----------------------------------------------------------------------

    def schedule(self, due: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (due, self._seq, fn, arg))

    def _start(self, now: float) -> None:
        self.started = True
        self.clock = now
        day = self.calendar.trading_day(now).isoformat()
        if self.trading_day is not None and self.trading_day != day:
            self._clear_warnings()
            self._state_dirty = True
        self.trading_day = day
        for acct in self.accounts.values():
            if acct.trading_day != day:
                self._new_day(acct, day)
        self.schedule(self.calendar.next_reset(now), self._daily_reset)
        self.schedule(now + EQUITY_EVERY, self._sample_equity)
        for rule in self.rules.values():
            start = getattr(rule, "on_start", None)
            if start is not None:
                start()

    def advance(self, now: float) -> None:
        """Move the clock to `now`, firing every timer due on the way at its due time."""
        if self.watch_clock is not None:
            self.watch_clock(now)
        if not self.started:
            self._start(now)
        timers = self._timers
        # a jump of weeks (a gap in a recording, a bad clock): calendar timers that re-arm
        # themselves (daily reset, session end) fire once on the way and then re-arm from
        # shortly before `now` instead of stepping through every day in between
        self._rearm_floor = now - CATCH_UP if now - self.clock > CATCH_UP else 0.0
        self._advancing_to = now
        while timers and timers[0][0] <= now:
            due, _, fn, arg = heapq.heappop(timers)
            later = max(self.clock, due)
            self.clock = due
            fn(arg)
            self.clock = later
        self._rearm_floor = 0.0
        if now > self.clock:
            self.clock = now

    def sample_equity(self) -> None:
        """An equity sample of each account whose equity or realized P&L moved since its last
        one (the daily report's curve): every EQUITY_EVERY seconds, at each daily reset and
        when the engine stops."""
        for acct in self.accounts.values():
            if acct.reported:
                self._sample(acct)

    def _sample_equity(self, _: Any = None) -> None:
        """The EQUITY_EVERY timer. Across a gap in the clock it samples once on the way, not
        once per minute of the gap."""
        self.sample_equity()
        due = self.clock + EQUITY_EVERY
        self.schedule(due if due > self._advancing_to else self._advancing_to,
                      self._sample_equity)

    def _sample(self, acct: AccountState) -> None:
        equity = acct.live_equity
        key = (round(equity, 2) if equity is not None else None, round(acct.realized, 2))
        if self._sampled.get(acct.name) == key:
            return
        self._sampled[acct.name] = key
        self._equity.append((acct.name, self.clock, acct.balance, equity, key[1],
                             round(acct.unrealized, 2)))

    def rearm_from(self) -> float:
        """The instant a recurring calendar timer computes its next occurrence from."""
        return max(self.clock, self._rearm_floor)

    def _daily_reset(self, _: Any = None) -> None:
        self.sample_equity()  # the day's last point, before the new day's state
        day = self.calendar.trading_day(self.clock).isoformat()
        self.trading_day = day
        self._clear_warnings()
        self._state_dirty = True
        for acct in self.accounts.values():
            self._new_day(acct, day)
        self.schedule(self.calendar.next_reset(self.rearm_from()), self._daily_reset)

    def _gate(self, acct: AccountState) -> None:
        acct.quote_rules = [[r, acct.rules[r.id], 0.0] for r in self.dispatch.get("quote", ())
                            if r.id in acct.rules]
        acct.quote_gate = {entry[0].id: entry for entry in acct.quote_rules}
        acct.stale = True

    def _new_day(self, acct: AccountState, day: str) -> None:
        acct.stale = True
        acct.new_day(day)
        self._dirty_accounts.add(acct.name)
        for rule in self.rules.values():
            params = acct.rules.get(rule.id)
            if params is not None:
                rule.on_new_day(acct, params)

    # -- ingest --------------------------------------------------------------------------------

    # Rejected lines that come before the first event of a replay wait here for the clock to
    # start (a record carries event time, and there is none yet); `cursor` stops short of them
    # meanwhile, so that a commit in between cannot skip them on resume. None: nothing held.
    _held: list[dict[str, Any]] | None = None

    def process(self, ev: dict[str, Any], line: int | None = None) -> None:
        """Take one event (`line`: its input line in a replay, for a rejection)."""
        now = self.wall() if self.live else ev["ts"]
        if now - self.clock > self.config.max_clock_jump and not self.live:
            ref = self._jump_reference(now)
            if ref is not None:
                self._jumped(ev, line, ref)
                return
        timers = self._timers
        if (timers and timers[0][0] <= now) or not self.started:
            if self._held and not self.started:
                self._release_held(now)  # the lines before the first event, in line order
            self.advance(now)
        elif now > self.clock:  # no timer on the way (the common case): no call into advance
            if self.watch_clock is not None:
                self.watch_clock(now)
            self.clock = now
        self.n_events += 1
        self._handlers[ev["type"]](ev)

    def reject(self, line: int | None, error: str | BelowZero) -> None:
        """Write a `rejected` record for an input line (parse_line's sentence), or judge a
        quote below zero by its instrument (events.BelowZero): processed when it allows it."""
        if error.__class__ is not str:
            quote, error = error  # type: ignore[misc]
            inst = self.config.instrument(quote["symbol"])
            if inst is not None and inst.negative_prices:
                self.process(quote, line)
                return
        self.n_rejected += 1
        rec = {"kind": "rejected", "ts": "", "line": line, "error": error}
        if self.started or self.live:
            rec["ts"] = iso(self.clock if self.started else self.wall())
            self._emit(rec)
        elif self._held is None:
            self._held = [rec]
        else:
            self._held.append(rec)

    def end_of_input(self, clock: float | None = None) -> None:
        """The source ended (or stops) before any event started the clock: the rejected lines
        held for it are written at `clock` (the database's clock), else at wall time."""
        if self._held:
            self._release_held(self.wall() if clock is None else clock)

    def _release_held(self, ts: float) -> None:
        stamp = iso(ts)
        for rec in self._held or ():
            rec["ts"] = stamp
            self._emit(rec)
        self._held = None

    @property
    def cursor(self) -> int:
        """The replay's last processed line (the host sets it), short of any held line."""
        return self._cursor

    @cursor.setter
    def cursor(self, line: int) -> None:
        held = self._held
        if held and held[0]["line"] is not None:
            line = min(line, held[0]["line"] - 1)
        self._cursor = line

    # The clock a previous replay left in the database (event time), or None; the host sets it.
    restored_clock: float | None = None

    def _jump_reference(self, ts: float) -> float | None:
        """The clock a replay event stamped `ts` is too far ahead of (more than max_clock_jump),
        or None when it is plausible. Implausible: one line must not move every timer for ever.
        Until an event starts the clock it is 0.0, so a replay's first events are judged against
        the best clock there is instead, or a first line stamped in 9998 would start it."""
        ref = self.clock if self.started else self.first_reference()
        return ref if ts - ref > self.config.max_clock_jump else None

    def beyond_jump(self, ts: float) -> bool:
        """Would a replay reject an event stamped `ts` as too far ahead? (Pacing skips it.)"""
        return (not self.live and ts - self.clock > self.config.max_clock_jump
                and self._jump_reference(ts) is not None)

    def first_reference(self) -> float:
        """What a replay's first event is judged against before the clock starts: the clock the
        database was left at by a replay, or wall time if that is later (a replay of real
        recordings is never more than max_clock_jump ahead of now; a database written in a
        later event time is continued from there)."""
        wall = self.wall()
        restored = self.restored_clock
        return wall if restored is None or restored < wall else restored

    def _jumped(self, ev: dict[str, Any], line: int | None, ref: float) -> None:
        jump = self.config.max_clock_jump
        where = f"line {line}" if line is not None else "the event"
        if self.started:
            what = "the engine clock"
        elif ref == self.restored_clock:
            what = "the clock this database was left at"
        else:
            what = "the current time"
        self.reject(line, (
            f"{where}: a {ev['type']} stamped {iso(ev['ts'])} is "
            f"{(ev['ts'] - ref) / 86400:,.1f} days ahead of {what} "
            f"({iso(ref)}), more than max_clock_jump ({format_duration(jump)})"))

    def _account(self, name: str) -> AccountState:
        acct = self.accounts.get(name)
        if acct is None:
            acct = AccountState(name, self.config.rules_for(name))
            acct.trading_day = self.trading_day
            acct.state = self.lockouts.state(name)
            self.accounts[name] = acct
            self._dirty_accounts.add(name)
            self._gate(acct)
        return acct

    def _reported(self, name: str) -> AccountState:
        """The account an event from the broker names: reported by the broker from now on."""
        acct = self._account(name)
        if not acct.reported:
            acct.reported = True
            acct.stale = True  # judged afresh: nothing judged it while it was not reported
            self._dirty_accounts.add(name)
        return acct

    def _point_value(self, account: str, symbol: str) -> float:
        pv = self.config.point_value(symbol)
        if pv is not None:
            return pv
        spec = self.broker_spec(symbol)
        if spec is not None:  # the broker's own tick size and value (CONTRACT section 9)
            return spec[1] / spec[0]
        if symbol not in self._unknown_symbols and self.started:
            self._unknown_symbols.add(symbol)
            self.emit_warning(
                "unknown_instrument", account, symbol,
                f"{symbol} is not under instruments in the rules file; using point value 1.0",
                None, None,
            )
        return 1.0

    def broker_spec(self, symbol: str) -> tuple[float, float] | None:
        """(tick size, tick value) of a symbol rules.yaml does not list, from the broker."""
        lookup = getattr(self.broker, "instrument", None)
        if lookup is None:
            return None
        spec = lookup(symbol)
        if spec is None or not (spec[0] > 0 and spec[1] > 0):
            return None
        return spec

    def _position(self, acct: AccountState, symbol: str) -> Position:
        pos = acct.positions.get(symbol)
        if pos is None:
            pos = Position(acct.name, symbol, self._point_value(acct.name, symbol))
            pos.mark = self.marks.get(symbol)
            acct.positions[symbol] = pos
        return pos

    def _run_rules(self, etype: str, ev: dict[str, Any], acct: AccountState) -> None:
        gate = acct.quote_gate
        for rule in self.dispatch.get(etype, ()):
            params = acct.rules.get(rule.id)
            if params is not None:
                room = rule.check(ev, acct, params)
                entry = gate.get(rule.id)
                if entry is not None:
                    # a quote rule also judged this event: its room holds from here (an event
                    # a quote rule does not listen to cannot change its outcome)
                    due = entry[2] = acct.drift if room is None else acct.drift + room
                    if due < acct.slack:
                        acct.slack = due

    def _track(self, pos: Position) -> None:
        self._dirty_positions.add((pos.account, pos.symbol))
        holders = self.holders.setdefault(pos.symbol, {})
        if pos.qty:
            holders[pos.account] = pos
        else:
            holders.pop(pos.account, None)

    def _on_account(self, ev: dict[str, Any]) -> None:
        acct = self._reported(ev["account"])
        balance = ev.get("balance")
        if balance is not None:
            acct.balance = float(balance)
            if not acct.sod_from_event:
                acct.sod_balance = acct.balance
                acct.sod_from_event = True
        if "equity" in ev:
            acct.equity = float(ev["equity"])
        elif balance is not None:
            # a new balance without equity: the equity reported with an older balance no
            # longer holds; equity is the balance plus open P&L until the broker says more
            acct.equity = None
        self._dirty_accounts.add(acct.name)
        self._run_rules("account", ev, acct)

    def _on_order_placed(self, ev: dict[str, Any]) -> None:
        acct = self._reported(ev["account"])
        acct.orders[ev["order_id"]] = Order(ev)
        self._dirty_accounts.add(acct.name)
        if acct.state != "active" and self._locked_order(ev, acct):
            return
        self._run_rules("order_placed", ev, acct)

    def _on_order_updated(self, ev: dict[str, Any]) -> None:
        acct = self._reported(ev["account"])
        order = acct.orders.get(ev["order_id"])
        if order is not None:
            if "qty" in ev:
                order.qty = ev["qty"]
            if "price" in ev:
                order.price = ev["price"]
            if "stop_price" in ev:
                order.stop_price = ev["stop_price"]
            self._dirty_accounts.add(acct.name)
        self._run_rules("order_updated", ev, acct)

    def _on_order_gone(self, ev: dict[str, Any]) -> None:
        acct = self._reported(ev["account"])
        order = acct.orders.pop(ev["order_id"], None)
        if order is not None:
            self._dirty_accounts.add(acct.name)
        self.enforcer.settle(acct.name, order_id=ev["order_id"])
        self._run_rules(ev["type"], ev, acct)

    def _on_fill(self, ev: dict[str, Any]) -> None:
        acct = self._reported(ev["account"])
        trade_id = ev.get("trade_id")
        if trade_id is not None:
            if acct.seen_trade(trade_id):
                # delivered twice (a re-sync after a reconnect, a restart): it was applied once
                # and changes nothing now, not the book, the P&L, the rules nor the records
                self.n_duplicate_fills += 1
                return
            acct.add_trade(trade_id)  # saved with the account's row (dirty below)
        symbol = ev["symbol"]
        pos = self._position(acct, symbol)
        before = pos.qty
        computed = pos.apply_fill(ev["side"], ev["qty"], ev["price"], self.clock)
        quoted = self.marks.get(symbol)
        if quoted is not None:
            pos.mark = quoted
        elif pos.mark is None or before == 0:
            pos.mark = float(ev["price"])
        self.enforcer.filled(acct.name, symbol, ev["side"], ev["qty"])
        realized = ev.get("realized_pnl", computed)
        acct.realized += realized - ev.get("fee", 0.0)
        order = acct.orders.get(ev["order_id"])
        if order is not None:
            order.qty -= ev["qty"]
            if order.qty <= 0:
                del acct.orders[ev["order_id"]]
        self._track(pos)
        self._dirty_accounts.add(acct.name)
        self._fills.append((self.clock, acct.name, symbol, ev["side"], ev["qty"], ev["price"],
                            ev.get("fee", 0.0), realized, ev["order_id"], trade_id))
        ev["_realized"] = realized - ev.get("fee", 0.0)
        ev["_before"] = before
        if acct.state != "active" and self._locked_fill(ev, acct, before, pos.qty):
            acct.stale = True  # the rules did not see this fill: quote rules judge it next
            return
        self._run_rules("fill", ev, acct)

    def _on_position(self, ev: dict[str, Any]) -> None:
        acct = self._reported(ev["account"])
        symbol = ev["symbol"]
        pos = self._position(acct, symbol)
        qty = ev["qty"]
        if qty != pos.qty and acct.name not in self._adopting:
            self.emit_warning(
                "position_drift", acct.name, symbol,
                f"broker reports {acct.name} {symbol} position {qty}, the book had {pos.qty}; "
                "taking the broker's size",
                qty, pos.qty,
            )
        quoted = self.marks.get(symbol)
        if quoted is not None:
            pos.mark = quoted
        pos.set_size(qty, ev.get("avg_price"), self.clock)
        self._track(pos)
        self.enforcer.settle(acct.name, symbol=symbol, qty=qty)
        self._run_rules("position", ev, acct)

    def _on_quote(self, ev: dict[str, Any]) -> None:
        last = ev.get("last")
        if last is None:
            bid, ask = ev.get("bid"), ev.get("ask")
            if bid is None or ask is None:
                return
            last = (bid + ask) / 2
        symbol = ev["symbol"]
        mark = float(last)
        self.marks[symbol] = mark
        self._marks_dirty = True
        hist = self.history.get(symbol)
        if hist is None:
            hist = self.history[symbol] = deque(maxlen=PRICE_HISTORY)
        hist.append(mark)
        holders = self.holders.get(symbol)
        if not holders:
            return
        if not self.dispatch.get("quote"):
            for pos in holders.values():
                pos.mark = mark
            return
        accounts = self.accounts
        gate = self.gate_quotes
        for account, pos in tuple(holders.items()):
            old = pos.mark
            pos.mark = mark
            acct = accounts[account]
            if old is not None and gate and not acct.stale:
                if old == mark:
                    drift = acct.drift
                else:
                    drift = acct.drift = acct.drift + abs((mark - old) * pos.qty * pos.point_value)
                if drift < acct.slack:
                    continue  # no quote rule can change its outcome yet
                self._quote_rules(ev, acct, drift, False)
            elif acct.quote_rules:
                self._quote_rules(ev, acct, acct.drift, True)

    def _quote_rules(self, ev: dict[str, Any], acct: AccountState, drift: float,
                     every: bool) -> None:
        """Run the quote rules whose slack the marks have used up (all of them when `every`).

        Each rule reports its room: how far the account's P&L may move before its outcome
        could change. `drift` sums the moves since the start; a rule is due again once it has
        grown past the drift at its last check plus that room.
        """
        soonest = INF
        for entry in acct.quote_rules:
            due = entry[2]
            if every or drift >= due:
                room = entry[0].check(ev, acct, entry[1])
                due = entry[2] = drift if room is None else drift + room
            if due < soonest:
                soonest = due
        acct.slack = soonest
        acct.stale = False

    def _on_connection(self, ev: dict[str, Any]) -> None:
        if "account" in ev:
            self._run_rules("connection", ev, self._reported(ev["account"]))
        else:
            for acct in list(self.accounts.values()):
                if acct.reported:
                    self._run_rules("connection", ev, acct)

    def _on_clock(self, ev: dict[str, Any]) -> None:
        pass

    def _on_cash(self, ev: dict[str, Any]) -> None:
        """Money in or out that is not P&L (CONTRACT section 5): the balance and a reported
        equity move, the day's realized P&L does not; rules that hold a level of equity (the
        trailing mark) move it along ("cash" in their `events`)."""
        acct = self._reported(ev["account"])
        amount = float(ev["amount"])
        acct.cash_moved += amount
        if acct.balance is not None:  # before any balance the broker's first one includes it
            acct.balance += amount
        if acct.equity is not None:
            acct.equity += amount
        acct.stale = True  # equity moved outside the marks: every quote rule judges again
        self._dirty_accounts.add(acct.name)
        self._run_rules("cash", ev, acct)

    # -- locked accounts -----------------------------------------------------------------------

    def _lock_reason(self, acct: AccountState) -> str:
        return f"{acct.name} is {acct.state} by {self.lockouts.rules_text(acct.name)}"

    def _locked_order(self, ev: dict[str, Any], acct: AccountState) -> bool:
        symbol = ev["symbol"]
        pos = acct.positions.get(symbol)
        qty = pos.qty if pos else 0
        signed = ev["qty"] if ev["side"] == "buy" else -ev["qty"]
        reduces = abs(qty + signed) <= abs(qty) and (qty + signed) * qty >= 0
        if reduces and (acct.state == "reducing" or ev["order_type"] == "market"):
            # in `halted` too, a market order that only reduces is let through: it is how a
            # broker carries out a close riskterm sent (ProjectX's closeContract pushes one),
            # and a replay of the session, which cannot tell whose it was, judges it alike
            return False
        message = (f"{self._lock_reason(acct)}: order {ev['order_id']} "
                   f"({ev['side']} {ev['qty']} {symbol}) is cancelled")
        self.violate("trading_while_locked", acct, symbol, ev["qty"], None, message,
                     actions=("cancel_order",), lockout=NO_LOCKOUT, order_id=ev["order_id"])
        return True

    def _locked_fill(self, ev: dict[str, Any], acct: AccountState, before: int, after: int) -> bool:
        reversed_ = before != 0 and after != 0 and (before > 0) != (after > 0)
        if abs(after) <= abs(before) and not reversed_:
            return False  # a reducing fill is always allowed (our own flatten, for one)
        target = 0 if reversed_ or before == 0 else abs(before)
        message = (f"{self._lock_reason(acct)}: the fill of order {ev['order_id']} took "
                   f"{ev['symbol']} from {before} to {after}; closing the increase")
        self.violate("trading_while_locked", acct, ev["symbol"], after, target, message,
                     actions=("reduce_position",), lockout=NO_LOCKOUT, target_qty=target)
        return True

    # -- violations, warnings, lockouts --------------------------------------------------------

    def evaluate(
        self,
        rule_id: str,
        params: Any,
        acct: AccountState,
        symbol: str | None,
        value: float,
        limit: float,
        cmp: str,
        message: Callable[[float], str],
        *,
        target_qty: int | None = None,
        money: bool = True,
    ) -> bool:
        """Edge-triggered check of `value` against `limit`; returns whether it is breached.

        cmp: "le" (a loss limit: breached at value <= limit), "ge" (a target: value >= limit),
        "gt" (a count or size: value > limit). Money is rounded to cents before comparing.
        """
        if not acct.reported:
            return False  # not reported by the broker: neither judged nor enforced (section 9)
        if money:
            value = round(value, 2)
        if cmp == "le":
            breached = value <= limit
        elif cmp == "ge":
            breached = value >= limit
        else:
            breached = value > limit
        key = (rule_id, acct.name, symbol)
        if breached:
            if key not in self.fired:
                self.fired.add(key)
                self._edge_changed(key)
                self.violate(rule_id, acct, symbol, value, limit, message(value),
                             actions=params.action, lockout=params.lockout,
                             lockout_state=params.lockout_state, target_qty=target_qty)
            return True
        if key in self.fired:
            self.fired.discard(key)
            self._edge_changed(key)
        warn_at = params.warn_at
        if warn_at is not None and key not in self.warned and value:
            threshold = warn_at * limit
            if (value <= threshold) if cmp == "le" else (value >= threshold):
                self.warned.add(key)
                self._edge_changed(key)
                self.emit_warning(rule_id, acct.name, symbol,
                                  f"{message(value)} (warning at {warn_at:.0%} of the limit)",
                                  value, limit)
        return False

    def clear(self, rule_id: str, account: str, symbol: str | None) -> None:
        """Re-arm an edge-triggered rule whose condition is no longer true."""
        key = (rule_id, account, symbol)
        if key in self.fired:
            self.fired.discard(key)
            self._edge_changed(key)

    def _edge_changed(self, key: tuple[str, str, str | None]) -> None:
        """A key joined or left fired/warned: its account's row is saved with the next batch."""
        self._edge_keys.setdefault(key[1], set()).add(key)
        if key[1] in self.accounts:
            self._dirty_accounts.add(key[1])

    def _clear_warnings(self) -> None:
        """A new trading day re-arms every warning."""
        for key in self.warned:
            if key[1] in self.accounts:
                self._dirty_accounts.add(key[1])
        self.warned.clear()

    def _account_json(self, name: str) -> str:
        """The account's row: its state and its keys in fired and warned."""
        data = self.accounts[name].to_json()
        keys = self._edge_keys.get(name)
        if keys:
            fired, warned = self.fired, self.warned
            data["fired"] = sorted(([k[0], k[2]] for k in keys if k in fired),
                                   key=lambda k: (k[0], k[1] or ""))
            data["warned"] = sorted(([k[0], k[2]] for k in keys if k in warned),
                                    key=lambda k: (k[0], k[1] or ""))
            if len(data["fired"]) + len(data["warned"]) < len(keys):  # prune the cleared keys
                keys = {k for k in keys if k in fired or k in warned}
                if keys:
                    self._edge_keys[name] = keys
                else:
                    del self._edge_keys[name]
        return json.dumps(data)

    def violate(
        self,
        rule_id: str,
        acct: AccountState,
        symbol: str | None,
        value: Any,
        limit: Any,
        message: str,
        *,
        actions: tuple[str, ...],
        lockout: Any = NO_LOCKOUT,
        lockout_state: str = "halted",
        order_id: str | None = None,
        target_qty: int | None = None,
    ) -> None:
        """Write a violation, then its enforcements, then its lockout (in that order)."""
        if not acct.reported:
            return  # not reported by the broker: neither judged nor enforced (section 9)
        self.n_violations += 1
        rec = {
            "kind": "violation", "ts": self.stamp(), "rule": rule_id, "account": acct.name,
            "symbol": symbol, "action": list(actions), "message": message, "value": value,
            "limit": limit,
        }
        self._emit(rec)
        self.recent_violations.append(rec)
        for action in actions:
            self.enforcer.run(action, rule_id, acct, symbol, order_id, target_qty)
        if lockout.kind != "none":
            self.lock(acct, rule_id, lockout_state, lockout)

    def lock(self, acct: AccountState, rule: str, state: str, spec: Any) -> Lockout:
        now = self.clock
        if spec.kind == "duration":
            until: float | None = now + spec.seconds
        elif spec.kind == "until_reset":
            until = self.calendar.next_reset(now)
        elif spec.kind == "until_session_start":
            until = self.calendar.next_session_start(now)
        else:
            until = None
        for old in self.lockouts.active(acct.name, rule):
            self.lockouts.remove(old)
            self._lock_lifted.append((old.id, now, "superseded"))
        lk = Lockout(self.lockouts.next_id, acct.name, rule, state, spec.kind, until, now)
        self.lockouts.add(lk)
        self._lock_added.append(lk)
        if until is not None:
            self.schedule(until, self._expire_lockout, lk)
        acct.state = self.lockouts.state(acct.name)
        self._emit({
            "kind": "lockout", "ts": self.stamp(), "account": acct.name, "rule": rule,
            "state": state, "until": iso(until) if until is not None else None,
        })
        return lk

    def _expire_lockout(self, lk: Lockout) -> None:
        if lk.active:
            self._lift(lk, lk.unlock_reason)

    def _lift(self, lk: Lockout, reason: str, *, record: bool = True) -> None:
        self.lockouts.remove(lk)
        self._lock_lifted.append((lk.id, self.clock, reason))
        acct = self.accounts.get(lk.account)
        if acct is not None:
            acct.state = self.lockouts.state(lk.account)
        if record:
            self._emit({"kind": "unlock", "ts": iso(self.clock), "account": lk.account,
                        "rule": lk.rule, "reason": reason})

    def unlock(self, account: str, rule: str | None = None) -> int:
        """Lift lockouts by hand (dashboard `u`); returns how many were lifted."""
        items = self.lockouts.active(account, rule)
        for lk in items:
            self._lift(lk, "manual")
        return len(items)

    def lifted_elsewhere(self, ids: set[int]) -> None:
        """Another process (riskterm unlock) lifted these lockouts and wrote the records."""
        for lk in self.lockouts.all():
            if lk.id in ids:
                self.lockouts.remove(lk)
                acct = self.accounts.get(lk.account)
                if acct is not None:
                    acct.state = self.lockouts.state(lk.account)

    # -- records -------------------------------------------------------------------------------

    def _emit(self, rec: dict[str, Any]) -> None:
        self._records.append(rec)

    def touch(self, account: str) -> None:
        """The account's stored state changed outside the book (a rule's own state): commit it
        with the next batch."""
        self._dirty_accounts.add(account)

    def stamp(self) -> str:
        """The engine clock as a record's ts (a violation, its enforcements and its lockout
        share one instant: formatted once)."""
        clock = self.clock
        if clock != self._stamp_clock:
            self._stamp_clock, self._stamp = clock, iso(clock)
        return self._stamp

    def emit_warning(self, rule: str, account: str, symbol: str | None, message: str,
                     value: Any, limit: Any) -> None:
        self.n_warnings += 1
        self._emit({"kind": "warning", "ts": self.stamp(), "rule": rule, "account": account,
                    "symbol": symbol, "message": message, "value": value, "limit": limit})

    def emit_enforcement(self, action: str, rule: str, account: str, symbol: str | None,
                         order_id: str | None, status: str, detail: str) -> dict[str, Any]:
        self.n_enforcements += 1
        rec = {"kind": "enforcement", "ts": self.stamp(), "action": action, "account": account,
               "symbol": symbol, "rule": rule, "order_id": order_id, "status": status,
               "detail": detail}
        self._emit(rec)
        return rec

    def await_confirmation(self, rec: dict[str, Any], waiting: list[Any],
                           done: Callable[[list[Any]], None]) -> None:
        """`rec` waits for the broker's answers to `waiting` [(command, awaitable)]; `done`
        gets them [(command, result or exception)] and makes the record final."""

        def finish(outcomes: list[Any]) -> None:
            try:
                done(outcomes)
            except Exception as exc:  # a bug must not leave the record (and commits) waiting
                rec["status"], rec["detail"] = "failed", f"{rec['detail']} — error: {exc!r}"

        self.confirmations.start(waiting, finish)

    def abandon_unconfirmed(self, why: str) -> int:
        """At shutdown: records still waiting for the broker become `failed` with `why`."""
        n = 0
        for rec in self._records:
            if rec.get("status") == PENDING:
                rec["status"], n = "failed", n + 1
                rec["detail"] = f"{rec['detail']} — {why}" if rec["detail"] else why
        return n

    @property
    def unconfirmed(self) -> int:
        """Enforcements whose broker answer is still awaited."""
        return len(self.confirmations)

    def take_changes(self) -> Changes:
        """Hand everything changed since the last call to the recorder. While an enforcement
        waits for the broker's confirmation, only the records before it are handed over and
        the state waits too: a commit is always a consistent cut, and the records keep their
        order (a violation, its enforcements, then its lockout)."""
        if self.unconfirmed:
            records = self._records
            first = next((i for i, rec in enumerate(records) if rec.get("status") == PENDING),
                         None)
            if first is not None:
                self._records = records[first:]
                return Changes(records=records[:first])
        changes = Changes(records=self._records, lockouts_added=self._lock_added,
                          lockouts_lifted=self._lock_lifted, fills=self._fills,
                          equity=self._equity)
        self._records, self._lock_added, self._lock_lifted = [], [], []
        self._fills, self._equity = [], []
        if self._dirty_accounts:
            changes.accounts = [(name, self._account_json(name)) for name in self._dirty_accounts]
            self._dirty_accounts = set()
        if self._dirty_positions:
            changes.positions = [
                self.accounts[a].positions[s].to_row() for a, s in self._dirty_positions
            ]
            self._dirty_positions = set()
        if self._state_dirty or self._marks_dirty:
            changes.engine_state = json.dumps({
                "trading_day": self.trading_day, "marks": self.marks,
                "unknown_symbols": sorted(self._unknown_symbols), **self._legacy_edge,
            })
            self._state_dirty = self._marks_dirty = False
        if self.cursor != self._cursor_saved:
            changes.cursor = self._cursor_saved = self.cursor
        return changes

    @property
    def has_changes(self) -> bool:
        return bool(self._records or self._dirty_accounts or self._dirty_positions
                    or self._lock_added or self._lock_lifted or self._state_dirty
                    or self._fills or self._equity)

    # -- views for the job pool and the dashboard ----------------------------------------------

    def now(self) -> float:
        return self.clock if self.started else self.wall()

    def known_accounts(self) -> list[str]:
        return sorted(self.accounts)

    def account_snapshot(self, account: str) -> dict[str, Any] | None:
        acct = self.accounts.get(account)
        if acct is None:
            return None
        positions = []
        for pos in acct.positions.values():
            if not pos.qty:
                continue
            closing = "sell" if pos.qty > 0 else "buy"
            stops = [
                {"order_id": o.order_id, "stop_price": o.stop_price, "qty": o.qty}
                for o in acct.orders.values()
                if o.symbol == pos.symbol and o.is_stop and o.side == closing
            ]
            positions.append({
                "symbol": pos.symbol, "qty": pos.qty, "avg_price": pos.avg_price,
                "mark": pos.mark, "unrealized_pnl": round(pos.unrealized, 2),
                "point_value": pos.point_value, "stops": stops, "opened_ts": pos.opened_ts,
                "tick_size": self._tick_size(pos.symbol),
            })
        return {
            "account": account,
            "ts": self.now(),
            "state": acct.state,
            "reported": acct.reported,
            "balance": acct.balance,
            "equity": acct.live_equity,
            "start_balance": acct.sod_balance,
            "realized_pnl": round(acct.realized, 2),
            "unrealized_pnl": round(acct.unrealized, 2),
            "cash_today": round(acct.cash_moved, 2),  # in the balance, not in the P&L
            "positions": positions,
            "working_orders": [o.to_dict() for o in acct.orders.values()],
            "limits": {rid: p.model_dump(mode="json") for rid, p in acct.rules.items()},
            "lockouts": [
                {"rule": lk.rule, "state": lk.state,
                 "until": iso(lk.until) if lk.until is not None else None}
                for lk in self.lockouts.active(account)
            ],
            "recent_violations": [v for v in self.recent_violations
                                  if v["account"] == account][-20:],
            "price_history": {p["symbol"]: list(self.history.get(p["symbol"], ()))
                              for p in positions},
        }

    def _tick_size(self, symbol: str) -> float | None:
        inst = self.config.instrument(symbol)
        if inst is not None:
            return inst.tick_size
        spec = self.broker_spec(symbol)
        return spec[0] if spec is not None else None

    def execute_action(
        self,
        account: str,
        action: str,
        *,
        symbol: str | None = None,
        qty: int | None = None,
        price: float | None = None,
        job_id: str | None = None,
        reason: str = "",
        rule: str = "smart_risk",
    ) -> list[dict[str, Any]]:
        """Run an action through the enforcement path (Smart Risk Manager jobs, the dashboard)."""
        acct = self.accounts.get(account)
        if acct is None:
            return [self.emit_enforcement(action, rule, account, symbol, None, "skipped",
                                          f"unknown account {account}")]
        target = None
        if action == "reduce_position" and symbol:
            pos = acct.positions.get(symbol)
            held = abs(pos.qty) if pos else 0
            target = max(0, held - (qty or 0))
        rec = self.enforcer.run(action, rule, acct, symbol, None, target, price=price)
        return [rec] if rec else []
