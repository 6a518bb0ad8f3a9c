"""Rule micro-benchmark: nanoseconds per evaluation of each of the 20 rules, pass and fail path.

For each rule id of the catalog (``params.RULE_PARAMS``) an Engine is built on a small rules file
that enables only that rule (header with MNQ and ES instruments, ``warn_at: 0.8`` where the rule
takes one, as the default rules do). A scenario per path is a *history* of events processed
through ``engine.process`` (balance, a quote, positions, earlier orders or fills the rule counts)
and a *trigger* event.

How a path is timed:

- ``check`` (every rule but one path, see below): the trigger goes through the engine with rule
  dispatch switched off, so the book reflects it exactly as it does when the engine calls the
  rule (book first, rules after); then ``rule.check(trigger, acct, params)`` is what is timed.
- ``process``: the whole ``engine.process(trigger)`` is timed. Used for no_stop_loss_grace's fail
  path, which is timer-driven: the violation is written when the engine clock reaches the end of
  the grace period, so its trigger is a ``clock`` event at that instant and the figure includes
  ``advance`` popping the timer. It is also the fallback for a rule that does not react to its
  trigger's event type (a timer-driven implementation of session_block_outside, say).

Pass path: the trigger is inside the limit and the warning. When repeating it leaves the rule's
state alone (no violation or warning appears after many calls), it is timed in bulk, loop
overhead subtracted, best of a few rounds. Otherwise (a rate window that fills up, a counter)
each evaluation starts from a fresh copy of the prepared engine, like the fail path.

Fail path: the trigger breaches the rule and every timed evaluation really writes the violation
with its enforcements (to a broker that executes and drops the command) and lockout. Each one
starts from a fresh deep copy of the prepared engine, made outside the timed region, so the edge
state (``fired``), in-flight enforcements, lockouts and rule counters are as they were and each
iteration fires. Figures are medians of per-evaluation ``perf_counter_ns`` deltas minus the
timer's own overhead; the garbage collector is off only inside the timed call.
"""

from __future__ import annotations

import copy
import gc
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from riskterm.config import load_rules_text
from riskterm.engine import Engine
from riskterm.rules import rule_classes
from riskterm.rules.params import RULE_PARAMS

HEADER = """\
timezone: America/Chicago
daily_reset: "17:00"
session: {start: "08:30", end: "15:00", days: [mon, tue, wed, thu, fri]}
instruments:
  MNQ: {tick_size: 0.25, tick_value: 0.5}
  ES:  {tick_size: 0.25, tick_value: 12.5}
"""

ACCOUNT = "BENCH-1"
# Tuesday 2026-03-03 10:00 in Chicago (CST, UTC-6): inside the session, far from the reset
T_IN = datetime(2026, 3, 3, 16, 0, tzinfo=UTC).timestamp()
# the same day 07:00 in Chicago: before the session opens
T_OUT = datetime(2026, 3, 3, 13, 0, tzinfo=UTC).timestamp()

# rule id -> its parameters in the micro-benchmark's rules file (flow-style YAML)
PARAMS: dict[str, str] = {
    "max_contracts": "{limit: 5}",
    "max_contracts_per_instrument": "{limits: {MNQ: 5}, default_limit: 1}",
    "max_order_size": "{max_qty: 10}",
    "order_rate_limit": "{max_orders: 5, per_seconds: 1}",
    "daily_realized_loss": "{limit: -500}",
    "daily_realized_profit": "{target: 500}",
    "daily_total_loss": "{limit: -750}",
    "daily_unrealized_loss": "{limit: -400}",
    "max_position_loss": "{limit: -300}",
    "max_unrealized_profit": "{target: 1000}",
    "trailing_drawdown": "{amount: 2500}",
    "max_position_value_pct": "{max_pct: 3.0}",
    "max_total_exposure": "{limit: 100000}",
    "trade_frequency_limit": "{per_minute: 3}",
    "cooldown_after_loss": "{tiers: [{loss: -200, lockout: 15m}]}",
    "consecutive_losses": "{max_losses: 3}",
    "no_stop_loss_grace": "{grace_seconds: 30}",
    "session_block_outside": "{flatten_at_close: true}",
    "symbol_blocks": "{symbols: [\"BTC*\"]}",
    "auth_loss_guard": "{}",
}

Event = dict[str, Any]


class NullBroker:
    """Executes every command by dropping it (the enforcement path up to the broker is real)."""

    executes = True

    def submit(self, command: Any) -> None:
        pass


# --------------------------------------------------------------------------- scenarios


class _Events:
    """Event factory on a clock that steps 100 ms per event from ``start``."""

    def __init__(self, start: float) -> None:
        self.t = start
        self.n = 0

    def _ts(self) -> float:
        self.t += 0.1
        return self.t

    def _oid(self) -> str:
        self.n += 1
        return f"B{self.n}"

    def account(self, balance: float = 50_000.0) -> Event:
        return {"type": "account", "ts": self._ts(), "account": ACCOUNT, "balance": balance}

    def quote(self, last: float, symbol: str = "MNQ") -> Event:
        return {"type": "quote", "ts": self._ts(), "symbol": symbol, "bid": last - 0.25,
                "ask": last, "last": last}

    def fill(self, side: str, qty: int, price: float, symbol: str = "MNQ") -> Event:
        return {"type": "fill", "ts": self._ts(), "account": ACCOUNT, "symbol": symbol,
                "order_id": self._oid(), "side": side, "qty": qty, "price": price, "fee": 0.0}

    def order(self, side: str, qty: int, order_type: str = "limit", price: float = 20_990.0,
              symbol: str = "MNQ") -> Event:
        ev: Event = {"type": "order_placed", "ts": self._ts(), "account": ACCOUNT,
                     "symbol": symbol, "order_id": self._oid(), "side": side, "qty": qty,
                     "order_type": order_type}
        ev["stop_price" if order_type == "stop" else "price"] = price
        return ev

    def connection(self, status: str) -> Event:
        return {"type": "connection", "ts": self._ts(), "account": ACCOUNT, "status": status,
                "reason": "bench"}

    def clock(self, at: float) -> Event:
        return {"type": "clock", "ts": at}


Scenario = tuple[list[Event], Event, str]  # history, trigger, "check" | "process"


def _opened(e: _Events, qty: int = 2) -> list[Event]:
    """A funded account with a long MNQ position at 21000 and a quote there."""
    return [e.account(), e.quote(21_000.0), e.fill("buy", qty, 21_000.0)]


def scenario(rule_id: str, failing: bool) -> Scenario:
    """The events of one path of one rule (see the module doc)."""
    e = _Events(T_IN)
    f = failing
    if rule_id in ("max_contracts", "max_contracts_per_instrument"):
        return [e.account(), e.quote(21_000.0)], e.fill("buy", 8 if f else 2, 21_000.0), "check"
    if rule_id == "max_order_size":
        return [e.account(), e.quote(21_000.0)], e.order("buy", 20 if f else 2), "check"
    if rule_id == "order_rate_limit":
        history = [e.account(), e.quote(21_000.0)]
        history += [e.order("buy", 1) for _ in range(5 if f else 2)]
        return history, e.order("buy", 1), "check"
    if rule_id == "daily_realized_loss":  # sell 1 of 2: realized -800 / -100 at $2 a point
        return _opened(e), e.fill("sell", 1, 20_600.0 if f else 20_950.0), "check"
    if rule_id == "daily_realized_profit":  # +800 / +100
        return _opened(e), e.fill("sell", 1, 21_400.0 if f else 21_050.0), "check"
    if rule_id == "daily_total_loss":  # 2 contracts x $2: -800 / -40
        return _opened(e), e.quote(20_800.0 if f else 20_990.0), "check"
    if rule_id == "daily_unrealized_loss":  # -600 / -40
        return _opened(e), e.quote(20_850.0 if f else 20_990.0), "check"
    if rule_id == "max_position_loss":  # -400 / -40
        return _opened(e), e.quote(20_900.0 if f else 20_990.0), "check"
    if rule_id == "max_unrealized_profit":  # +1200 / +40
        return _opened(e), e.quote(21_300.0 if f else 21_010.0), "check"
    if rule_id == "trailing_drawdown":  # equity 50000 -> 47200 / 49960
        return _opened(e), e.quote(20_300.0 if f else 20_990.0), "check"
    if rule_id == "max_position_value_pct":  # notional 168000 / 84000 on equity 50000
        return [e.account(), e.quote(21_000.0)], e.fill("buy", 4 if f else 2, 21_000.0), "check"
    if rule_id == "max_total_exposure":  # 126000 / 42000
        return [e.account(), e.quote(21_000.0)], e.fill("buy", 3 if f else 1, 21_000.0), "check"
    if rule_id == "trade_frequency_limit":  # the 4th / 2nd fill within a minute
        history = [e.account(), e.quote(21_000.0)] + [
            e.fill("buy", 1, 21_000.0) for _ in range(3 if f else 1)]
        return history, e.fill("buy", 1, 21_000.0), "check"
    if rule_id == "cooldown_after_loss":  # one fill realizing -300 / -100
        return _opened(e), e.fill("sell", 1, 20_850.0 if f else 20_950.0), "check"
    if rule_id == "consecutive_losses":  # two losing closes, then a third loss / a win
        history = _opened(e, 4) + [e.fill("sell", 1, 20_990.0) for _ in range(2)]
        return history, e.fill("sell", 1, 20_990.0 if f else 21_010.0), "check"
    if rule_id == "no_stop_loss_grace":
        if f:  # a naked position; the clock reaches the end of its grace period
            history = _opened(e)
            return history, e.clock(history[-1]["ts"] + 30.0), "process"
        # a position opened with its protective stop already working
        history = [e.account(), e.quote(21_000.0), e.order("sell", 2, "stop", 20_900.0)]
        return history, e.fill("buy", 2, 21_000.0), "check"
    if rule_id == "session_block_outside":  # an order at 07:00 / 10:00 Chicago
        e = _Events(T_OUT if f else T_IN)
        return [e.account(), e.quote(21_000.0)], e.order("buy", 1), "check"
    if rule_id == "symbol_blocks":
        history = [e.account(), e.quote(21_000.0), e.quote(95_000.0, "BTC")]
        return history, e.order("buy", 1, symbol="BTC" if f else "MNQ"), "check"
    if rule_id == "auth_loss_guard":
        return [e.account(), e.quote(21_000.0)], e.connection(
            "disconnected" if f else "connected"), "check"
    raise KeyError(f"no micro-benchmark scenario for rule {rule_id!r}")


# --------------------------------------------------------------------------- preparing an engine


class _Prepared:
    """An engine after a scenario's history (and the trigger's book effects, for ``check``)."""

    def __init__(self, rule_id: str, failing: bool) -> None:
        self.rule_id = rule_id
        config = load_rules_text(HEADER + f"rules:\n  {rule_id}: {_params_text(rule_id)}\n",
                                 f"<bench {rule_id}>")
        self.config = config
        self.broker = NullBroker()
        engine = Engine(config, self.broker)
        if rule_id not in engine.rules:
            raise LookupError(f"rule {rule_id} is not in the catalog (no riskterm.rules module)")
        history, trigger, via = scenario(rule_id, failing)
        for ev in history:
            engine.process(ev)
        if engine.n_violations:
            raise AssertionError(f"{rule_id}: the scenario's history already fires the rule")
        if via == "check" and trigger["type"] not in engine.rules[rule_id].events:
            via = "process"  # the rule does not react to this event type directly
        if via == "check":
            dispatch, engine.dispatch = engine.dispatch, {}
            try:
                engine.process(trigger)  # the book takes the event; no rule sees it yet
            finally:
                engine.dispatch = dispatch
        engine.take_changes()
        self.engine = engine
        self.trigger = trigger
        self.via = via
        self._memo: dict[int, Any] = {id(config): config, id(self.broker): self.broker,
                                      id(engine.calendar): engine.calendar}
        for acct in engine.accounts.values():
            self._memo[id(acct.rules)] = acct.rules
            for params in acct.rules.values():
                self._memo[id(params)] = params

    def copy(self) -> Engine:
        return copy.deepcopy(self.engine, dict(self._memo))

    def call(self, engine: Engine) -> Callable[[], None]:
        """The evaluation to time on `engine` (a copy, or the prepared one)."""
        trigger = self.trigger
        if self.via == "process":
            process = engine.process
            return lambda: process(trigger)
        rule = engine.rules[self.rule_id]
        acct = engine.accounts[ACCOUNT]
        params = acct.rules[self.rule_id]
        check = rule.check
        return lambda: check(trigger, acct, params)

    def direct(self, engine: Engine) -> tuple[Callable[..., None], tuple[Any, ...]]:
        """The bound function and arguments of the evaluation, for the bulk loop."""
        if self.via == "process":
            return engine.process, (self.trigger,)
        acct = engine.accounts[ACCOUNT]
        return engine.rules[self.rule_id].check, (self.trigger, acct, acct.rules[self.rule_id])


def _params_text(rule_id: str) -> str:
    text = PARAMS[rule_id]
    if RULE_PARAMS[rule_id].WARN_AT:
        text = text[:-1] + (", " if text != "{}" else "") + "warn_at: 0.8}"
    return text


# --------------------------------------------------------------------------- timing

_pc = time.perf_counter_ns
BATCH = 20


def _timer_overhead(n: int = 2000) -> int:
    samples = []
    for _ in range(n):
        t0 = _pc()
        t1 = _pc()
        samples.append(t1 - t0)
    return int(statistics.median(samples))


def _time_each(prep: _Prepared, n: int, overhead: int, *, fires: bool) -> float:
    """Median ns of `n` evaluations, each on a fresh copy of the prepared engine.

    Copies are made BATCH at a time before their evaluations run back to back, so the timed
    calls do not run in caches just flushed by a deep copy.
    """
    samples: list[int] = []
    gc_was = gc.isenabled()
    try:
        while len(samples) < n:
            batch = [prep.copy() for _ in range(min(BATCH, n - len(samples)))]
            for engine in batch:
                before = (engine.n_violations, engine.n_warnings)
                call = prep.call(engine)
                gc.disable()
                t0 = _pc()
                call()
                t1 = _pc()
                if gc_was:
                    gc.enable()
                _verify(prep, engine, before, fires)
                samples.append(t1 - t0)
    finally:
        if gc_was:
            gc.enable()
    return max(0.0, statistics.median(samples) - overhead)


def _verify(prep: _Prepared, engine: Engine, before: tuple[int, int], fires: bool) -> None:
    violations, warnings = engine.n_violations - before[0], engine.n_warnings - before[1]
    if fires and not violations:
        raise AssertionError(f"{prep.rule_id}: the fail path did not write a violation")
    if not fires and (violations or warnings):
        raise AssertionError(f"{prep.rule_id}: the pass path wrote a "
                             f"{'violation' if violations else 'warning'}")


def _time_bulk(prep: _Prepared, n: int, rounds: int = 5) -> float | None:
    """Best-of-rounds ns per evaluation repeated on one engine; None when the repetition
    changes the outcome (a violation or warning appears), so it cannot be timed this way."""
    engine = prep.copy()
    fn, args = prep.direct(engine)
    base = (engine.n_violations, engine.n_warnings)
    best = None
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            t0 = _pc()
            for _ in range(n):
                pass
            empty = _pc() - t0
            t0 = _pc()
            for _ in range(n):
                fn(*args)
            elapsed = _pc() - t0 - empty
            if (engine.n_violations, engine.n_warnings) != base:
                return None
            engine.take_changes()
            per = elapsed / n
            best = per if best is None else min(best, per)
    finally:
        if gc_was:
            gc.enable()
    return max(0.0, best or 0.0)


def bench_rule(rule_id: str, n_pass: int, n_fail: int, overhead: int) -> dict[str, Any]:
    passing = _Prepared(rule_id, failing=False)
    pass_ns = _time_bulk(passing, n_pass)
    if pass_ns is None:  # repeating it changes the outcome: a fresh copy for each one
        pass_ns = _time_each(passing, max(50, n_pass // 10), overhead, fires=False)
    failing = _Prepared(rule_id, failing=True)
    fail_ns = _time_each(failing, n_fail, overhead, fires=True)
    return {"pass_ns": round(pass_ns, 1), "fail_ns": round(fail_ns, 1)}


def bench_rules(size: int | None = None) -> dict[str, Any]:
    """{rule id: {pass_ns, fail_ns}} for every rule of the catalog.

    `size` (the --max-events value) shrinks the iteration counts for a quick run.
    """
    if size is None:
        n_pass, n_fail = 20_000, 1_000
    else:
        n_pass, n_fail = max(200, min(20_000, size)), max(20, min(1_000, size // 20))
    rule_classes()  # import every rule module before timing
    overhead = _timer_overhead()
    out: dict[str, Any] = {}
    for rule_id in RULE_PARAMS:
        try:
            out[rule_id] = bench_rule(rule_id, n_pass, n_fail, overhead)
        except Exception as exc:  # one broken rule must not lose the other 19 figures
            print(f"riskterm bench rules: {rule_id}: {exc}", file=sys.stderr)
            out[rule_id] = {"pass_ns": None, "fail_ns": None, "error": str(exc)}
    return out
