"""Attention and settings (issue 16, items 6 and 7), on the real app with Pilot: a halt is a
toast, a bell and a desktop notification once per record, a storm is one summary, the history
screen lists them; the settings file is read by the app factory (key map, theme, switches), a
bad one is named key by key; the footer shows Pause / Resume and can be clicked; the palette
lists each command once; `riskterm --version` prints the package's version.

What the app writes to the terminal goes through its driver (Textual's headless driver drops
it), so the tests record the headless driver's writes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from textual.command import CommandList, CommandPalette
from textual.drivers.headless_driver import HeadlessDriver
from textual.pilot import Pilot

from riskterm.config import load_rules
from riskterm.host import RunOptions
from riskterm.tui.app import RiskTermApp, create_app
from riskterm.tui.attention import Attention, desktop_sequence, detect_protocol
from riskterm.tui.demo import DEMO_RULES, demo_app, write_demo
from riskterm.tui.messages import RecordsCommitted
from riskterm.tui.screens.dashboard import DashboardScreen
from riskterm.tui.screens.notifications import NotificationsScreen
from riskterm.tui.screens.rules import RulesScreen
from riskterm.tui.settings import AppSettings
from riskterm.tui.settings_file import load_settings
from tests.test_tui import settle, wait_for

SIZE = (160, 45)
DET = AppSettings(deterministic=True, desktop_protocol="osc9")
LIVE = AppSettings(desktop_protocol="osc9")  # alerts gathered for a moment, through a timer
BELL, OSC9 = "\x07", "\x1b]9;"


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Everything the app writes to its (headless) terminal driver."""
    out: list[str] = []
    monkeypatch.setattr(HeadlessDriver, "write", lambda self, data: out.append(data))
    return out


def signals(written: list[str]) -> list[str]:
    """The bells and desktop notifications among the driver's writes (Textual writes its own
    escapes too: the pointer shape)."""
    return [w for w in written if w == BELL or w.startswith(("\x1b]9;", "\x1b]777;"))]


def toasts(app: RiskTermApp) -> list[tuple[str, str]]:
    return [(n.title, n.message) for n in app._notifications]


def bar_text(app: RiskTermApp) -> str:
    """The footer of the screen on top, as drawn."""
    return str(app.screen.query_one("#key-bar").render())


async def noticed(app: RiskTermApp, pilot: Pilot[Any], count: int = 1) -> None:
    await wait_for(pilot, lambda: app.attention.attention.notices >= count, what="a notice")


# -- notifications ---------------------------------------------------------------------------


async def test_a_halt_is_a_toast_a_bell_and_a_desktop_notification_once(
        tmp_path: Path, written: list[str]) -> None:
    app = demo_app(tmp_path, settings=LIVE)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app, pilot)
        await noticed(app, pilot)
        assert toasts(app) == [("EVAL-101: halted",
                                "EVAL-101 halted by daily_realized_loss, until 17:00 CST")]
        assert signals(written) == [BELL, "\x1b]9;riskterm: EVAL-101: halted: EVAL-101 halted "
                                          "by daily_realized_loss, until 17:00 CST\x07"]
        # the same record again (as a second delivery of a batch would bring it): no notice
        lockout = next(r for r in _db_records(app) if r["kind"] == "lockout")
        seq = app.record_seq
        app.post_message(RecordsCommitted([(lockout, json.dumps(lockout))]))
        await wait_for(pilot, lambda: app.record_seq == seq + 1, what="the batch handled")
        assert app.attention.attention.pending == []
        assert len(app.attention.attention.history) == 1
        # the history screen lists it with its time, in the display zone
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, NotificationsScreen)
        table = screen.query_one("#notifications-table")
        assert table.row_count == 1  # type: ignore[attr-defined]
        row = [str(c) for c in table.get_row_at(0)]  # type: ignore[attr-defined]
        assert row[0] == "2026-03-02 08:35:31 CST"
        assert row[2] == "EVAL-101" and "daily_realized_loss" in row[3]
        await pilot.press("n")
        assert isinstance(app.screen, DashboardScreen)
    assert len(signals(written)) == 2 and len(toasts(app)) == 1


async def test_the_history_fits_80x24(tmp_path: Path, written: list[str]) -> None:
    app = demo_app(tmp_path, settings=DET)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(app, pilot)
        # deterministic (snapshots): told as the record arrived, and no toast, whose life is
        # wall-clock time
        assert app.attention.attention.notices == 1 and toasts(app) == []
        assert signals(written)[0] == BELL
        await pilot.press("n")
        table = app.screen.query_one("#notifications-table")
        assert [c.label.plain for c in table.ordered_columns] == ["time", "text"]  # type: ignore
        time_of_day, text = table.get_row_at(0)  # type: ignore[attr-defined]
        assert time_of_day == "08:35:31"
        assert str(text) == "halted: EVAL-101 halted by daily_realized_loss, until 17:00 CST"
        assert table.rows[table.coordinate_to_cell_key((0, 0)).row_key].height == 2  # type: ignore
        assert table.region.right <= 80  # type: ignore[attr-defined]


async def test_each_channel_can_be_switched_off(tmp_path: Path, written: list[str]) -> None:
    app = demo_app(tmp_path, settings=replace(LIVE, notify_bell=False, notify_desktop=False))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app, pilot)
        await noticed(app, pilot)
        assert len(toasts(app)) == 1 and signals(written) == []
    app = demo_app(tmp_path / "b", settings=replace(LIVE, notify_toast=False))
    written.clear()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app, pilot)
        await noticed(app, pilot)
        assert toasts(app) == [] and signals(written)[0] == BELL
        assert signals(written)[1].startswith(OSC9)


def storm_events(accounts: int) -> list[dict[str, Any]]:
    """`accounts` accounts, each losing 500 on ES: each is halted by daily_realized_loss."""
    start = datetime.fromisoformat("2026-03-02T14:35:00+00:00")

    def at(s: float) -> str:
        return (start + timedelta(seconds=s)).isoformat().replace("+00:00", "Z")

    ev: list[dict[str, Any]] = [{"type": "quote", "ts": at(0), "symbol": "ES", "last": 6000.0}]
    for i in range(accounts):
        name = f"ACC-{i:02d}"
        ev.append({"type": "account", "ts": at(1), "account": name, "balance": 50_000.0})
        ev.append({"type": "fill", "ts": at(2), "account": name, "symbol": "ES",
                   "order_id": f"{name}-1", "side": "buy", "qty": 2, "price": 6000.0})
        ev.append({"type": "fill", "ts": at(3), "account": name, "symbol": "ES",
                   "order_id": f"{name}-2", "side": "sell", "qty": 2, "price": 5995.0})
    return ev


async def test_a_storm_of_fifty_lockouts_is_one_summary(tmp_path: Path,
                                                        written: list[str]) -> None:
    events, rules = write_demo(tmp_path)
    events.write_text("".join(json.dumps(e) + "\n" for e in storm_events(50)))
    opts = RunOptions(source=f"replay:{events}", rules_path=rules, db_path=tmp_path / "s.db",
                      speed=0)
    # a gathering window longer than the test: the notice goes out when the test says so
    app = create_app(opts, load_rules(rules), AppSettings(desktop_protocol="osc9",
                                                          attention_window_s=3600.0))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app, pilot)
        attention = app.attention.attention
        await wait_for(pilot, lambda: len(attention.pending) == 50, what="50 alerts")
        assert toasts(app) == [] and signals(written) == []
        now = attention.clock()
        attention.clock = lambda: now + 3600.0
        app.attention._deliver()
        await pilot.pause()  # the toast is a message to the app
        assert toasts(app) == [("50 alerts: 50 halted", "50 accounts: ACC-00, ACC-01, ACC-02, "
                                "ACC-03 and 46 more. Press n for the list.")]
        assert signals(written).count(BELL) == 1 and len(signals(written)) == 2
        await pilot.press("n")
        assert app.screen.query_one("#notifications-table").row_count == 50  # type: ignore


def test_notices_are_gathered_and_spaced() -> None:
    now = [0.0]
    attention = Attention(0.5, 5.0, ZoneInfo("UTC"), clock=lambda: now[0])

    def lockout(account: str) -> dict[str, Any]:
        return {"kind": "lockout", "ts": "2026-03-02T14:35:00Z", "account": account,
                "rule": "daily_total_loss", "state": "reducing", "until": None}

    assert attention.offer(lockout("A")) and not attention.offer(lockout("A"))
    assert attention.due_in() == 0.5 and attention.take() is None
    now[0] = 0.5
    first = attention.take()
    assert first is not None and first.title == "A: reduce only"
    assert first.text == "A may only reduce positions (daily_total_loss), until unlocked by hand"
    now[0] = 1.0  # within the gap: held, and gathered with what follows
    assert attention.offer(lockout("B")) and attention.offer(lockout("C"))
    assert attention.offer({"kind": "enforcement", "ts": "2026-03-02T14:35:01Z", "account": "B",
                            "rule": "daily_total_loss", "action": "flatten",
                            "status": "failed", "detail": "rejected by the broker"})
    assert not attention.offer({"kind": "enforcement", "status": "ok", "account": "B"})
    # the dashboard's own flatten (rule manual) says its outcome itself: not a second toast
    assert not attention.offer({"kind": "enforcement", "ts": "2026-03-02T14:35:01Z",
                                "account": "B", "rule": "manual", "action": "flatten",
                                "status": "failed", "detail": "rejected"})
    assert attention.due_in() == 4.5 and attention.take() is None
    now[0] = 5.5
    second = attention.take()
    assert second is not None and second.severity == "error"
    assert second.title == "3 alerts: 2 reduce only, 1 enforcement failed"
    assert attention.take() is None and attention.notices == 2


def test_desktop_sequences_per_terminal() -> None:
    assert detect_protocol({"TERM_PROGRAM": "iTerm.app"}) == "osc9"
    assert detect_protocol({"TERM": "xterm-kitty"}) == "osc9"
    assert detect_protocol({"TERM": "foot"}) == "osc777"
    assert detect_protocol({"TERM": "xterm-256color"}) is None  # not known: none is sent
    assert desktop_sequence("osc777", "A; halted", "x\x1b[31m", {}) == (
        "\x1b]777;notify;A, halted;x [31m\x07")  # no control character reaches the terminal
    assert desktop_sequence("osc9", "t", "b", {"TMUX": "/tmp/tmux"}) == (
        "\x1bPtmux;\x1b\x1b]9;riskterm: t: b\x07\x1b\\")


# -- settings -------------------------------------------------------------------------------


def _db_records(app: RiskTermApp) -> list[dict[str, Any]]:
    import sqlite3

    assert app.opts.db_path is not None
    conn = sqlite3.connect(app.opts.db_path)
    try:
        return [json.loads(b) for (b,) in conn.execute("SELECT body FROM records ORDER BY id")]
    finally:
        conn.close()


def app_from_settings_file(tmp_path: Path, text: str,
                           monkeypatch: pytest.MonkeyPatch) -> RiskTermApp:
    """The app as the command line builds it (create_app without settings), reading the
    settings file RISKTERM_CONFIG names."""
    path = tmp_path / "settings.toml"
    path.write_text(text)
    monkeypatch.setenv("RISKTERM_CONFIG", str(path))
    events, rules = write_demo(tmp_path)
    rules.write_text(DEMO_RULES)
    opts = RunOptions(source=f"replay:{events}", rules_path=rules, db_path=tmp_path / "d.db",
                      speed=0)
    return create_app(opts, load_rules(rules))


async def test_the_settings_file_remaps_keys_and_sets_the_theme(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: list[str]) -> None:
    app = app_from_settings_file(tmp_path, """
theme = "nord"
time_zone = "Europe/London"
refresh_hz = 20
[keys]
rules = "g"
notifications = "N"
[notifications]
bell = false
desktop = false
""", monkeypatch)
    assert app.settings.problems == ()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app, pilot)
        assert app.theme == "nord" and str(app.tz) == "Europe/London"
        await pilot.press("r")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("g")
        assert isinstance(app.screen, RulesScreen)
        await noticed(app, pilot)
        assert signals(written) == [] and len(toasts(app)) == 1
        await pilot.press("N")
        assert isinstance(app.screen, NotificationsScreen)
        row = [str(c) for c in app.screen.query_one(
            "#notifications-table").get_row_at(0)]  # type: ignore[attr-defined]
        assert row[0] == "2026-03-02 14:35:31 GMT"  # the display zone of the settings
        await pilot.press("escape")
        assert " g Rules " in bar_text(app)
        names = await palette_names(app, pilot)  # the palette names the keys as moved
        assert "Rules (g)" in names and "Alerts (N)" in names


async def test_a_bad_settings_file_names_each_key_and_keeps_the_defaults(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_from_settings_file(tmp_path, """
theme = "no-such-theme"
refresh_hz = 0
colour = "red"
[keys]
flatten = "q"
rules = "R"
nothing = "x"
unlock = "U"
[notifications]
bell = "yes"
""", monkeypatch)
    problems = "\n".join(app.settings.problems)
    for key, why in (("theme", "'no-such-theme' is not a theme"),
                     ("refresh_hz", "0 is not a number from 1 to 60"),
                     ("colour", "unknown setting"),
                     ("keys.flatten", "q is already the key of quit"),
                     ("keys.rules", "R is already the key of retry_job"),
                     ("keys.nothing", "no key has this id"),
                     ("notifications.bell", "'yes' is not true or false")):
        assert f"{key}: {why}" in problems, key
    assert len(app.settings.problems) == 7
    assert app.settings.keymap == {"unlock": "U"}  # the good key is kept
    assert app.settings.refresh_hz == 10.0 and app.settings.notify_bell
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app, pilot)
        said = [m for t, m in toasts(app) if t.startswith("Settings file")]
        assert said == ["\n".join(app.settings.problems)]  # one toast, a line per key
        assert toasts(app)[0][0] == f"Settings file {tmp_path / 'settings.toml'}"
        await pilot.press("q")  # quit keeps its key
    assert app.return_code == 0


def test_a_settings_file_that_is_not_toml_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text("theme = \n")
    settings = load_settings(path)
    assert settings.problems[0].startswith("not valid TOML: ")
    assert "line 1" in settings.problems[0]
    assert replace(settings, problems=(), settings_file=None) == AppSettings()
    assert load_settings(tmp_path / "absent.toml").problems == ()  # no file: the defaults


# -- footer, palette, version ---------------------------------------------------------------


async def test_the_footer_shows_resume_while_paused_and_can_be_clicked(tmp_path: Path) -> None:
    app = demo_app(tmp_path, settings=DET)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        def shown() -> str:
            return bar_text(app)

        assert " p Pause " in shown()
        await pilot.press("p")
        assert app.paused and " p Resume " in shown()
        at = shown().index("p Resume")
        await pilot.click("#key-bar", offset=(at + 3, 0))
        assert not app.paused and " p Pause " in shown()
        at = shown().index("v Violations")
        await pilot.click("#key-bar", offset=(at + 3, 0))
        assert app.current_mode == "violations"


async def test_the_palette_lists_each_command_once(tmp_path: Path) -> None:
    app = demo_app(tmp_path, settings=DET)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        names = await palette_names(app, pilot)
        titles = [n.split(" (")[0] for n in names]
        assert len(titles) == len(set(titles)), names
        assert "Quit" in titles and "Keys" in titles and "Alerts" in titles
        assert "Theme" in titles  # Textual's own commands that we do not offer stay


async def palette_names(app: RiskTermApp, pilot: Pilot[Any]) -> list[str]:
    """The commands the palette offers (opened with ctrl+p, nothing typed)."""
    await pilot.press("ctrl+p")
    assert isinstance(app.screen, CommandPalette)
    hits = app.screen.query_one(CommandList)
    await wait_for(pilot, lambda: hits.option_count > 10, what="palette commands")
    return [_prompt(hits.get_option_at_index(i).prompt) for i in range(hits.option_count)]


def _prompt(prompt: Any) -> str:
    text: Callable[[], str] | None = getattr(prompt, "plain", None)
    if isinstance(text, str):
        return text.split("\n")[0]
    return str(prompt).split("\n")[0]


def test_version_prints_the_package_version() -> None:
    done = subprocess.run([sys.executable, "-m", "riskterm", "--version"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert done.stdout == f"riskterm {version('riskterm')}\n"
