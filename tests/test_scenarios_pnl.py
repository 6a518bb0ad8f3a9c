"""Scenario replays of the P&L and exposure rules through `riskterm --no-ui`.

Each rule has tests/scenarios/RULE.jsonl (events), RULE.yaml (rules) and RULE.expected.jsonl (the
violation, enforcement, lockout and warning records, in order, exactly).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).parent / "scenarios"
RULES = (
    "daily_total_loss",
    "daily_unrealized_loss",
    "max_position_loss",
    "max_unrealized_profit",
    "trailing_drawdown",
    "max_position_value_pct",
    "max_total_exposure",
)
KINDS = {"violation", "enforcement", "lockout", "warning"}


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("rule", RULES)
def test_scenario(rule: str, tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "riskterm", "--no-ui",
         "--source", f"replay:{SCENARIOS / f'{rule}.jsonl'}",
         "--rules", str(SCENARIOS / f"{rule}.yaml"), "--db", str(tmp_path / "s.db")],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert out and out[-1]["kind"] == "summary"
    got = [r for r in out if r["kind"] in KINDS]
    expected = _load(SCENARIOS / f"{rule}.expected.jsonl")
    assert got == expected
    assert {r["rule"] for r in got} >= {rule}
