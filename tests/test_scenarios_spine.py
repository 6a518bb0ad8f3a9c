"""Scenario replays of the spine rules through `riskterm --no-ui`: exact records.

tests/scenarios/RULE.jsonl + RULE.yaml -> RULE.expected.jsonl (every record but the summary).
These also cover trading_while_locked, the daily-reset unlock and the unknown-instrument warning.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).parent / "scenarios"


@pytest.mark.parametrize(
    "rule",
    ["daily_realized_loss", "max_contracts_per_instrument", "no_stop_loss_grace", "symbol_blocks"],
)
def test_scenario(rule: str, tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "riskterm", "--no-ui",
         "--source", f"replay:{SCENARIOS / f'{rule}.jsonl'}",
         "--rules", str(SCENARIOS / f"{rule}.yaml"), "--db", str(tmp_path / "s.db")],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert out.pop()["kind"] == "summary"
    expected = [json.loads(line) for line in
                (SCENARIOS / f"{rule}.expected.jsonl").read_text().splitlines()]
    assert out == expected
    assert any(r["kind"] == "violation" and r["rule"] == rule for r in out)
