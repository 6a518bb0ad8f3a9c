"""rules.yaml is bounded at load time: what it is read from, how big it is, and every duration
and number in it. Each refusal is a `PATH:LINE:COL: message` (exit 2 from check-rules), never a
traceback, a hang, or a value the engine cannot compute with later.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from riskterm.config import RulesError, check_rules_main, load_rules, load_rules_text
from tests.helpers import HEADER

ROOT = Path(__file__).resolve().parent.parent
MAX_RULES_BYTES = 1 << 20  # the documented bounds (riskterm.config)
MAX_ALIAS_VALUES = 200_000


def _issues(text: str) -> list[tuple[int, int, str]]:
    with pytest.raises(RulesError) as info:
        load_rules_text(text, "t.yaml")
    return [(i.line, i.col, i.message) for i in info.value.issues]


def _check_rules(path: Path | str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "riskterm", "check-rules", str(path)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _positioned(path: Path | str, stderr: str) -> list[str]:
    lines = stderr.splitlines()
    assert lines and all(re.fullmatch(rf"{re.escape(str(path))}:\d+:\d+: .+", x)
                         for x in lines), lines
    return lines


# --- item 14: durations and numbers ------------------------------------------------------------

@pytest.mark.parametrize(("block", "value", "message"), [
    ("daily_realized_loss: {limit: -500, lockout: 99999999d}", "99999999d",
     "rules.daily_realized_loss.lockout must be a duration of at most 3660d (ten years) (a "
     "lockout that only `riskterm unlock` lifts is `permanent`), got '99999999d'"),
    ("consecutive_losses: {max_losses: 2, lockout: " + "9" * 400 + "s}", "999",
     "must be a duration of at most 3660d"),
    ("no_stop_loss_grace: {grace_seconds: 1e300}", "1e300", "must be at most 316224000 seconds"),
    ("order_rate_limit: {max_orders: 5, per_seconds: 1e20}", "1e20",
     "must be at most 316224000 seconds"),
    ("trade_frequency_limit: {per_minute: 3, cooldown: {per_minute: 4000d}}", "4000d",
     "must be a duration of at most 3660d"),
    ("cooldown_after_loss: {tiers: [{loss: -200, lockout: 10000d}]}", "10000d",
     "must be a duration of at most 3660d"),
    ("daily_realized_loss: {limit: -1e300}", "-1e300",
     "must be no lower than -1,000,000,000,000"),
    ("trailing_drawdown: {amount: 1e13}", "1e13", "must be at most 1,000,000,000,000"),
    ("max_total_exposure: {limit: 1e308}", "1e308", "must be at most 1,000,000,000,000"),
    ("max_contracts: {limit: 10000000000}", "1000", "must be at most 1,000,000,000"),
    ("max_position_value_pct: {max_pct: 1e9}", "1e9", "must be at most 1000"),
])
def test_out_of_bounds_rule_values_are_positioned_errors(block: str, value: str,
                                                          message: str) -> None:
    text = HEADER + "rules:\n  " + block + "\n"
    line = HEADER.count("\n") + 2
    found = _issues(text)
    assert len(found) == 1 and found[0][:2] == (line, 3 + block.index(value)), found
    assert message in found[0][2], found


@pytest.mark.parametrize(("instrument", "col", "message"), [
    ("{tick_size: 1e-320, tick_value: 0.5}", 19, "must be between 1e-9 and 1e9"),
    ("{tick_size: 0.25, tick_value: 1e300}", 37, "must be at most 1,000,000,000,000"),
    ("{tick_size: 1e-9, tick_value: 1e6}", 3, "has a point value (tick_value / tick_size) "
                                             "of 1e+15, over 1,000,000,000,000 per point"),
])
def test_instruments_must_give_a_finite_sane_point_value(instrument: str, col: int,
                                                         message: str) -> None:
    found = _issues(f"instruments:\n  XX: {instrument}\n")
    assert len(found) == 1 and found[0][:2] == (2, col), found
    assert message in found[0][2], found


@pytest.mark.parametrize(("block", "message"), [
    ("timeout_seconds: 1e300", "must be at most 316224000 seconds"),
    ("every: 5000d", "must be a duration of at most 3660d"),
    ("retention_days: 1e12", "must be at most 3660"),
    ("workers: 100000", "must be at most 64"),
    ("max_iterations: 100000000", "must be at most 10,000"),
    ("step_delay_seconds: 1e300", "must be at most 316224000 seconds"),
])
def test_smart_risk_durations_and_counts_are_bounded(block: str, message: str) -> None:
    found = _issues(f"smart_risk:\n  {block}\n")
    assert len(found) == 1 and found[0][:2] == (2, len(block.split(":")[0]) + 5), found
    assert message in found[0][2], found


def test_the_bounds_themselves_are_accepted() -> None:
    config = load_rules_text(
        HEADER.replace("MNQ: {tick_size: 0.25", "MNQ: {tick_size: 0.000000001") +
        "max_clock_jump: 3660d\n"
        "rules:\n  daily_realized_loss: {limit: -1e12, lockout: 3660d}\n"
        "  no_stop_loss_grace: {grace_seconds: 316224000}\n")
    assert config.rules["daily_realized_loss"].lockout.seconds == 3660 * 86400.0
    assert config.max_clock_jump == 3660 * 86400.0


def test_max_clock_jump_is_a_validated_header_key() -> None:
    assert load_rules_text("rules: {}").max_clock_jump == 366 * 86400.0
    assert load_rules_text("max_clock_jump: 2h\nrules: {}").max_clock_jump == 7200.0
    assert _issues("max_clock_jump: 90\nrules: {}\n") == [
        (1, 17, "max_clock_jump must be a duration like 90s, 15m, 2h or 1d, got 90")]
    assert _issues("rules: {}\nmax_clock_jump: 4000d\n") == [
        (2, 17, "max_clock_jump must be a duration of at most 3660d (ten years), got '4000d'")]


def test_a_lockout_at_the_bound_late_in_the_calendar_runs_without_a_traceback(
        tmp_path: Path) -> None:
    # the longest lockout the loader allows, starting late in the last year events may carry:
    # its end lies past the year 9999, and the lockout record must still be written
    rules = tmp_path / "r.yaml"
    rules.write_text(HEADER + "rules:\n  daily_realized_loss: {limit: -10, lockout: 3660d}\n")
    fill = {"type": "fill", "ts": "9998-12-30T15:00:00Z", "account": "A1", "symbol": "MNQ",
            "order_id": "1", "side": "buy", "qty": 1, "price": 100.0, "realized_pnl": -50.0}
    # a replay's first event is judged against the current time (max_clock_jump, CONTRACT
    # section 1): heartbeats a year apart take the clock there, as a replay may
    year, target = 365 * 86400, 253370646000  # 9998-12-30T15:00:00Z
    beats = [json.dumps({"type": "clock", "ts": t})
             for t in range(int(time.time()), target, year)]
    res = subprocess.run(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", "-", "--rules", str(rules),
         "--db", str(tmp_path / "x.db")],
        input="\n".join([*beats, json.dumps(fill)]) + "\n", capture_output=True, text=True,
        timeout=60, cwd=ROOT)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    lockouts = [json.loads(x) for x in res.stdout.splitlines() if '"lockout"' in x]
    assert [r["until"] for r in lockouts] == ["+10009-01-06T15:00:00Z"]


# --- item 15: what a rules file is read from ---------------------------------------------------

def test_check_rules_on_dev_zero_is_a_positioned_message() -> None:
    res = _check_rules("/dev/zero")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert _positioned("/dev/zero", res.stderr) == [
        "/dev/zero:1:1: is a character device, not a regular file: rules are read only from "
        "a regular file"]


def test_check_rules_on_a_fifo_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "rules.yaml"
    os.mkfifo(fifo)
    res = _check_rules(fifo)  # with no writer, a plain open() would block for ever
    assert res.returncode == 2
    assert _positioned(fifo, res.stderr) == [
        f"{fifo}:1:1: is a FIFO (named pipe), not a regular file: rules are read only from a "
        "regular file"]


def test_a_rules_file_over_the_size_bound_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("rules: {}\n" + "# padding\n" * (MAX_RULES_BYTES // 10 + 1))
    with pytest.raises(RulesError) as info:
        load_rules(big)
    assert [str(i) for i in info.value.issues] == [
        f"{big}:1:1: the file is larger than 1 MiB, more than a rules file needs"]


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text("rules: {auth_loss_guard: {}}\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    assert "auth_loss_guard" in load_rules(link).rules


def _wait_for(stream: io.BufferedReader, needle: bytes, timeout: float) -> bytes:
    """Read stderr lines until one contains `needle` (on a thread, so the wait is bounded)."""
    seen: list[bytes] = []
    found = threading.Event()

    def read() -> None:
        for raw in iter(stream.readline, b""):
            seen.append(raw)
            if needle in raw:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), b"".join(seen)
    return b"".join(seen)


def test_sighup_with_a_fifo_at_the_rules_path_keeps_the_rules_and_sigterm_still_stops(
        tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(HEADER + "rules:\n  auth_loss_guard: {}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", "-", "--rules", str(rules),
         "--db", str(tmp_path / "x.db")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(b'{"type": "clock", "ts": "2026-02-03T15:00:00Z"}\n')
        proc.stdin.flush()
        # the engine is up once it has processed the line: wait for its first commit
        proc.stdin.write(b'{"type": "connection", "ts": "2026-02-03T15:00:01Z", '
                         b'"status": "disconnected", "account": "A1"}\n')
        proc.stdin.flush()
        line = proc.stdout.readline()  # the auth_loss_guard violation
        assert b'"violation"' in line, line
        rules.unlink()
        os.mkfifo(rules)
        proc.send_signal(signal.SIGHUP)
        said = _wait_for(proc.stderr, b"FIFO", timeout=30)
        assert b"not a regular file" in said and b"Traceback" not in said
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# --- item 17: an empty file --------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n# and another\n", "---\n",
                                  "\ufeff# a BOM and a comment\n"])
def test_check_rules_refuses_an_empty_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    assert check_rules_main(str(path), out, err) == 2
    assert out.getvalue() == ""
    assert err.getvalue() == (f"{path}:1:1: the rules file is empty: it sets no rule at all "
                              "(write `rules: {}` to run without rules on purpose)\n")


def test_check_rules_command_on_an_empty_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here yet\n")
    res = _check_rules(path)
    assert res.returncode == 2 and "OK" not in res.stdout
    assert _positioned(path, res.stderr)[0].endswith("the rules file is empty: it sets no rule "
                                                     "at all (write `rules: {}` to run without "
                                                     "rules on purpose)")


# --- item 19: a large document is not an alias bomb --------------------------------------------

def test_a_300000_entry_holidays_list_is_not_called_an_alias_bomb() -> None:
    days = [f"{1000 + i // 365:04d}-01-01" for i in range(300_000)]
    text = "session:\n  holidays: [" + ", ".join(f'"{d}"' for d in days) + "]\nrules: {}\n"
    config = load_rules_text(text, "big.yaml")  # the text alone: no file-size bound applies
    assert len(config.session.holidays) == len(set(days))


def test_the_same_list_in_a_file_is_refused_by_its_size_with_a_clear_message(
        tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("session:\n  holidays:\n" + "    - \"2026-12-25\"\n" * 300_000)
    res = _check_rules(path)
    assert res.returncode == 2
    assert _positioned(path, res.stderr) == [
        f"{path}:1:1: the file is larger than 1 MiB, more than a rules file needs"]
    assert "alias" not in res.stderr


def test_an_alias_bomb_is_still_refused_and_named_as_such() -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
        for i in range(8)) + "rules: *i\n"
    found = _issues(laughs)
    assert len(found) == 1
    assert found[0][2] == (f"aliases (*name) expand the file to more than "
                           f"{MAX_ALIAS_VALUES:,} repeated values (an alias bomb?)")


def test_a_recursive_alias_is_named_precisely() -> None:
    assert _issues("rules: &a [*a, *a]\n") == [
        (1, 8, "rules[0] contains itself through an alias (a recursive alias)")]
