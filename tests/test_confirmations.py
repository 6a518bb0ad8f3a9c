"""Enforcement through a live broker that confirms later (CONTRACT §9, riskterm.confirmations):
the record is `ok` or `failed` only once the broker answers, nothing after it is committed
before, and the in-flight ledger never lets one close go out twice."""

from __future__ import annotations

import asyncio
from typing import Any

from riskterm.brokers.base import (
    BrokerError,
    Command,
    Flatten,
    Link,
    MarketOrder,
    OutcomeUnknown,
)
from riskterm.confirmations import Confirmations
from tests.helpers import fill, make_engine, records, ts


class LaterBroker:
    """Answers each command when the test says so: `answer(i, result)` / `refuse(i, exc)`."""

    executes = True
    live = False  # event time, so the tests drive the clock
    name = "later"

    def __init__(self, *, flattens: bool = False) -> None:
        self.flattens = flattens
        self.sent: list[Command] = []
        self.futures: list[asyncio.Future[str | None]] = []
        self.link = Link("connected")

    def submit(self, command: Command) -> asyncio.Future[str | None]:
        self.sent.append(command)
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return fut

    def answer(self, i: int, text: str | None = None) -> None:
        self.futures[i].set_result(text)

    def refuse(self, i: int, exc: BaseException) -> None:
        self.futures[i].set_exception(exc)


LIMIT = "rules: {max_contracts_per_instrument: {limits: {MNQ: 1}}}\n"
LOSS = ("rules: {daily_realized_loss: {limit: -10, action: flatten, lockout: until_reset}, "
        "daily_realized_profit: {target: 1000000}}\n")


async def settle() -> None:
    for _ in range(5):  # the confirmation task runs, then its done callback
        await asyncio.sleep(0)


async def test_records_wait_for_the_broker_and_keep_their_order() -> None:
    broker = LaterBroker()
    engine = make_engine(LOSS, broker)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 2, 100.0))
    engine.process(fill("2026-02-03T15:00:01Z", "sell", 1, 90.0))  # -10 realized: flatten
    # the violation is committed; its enforcement, the lockout and every state change wait
    changes = engine.take_changes()
    assert [r["kind"] for r in changes.records] == ["violation"]
    assert not changes.accounts and not changes.lockouts_added and not changes.positions
    assert engine.unconfirmed == 1 and len(broker.sent) == 1
    assert not engine.take_changes().records  # still waiting
    broker.answer(0, "closed MNQ")
    await settle()
    changes = engine.take_changes()
    enf, lock = changes.records
    assert (enf["kind"], enf["status"]) == ("enforcement", "ok")
    assert enf["detail"] == "closed 1 MNQ long (broker: closed MNQ)"
    assert lock["kind"] == "lockout" and changes.lockouts_added and changes.accounts
    assert engine.unconfirmed == 0


async def test_a_refused_close_is_failed_with_the_reason_and_retried() -> None:
    broker = LaterBroker()
    engine = make_engine(LIMIT, broker)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 3, 100.0))
    broker.refuse(0, BrokerError("ProjectX refused: InsufficientMargin (errorCode 2)"))
    await settle()
    _, enf = records(engine)
    assert enf["status"] == "failed"
    assert "InsufficientMargin" in enf["detail"] and "retrying in 1s" in enf["detail"]
    # refused: it never went out, so the retry sends it again (and only it)
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:00:02Z")})
    assert len(broker.sent) == 2 and broker.sent[1] == broker.sent[0]
    broker.answer(1)
    await settle()
    (again,) = records(engine)
    assert again["status"] == "ok" and again["detail"] == "sell 2 MNQ to reach 1"


async def test_an_unknown_outcome_stays_in_flight_so_it_is_never_sent_twice() -> None:
    broker = LaterBroker()
    engine = make_engine(LIMIT, broker)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 3, 100.0))
    broker.refuse(0, OutcomeUnknown("Position/partialCloseContract timed out after 1 attempt"))
    await settle()
    _, enf = records(engine)
    assert enf["status"] == "failed" and "timed out" in enf["detail"]
    assert "retrying in 31s" in enf["detail"]  # once the close in flight has lapsed
    # within the window nothing is sent again: the close may have happened
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:00:20Z")})
    assert records(engine) == [] and len(broker.sent) == 1
    # it had not (no fill, no position came): once lapsed, the retry sends it again
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:00:32Z")})
    assert len(broker.sent) == 2 and broker.sent[1] == broker.sent[0]
    broker.answer(1)
    await settle()
    (again,) = records(engine)
    assert again["status"] == "ok" and again["detail"] == "sell 2 MNQ to reach 1"


async def test_an_unknown_outcome_settled_by_the_fill_is_not_sent_again() -> None:
    broker = LaterBroker()
    engine = make_engine(LIMIT, broker)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 3, 100.0))
    broker.refuse(0, OutcomeUnknown("Position/partialCloseContract answered HTTP 503"))
    await settle()
    records(engine)
    engine.process(fill("2026-02-03T15:00:03Z", "sell", 2, 100.0))  # it did go through
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:00:40Z")})
    (retry,) = records(engine, ("enforcement",))
    assert retry["status"] == "skipped" and "already within 1" in retry["detail"]
    assert len(broker.sent) == 1


async def test_a_broker_that_never_answers_is_failed_after_the_timeout() -> None:
    broker = LaterBroker()
    engine = make_engine(LIMIT, broker)
    engine.confirmations = Confirmations(timeout=0.05)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 3, 100.0))
    assert await engine.confirmations.wait_idle(2.0)
    _, enf = records(engine)
    assert enf["status"] == "failed" and "did not confirm within 0.05 s" in enf["detail"]
    assert broker.futures[0].cancelled()


async def test_a_broker_with_its_own_flatten_gets_one_flatten() -> None:
    broker = LaterBroker(flattens=True)
    engine = make_engine(LOSS, broker)
    engine.process({"type": "order_placed", "ts": ts("2026-02-03T14:59:00Z"), "account": "A1",
                    "symbol": "ES", "order_id": "w1", "side": "buy", "qty": 1,
                    "order_type": "limit", "price": 90.0})
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 2, 100.0))
    engine.process(fill("2026-02-03T15:00:01Z", "sell", 1, 90.0))
    (cmd,) = broker.sent
    assert isinstance(cmd, Flatten) and cmd.account == "A1"
    assert [c.order_id for c in cmd.cancels] == ["w1"]
    assert [(c.symbol, c.side, c.qty) for c in cmd.closes] == [("MNQ", "sell", 1)]
    broker.answer(0, "closed MNQ; cancelled w1")
    await settle()
    enf = records(engine, ("enforcement",))[0]
    assert enf["status"] == "ok" and "broker: closed MNQ; cancelled w1" in enf["detail"]
    # a second breach while the close is still unfilled sends nothing more
    engine.execute_action("A1", "flatten", rule="manual")
    assert len(broker.sent) == 1


async def test_a_job_counts_an_action_only_once_the_broker_confirms() -> None:
    from riskterm.jobs.actions import execute_entry

    broker = LaterBroker()
    engine = make_engine("rules: {}\n", broker)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 2, 100.0))
    entry: dict[str, Any] = {"action": "close_position", "arguments": {"symbol": "MNQ"}}
    task = asyncio.create_task(execute_entry(engine, "A1", "job-1", entry))
    await settle()
    assert not task.done() and isinstance(broker.sent[0], MarketOrder)
    broker.refuse(0, BrokerError("account is locked by the firm"))
    _, executed = await task
    assert not executed and entry["result"].startswith("failed: ")
    assert "locked by the firm" in entry["result"]


async def test_shutdown_records_what_the_broker_never_confirmed() -> None:
    broker = LaterBroker()
    engine = make_engine(LIMIT, broker)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 3, 100.0))
    assert engine.abandon_unconfirmed("no confirmation from the broker before shutdown") == 1
    _, enf = records(engine)
    assert enf["status"] == "failed" and "before shutdown" in enf["detail"]
