"""The alerts: block of rules.yaml: checked with apprise, every problem at its line and column,
secrets only from environment variables and never shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from riskterm.alerts.config import DEFAULT_KINDS, AlertTargetSpec, check_target, expand
from riskterm.config import RulesError, default_rules_path, load_rules, load_rules_text
from tests.helpers import HEADER

SECRET = "s3cr3t-Hunter-42"


def issues(text: str, env: dict[str, str] | None = None) -> list[str]:
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        load_rules_text(text, "r.yaml")
    except RulesError as exc:
        return [str(i) for i in exc.issues]
    finally:
        os.environ.clear()
        os.environ.update(old)
    return []


def check_rules(tmp_path: Path, text: str, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RT_")}
    return subprocess.run([sys.executable, "-m", "riskterm", "check-rules", str(path)],
                          capture_output=True, text=True, timeout=60, env={**clean, **(env or {})})


def test_unknown_scheme_is_a_positioned_check_rules_error_exit_2(tmp_path):
    res = check_rules(tmp_path, HEADER + "rules: {}\nalerts:\n  - url: jsno://127.0.0.1/x\n")
    assert res.returncode == 2
    path = tmp_path / "rules.yaml"
    assert res.stderr == (f"{path}:9:10: alerts[0].url: unknown alert URL scheme 'jsno' "
                          "(did you mean 'json'?)\n")


def test_a_variable_that_is_not_set_is_pointed_at_inside_the_url(tmp_path):
    text = HEADER + ('rules: {}\nalerts:\n  - url: json://127.0.0.1/x\n'
                     '  - url: "jsons://${RT_HOOK_USER}:${RT_HOOK_PW}@example.com/hook"\n')
    res = check_rules(tmp_path, text, {"RT_HOOK_USER": "desk"})
    assert res.returncode == 2
    col = text.splitlines()[9].index("${RT_HOOK_PW}") + 1
    assert res.stderr == (f"{tmp_path / 'rules.yaml'}:10:{col}: alerts[1].url: environment "
                          "variable RT_HOOK_PW is not set (the URL refers to it as "
                          "${RT_HOOK_PW})\n")
    res = check_rules(tmp_path, text, {"RT_HOOK_USER": "desk", "RT_HOOK_PW": SECRET})
    assert res.returncode == 0, res.stderr
    assert SECRET not in res.stdout + res.stderr


def test_a_secret_written_out_in_the_file_is_refused_and_not_repeated(tmp_path):
    res = check_rules(tmp_path, HEADER + f"rules: {{}}\nalerts:\n  - url: "
                      f"json://desk:{SECRET}@127.0.0.1/x\n")
    assert res.returncode == 2
    assert res.stderr.startswith(f"{tmp_path / 'rules.yaml'}:9:10: alerts[0].url: this json:// "
                                 "URL holds a secret written out in the file")
    assert "put it in an environment variable" in res.stderr
    assert SECRET not in res.stderr and SECRET[1:-1] not in res.stderr


def test_every_problem_of_a_target_has_its_position():
    text = HEADER + """rules: {}
alerts:
  - url: json://127.0.0.1/x
    kinds: [violation, lockot]
    rules: [daily_realized_los]
    rate_limit: {messages: 0, per: 5x}
    retries: 11
    colour: red
  - just a string
  - kinds: [lockout]
"""
    assert issues(text) == [
        "r.yaml:10:24: alerts[0].kinds[1] must be 'violation', 'violation_lockout', 'warning', "
        "'enforcement', 'enforcement_failed', 'lockout', 'unlock', 'job', 'job_finished' or "
        "'rejected', got 'lockot'",
        "r.yaml:11:13: alerts[0].rules[0] must be a rule id (did you mean "
        "'daily_realized_loss'?), got 'daily_realized_los'",
        "r.yaml:12:28: alerts[0].rate_limit.messages must be between 1 and 1000, got 0",
        "r.yaml:12:36: alerts[0].rate_limit.per must be a duration like 90s, 15m, 2h or 1d, "
        "got '5x'",
        "r.yaml:13:14: alerts[0].retries must be between 0 and 10, got 11",
        "r.yaml:14:5: unknown key 'colour' in alerts[0] (expected one of: url, name, kinds, "
        "rules, accounts, rate_limit, retries, backoff, timeout)",
        "r.yaml:15:5: alerts[1] must be a mapping of settings, got 'just a string'",
        "r.yaml:16:5: alerts[2].url is required",
    ]


def test_alerts_must_be_a_list_and_a_url_a_url():
    assert issues(HEADER + "rules: {}\nalerts: {url: json://h/x}\n") == [
        "r.yaml:8:9: alerts must be a list of targets (- url: ...), got a mapping"]
    assert issues(HEADER + "rules: {}\nalerts:\n  - url: just-a-host\n") == [
        "r.yaml:9:10: alerts[0].url: must be an apprise URL such as json://host/path or "
        "tgram://${TELEGRAM_TOKEN}/CHAT_ID (scheme://...)"]
    assert issues(HEADER + "rules: {}\nalerts:\n  - url: tgram://notatoken\n") == [
        "r.yaml:9:10: alerts[0].url: apprise cannot read this tgram:// URL (see the apprise "
        "wiki page of the service for its form)"]
    assert issues(HEADER + "rules: {}\nalerts:\n  - url: json://h/${RT_X\n") == [
        "r.yaml:9:19: alerts[0].url: has a '${' that is not closed with '}'"]


def test_defaults_and_the_expanded_url_kept_out_of_every_repr(monkeypatch):
    monkeypatch.setenv("RT_TOKEN", SECRET)
    config = load_rules_text(HEADER + "rules: {}\nalerts:\n"
                             "  - url: ntfys://ntfy.sh/desk?token=${RT_TOKEN}\n")
    (target,) = config.alerts
    assert target.spec.kinds == DEFAULT_KINDS == (
        "violation_lockout", "enforcement_failed", "lockout", "job_finished")
    assert (target.spec.rate_limit.messages, target.spec.rate_limit.per) == (10, 60.0)
    assert target.label == "ntfys://ntfy.sh/desk?token=${RT_TOKEN}"
    assert SECRET in target.url
    assert SECRET not in repr(config) and SECRET not in repr(target)
    assert target.redact(f"posting to {target.url} failed") == (
        "posting to ntfys://ntfy.sh/desk?token=${RT_TOKEN} failed")


def test_a_secret_partly_from_a_variable_is_accepted():
    spec = AlertTargetSpec(url="tgram://123456789:${RT_TG}/12345")
    target = check_target(spec, {"RT_TG": "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"})
    assert target.url == "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/12345"
    assert expand("json://h/${A}${B}", {"A": "x", "B": "y"}) == ("json://h/xy", {"A": "x",
                                                                             "B": "y"})


@pytest.mark.parametrize("path", [default_rules_path()])
def test_the_packaged_default_stays_valid_without_targets(path):
    config = load_rules(path)
    assert config.alerts == ()
    assert "alerts:" in path.read_text()  # the commented example is there
