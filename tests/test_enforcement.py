"""Enforcement through an executing broker: idempotent in flight, failures retried."""

from riskterm.brokers.base import BrokerError
from tests.helpers import fill, make_engine, records, ts


class FlakyBroker:
    executes = True

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list = []

    def submit(self, command) -> None:
        if self.failures:
            self.failures -= 1
            raise BrokerError("broker rejected the order: gateway timeout")
        self.sent.append(command)


RULES = "rules: {max_contracts_per_instrument: {limits: {MNQ: 1}}}\n"


def test_failed_enforcement_is_recorded_then_retried_until_it_goes_through():
    broker = FlakyBroker(failures=1)
    engine = make_engine(RULES, broker)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 3, 100.0))
    v, e = records(engine)
    assert v["kind"] == "violation"
    assert e["status"] == "failed" and "gateway timeout" in e["detail"]
    assert "retrying in 1s" in e["detail"]
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:00:02Z")})
    (again,) = records(engine)
    assert again["ts"] == "2026-02-03T15:00:01Z" and again["status"] == "ok"
    assert again["detail"] == "sell 2 MNQ to reach 1"
    assert len(broker.sent) == 1


def test_gives_up_after_three_attempts():
    broker = FlakyBroker(failures=10)
    engine = make_engine(RULES, broker)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 3, 100.0))
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:01:00Z")})
    recs = records(engine, ("enforcement",))
    assert [r["status"] for r in recs] == ["failed"] * 3
    assert recs[-1]["detail"].endswith("(attempt 3, giving up)")


def test_same_action_not_sent_twice_while_in_flight():
    broker = FlakyBroker(failures=0)
    engine = make_engine("rules: {daily_realized_loss: {limit: -10, lockout: none}, "
                         "daily_realized_profit: {target: 1000000}}\n", broker)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 2, 100.0, symbol="ES"))
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 1, 100.0))
    engine.process(fill("2026-02-03T15:00:01Z", "sell", 1, 90.0))  # -20 realized: flatten
    (e,) = records(engine, ("enforcement",))
    assert e["status"] == "ok" and e["detail"] == "closed 2 ES long"
    engine.execute_action("A1", "flatten", rule="manual")
    (dup,) = records(engine, ("enforcement",))
    assert dup["status"] == "skipped" and "in flight" in dup["detail"]
    assert len(broker.sent) == 1
    # the broker confirms the new position: no longer in flight
    engine.process({"type": "position", "ts": ts("2026-02-03T15:00:02Z"), "account": "A1",
                    "symbol": "ES", "qty": 0})
    engine.execute_action("A1", "flatten", rule="manual")
    (done,) = records(engine, ("enforcement",))
    assert done["status"] == "skipped" and "already flat" in done["detail"]
