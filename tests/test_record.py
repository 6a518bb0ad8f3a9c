"""--record PATH: every event the engine takes, appended as section 1's JSON Lines, replays the
session. Real `riskterm` subprocesses, real SQLite files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import HEADER

SIM = ["--no-ui", "--source", "sim", "--seed", "3", "--speed", "0", "--max-events", "3000"]
# what a live run and its replay must write alike; jobs run on their own time and the summary
# counts and times the run itself
COMPARED = ("violation", "warning", "enforcement", "lockout", "unlock")


def run(args: list[str], cwd: Path, *, stdin: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RISKTERM_HOME": str(cwd / "home")}
    return subprocess.run([sys.executable, "-m", "riskterm", *args], input=stdin, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def comparable(recs: list[dict]) -> list[dict]:
    """The records a replay must reproduce, with dry_run read as ok (a file cannot execute)."""
    out = []
    for rec in recs:
        if rec["kind"] not in COMPARED:
            continue
        if rec["kind"] == "enforcement":
            if rec["action"] == "smart_review" or rec["rule"] == "smart_risk":
                continue  # names a job, whose id and timing are the run's own
            rec = {**rec, "status": "ok" if rec["status"] == "dry_run" else rec["status"]}
        out.append(rec)
    return out


def test_simulator_session_replays_to_the_same_records(tmp_path):
    rec = tmp_path / "rec.jsonl"
    live = run([*SIM, "--record", str(rec), "--db", str(tmp_path / "a.db")], tmp_path)
    assert live.returncode == 0, live.stderr
    lines = rec.read_bytes().splitlines()
    assert len(lines) >= 3000  # the start-up snapshot and every event of the source
    events = [json.loads(line) for line in lines]
    assert all(isinstance(e["ts"], str) and e["ts"].endswith("Z") for e in events)
    assert not any(k.startswith("_") for e in events for k in e)
    assert {"quote", "fill", "account", "order_placed"} <= {e["type"] for e in events}

    replay = run(["--no-ui", "--source", f"replay:{rec}", "--db", str(tmp_path / "b.db")],
                 tmp_path)
    assert replay.returncode == 0, replay.stderr
    live_recs, replay_recs = records(live.stdout), records(replay.stdout)
    summary = replay_recs[-1]
    assert summary["kind"] == "summary"
    assert (summary["events"], summary["rejected"]) == (len(lines), 0)
    expected = comparable(live_recs)
    assert any(r["kind"] == "enforcement" and r["status"] == "ok" for r in expected)
    assert comparable(replay_recs) == expected
    assert all(r["status"] == "dry_run" for r in replay_recs
               if r["kind"] == "enforcement" and r["status"] != "skipped")


def test_recording_a_replay_reproduces_it_byte_for_byte(tmp_path):
    first, second, third = (tmp_path / f"r{i}.jsonl" for i in (1, 2, 3))
    live = run([*SIM, "--record", str(first), "--db", str(tmp_path / "a.db")], tmp_path)
    assert live.returncode == 0, live.stderr
    again = run(["--no-ui", "--source", f"replay:{first}", "--record", str(second),
                 "--db", str(tmp_path / "b.db")], tmp_path)
    assert again.returncode == 0, again.stderr
    assert second.read_bytes() == first.read_bytes()
    # the same through stdin
    piped = run(["--no-ui", "--source", "-", "--record", str(third),
                 "--db", str(tmp_path / "c.db")], tmp_path, stdin=first.read_text())
    assert piped.returncode == 0, piped.stderr
    assert third.read_bytes() == first.read_bytes()


HAND = """\
{"type": "quote", "ts": 1770130800, "symbol": "MNQ", "last": 20000, "note": "extra field"}

{"type": "fill", "ts": "2026-02-03T09:00:00.5-06:00", "account": "X1", "symbol": "MNQ", "order_id": "1", "side": "buy", "qty": 3, "price": 20000, "realized_pnl": 0}
{"type": "fill", "ts": "2026-02-03T15:00:01Z", "account": "X1", "qty": 1}
{"type": "position", "account": "X1", "ts": 1770130802.0001234, "symbol": "MNQ", "qty": 3}
{"type": "fill", "ts": "2026-02-03T15:00:03Z", "account": "X1", "symbol": "MNQ", "order_id": "2", "side": "sell", "qty": 3, "price": 19990.0, "fee": 1.5}
{"type": "clock", "ts": "2026-02-03T15:00:04Z"}
"""  # noqa: E501


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(HEADER + "rules:\n  max_contracts_per_instrument: {default_limit: 2}\n"
                    "  daily_realized_loss: {limit: -10}\n")
    return path


def test_stdin_is_recorded_in_section_1_format(tmp_path, rules):
    rec = tmp_path / "in.jsonl"
    res = run(["--no-ui", "--source", "-", "--rules", str(rules), "--record", str(rec),
               "--db", str(tmp_path / "s.db")], tmp_path, stdin=HAND)
    assert res.returncode == 0, res.stderr
    got = [json.loads(line) for line in rec.read_text().splitlines()]
    # the rejected line and the blank one are not events the engine took; the extra field and
    # the engine's own (_realized) are not section 1's; ts in UTC, money as numbers with a
    # point, field order as section 1 lists them; a sub-millisecond instant stays exact
    assert got == [
        {"type": "quote", "ts": "2026-02-03T15:00:00Z", "symbol": "MNQ", "last": 20000.0},
        {"type": "fill", "ts": "2026-02-03T15:00:00.500Z", "account": "X1", "symbol": "MNQ",
         "order_id": "1", "side": "buy", "qty": 3, "price": 20000.0, "realized_pnl": 0.0},
        {"type": "position", "ts": 1770130802.0001234, "account": "X1", "symbol": "MNQ",
         "qty": 3},
        {"type": "fill", "ts": "2026-02-03T15:00:03Z", "account": "X1", "symbol": "MNQ",
         "order_id": "2", "side": "sell", "qty": 3, "price": 19990.0, "fee": 1.5},
        {"type": "clock", "ts": "2026-02-03T15:00:04Z"},
    ]
    first = records(res.stdout)
    assert [r["kind"] for r in first if r["kind"] == "rejected"] == ["rejected"]
    again = run(["--no-ui", "--source", f"replay:{rec}", "--rules", str(rules),
                 "--db", str(tmp_path / "t.db")], tmp_path)
    assert again.returncode == 0, again.stderr
    second = records(again.stdout)
    assert comparable(second) == comparable(first)
    assert any(r["kind"] == "lockout" for r in second)  # the loss limit was reached
    assert second[-1]["rejected"] == 0


def test_record_appends_and_never_truncates(tmp_path, rules):
    rec = tmp_path / "rec.jsonl"
    rec.write_text('{"type": "clock", "ts": "2026-02-03T14:00:00Z"}\n')
    for i in (1, 2):
        res = run(["--no-ui", "--source", "-", "--rules", str(rules), "--record", str(rec),
                   "--db", str(tmp_path / f"{i}.db")], tmp_path, stdin=HAND)
        assert res.returncode == 0, res.stderr
    lines = rec.read_text().splitlines()
    assert len(lines) == 1 + 2 * 5
    assert lines[0] == '{"type": "clock", "ts": "2026-02-03T14:00:00Z"}'
    assert lines[1:6] == lines[6:]


@pytest.mark.parametrize("target", ["missing/dir/rec.jsonl", "."])
def test_unwritable_record_path_is_a_usage_error(tmp_path, rules, target):
    path = tmp_path / target
    res = run(["--no-ui", "--source", "-", "--rules", str(rules), "--record", str(path),
               "--db", str(tmp_path / "x.db")], tmp_path, stdin=HAND)
    assert res.returncode == 2
    assert f"cannot record to {path}" in res.stderr
    assert res.stdout == ""
    assert not (tmp_path / "x.db").exists()  # refused before anything started


def test_recording_into_the_replayed_file_is_refused(tmp_path, rules):
    src = tmp_path / "day.jsonl"
    src.write_text(HAND)
    res = run(["--no-ui", "--source", f"replay:{src}", "--rules", str(rules),
               "--record", str(tmp_path / "." / "day.jsonl"), "--db", str(tmp_path / "x.db")],
              tmp_path)
    assert res.returncode == 2
    assert "it is the file being replayed" in res.stderr
    assert src.read_text() == HAND


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_failing_recording_is_said_once_and_enforcement_goes_on(tmp_path):
    res = run([*SIM, "--record", "/dev/full", "--db", str(tmp_path / "a.db")], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("recording to /dev/full stopped") == 1, res.stderr
    recs = records(res.stdout)
    assert recs[-1]["kind"] == "summary" and recs[-1]["events"] >= 3000
    assert any(r["kind"] == "enforcement" and r["status"] == "ok" for r in recs)


def test_a_live_recording_is_written_while_it_runs(tmp_path):
    """Flushed as the engine commits, not only at the end: kill -9 loses the last moments."""
    rec = tmp_path / "live.jsonl"
    env = {**os.environ, "RISKTERM_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", "sim", "--seed", "5",
         "--speed", "20", "--record", str(rec), "--db", str(tmp_path / "k.db")],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if rec.exists() and rec.read_bytes().count(b"\n") >= 200:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        else:
            pytest.fail("no events recorded while the engine ran")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    data = rec.read_bytes()
    assert data.endswith(b"\n")  # whole lines only
    replay = run(["--no-ui", "--source", f"replay:{rec}", "--db", str(tmp_path / "r.db")],
                 tmp_path)
    assert replay.returncode == 0, replay.stderr
    summary = records(replay.stdout)[-1]
    assert (summary["events"], summary["rejected"]) == (data.count(b"\n"), 0)
