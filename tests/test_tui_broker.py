"""The dashboard on a live broker, with Textual's Pilot: the broker and its connection in the
status bar, the banner while the link is down, a flatten the broker confirms later, and a
broker that cannot start.

The broker is a small live one implementing riskterm.brokers.base.Broker, found through the
registry like a plugin: the test pushes its events and snapshots, moves its link through the
states a real one goes through, and answers each command it was sent when the test says so."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from riskterm.brokers import registry
from riskterm.brokers.base import (
    BrokerContext,
    BrokerError,
    Command,
    Link,
    MarketOrder,
    Snapshot,
)
from riskterm.config import load_rules_text
from riskterm.db import EngineLock
from riskterm.host import RunOptions
from riskterm.tui import formatting as fmt
from riskterm.tui.app import RiskTermApp, create_app
from riskterm.tui.screens.confirm import ConfirmScreen
from riskterm.tui.screens.dashboard import DashboardScreen
from riskterm.tui.screens.violations import ViolationsScreen
from riskterm.tui.settings import AppSettings

SIZE = (160, 45)
RULES = """\
timezone: America/Chicago
daily_reset: "17:00"
session: {start: "00:00", end: "23:59", days: [mon, tue, wed, thu, fri, sat, sun]}
instruments:
  MNQ: {tick_size: 0.25, tick_value: 0.5}
rules:
  daily_realized_loss: {limit: -5000}
"""


class FakeLiveBroker:
    """A live broker the test drives: events and snapshots go out when pushed, every command
    gets an answer (a future) the test resolves."""

    name = "fakelive"
    title = "FakeBroker"
    executes = True
    live = True

    def __init__(self, ctx: BrokerContext) -> None:
        self.link = Link("connecting")
        self.queue: asyncio.Queue[dict[str, Any] | Snapshot] = asyncio.Queue()
        self.sent: list[tuple[Command, asyncio.Future[str | None]]] = []

    async def start(self) -> None:
        return None

    async def events(self) -> AsyncIterator[dict[str, Any] | Snapshot]:
        while True:
            yield await self.queue.get()

    def submit(self, command: Command) -> asyncio.Future[str | None]:
        answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.sent.append((command, answer))
        return answer

    async def close(self) -> None:
        self.link.set("disconnected", "closed")

    # -- what the test does with it, as a real broker's link would go --------------------

    def connect(self) -> None:
        """The broker's view (one account holding 2 MNQ), then connected, as on a connect."""
        now = time.time()
        self.queue.put_nowait(Snapshot(now, accounts=[{"account": "A1", "balance": 50_000.0}],
                                       positions=[{"account": "A1", "symbol": "MNQ", "qty": 2,
                                                   "avg_price": 21_000.0}]))
        self.queue.put_nowait({"type": "quote", "ts": now, "symbol": "MNQ", "last": 21_000.0})
        self.link.set("connected")
        self.queue.put_nowait({"type": "connection", "ts": now, "status": "connected"})

    def drop(self, reason: str, attempt: int) -> None:
        self.link.set("reconnecting", reason, attempt)
        self.queue.put_nowait({"type": "connection", "ts": time.time(),
                               "status": "disconnected", "reason": reason})


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> list[FakeLiveBroker]:
    """--source fakelive makes a FakeLiveBroker (kept in the list for the test)."""
    made: list[FakeLiveBroker] = []
    factory = registry.factory

    def make(ctx: BrokerContext) -> FakeLiveBroker:
        made.append(FakeLiveBroker(ctx))
        return made[-1]

    monkeypatch.setattr(registry, "factory",
                        lambda name: make if name == "fakelive" else factory(name))
    return made


def live_app(tmp_path: Path, source: str = "fakelive") -> RiskTermApp:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    opts = RunOptions(source=source, rules_path=rules, db_path=tmp_path / "live.db")
    return create_app(opts, load_rules_text(RULES), AppSettings(deterministic=True))


async def wait_for(pilot: Pilot[Any], condition: Callable[[], bool], what: str,
                   timeout: float = 10.0) -> None:
    """Wait (yielding to the app, whose timer flushes to the screen) until condition()."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def status(app: RiskTermApp) -> str:
    screen: Any = app.screen
    return str(screen.status_bar.render())


def banner(app: RiskTermApp) -> str | None:
    """The connection banner's text, or None while it is hidden."""
    screen: Any = app.screen
    shown = screen.link_banner
    return str(shown.render()) if shown.display else None


def notes(app: RiskTermApp) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


async def test_status_bar_and_banner_follow_the_connection(
        tmp_path: Path, broker: list[FakeLiveBroker]) -> None:
    app = live_app(tmp_path)
    tz = app.tz
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.engine_state == "live", "the engine to start")
        fake = broker[0]
        await wait_for(pilot, lambda: "FakeBroker · connecting" in status(app), "connecting")
        assert banner(app) is None  # a first connect in progress is no alarm
        fake.connect()
        await wait_for(pilot, lambda: "FakeBroker · connected" in status(app), "connected")
        assert banner(app) is None
        assert "A1" in app.host.engine.accounts

        fake.drop("the user hub closed the connection (1006)", attempt=3)
        since = fmt.clock(fake.link.since, tz)
        await wait_for(pilot, lambda: banner(app) is not None, "the banner")
        assert f"FakeBroker · reconnecting (attempt 3, since {since})" in status(app)
        text = banner(app)
        assert text is not None
        assert f"FakeBroker CONNECTION LOST since {since} — reconnecting, attempt 3" in text
        assert "the user hub closed the connection (1006)" in text
        assert "the data shown may be stale" in text
        # on every screen: the banner is part of the chrome
        await pilot.press("v")
        assert isinstance(app.screen, ViolationsScreen)
        await wait_for(pilot, lambda: banner(app) is not None, "the banner on violations")
        await pilot.press("d")
        assert isinstance(app.screen, DashboardScreen)

        fake.link.attempt = 4  # the broker counts on; the next poll shows it
        await wait_for(pilot, lambda: "attempt 4" in (banner(app) or ""), "attempt 4")
        assert "reconnecting (attempt 4" in status(app)

        fake.connect()  # back: a fresh snapshot, then connected
        await wait_for(pilot, lambda: banner(app) is None, "the banner to go")
        assert "FakeBroker · connected" in status(app)
        assert "reconnecting" not in status(app)

        await pilot.press("q")  # a quiet live stream does not hold the quit up
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert app.return_code == 0


async def test_a_disconnected_broker_gets_the_red_banner(
        tmp_path: Path, broker: list[FakeLiveBroker]) -> None:
    app = live_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.engine_state == "live", "the engine to start")
        fake = broker[0]
        fake.connect()
        await wait_for(pilot, lambda: "connected" in status(app), "connected")
        fake.link.set("disconnected", "the broker ended the session")
        since = fmt.clock(fake.link.since, app.tz)
        await wait_for(pilot, lambda: banner(app) is not None, "the banner")
        screen: Any = app.screen
        assert screen.link_banner.has_class("-disconnected")
        assert f"FakeBroker DISCONNECTED since {since}" in (banner(app) or "")
        assert "the broker ended the session" in (banner(app) or "")
        assert f"disconnected since {since}" in status(app)


def select_a1(app: RiskTermApp) -> None:
    screen = app.screen
    assert isinstance(screen, DashboardScreen)
    screen.accounts.focus()
    screen.accounts.move_cursor(row=screen.accounts.get_row_index("A1"))


@pytest.mark.parametrize("answer", ["ok", "failed"])
async def test_flatten_says_sent_then_what_the_broker_answered(
        tmp_path: Path, broker: list[FakeLiveBroker], answer: str) -> None:
    app = live_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.engine_state == "live", "the engine to start")
        fake = broker[0]
        fake.connect()
        screen: Any = app.screen
        await wait_for(pilot, lambda: "A1\x1fMNQ" in screen.positions.row_keys,
                       "the snapshot on screen")
        select_a1(app)
        await pilot.pause()
        await pilot.press("f")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        assert isinstance(app.screen, DashboardScreen)
        # sent, and the screen is ours while the broker thinks
        assert len(fake.sent) == 1
        command, reply = fake.sent[0]
        assert isinstance(command, MarketOrder) and command.qty == 2 and command.side == "sell"
        assert any(n.startswith("Flatten A1: sent, waiting for the broker: ") for n in notes(app))
        assert not any("confirmed" in n or "failed" in n for n in notes(app))
        await pilot.press("v", "d")  # keys still act
        assert isinstance(app.screen, DashboardScreen)

        if answer == "ok":
            reply.set_result("filled 2 @ 21000.25")
            await wait_for(pilot, lambda: any("confirmed by FakeBroker" in n
                                              for n in notes(app)), "the confirmation")
            final = [n for n in notes(app) if "confirmed by FakeBroker" in n]
            assert final[0].startswith("Flatten A1: ok, confirmed by FakeBroker: ")
            assert "filled 2 @ 21000.25" in final[0]
        else:
            reply.set_exception(BrokerError("order rejected: the market is closed"))
            await wait_for(pilot, lambda: any(": failed: " in n for n in notes(app)),
                           "the failure")
            final = [n for n in notes(app) if ": failed: " in n]
            assert final[0].startswith("Flatten A1: failed: ")
            assert "order rejected: the market is closed" in final[0]
            assert [n.severity for n in app._notifications][-1] == "error"
        # the record the feed and the database get is the final one
        await app.host.recorder.flush()
        manual = [r for r in app.host.engine.take_changes().records if r.get("rule") == "manual"]
        assert manual == []  # committed already: nothing held back
        with sqlite3.connect(tmp_path / "live.db") as conn:
            rows = [json.loads(b) for (b,) in conn.execute(
                "SELECT body FROM records WHERE kind = 'enforcement'")]
        flat = [r for r in rows if r["rule"] == "manual"]
        assert [r["status"] for r in flat] == [answer]


async def test_a_first_connect_that_keeps_failing_reads_well_at_80x24(
        tmp_path: Path, broker: list[FakeLiveBroker]) -> None:
    app = live_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.engine_state == "live", "the engine to start")
        fake = broker[0]
        fake.link.set("connecting", "the user hub refused the connection: HTTP 503", 2)
        since = fmt.clock(fake.link.since, app.tz)
        await wait_for(pilot, lambda: banner(app) is not None, "the banner")
        assert f"FakeBroker NOT CONNECTED — connecting since {since}, attempt 2" in (
            banner(app) or "")
        assert f"FakeBroker · connecting (attempt 2, since {since})" in status(app)
        screen: Any = app.screen
        # a narrow screen stacks the violations feed under the positions, each the whole width
        # (issue 16; tests/test_tui_small.py)
        assert screen.feed.size.width >= 70 and screen.positions.size.width >= 70
        assert screen.positions.region.bottom <= screen.feed.region.y
        fake.connect()
        await wait_for(pilot, lambda: banner(app) is None, "the banner to go")
        assert "FakeBroker · connected" in status(app)


async def test_a_database_another_engine_holds_ends_the_dashboard_with_2(
        tmp_path: Path, broker: list[FakeLiveBroker]) -> None:
    app = live_app(tmp_path)
    lock = EngineLock.acquire(tmp_path / "live.db", "riskterm --no-ui")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    finally:
        lock.release()
    assert app.return_code == 2
    assert app.failure is not None and "riskterm --no-ui" in app.failure
    assert broker == []  # refused before any broker was made


async def test_a_broker_that_cannot_start_ends_the_dashboard_with_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PROJECTX_USERNAME", "PROJECTX_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    app = live_app(tmp_path, source="projectx")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert app.return_code == 2
    assert app.failure is not None and "PROJECTX_USERNAME is not set" in app.failure
    EngineLock.acquire(tmp_path / "live.db").release()  # the database is free again


def test_riskterm_on_a_broker_that_cannot_start_exits_2_without_a_traceback(
        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTX_")}
    env["PROJECTX_USERNAME"] = "trader"  # the key is missing
    env["TEXTUAL_DRIVER"] = "textual.drivers.headless_driver:HeadlessDriver"
    run = subprocess.run([sys.executable, "-m", "riskterm", "--source", "projectx",
                          "--db", str(tmp_path / "x.db")], env=env, capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 2, run.stderr
    assert "riskterm: ProjectX: PROJECTX_API_KEY is not set" in run.stderr
    assert "Traceback" not in run.stderr
