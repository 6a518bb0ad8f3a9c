"""Hostile strings never reach the operator's terminal raw (issue 12, items 10 and 11).

Account names are a broker's strings: `A[/]` and `[bold]x` are valid names that must not be parsed
as markup, `B<ESC>]0;pwned<BEL>` (an OSC window title), `C<CSI>2J` (a C1 CSI clearing the screen)
and a bidi override must be shown with their control characters made visible, never interpreted:
in the dashboard (the real Textual app under Pilot), in `jobs list` / `jobs show` and in the
records on stdout (real `riskterm` subprocesses).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.widgets import Select

from riskterm.config import load_rules
from riskterm.host import RunOptions
from riskterm.recorder import dumps
from riskterm.safetext import escape_json_controls, visible
from riskterm.strictjson import strict_dumps
from riskterm.tui.app import RiskTermApp, create_app
from riskterm.tui.demo import DEMO_RULES, write_demo
from riskterm.tui.formatting import safe_text
from riskterm.tui.screens.confirm import ConfirmScreen
from riskterm.tui.screens.dashboard import DashboardScreen
from riskterm.tui.screens.job_detail import JobDetailScreen
from riskterm.tui.screens.jobs import JobsScreen
from riskterm.tui.screens.violations import ViolationsScreen
from riskterm.tui.settings import AppSettings
from tests.test_tui import SIZE, db_records, select_account, settle, wait_for

HOSTILE = ["A[/]", "[bold]x", "B\x1b]0;pwned\x07", "C\x9b2J", "D\u202egnp.exe\x7f"]
# what the screen shows for each: the name with its control characters as escapes
SHOWN = ["A[/]", "[bold]x", "B\\x1b]0;pwned\\x07", "C\\x9b2J", "D\\u202egnp.exe\\x7f"]
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def hostile_events() -> list[dict[str, Any]]:
    """Each account loses 500 on ES (the daily limit: halted) and holds 2 CL (limit 1)."""
    ev: list[dict[str, Any]] = []
    t0 = "2026-03-02T14:35:"

    def add(sec: int, **fields: Any) -> None:
        ev.append({"ts": f"{t0}{sec:02d}Z", **fields})

    for name in HOSTILE:
        add(0, type="account", account=name, balance=50_000.0)
    add(1, type="quote", symbol="ES", last=6000.0)
    add(1, type="quote", symbol="CL", last=70.0)
    for i, name in enumerate(HOSTILE):
        add(5, type="fill", account=name, symbol="ES", order_id=f"b{i}", side="buy", qty=2,
            price=6000.0)
        add(6, type="fill", account=name, symbol="ES", order_id=f"s{i}", side="sell", qty=2,
            price=5995.0)
        add(7, type="fill", account=name, symbol="CL", order_id=f"c{i}", side="buy", qty=2,
            price=70.0)
    add(9, type="clock")
    return ev


def write_hostile(directory: Path) -> tuple[Path, Path]:
    events = directory / "hostile.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in hostile_events()))
    rules = directory / "rules.yaml"
    rules.write_text(DEMO_RULES)
    return events, rules


def hostile_app(directory: Path) -> RiskTermApp:
    events, rules = write_hostile(directory)
    opts = RunOptions(source=f"replay:{events}", rules_path=rules,
                      db_path=directory / "hostile.db", speed=0)
    return create_app(opts, load_rules(rules), AppSettings(deterministic=True))


def screen_text(app: RiskTermApp) -> str:
    """Every character the screen on top sends to the terminal (its composited strips)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)


def assert_no_raw_controls(app: RiskTermApp) -> str:
    text = screen_text(app)
    found = RAW.findall(text)
    assert not found, f"raw control characters on screen: {found!r}"
    return text


# -- the one convention --------------------------------------------------------------------


def test_visible_escapes_c0_del_c1_and_bidi_and_nothing_else() -> None:
    assert [visible(n) for n in HOSTILE] == SHOWN
    assert visible("a\nb\tc") == "a\\x0ab\\x09c"  # a one-line label: the newline too
    assert visible("a\nb", newlines=True) == "a\nb"
    assert visible("PA-APEX-201 élan 日本 ✓") == "PA-APEX-201 élan 日本 ✓"


def test_safe_text_keeps_styles_on_the_same_characters() -> None:
    text = Text("x ")
    text.append("C\x9b2J", style="bold")
    text.append(" y", style="red")
    out = safe_text(text)
    assert out.plain == "x C\\x9b2J y"
    assert [(out.plain[s.start:s.end], s.style) for s in out.spans] == [
        ("C\\x9b2J", "bold"), (" y", "red")]


def test_records_escape_del_c1_and_bidi_and_stay_the_same_json() -> None:
    rec = {"kind": "violation", "ts": "2026-03-02T14:35:05Z", "account": "C\x9b2J\x7f\u202e",
           "message": "é ok"}
    for body in (dumps(dict(rec)), strict_dumps(rec), strict_dumps(rec, ensure_ascii=False)):
        assert not RAW.search(body), body
        assert json.loads(body) == rec
    assert "\\u009b" in dumps(dict(rec)) and "\\u007f" in strict_dumps(rec)
    plain = '{"kind":"x","account":"PA-1 é"}'
    assert escape_json_controls(plain) is plain  # the fast path leaves the text alone


# -- the dashboard -------------------------------------------------------------------------


async def test_hostile_names_are_shown_escaped_everywhere_on_the_dashboard(
        tmp_path: Path) -> None:
    app = hostile_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        assert screen.accounts.row_keys == sorted(HOSTILE)
        text = assert_no_raw_controls(app)
        banner = str(screen.banner.render())
        assert "5 HALTED" in banner
        for shown in SHOWN:
            assert shown[:10] in text  # the accounts table (a column 10 wide)
            assert shown in banner
            assert any(line.startswith(shown) or f" {shown} " in line
                       for line in screen.feed.lines)
        await pilot.press("v")
        history = app.screen
        assert isinstance(history, ViolationsScreen)
        await wait_for(pilot, lambda: history.loads >= 1, what="the history")
        assert_no_raw_controls(app)
        # the account filter offers every name, each shown literally
        history.set_filters(account="A[/]")
        await wait_for(pilot, lambda: {r.account for r in history.table.rows_by_id.values()}
                       == {"A[/]"}, what="the filtered history")
        select = history.query_one("#filter-account", Select)
        select.expanded = True
        await pilot.pause()
        text = assert_no_raw_controls(app)
        for shown in SHOWN:
            assert shown in text


async def test_flatten_a_hostile_account_shows_its_name_literally_and_flattens(
        tmp_path: Path) -> None:
    app = hostile_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for name, shown in zip(HOSTILE, SHOWN, strict=True):
            select_account(app, name)
            await pilot.press("f")
            dialog = app.screen
            assert isinstance(dialog, ConfirmScreen), name
            await pilot.pause()
            assert str(dialog.query_one("#dialog-title").render()) == f"Flatten {shown}"
            text = assert_no_raw_controls(app)
            assert f"Flatten {shown}?" in text
            await pilot.press("y")
            assert isinstance(app.screen, DashboardScreen)
            await pilot.pause()
            assert_no_raw_controls(app)  # the notification names the account too
        await app.host.recorder.flush()
        manual = [r for r in db_records(app, "enforcement") if r["rule"] == "manual"]
        assert sorted(r["account"] for r in manual) == sorted(HOSTILE)
        assert all("closed 2 CL long" in r["detail"] for r in manual)


async def test_unlock_a_hostile_account_confirms_and_writes_the_record(tmp_path: Path) -> None:
    app = hostile_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for name, shown in zip(HOSTILE, SHOWN, strict=True):
            select_account(app, name)
            await pilot.press("u")
            dialog = app.screen
            assert isinstance(dialog, ConfirmScreen), name
            await pilot.pause()
            assert str(dialog.query_one("#dialog-title").render()) == f"Unlock {shown}"
            assert_no_raw_controls(app)
            await pilot.press("y")
            assert app.host.engine.lockouts.active(name) == []
            await pilot.pause()
            assert_no_raw_controls(app)
        await app.host.recorder.flush()
        unlocks = db_records(app, "unlock")
        assert sorted(u["account"] for u in unlocks) == sorted(HOSTILE)


def job_statuses(app: RiskTermApp) -> dict[str, str]:
    assert app.opts.db_path is not None
    conn = sqlite3.connect(app.opts.db_path)
    try:
        return dict(conn.execute("SELECT account, status FROM jobs"))
    finally:
        conn.close()


async def test_review_of_a_hostile_account_runs_and_finishes(tmp_path: Path) -> None:
    app = hostile_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for name in HOSTILE:
            select_account(app, name)
            await pilot.press("e")
            await pilot.pause()
            assert_no_raw_controls(app)
        await wait_for(pilot, lambda: set(job_statuses(app).values()) == {"completed"}
                       and len(job_statuses(app)) == len(HOSTILE), timeout=30,
                       what="every job to finish")
        await pilot.press("j")
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        await wait_for(pilot, lambda: screen.table.row_count == len(HOSTILE),
                       what="the job list")
        assert_no_raw_controls(app)
        await pilot.press("enter")
        detail = app.screen
        assert isinstance(detail, JobDetailScreen)
        await wait_for(pilot, lambda: detail.polls >= 1, what="the job detail")
        await pilot.pause()
        assert_no_raw_controls(app)
        assert visible(str(detail.job["account"])) in screen_text(app)  # type: ignore[index]


# -- the command line ----------------------------------------------------------------------


def riskterm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "riskterm", *args], capture_output=True,
                          text=True, timeout=60, input=stdin)


def test_records_on_stdout_and_jobs_commands_never_print_raw_controls(tmp_path: Path) -> None:
    events, rules = write_hostile(tmp_path)
    db = tmp_path / "cli.db"
    run = riskterm("--no-ui", "--source", f"replay:{events}", "--rules", str(rules),
                   "--db", str(db))
    assert run.returncode == 0, run.stderr
    assert not RAW.search(run.stdout)
    accounts = {json.loads(line).get("account") for line in run.stdout.splitlines()}
    assert set(HOSTILE) <= accounts  # escaped, the same JSON strings
    with sqlite3.connect(db) as conn:  # the stored body is the same text
        bodies = [b for (b,) in conn.execute("SELECT body FROM records")]
    assert bodies and not any(RAW.search(b) for b in bodies)
    ids = []
    for name in HOSTILE:
        enq = riskterm("jobs", "enqueue", "--db", str(db), "--account", name)
        assert enq.returncode == 0, enq.stderr
        ids.append(enq.stdout.strip())
    listed = riskterm("jobs", "list", "--db", str(db))
    assert listed.returncode == 0 and not RAW.search(listed.stdout)
    for shown in SHOWN:
        assert shown in listed.stdout
    as_json = riskterm("jobs", "list", "--json", "--db", str(db))
    assert not RAW.search(as_json.stdout)
    assert {j["account"] for j in json.loads(as_json.stdout)} == set(HOSTILE)
    for job_id, shown in zip(ids, SHOWN, strict=True):
        show = riskterm("jobs", "show", job_id, "--db", str(db))
        assert show.returncode == 0 and not RAW.search(show.stdout), show.stdout
        assert f"account {shown}" in show.stdout
        detail = riskterm("jobs", "show", job_id, "--json", "--db", str(db))
        assert not RAW.search(detail.stdout)
    dup = riskterm("jobs", "enqueue", "--db", str(db), "--account", HOSTILE[3])
    assert "duplicate" in dup.stderr and not RAW.search(dup.stderr)



# -- a crash does not leave the process or a job behind --------------------------------------

# `e` queues the job, then a toast fails to render: Textual's own notify parses markup, and
# `A[/]` in it was the crash of issue 12 (the app's notify no longer lets markup through)
CRASH_ON_REVIEW = """
import sys
from textual.app import App
from riskterm.tui.app import RiskTermApp
queue = RiskTermApp.action_enqueue
async def enqueue_then_crash(self):
    await queue(self)
    App.notify(self, "Queued a review of A[/]")
RiskTermApp.action_enqueue = enqueue_then_crash
from riskterm.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Terminal:
    """A process on a real pseudo-terminal (the dashboard needs one), its output collected."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color"}
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                     env=env, start_new_session=True)
        os.close(slave)
        self.master = master
        self.output = b""

    def read_until(self, wanted: bytes, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while wanted not in self.output and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:  # the process closed the terminal
                    return wanted in self.output
        return wanted in self.output

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if the process is still running after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read_until(b"\0never", 0.1)  # keep the terminal drained
            if self.proc.poll() is not None:
                return self.proc.returncode
        return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def test_a_crash_in_the_dashboard_ends_the_process_and_stops_its_jobs(tmp_path: Path) -> None:
    events, rules = write_demo(tmp_path)
    rules.write_text(DEMO_RULES.replace("step_delay_seconds: 0", "step_delay_seconds: 30"))
    db = tmp_path / "crash.db"
    term = Terminal([sys.executable, "-c", CRASH_ON_REVIEW, "--source", f"replay:{events}",
                     "--rules", str(rules), "--db", str(db), "--speed", "0"], tmp_path)
    try:
        assert term.read_until(b"Accounts", 30), term.output[-2000:]
        assert term.read_until(b"(ended)", 30), term.output[-2000:]
        os.write(term.master, b"e")
        code = term.wait(30)
        assert code is not None, "the process hung after the crash"
        assert code == 1
        assert b"MarkupError" in term.output
    finally:
        term.close()
    with sqlite3.connect(db) as conn:
        statuses = [s for (s,) in conn.execute("SELECT status FROM jobs")]
    assert len(statuses) == 1 and statuses[0] not in ("queued", "running"), statuses
