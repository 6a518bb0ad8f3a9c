"""Headless mode never imports Textual: neither any module outside riskterm/tui/ (found by walking
the package, so a new module is checked without editing this test) nor the real `riskterm --no-ui`
process on a replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import HEADER

ROOT = Path(__file__).resolve().parent.parent

# Imports every module of riskterm outside riskterm.tui in this fresh interpreter, then prints
# the modules it imported and which of them are Textual's. riskterm.__main__ is left out: its
# import runs the command line (the headless run below covers that path).
_WALK = """\
import json, pkgutil, sys
import riskterm
names = []
for info in pkgutil.walk_packages(riskterm.__path__, "riskterm.",
                                  onerror=lambda name: sys.exit("cannot import " + name)):
    if info.name == "riskterm.__main__" or info.name.startswith("riskterm.tui"):
        continue
    __import__(info.name)
    names.append(info.name)
textual = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
print(json.dumps({"imported": names, "textual": textual}))
"""


def test_no_module_outside_the_dashboard_imports_textual() -> None:
    res = subprocess.run([sys.executable, "-c", _WALK], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # the walk really reached the engine, the job pool, its planners, the sources and the bench
    assert {"riskterm.cli", "riskterm.host", "riskterm.engine", "riskterm.jobs.pool",
            "riskterm.jobs.planners.openai", "riskterm.sources.replay",
            "riskterm.rules.max_contracts", "riskterm.bench.main"} <= set(out["imported"])
    assert out["textual"] == []


def test_a_headless_replay_never_imports_textual(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(HEADER + "rules:\n  max_contracts_per_instrument: {default_limit: 1}\n"
                     "  daily_realized_loss: {limit: -10, action: smart_review, lockout: none}\n"
                     "smart_risk: {step_delay_seconds: 0}\n")
    events = tmp_path / "e.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in [
        {"type": "fill", "ts": "2026-02-03T15:00:00Z", "account": "X1", "symbol": "MNQ",
         "order_id": "1", "side": "buy", "qty": 2, "price": 20000.0},
        {"type": "fill", "ts": "2026-02-03T15:00:05Z", "account": "X1", "symbol": "MNQ",
         "order_id": "2", "side": "sell", "qty": 2, "price": 19900.0},
    ]))
    # Python reports every module the process imports on stderr ("import time: ... | name")
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", f"replay:{events}",
         "--rules", str(rules), "--db", str(tmp_path / "h.db")],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stderr
    kinds = [json.loads(line)["kind"] for line in res.stdout.splitlines()]
    assert "violation" in kinds and "job" in kinds and kinds[-1] == "summary"
    imported = {line.rsplit("|", 1)[1].strip() for line in res.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert {"riskterm.engine", "riskterm.jobs.pool", "riskterm.jobs.graph"} <= imported
    assert sorted(m for m in imported if m.split(".")[0] == "textual") == []
