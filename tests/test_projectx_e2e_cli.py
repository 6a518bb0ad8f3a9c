"""The real `riskterm --no-ui --source projectx` as a subprocess against the test gateway,
which runs on the test's event loop (so the child is started with create_subprocess_exec):
start-up refusals, a recorded session, its replay, and the API key in none of the outputs."""

from __future__ import annotations

import signal

import pytest

from riskterm.testing.gateway.server import API_KEY
from tests.gateway_fixtures import assert_no_secret
from tests.projectx_session import ACCT, MNQ, Child, child_env, db_text, gateway, rules_file

RULES = """rules:
  max_contracts_per_instrument: {limits: {MNQ: 2}}
  daily_realized_loss: {limit: -300, action: flatten, lockout: until_reset}
"""


@pytest.fixture
async def gw():
    g = await gateway()
    yield g
    await g.stop()


def args(tmp_path, *more: str) -> list[str]:
    return ["--no-ui", "--source", "projectx", "--rules", str(rules_file(tmp_path, RULES)),
            "--db", str(tmp_path / "px.db"), *more]


async def refused(tmp_path, env: dict[str, str], *more: str) -> Child:
    child = await Child(args(tmp_path, *more), env, tmp_path).start()
    assert await child.finish(sig=None) == 2
    assert "Traceback" not in child.stderr and child.stdout == ""
    assert_no_secret(child.stderr)
    return child


@pytest.mark.parametrize("missing", ["PROJECTX_USERNAME", "PROJECTX_API_KEY"])
async def test_a_missing_setting_is_exit_2_naming_it(gw, tmp_path, missing):
    env = {k: v for k, v in gw.env().items() if k != missing}
    child = await refused(tmp_path, child_env(tmp_path, env))
    assert f"riskterm: ProjectX: {missing} is not set" in child.stderr
    assert not gw.requests  # nothing was sent


async def test_a_refused_login_is_exit_2_with_the_reason(gw, tmp_path):
    gw.faults.refuse_login = True
    child = await refused(tmp_path, child_env(tmp_path, gw.env()))
    assert "ProjectX refused the login" in child.stderr
    assert "InvalidCredentials" in child.stderr
    login, = gw.requests_to("Auth/loginKey")
    assert login.body["apiKey"] == API_KEY  # it was sent to the gateway, and only there


async def test_accounts_matching_none_is_exit_2_listing_the_accounts(gw, tmp_path):
    child = await refused(tmp_path, child_env(tmp_path, gw.env()), "--accounts", "PA-*,EVAL-?")
    assert "--accounts matches none of the ProjectX accounts" in child.stderr
    assert ACCT in child.stderr
    assert not gw.hub_connects["user"]


COMPARED = ("violation", "lockout")


async def test_recorded_session_replays_to_the_same_violations_and_lockouts(gw, tmp_path):
    record = tmp_path / "session.jsonl"
    live = await Child(args(tmp_path, "--record", str(record)),
                       child_env(tmp_path, gw.env()), tmp_path).start()
    # the first re-sync done: its `connection` connected is in the recording
    await live.wait(lambda: record.exists() and '"connection"' in record.read_text(),
                    "the first re-sync")
    gw.state.place(101, MNQ, 2, 0, 3)  # over the MNQ limit: reduced to 2
    await live.wait(lambda: live.of("enforcement", action="reduce_position"), "the reduce")
    await live.wait(lambda: gw.state.positions[(101, MNQ)]["qty"] == 2, "at 2")
    gw.quote(MNQ, 20800.0)
    gw.state.place(101, MNQ, 2, 1, 1)  # -400 realized: the daily loss limit; 1 still open
    await live.wait(lambda: live.of("lockout") and live.of("enforcement", action="flatten"),
                    "the flatten")
    await live.wait(lambda: not gw.state.open_positions(101), "flat at the broker")
    assert await live.finish(signal.SIGINT) == 130
    assert "Traceback" not in live.stderr
    statuses = {(r["action"], r["status"]) for r in live.of("enforcement")}
    assert statuses == {("reduce_position", "ok"), ("flatten", "ok")}
    assert live.records[-1]["kind"] == "summary"
    for text in (live.stdout, live.stderr, db_text(tmp_path / "px.db"), record.read_text()):
        assert_no_secret(text, *gw.tokens)

    replay = await Child(["--no-ui", "--source", f"replay:{record}", "--rules",
                          str(tmp_path / "rules.yaml"), "--db", str(tmp_path / "replay.db")],
                         child_env(tmp_path), tmp_path).start()
    assert await replay.finish(sig=None) == 0, replay.stderr
    same = [r for r in live.records if r["kind"] in COMPARED]
    assert len(same) >= 3
    assert [r for r in replay.records if r["kind"] in COMPARED] == same
    acted = [(r["action"], r["rule"], r["account"], r["symbol"]) for r in live.of("enforcement")]
    assert [(r["action"], r["rule"], r["account"], r["symbol"])
            for r in replay.of("enforcement")] == acted
    assert {r["status"] for r in replay.of("enforcement")} == {"dry_run"}
