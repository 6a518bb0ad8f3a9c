"""Alert delivery in-process: the real engine replaying a file through EngineHost (SQLite, the
recorder's sinks), and the dispatcher on its own, against webhook receivers on 127.0.0.1 that
answer, fail with 500, are down or never answer."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from riskterm.alerts import dispatch
from riskterm.alerts.config import AlertTargetSpec, check_target
from riskterm.alerts.dispatch import SLICE, AlertDispatcher, slices
from riskterm.alerts.messages import Selector, build
from riskterm.config import load_rules_text
from riskterm.host import EngineHost, RunOptions
from tests.alert_receiver import Receiver, refused_port
from tests.helpers import HEADER

LOSS = "rules:\n  daily_realized_loss: {limit: -100, action: flatten, lockout: until_reset}\n"


def losing_day(accounts: int) -> str:
    """Each account buys 1 MNQ and sells it 150 points lower: -300, a violation with lockout."""
    out = []
    for i in range(accounts):
        for side, price, sec in (("buy", 20000.0, 0), ("sell", 19850.0, 5)):
            out.append(json.dumps({"type": "fill", "ts": f"2026-02-03T15:00:{sec:02d}Z",
                                   "account": f"A{i}", "symbol": "MNQ", "order_id": f"{i}{side}",
                                   "side": side, "qty": 1, "price": price}))
    return "\n".join(out) + "\n"


async def replay(tmp_path: Path, alerts: str, events: str) -> tuple[list[dict[str, Any]], Path]:
    path = tmp_path / "events.jsonl"
    path.write_text(events)
    db = tmp_path / "alerts.db"
    config = load_rules_text(HEADER + LOSS + alerts, str(tmp_path / "rules.yaml"))
    out: list[dict[str, Any]] = []
    host = EngineHost(RunOptions(source=f"replay:{path}", db_path=db), config,
                      sinks=[lambda batch: out.extend(rec for rec, _ in batch)],
                      with_jobs=False, diagnostics=lambda _: None)
    await host.open()
    try:
        await host.run_source()
        await host.finish(wait_for_jobs=True)
    finally:
        await host.close()
    return out, db


def stored(db: Path, kind: str) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        return [json.loads(b) for (b,) in conn.execute(
            "SELECT body FROM records WHERE kind = ? ORDER BY id", (kind,))]


@pytest.fixture
async def receiver():
    rec = await Receiver().start()
    yield rec
    await rec.stop()


async def test_a_violation_with_its_lockout_arrives_as_one_message(tmp_path, receiver):
    out, _ = await replay(tmp_path, f"alerts:\n  - url: {receiver.url}\n", losing_day(1))
    assert [r["kind"] for r in out] == ["violation", "enforcement", "lockout", "summary"]
    assert len(receiver.posts) == 1  # the skipped flatten is not wanted by default
    post = receiver.posts[0]
    assert post["title"] == "riskterm: A0 locked out (daily_realized_loss)"
    assert post["type"] == "failure"
    assert post["message"].splitlines() == [
        "A0 realized P&L today is -300.00, limit -100.00",
        "rule daily_realized_loss, value -300.0, limit -100.0; actions: flatten",
        "A0 is halted until 2026-02-03T23:00:00Z",
        "at 2026-02-03T15:00:05Z",
    ]


async def test_kinds_choose_the_records(tmp_path, receiver):
    await replay(tmp_path, f"alerts:\n  - url: {receiver.url}\n"
                 "    kinds: [violation, enforcement]\n", losing_day(1))
    assert [p["title"] for p in receiver.posts] == [
        "riskterm: A0 locked out (daily_realized_loss)", "riskterm: flatten skipped on A0"]
    other = await Receiver().start()
    try:
        (tmp_path / "b").mkdir()
        await replay(tmp_path / "b", f"alerts:\n  - url: {other.url}\n"
                     "    rules: [max_contracts]\n", losing_day(1))
        assert other.posts == [] and other.requests == 0  # another rule's records only
    finally:
        await other.stop()


async def test_a_receiver_answering_500_is_retried_then_an_alert_failed_warning(tmp_path):
    failing = await Receiver("fail").start()
    try:
        out, db = await replay(tmp_path, f"alerts:\n  - url: {failing.url}\n    name: desk\n"
                               "    retries: 2\n    backoff: 0.01s\n", losing_day(1))
    finally:
        await failing.stop()
    assert failing.requests == 3  # the first try and two retries
    (warning,) = [r for r in out if r["kind"] == "warning"]
    assert warning["rule"] == "alert_failed" and warning["account"] == "A0"
    assert warning["message"] == (
        "alert to desk failed after 3 attempts (Failed to send JSON POST notification: "
        "Internal server error., error=500.); not delivered: A0 locked out "
        "(daily_realized_loss)")
    assert warning["value"] == 1 and warning["limit"] is None
    # committed before the summary, which counts it, and the engine went on to the end
    assert out[-1]["kind"] == "summary" and out[-1]["warnings"] == 1
    assert stored(db, "warning") == [warning]


async def test_a_receiver_that_is_down_becomes_a_warning(tmp_path):
    sock, port = refused_port()
    try:
        out, _ = await replay(tmp_path, f"alerts:\n  - url: json://127.0.0.1:{port}/x\n"
                              "    retries: 1\n    backoff: 0.01s\n", losing_day(1))
    finally:
        sock.close()
    (warning,) = [r for r in out if r["kind"] == "warning"]
    assert warning["message"].startswith(
        f"alert to json://127.0.0.1:{port}/x failed after 2 attempts (A Connection error "
        "occurred sending JSON notification to 127.0.0.1.)")


async def test_a_receiver_that_never_answers_does_not_hold_the_engine(tmp_path):
    slow = await Receiver("slow").start()
    try:
        out, _ = await replay(tmp_path, f"alerts:\n  - url: {slow.url}\n    retries: 0\n"
                              "    timeout: 0.5s\n", losing_day(3))
        # the receiver runs on the engine's own event loop: a delivery that blocked the loop
        # would never let it take the request, and this replay would hang
        await slow.arrived(requests=3)  # each try reached it (a thread of its own each)
        assert not slow.release.is_set() and slow.posts == []
    finally:
        await slow.stop()
    assert [r["kind"] for r in out].count("violation") == 3
    warnings = [r for r in out if r["kind"] == "warning"]
    assert [w["account"] for w in warnings] == ["A0", "A1", "A2"]
    assert all("failed after 1 attempt (no answer within 0.5 s)" in w["message"]
               for w in warnings)
    assert out[-1]["kind"] == "summary"


async def test_a_storm_through_the_engine_is_told_within_the_rate_limit(tmp_path, receiver):
    out, _ = await replay(tmp_path, f"alerts:\n  - url: {receiver.url}\n"
                          "    rate_limit: {messages: 1, per: 1h}\n", losing_day(50))
    assert [r["kind"] for r in out].count("violation") == 50
    # one message within the window, and the summary of the rest sent at shutdown (or, when
    # the commit brought all fifty at once, one summary of them all)
    assert 1 <= len(receiver.posts) <= 2
    told = 0
    for post in receiver.posts:
        if post["title"].endswith("(rate limit)"):
            told += int(post["title"].split()[1])
        else:
            told += 1
    assert told == 50


def _violation(i: int) -> tuple[dict[str, Any], str]:
    rec = {"kind": "violation", "ts": f"2026-02-03T15:00:{i:02d}Z", "rule": "max_order_size",
           "account": f"B{i % 3}", "symbol": "MNQ", "action": ["cancel_order"],
           "message": f"order {i} too big", "value": 9, "limit": 5}
    return rec, json.dumps(rec)


async def test_rate_limit_summary_holds_every_alert_over_the_limit(receiver):
    warned: list[tuple[str, str, int]] = []
    spec = AlertTargetSpec(url=receiver.url, kinds=("violation",),
                           rate_limit={"messages": 2, "per": "1h"})
    dispatcher = AlertDispatcher([check_target(spec)], lambda *a: warned.append(a))
    dispatcher.start()
    dispatcher.sink([_violation(i) for i in range(30)])
    await receiver.arrived(posts=2)
    first, storm = receiver.posts
    assert first["title"] == "riskterm: B0 broke max_order_size"
    assert storm["title"] == "riskterm: 29 alerts (rate limit)"
    assert storm["message"].splitlines() == [
        "29 alerts held back by the rate limit (2 per 1h): 29 violations",
        "rules: max_order_size (29)",
        "accounts: B1, B2, B0",
        "first: B1 broke max_order_size at 2026-02-03T15:00:01Z",
        "last: B2 broke max_order_size at 2026-02-03T15:00:29Z",
    ]
    dispatcher.sink([_violation(i) for i in range(30, 35)])  # the window is full: they wait
    await dispatcher.drain()  # ... and go out as one summary at shutdown
    assert len(receiver.posts) == 3
    assert receiver.posts[2]["title"] == "riskterm: 5 alerts (rate limit)"
    assert warned == []


async def test_a_reload_hands_over_to_the_new_targets(receiver):
    other = await Receiver().start()
    try:
        spec = AlertTargetSpec(url=receiver.url, kinds=("violation",))
        dispatcher = AlertDispatcher([check_target(spec)], lambda *a: None)
        dispatcher.start()
        dispatcher.sink([_violation(1)])
        dispatcher.set_targets([check_target(AlertTargetSpec(url=other.url,
                                                             kinds=("violation",)))])
        dispatcher.sink([_violation(2)])
        await dispatcher.drain()
        assert [p["message"].splitlines()[0] for p in receiver.posts] == ["order 1 too big"]
        assert [p["message"].splitlines()[0] for p in other.posts] == ["order 2 too big"]
    finally:
        await other.stop()


def test_the_default_choice_of_records():
    pick = Selector(AlertTargetSpec(url="json://h/x"))
    enf = {"kind": "enforcement", "ts": "t", "action": "flatten", "account": "A", "symbol": None,
           "rule": "daily_realized_loss", "order_id": None, "detail": "d"}
    job = {"kind": "job", "ts": "t", "job_id": "j1", "job_kind": "smart_risk", "account": "A",
           "attempt": 1}
    batch = [({**enf, "status": "ok"}, ""), ({**enf, "status": "failed"}, ""),
             ({**job, "status": "running"}, ""),
             ({**job, "status": "completed", "duration_s": 1.5, "actions_taken": 2,
               "error": None}, ""),
             ({"kind": "warning", "ts": "t", "rule": "alert_failed", "account": "A",
               "symbol": None, "message": "m", "value": 1, "limit": None}, ""),
             ({"kind": "violation", "ts": "t", "rule": "max_order_size", "account": "A",
               "symbol": "MNQ", "action": ["alert"], "message": "m", "value": 9, "limit": 5}, "")]
    assert [build(item).title for item in pick.select(batch)] == [
        "riskterm: flatten failed on A", "riskterm: Smart Risk Manager job completed for A"]
    narrow = Selector(AlertTargetSpec(url="json://h/x", kinds=("violation", "warning"),
                                      accounts=("B*",)))
    assert narrow.select(batch) == []  # account A; and alert_failed is never alerted


def test_a_large_commit_is_examined_in_slices_that_keep_a_violation_with_its_lockout():
    batch = []
    for i in range(2000):  # violation, enforcement, lockout: 6,000 records
        v, _ = _violation(i % 60)
        v = {**v, "account": f"C{i}"}
        batch += [(v, ""), ({"kind": "enforcement", "ts": v["ts"], "action": "cancel_order",
                             "account": v["account"], "symbol": "MNQ", "rule": v["rule"],
                             "order_id": None, "status": "ok", "detail": "d"}, ""),
                  ({"kind": "lockout", "ts": v["ts"], "account": v["account"],
                    "rule": v["rule"], "state": "halted", "until": None}, "")]
    pieces = slices(batch)
    assert len(pieces) == 3 and [r for p in pieces for r in p] == batch
    assert all(len(p) <= SLICE + 2 and p[0][0]["kind"] == "violation" for p in pieces)
    pick = Selector(AlertTargetSpec(url="json://h/x"))
    whole = pick.select(batch)
    assert len(whole) == 2000 and all(lock is not None for _, lock in whole)
    assert [i for p in pieces for i in pick.select(p)] == whole


async def test_a_full_queue_counts_what_it_leaves_out_and_says_so(receiver, monkeypatch):
    monkeypatch.setattr(dispatch, "MAX_QUEUED", 10)
    spec = AlertTargetSpec(url=receiver.url, kinds=("violation",))
    dispatcher = AlertDispatcher([check_target(spec)], lambda *a: None)
    dispatcher.start()
    for start in (0, 5, 10):  # the third batch finds the queue full
        dispatcher.sink([_violation(i) for i in range(start, start + 5)])
    await dispatcher.drain()
    (post,) = receiver.posts
    assert post["title"] == "riskterm: 10 alerts (rate limit)"
    assert "5 record(s) were not examined: the alert queue was full" in post["message"]
