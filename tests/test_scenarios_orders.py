"""Scenario replays of the order, count, session and connection rules through `riskterm --no-ui`.

Each rule has tests/scenarios/RULE.jsonl (events), RULE.yaml (rules) and RULE.expected.jsonl: the
violation, enforcement, lockout, unlock and warning records, in order, exactly. The summary is
checked for its counts (not its elapsed_s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SCENARIOS = Path(__file__).parent / "scenarios"
RULES = (
    "max_contracts",
    "max_order_size",
    "order_rate_limit",
    "daily_realized_profit",
    "trade_frequency_limit",
    "cooldown_after_loss",
    "consecutive_losses",
    "session_block_outside",
    "auth_loss_guard",
)
KINDS = {"violation", "enforcement", "lockout", "unlock", "warning"}


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("rule", RULES)
def test_scenario(rule: str, tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "riskterm", "--no-ui",
         "--source", f"replay:{SCENARIOS / f'{rule}.jsonl'}",
         "--rules", str(SCENARIOS / f"{rule}.yaml"), "--db", str(tmp_path / "s.db")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert out and out[-1]["kind"] == "summary"
    summary = out[-1]
    got = [r for r in out if r["kind"] in KINDS]
    expected = _load(SCENARIOS / f"{rule}.expected.jsonl")
    assert got == expected
    assert {r["rule"] for r in got} == {rule}
    events = sum(1 for line in (SCENARIOS / f"{rule}.jsonl").read_text().splitlines()
                 if line.strip())
    counts = {k: summary[k] for k in ("events", "rejected", "violations", "warnings",
                                      "enforcements")}
    assert counts == {
        "events": events, "rejected": 0,
        "violations": sum(r["kind"] == "violation" for r in expected),
        "warnings": sum(r["kind"] == "warning" for r in expected),
        "enforcements": sum(r["kind"] == "enforcement" for r in expected),
    }
