"""Broker plugins (CONTRACT §9, issue 13): a package that declares an entry point in the group
`riskterm.brokers` is a broker for `--source NAME[:ARG]`.

The test builds a real wheel of a small live broker (tests/plugin_src/scriptbroker.py: it plays
a script, executes commands into a file and confirms them asynchronously with the fill and
position a broker pushes), installs it with pip into a directory of its own, and runs the real
`riskterm --no-ui` as a subprocess with that directory on PYTHONPATH, so that the entry point is
found by importlib.metadata exactly as for an installed plugin.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PLUGIN_SRC = Path(__file__).parent / "plugin_src" / "scriptbroker.py"
DIST, VERSION = "riskterm_scriptbroker", "1.0"
BROKEN_SRC = b'"""A plugin whose dependency is missing."""\nimport riskterm_no_such_dependency\n'
ENTRY_POINTS = (b"[riskterm.brokers]\nscript = scriptbroker:make\n"
                b"broken = scriptbroker_broken:make\n")

RULES = """timezone: UTC
daily_reset: "00:00"
rules:
  max_position_loss: {limit: -50, action: close_position, lockout: 1h}
"""
# the contract specs come from the plugin (its instrument()), not from rules.yaml
INSTRUMENTS = {"MNQ": [0.25, 0.5], "ESH26": [0.25, 12.5], "MESH26": [0.25, 1.25]}
ACCOUNTS = [{"account": a, "balance": 50_000.0} for a in ("A1", "B1", "C1")]
STOP = {"account": "C1", "symbol": "MESH26", "order_id": "w1", "side": "sell", "qty": 1,
        "order_type": "stop", "stop_price": 5900.0}
FIRST = [
    {"accounts": ACCOUNTS, "instruments": INSTRUMENTS, "orders": [STOP],
     "positions": [{"account": "A1", "symbol": "MNQ", "qty": 1, "avg_price": 20000.0},
                   {"account": "B1", "symbol": "ESH26", "qty": 1, "avg_price": 6000.0},
                   {"account": "C1", "symbol": "MESH26", "qty": 1, "avg_price": 6000.0},
                   {"account": "C1", "symbol": "MNQ", "qty": "2"}],  # malformed: left out
     "refuse": {"ESH26": "ESH26 cannot be traded on this account today"}},
    {"type": "quote", "symbol": "MNQ", "last": 19900.0},  # A1: -200 ≤ -50, right after start
    {"type": "fill", "account": "A1", "symbol": "MNQ", "order_id": "x1", "side": "sideways",
     "qty": 1, "price": 19900.0},  # malformed
    {"type": "quote", "symbol": "ESH26", "last": 5990.0},  # B1: -500, the broker refuses
]
# restarted on the first session's database: the broker now holds A1 MNQ +1 and nothing else
SECOND = [
    {"accounts": ACCOUNTS, "instruments": INSTRUMENTS, "orders": [],
     "positions": [{"account": "A1", "symbol": "MNQ", "qty": 1, "avg_price": 20000.0}]},
    {"type": "quote", "symbol": "MESH26", "last": 5000.0},  # C1's old MESH26 +1: -1250 if held
    {"type": "quote", "symbol": "ESH26", "last": 5000.0},  # B1's old ESH26 +1
    {"type": "quote", "symbol": "MNQ", "last": 19900.0},  # A1's reported position: enforced
]


def _b64_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(dest: Path) -> Path:
    """A wheel by hand (it is a zip): the modules, METADATA, WHEEL, entry_points.txt, RECORD."""
    info = f"{DIST}-{VERSION}.dist-info"
    files = {
        "scriptbroker.py": PLUGIN_SRC.read_bytes(),
        "scriptbroker_broken.py": BROKEN_SRC,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test_broker_plugin\n"
                         b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": ENTRY_POINTS,
    }
    record = "".join(f"{path},sha256={_b64_sha256(data)},{len(data)}\n"
                     for path, data in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    wheel = dest / f"{DIST}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin installed by pip (no network, no build backend) into a directory of its own."""
    base = tmp_path_factory.mktemp("plugin")
    wheel = build_wheel(base)
    target = base / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                    "--no-cache-dir", "--disable-pip-version-check", "--quiet",
                    "--target", str(target), str(wheel)], check=True, timeout=120)
    assert (target / f"{DIST}-{VERSION}.dist-info" / "entry_points.txt").is_file()
    return target


@dataclass
class Run:
    code: int
    records: list[dict[str, Any]]
    stderr: str


def riskterm(plugin_dir: Path, home: Path, *args: str) -> Run:
    env = {**os.environ, "PYTHONPATH": str(plugin_dir), "RISKTERM_HOME": str(home)}
    res = subprocess.run([sys.executable, "-m", "riskterm", "--no-ui", *args], cwd=home,
                         env=env, capture_output=True, text=True, timeout=60)
    return Run(res.returncode, [json.loads(line) for line in res.stdout.splitlines()],
               res.stderr)


def write_script(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def commands(script: Path) -> list[dict[str, Any]]:
    """What reached the broker: the lines the plugin appended to SCRIPT.orders."""
    out = script.with_name(script.name + ".orders")
    return [json.loads(s) for s in out.read_text().splitlines()] if out.exists() else []


@dataclass
class Session:
    home: Path
    db: Path
    first: Path
    second: Path
    run1: Run
    held1: dict[str, int]  # the positions the database holds after the first session
    working1: dict[str, list[str]]  # ... and the working orders
    run2: Run


def held(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT account || ' ' || symbol, qty FROM positions "
                                 "WHERE qty != 0").fetchall())


def working(db: Path) -> dict[str, list[str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT account, data FROM accounts").fetchall()
    return {a: [o["order_id"] for o in json.loads(data)["orders"]]
            for a, data in rows if json.loads(data)["orders"]}


@pytest.fixture(scope="module")
def session(plugin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Session:
    """Two sessions through the plugin on one database: the first enforces, the second is a
    restart whose Snapshot no longer lists what the first left behind."""
    home = tmp_path_factory.mktemp("home")
    (home / "rules.yaml").write_text(RULES)
    db = home / "plugin.db"
    first = write_script(home / "first.jsonl", FIRST)
    second = write_script(home / "second.jsonl", SECOND)
    run1 = riskterm(plugin_dir, home, "--source", f"script:{first}", "--db", str(db))
    held1, working1 = held(db), working(db)
    run2 = riskterm(plugin_dir, home, "--source", f"script:{second}", "--db", str(db))
    return Session(home, db, first, second, run1, held1, working1, run2)


def _index(records: list[dict[str, Any]], kind: str, **match: Any) -> int:
    hits = [i for i, r in enumerate(records)
            if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())]
    assert len(hits) == 1, f"expected one {kind} {match}, got {len(hits)} in {records}"
    return hits[0]


def test_a_breach_is_enforced_through_the_plugin_confirmed_then_locked(session: Session):
    run = session.run1
    assert run.code == 0, run.stderr
    assert "Traceback" not in run.stderr
    recs = run.records
    v = _index(recs, "violation", rule="max_position_loss", account="A1", symbol="MNQ")
    # priced with the plugin's own spec of MNQ (point value 2), not the fallback 1.0
    assert recs[v]["value"] == -200.0
    e = _index(recs, "enforcement", account="A1", symbol="MNQ")
    assert recs[e]["action"] == "close_position"
    assert recs[e]["status"] == "ok"  # as the broker confirmed it, with its confirmation text
    assert "broker: filled sell 1 MNQ @ 19900" in recs[e]["detail"], recs[e]
    lk = _index(recs, "lockout", account="A1")
    assert v < e < lk
    assert not [r for r in recs if r["kind"] == "warning" and r["rule"] == "unknown_instrument"]


def test_the_close_reached_the_plugin_once_and_its_fill_was_applied(session: Session):
    assert session.run1.code == 0, session.run1.stderr
    sent = commands(session.first)
    assert sent == [{"command": "MarketOrder", "account": "A1", "symbol": "MNQ", "side": "sell",
                     "qty": 1, "reason": "max_position_loss", "intent": "close"}]
    # the plugin's fill and position closed A1; B1's refused close left it open
    assert session.held1 == {"B1 ESH26": 1, "C1 MESH26": 1}
    assert session.working1 == {"C1": ["w1"]}


def test_a_malformed_plugin_event_is_rejected_and_the_engine_goes_on(session: Session):
    recs = session.run1.records
    bad = _index(recs, "rejected", error="field 'side' must be 'buy' or 'sell', got 'sideways'")
    assert recs[bad]["line"] is None
    later = _index(recs, "violation", account="B1", symbol="ESH26")
    assert later > bad
    assert recs[-1]["kind"] == "summary" and recs[-1]["rejected"] == 2
    assert "Traceback" not in session.run1.stderr


def test_a_malformed_snapshot_entry_is_rejected_and_left_out(session: Session):
    recs = session.run1.records
    bad = _index(recs, "rejected", line=None,
                 error="snapshot position: field 'qty' of a position event must be a whole "
                       "number of contracts, got '2'")
    assert bad < _index(recs, "violation", account="A1")
    assert "C1 MNQ" not in session.held1  # not in the book: never judged nor enforced
    assert not [r for r in recs if r.get("account") == "C1" and r.get("symbol") == "MNQ"]


def test_a_command_the_plugin_refuses_is_failed_with_its_reason(session: Session):
    recs = session.run1.records
    v = _index(recs, "violation", rule="max_position_loss", account="B1", symbol="ESH26")
    # the engine retries a failed close a second later; the session may or may not last that long
    tries = [i for i, r in enumerate(recs) if r["kind"] == "enforcement" and r["account"] == "B1"]
    assert tries and all(recs[i]["status"] == "failed" for i in tries), recs
    assert all("ESH26 cannot be traded on this account today" in recs[i]["detail"]
               for i in tries), recs
    assert v < tries[0] < _index(recs, "lockout", account="B1")
    assert all(c["symbol"] != "ESH26" for c in commands(session.first))


def test_a_restart_drops_what_the_snapshot_does_not_list_and_never_enforces_it(
        session: Session):
    run = session.run2
    assert run.code == 0, run.stderr
    recs = run.records
    drops = {r["account"]: r["message"] for r in recs
             if r["kind"] == "warning" and r["rule"] == "resync"}
    assert set(drops) == {"B1", "C1"}, drops
    assert "ESH26 +1" in drops["B1"]
    assert "MESH26 +1" in drops["C1"] and "w1" in drops["C1"]
    acted = [r for r in recs if r["kind"] in ("violation", "enforcement")]
    assert {r["account"] for r in acted} == {"A1"}, acted  # only the position the broker lists
    assert [(c["account"], c["symbol"]) for c in commands(session.second)] == [("A1", "MNQ")]
    # A1's close was confirmed and filled; B1's and C1's positions and C1's order were dropped
    assert held(session.db) == {}
    assert working(session.db) == {}


FAILURES = {  # --source → what stderr says
    "script:{home}/missing.jsonl":
        "riskterm: script broker: cannot read {home}/missing.jsonl: No such file or directory",
    "script": "riskterm: --source script needs a script file: --source script:PATH",
    "broken": "riskterm: --source broken: the broker plugin cannot be loaded: "
              "ModuleNotFoundError: No module named 'riskterm_no_such_dependency'",
    "nosuch": "riskterm: --source nosuch: no broker of that name (known: sim, projectx, "
              "replay:PATH, -, broken, script;",
    # a plugin's bug in its stream: the run stops (exit 1) saying so, without a traceback
    "script:{home}/crash.jsonl": "riskterm: stopping: the script broker: the event stream "
                                 "failed: AttributeError: 'list' object has no attribute 'get'",
}


@pytest.fixture(scope="module")
def failures(plugin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every start that must fail, run at once (each is a process start, nothing more)."""
    home = tmp_path_factory.mktemp("fail")
    (home / "rules.yaml").write_text(RULES)
    write_script(home / "crash.jsonl", [{"accounts": ACCOUNTS[:1]}, [1]])  # type: ignore[list-item]
    env = {**os.environ, "PYTHONPATH": str(plugin_dir), "RISKTERM_HOME": str(home)}
    procs = {source: subprocess.Popen(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", source.format(home=home),
         "--db", str(home / f"{i}.db")], cwd=home, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i, source in enumerate(FAILURES)}
    runs = {}
    for source, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        runs[source] = Run(proc.returncode, [json.loads(s) for s in out.splitlines()],
                           err.replace(str(home), "{home}"))
    return runs


@pytest.mark.parametrize("source", list(FAILURES))
def test_a_plugin_that_cannot_start_is_exit_2_with_its_message(
        failures: dict[str, Run], source: str):
    run = failures[source]
    assert FAILURES[source] in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    if "crash" in source:  # it started: a runtime failure, what was done is kept
        assert run.code == 1, run.stderr
        assert [r["kind"] for r in run.records] == ["summary"]
    else:
        assert run.code == 2, run.stderr
        assert run.records == []
