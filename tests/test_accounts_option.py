"""--accounts PATTERN[,PATTERN...]: events of the other accounts are not taken, not recorded and
never enforced. Real `riskterm` subprocesses on the simulator, real SQLite files."""

from __future__ import annotations

import json
import sqlite3
from fnmatch import fnmatchcase
from pathlib import Path

from tests.test_record import SIM, records, run


def accounts_in(path: Path) -> set[str]:
    return {e["account"] for e in map(json.loads, path.read_text().splitlines())
            if "account" in e}


def test_only_matching_accounts_are_taken_recorded_and_enforced(tmp_path):
    everything = tmp_path / "all.jsonl"
    res = run([*SIM, "--record", str(everything), "--db", str(tmp_path / "a.db")], tmp_path)
    assert res.returncode == 0, res.stderr
    names = accounts_in(everything)
    patterns = ["PA-*", "EVAL-APEX-*"]
    watched = {n for n in names if any(fnmatchcase(n, p) for p in patterns)}
    assert watched and watched != names  # the simulator's seed 3 has both kinds

    rec = tmp_path / "some.jsonl"
    res = run([*SIM, "--accounts", " PA-*, EVAL-APEX-*", "--record", str(rec),
               "--db", str(tmp_path / "b.db")], tmp_path)
    assert res.returncode == 0, res.stderr
    assert accounts_in(rec) == watched
    events = [json.loads(line) for line in rec.read_text().splitlines()]
    assert any(e["type"] == "quote" for e in events)  # account-less events pass
    recs = records(res.stdout)
    named = {r["account"] for r in recs if r.get("account") is not None}
    assert named and named <= watched
    assert any(r["kind"] == "enforcement" and r["status"] == "ok" for r in recs)
    with sqlite3.connect(tmp_path / "b.db") as conn:
        stored = {a for (a,) in conn.execute("SELECT account FROM accounts")}
    assert stored == watched


def test_restored_accounts_outside_the_patterns_are_kept_but_left_alone(tmp_path):
    db = tmp_path / "a.db"
    rec = tmp_path / "all.jsonl"
    res = run([*SIM, "--record", str(rec), "--db", str(db)], tmp_path)
    assert res.returncode == 0, res.stderr
    with sqlite3.connect(db) as conn:
        locked = {a for (a,) in conn.execute("SELECT account FROM lockouts WHERE active = 1")}
    assert locked  # seed 3 locks an account out
    others = sorted(accounts_in(rec) - locked)
    res = run([*SIM, "--accounts", ",".join(others), "--db", str(db)], tmp_path)
    assert res.returncode == 0, res.stderr
    assert not {r.get("account") for r in records(res.stdout)} & locked
    with sqlite3.connect(db) as conn:
        still = {a for (a,) in conn.execute("SELECT account FROM lockouts WHERE active = 1")}
        rows = {a for (a,) in conn.execute("SELECT account FROM accounts")}
    assert locked <= still  # never judged, never expired, never unlocked by this run
    assert locked <= rows


def test_patterns_matching_no_simulator_account_are_said(tmp_path):
    res = run([*SIM, "--accounts", "NOPE-*", "--db", str(tmp_path / "a.db")], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "--accounts NOPE-* matches none of the simulator's accounts" in res.stderr
    recs = records(res.stdout)
    assert [r["kind"] for r in recs] == ["summary"]


def test_an_empty_pattern_list_is_a_usage_error(tmp_path):
    res = run([*SIM, "--accounts", " , ", "--db", str(tmp_path / "a.db")], tmp_path)
    assert res.returncode == 2
    assert "--accounts needs at least one pattern" in res.stderr
    assert not (tmp_path / "a.db").exists()


def test_a_replay_is_filtered_the_same_way(tmp_path):
    rec = tmp_path / "all.jsonl"
    res = run([*SIM, "--record", str(rec), "--db", str(tmp_path / "a.db")], tmp_path)
    assert res.returncode == 0, res.stderr
    live = records(res.stdout)
    part = tmp_path / "part.jsonl"
    res = run(["--no-ui", "--source", f"replay:{rec}", "--accounts", "PA-*",
               "--record", str(part), "--db", str(tmp_path / "b.db")], tmp_path)
    assert res.returncode == 0, res.stderr
    assert accounts_in(part) == {n for n in accounts_in(rec) if n.startswith("PA-")}
    replayed = records(res.stdout)
    assert {r["account"] for r in replayed if r.get("account")} <= accounts_in(part)
    # the accounts watched are judged exactly as before
    def pa(recs: list[dict]) -> list[tuple]:
        return [(r["kind"], r["ts"], r.get("rule"), r["account"]) for r in recs
                if r["kind"] in ("violation", "lockout") and r["account"].startswith("PA-")]
    assert pa(replayed) == pa(live)
