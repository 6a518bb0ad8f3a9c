"""`riskterm bench`: a CI smoke run of every benchmark at a small size, and the runners' pieces.

These check that the benchmarks run and report the contract's keys with numbers, not that the
figures are good (CI machines are shared and noisy).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from riskterm.bench import rules_micro
from riskterm.rules.params import RULE_PARAMS

ROOT = Path(__file__).resolve().parent.parent

KEYS = {
    "replay": {"events", "events_per_s", "json_loads_per_s", "ratio", "first_record_s"},
    "latency": {"rate", "p50_us", "p99_us", "max_us"},
    "jobs": {"jobs", "jobs_per_s", "start_p50_ms", "start_p99_ms"},
    "memory": {"events", "peak_rss_mb"},
    "ui": {"rate", "key_p95_ms", "lag_p99_ms"},
    "export": {"records", "records_per_s", "csv_per_s", "jsonl_per_s", "select_body_per_s",
               "ratio"},
    "broker": {"breaches", "p50_ms", "p99_ms", "max_ms", "quotes", "quotes_per_s",
               "baseline_quotes_per_s", "ratio"},
}


def bench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "riskterm", "bench", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def test_smoke_every_benchmark_json():
    res = bench("--json", "--max-events", "3000")  # the contract's six (CONTRACT s3)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == set(KEYS) - {"export", "broker"} | {"rules"}
    more = bench("--only", "export", "broker", "--json", "--max-events", "3000")
    assert more.returncode == 0, more.stderr
    out.update(json.loads(more.stdout))
    for name, keys in KEYS.items():
        assert keys <= set(out[name]), (name, out[name])
        for key in keys:
            assert is_number(out[name][key]), (name, key, out[name][key])
    assert set(out["rules"]) == set(RULE_PARAMS)
    for rule_id, figures in out["rules"].items():
        assert is_number(figures["pass_ns"]) and is_number(figures["fail_ns"]), (rule_id, figures)
    assert out["replay"]["events"] == 3000
    assert out["memory"]["events"] == 3000
    assert out["jobs"]["jobs"] == 3000
    assert out["memory"]["peak_rss_mb"] > 0
    broker = out["broker"]  # --max-events 3000: 100 breaches, 3000 quotes
    assert broker["breaches"] == 100 and broker["quotes"] == 3000
    assert 0 < broker["p50_ms"] <= broker["p99_ms"] <= broker["max_ms"]
    assert broker["other_violations"] == 0 and broker["enforcements_failed"] == 0
    assert broker["unmatched_requests"] == 0


def test_only_runs_the_named_benchmarks():
    res = bench("--only", "rules", "replay", "--json", "--max-events", "1000")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == {"rules", "replay"}
    assert out["replay"]["events"] == 1000


def test_unknown_benchmark_is_a_usage_error():
    res = bench("--only", "replay", "nosuch", "--json", timeout=60)
    assert res.returncode == 2
    assert "nosuch" in res.stderr
    assert res.stdout == ""


def test_table_output_without_json():
    res = bench("--only", "replay", "--max-events", "500")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("replay ")
    assert "events=500" in res.stdout


# --------------------------------------------------------------------------- rules micro


def test_rules_micro_has_a_scenario_for_every_rule():
    assert set(rules_micro.PARAMS) == set(RULE_PARAMS)
    for rule_id in RULE_PARAMS:
        for failing in (False, True):
            history, trigger, via = rules_micro.scenario(rule_id, failing)
            assert via in ("check", "process")
            assert all(ev["ts"] <= trigger["ts"] for ev in history)


def test_rules_micro_covers_all_20_rules_with_numbers():
    out = rules_micro.bench_rules(size=200)
    assert len(RULE_PARAMS) == 20
    assert set(out) == set(RULE_PARAMS)
    for rule_id, figures in out.items():
        assert "error" not in figures, (rule_id, figures)
        assert is_number(figures["pass_ns"]) and is_number(figures["fail_ns"]), rule_id
        assert figures["fail_ns"] > 0, rule_id


@pytest.mark.parametrize("rule_id", sorted(RULE_PARAMS))
def test_rules_micro_paths_pass_and_fail(rule_id):
    """The pass path writes nothing; every fail evaluation writes its violation, each one on a
    fresh copy of the prepared engine, so the prepared one is left as it was."""
    passing = rules_micro._Prepared(rule_id, failing=False)
    engine = passing.copy()
    passing.call(engine)()
    assert engine.n_violations == 0 and engine.n_warnings == passing.engine.n_warnings

    failing = rules_micro._Prepared(rule_id, failing=True)
    for _ in range(3):
        engine = failing.copy()
        failing.call(engine)()
        recs = engine.take_changes().records
        assert [r["rule"] for r in recs if r["kind"] == "violation"] == [rule_id]
    assert failing.engine.n_violations == 0
    assert not failing.engine.fired


def test_rules_micro_reports_a_broken_rule_without_losing_the_others(monkeypatch):
    def broken(rule_id, failing):
        raise KeyError("no scenario")

    monkeypatch.setattr(rules_micro, "scenario", broken)
    out = rules_micro.bench_rules(size=200)
    assert set(out) == set(RULE_PARAMS)
    assert all(v["pass_ns"] is None and "error" in v for v in out.values())


# --------------------------------------------------------------------------- latency, memory


def test_latency_config_adds_the_tweaks_to_the_given_rules():
    from riskterm.bench.latency import latency_config
    from riskterm.config import default_rules_path, load_rules

    base = load_rules(default_rules_path())
    cfg = latency_config(base)
    assert cfg.rules["symbol_blocks"].blocks("MBT")
    assert cfg.rules["order_rate_limit"].max_orders == 2
    assert cfg.rules["daily_realized_loss"] == base.rules["daily_realized_loss"]
    assert cfg.instruments.keys() == base.instruments.keys()
    assert cfg.session == base.session


def test_latency_collects_samples():
    from riskterm.bench.latency import bench_latency
    from riskterm.config import default_rules_path, load_rules

    out = bench_latency(load_rules(default_rules_path()), 2000)
    assert out["samples"] > 0
    assert 0 < out["p50_us"] <= out["p99_us"] <= out["max_us"]


def test_memory_child_streams_events_to_a_file(tmp_path):
    from riskterm.bench.memory import write_events

    path = write_events(tmp_path / "e.jsonl", 2500)
    lines = path.read_text().splitlines()
    assert len(lines) == 2500
    assert all(json.loads(line)["type"] for line in lines)


# --------------------------------------------------------------------------- broker


@pytest.mark.parametrize("when", ["2026-03-03T00:10:00", "2026-03-03T12:00:00",
                                  "2026-03-07T23:50:00", "2026-12-25T04:59:00"])
def test_broker_rules_enable_the_catalog_with_the_session_open_around_now(when):
    from datetime import UTC, datetime

    from riskterm.bench.broker import bench_config

    now = datetime.fromisoformat(when).replace(tzinfo=UTC)
    cfg = bench_config(now)
    assert set(cfg.rules) == set(RULE_PARAMS)
    assert all(params.enabled for params in cfg.rules.values())
    t = now.timestamp()
    cal = cfg.calendar
    # open for the whole run (and well beyond), no daily reset during it
    assert all(cal.in_session(t + s) for s in (0, 60, 3600))
    assert cal.next_reset(t) - t > 6 * 3600
