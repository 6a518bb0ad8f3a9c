"""rules.yaml loading and validation: positions, messages, overrides, defaults."""

from __future__ import annotations

import io
from datetime import date, time
from pathlib import Path

import pytest
from pydantic import ValidationError

from riskterm.config import (
    ConfigIssue,
    RulesError,
    check_rules_main,
    default_rules_path,
    load_rules,
    load_rules_text,
    resolve_rules_path,
)
from riskterm.rules.params import (
    RULE_PARAMS,
    CooldownAfterLossParams,
    DailyRealizedLossParams,
    DailyTotalLossParams,
    Lockout,
    MaxContractsPerInstrumentParams,
    SymbolBlocksParams,
    TradeFrequencyLimitParams,
    parse_duration,
)

ROOT = Path(__file__).resolve().parent.parent


def issues(text: str) -> list[ConfigIssue]:
    with pytest.raises(RulesError) as exc:
        load_rules_text(text, "r.yaml")
    return exc.value.issues


def one(text: str) -> tuple[int, int, str]:
    found = issues(text)
    assert len(found) == 1, found
    return found[0].line, found[0].col, found[0].message


# --------------------------------------------------------------------------- the default file


def test_default_rules_validate_and_copies_identical() -> None:
    packaged = default_rules_path()
    assert packaged == ROOT / "riskterm" / "default_rules.yaml"
    assert packaged.read_bytes() == (ROOT / "rules.yaml").read_bytes()
    config = load_rules(packaged)
    assert config.timezone == "America/Chicago"
    assert config.daily_reset == time(17, 0)
    assert config.smart_risk.planner == "heuristic"
    assert config.smart_risk.execute is False
    assert config.point_value("ES") == 50.0
    assert config.point_value("MNQ") == 2.0
    assert "daily_realized_loss" in config.rules_for("ANY")
    assert config.rules_for("PA-7")["daily_realized_loss"].limit == -1000  # type: ignore[attr-defined]
    assert config.rules_for("ANY")["daily_realized_loss"].limit == -500  # type: ignore[attr-defined]


def test_check_rules_ok() -> None:
    out, err = io.StringIO(), io.StringIO()
    path = str(ROOT / "rules.yaml")
    assert check_rules_main(path, out, err) == 0
    assert out.getvalue().startswith(f"{path}: OK, ")
    assert "rules enabled" in out.getvalue()
    assert err.getvalue() == ""


def test_an_empty_mapping_gives_defaults() -> None:
    config = load_rules_text("{}")
    assert config.timezone == "America/Chicago"
    assert config.daily_reset == time(17, 0)
    assert config.session.start == time(8, 30) and config.session.end == time(15, 0)
    assert config.session.days == frozenset({0, 1, 2, 3, 4})
    assert config.session.holidays == frozenset()
    assert config.instruments == {} and config.rules == {} and config.accounts == {}
    assert config.rules_for("A") == {}
    assert config.smart_risk.every is None
    assert config.smart_risk.allow == (
        "close_position", "reduce_position", "set_stop_loss", "set_take_profit", "cancel_orders")


def test_contract_header_example() -> None:
    config = load_rules_text(
        'timezone: America/Chicago\n'
        'daily_reset: "17:00"\n'
        'session: {start: "08:30", end: "15:00", days: [mon, tue, wed, thu, fri], '
        'holidays: ["2026-12-25"]}\n'
        "instruments:\n"
        "  MNQ: {tick_size: 0.25, tick_value: 0.5}\n"
        "  ES:  {tick_size: 0.25, tick_value: 12.5}\n"
        "accounts:\n"
        '  "PA-*": {daily_realized_loss: {limit: -1000}}\n'
        "rules:\n"
        "  daily_realized_loss: {limit: -500, action: flatten, lockout: until_reset,"
        " warn_at: 0.8}\n"
        "  no_stop_loss_grace: {grace_seconds: 30}\n"
        "  session_block_outside: {}\n"
        "smart_risk:\n"
        "  every: 15m\n"
    )
    assert config.session.holidays == frozenset({date(2026, 12, 25)})
    drl = config.rules["daily_realized_loss"]
    assert drl.action == ("flatten",) and str(drl.lockout) == "until_reset" and drl.warn_at == 0.8
    assert config.smart_risk.every == 900.0
    assert config.accounts == {"PA-*": {"daily_realized_loss": {"limit": -1000}}}


# --------------------------------------------------------------------------- positions


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        # unknown top-level key: at the key
        ("timezone: UTC\nrulez: {}\n", 2, 1, "unknown key 'rulez' (did you mean 'rules'?)"),
        # unknown rule id: at the key, with a suggestion
        ("rules:\n  max_contract: {limit: 1}\n", 2, 3,
         "unknown rule 'max_contract' in rules (did you mean 'max_contracts'?)"),
        # unknown parameter: at the key
        ("rules:\n  max_contracts: {limit: 1, lmit: 2}\n", 2, 29,
         "unknown parameter 'lmit' in rules.max_contracts (did you mean 'limit'?)"),
        # impossible value: at the value
        ("rules:\n  daily_realized_loss: {limit: 500}\n", 2, 32,
         "rules.daily_realized_loss.limit must be negative (a loss), got 500"),
        # wrong type (a quoted number is text)
        ("rules:\n  daily_realized_loss:\n    limit: '-500'\n", 3, 12,
         "rules.daily_realized_loss.limit must be a number, got '-500'"),
        ("rules:\n  max_contracts: {limit: 2.5}\n", 2, 26,
         "rules.max_contracts.limit must be a whole number, got 2.5"),
        ("rules:\n  session_block_outside: {flatten_at_close: yes}\n", 2, 45,
         "rules.session_block_outside.flatten_at_close must be true or false, got 'yes'"),
        # missing required parameter: at the parent block's key
        ("rules:\n  daily_realized_loss: {action: flatten}\n", 2, 3,
         "rules.daily_realized_loss.limit is required"),
        ("rules:\n  cooldown_after_loss:\n    tiers:\n      - {loss: -100}\n", 4, 9,
         "rules.cooldown_after_loss.tiers[0].lockout is required"),
        # a rule about the whole block: at its key
        ("rules:\n  daily_total_loss: {warn_at: 0.5}\n", 2, 3,
         "rules.daily_total_loss needs limit or limit_pct"),
        # bad time zone
        ("timezone: Mars/Olympus\n", 1, 11, "unknown time zone 'Mars/Olympus'"),
        ("timezone: America/Chicgo\n", 1, 11,
         "unknown time zone 'America/Chicgo' (did you mean 'America/Chicago'?)"),
        # bad times, days, dates
        ('daily_reset: "5pm"\n', 1, 14,
         "daily_reset must be a time \"HH:MM\" (24-hour, e.g. \"17:00\"), got '5pm'"),
        ('session:\n  start: "24:00"\n', 2, 10, "session.start must be a time"),
        ("session: {days: [mon, tue, funday]}\n", 1, 28,
         "session.days[2] must be a day name"),
        ('session:\n  holidays: ["2026-12-25", "2026-02-30"]\n', 2, 28,
         "session.holidays[1] must be a date \"YYYY-MM-DD\" that exists, got '2026-02-30'"),
        ('session: {start: "15:00", end: "15:00"}\n', 1, 1, "session start and end must differ"),
        # bad durations and lockouts
        ("rules:\n  consecutive_losses: {max_losses: 3, lockout: 10 minutes}\n", 2, 48,
         "rules.consecutive_losses.lockout must be none, a duration like 90s"),
        ("smart_risk: {every: 15}\n", 1, 21,
         "smart_risk.every must be a duration like 90s, 15m, 2h or 1d, got 15"),
        # unknown actions: a list element, or the single name
        ("rules:\n  max_contracts: {limit: 1, action: [alert, nuke]}\n", 2, 45,
         "rules.max_contracts.action[1] must be one of alert, cancel_order"),
        ("rules:\n  max_contracts: {limit: 1, action: nuke}\n", 2, 37,
         "rules.max_contracts.action[0] must be one of"),
        # fractions
        ("rules:\n  daily_total_loss: {limit_pct: 2}\n", 2, 33,
         "rules.daily_total_loss.limit_pct must be a fraction above 0 and at most 1"),
        ("rules:\n  daily_realized_loss: {limit: -5, warn_at: 1}\n", 2, 45,
         "rules.daily_realized_loss.warn_at must be a fraction above 0 and below 1"),
        ("rules:\n  auth_loss_guard: {warn_at: 0.5}\n", 2, 30,
         "rules.auth_loss_guard.warn_at is not available on this rule"),
        # counts and windows
        ("rules:\n  max_contracts: {limit: -1}\n", 2, 26,
         "rules.max_contracts.limit must be 0 or more, got -1"),
        ("rules:\n  order_rate_limit: {max_orders: 3, per_seconds: 0}\n", 2, 50,
         "rules.order_rate_limit.per_seconds must be greater than 0, got 0"),
        ("rules:\n  cooldown_after_loss: {tiers: []}\n", 2, 32,
         "rules.cooldown_after_loss.tiers needs at least one tier"),
        ("rules:\n  cooldown_after_loss:\n    tiers:\n      - {loss: 100, lockout: 1h}\n", 4, 16,
         "rules.cooldown_after_loss.tiers[0].loss must be negative (a loss), got 100"),
        ("rules:\n  trailing_drawdown: {amount: 100, mode: daily}\n", 2, 42,
         "rules.trailing_drawdown.mode must be 'intraday' or 'eod', got 'daily'"),
        # instruments
        ("instruments:\n  ES: {tick_size: 0, tick_value: 12.5}\n", 2, 19,
         "instruments.ES.tick_size must be greater than 0, got 0"),
        ("instruments:\n  ES: {tick_value: 12.5}\n", 2, 3, "instruments.ES.tick_size is required"),
        # blocks of the wrong shape
        ("rules:\n  max_contracts: 5\n", 2, 18,
         "rules.max_contracts must be a mapping of settings, got 5"),
        ("rules: [max_contracts]\n", 1, 8, "rules must be a mapping of rule ids to parameters"),
        # smart_risk
        ("smart_risk:\n  workers: 0\n", 2, 12, "smart_risk.workers must be at least 1, got 0"),
        ("smart_risk:\n  planner: gpt\n", 2, 12,
         "smart_risk.planner must be 'heuristic' or 'openai', got 'gpt'"),
        # overrides: the override's own position and path
        ('accounts:\n  "PA-*": {daily_realized_loss: {limit: 100}}\n', 2, 41,
         "accounts.PA-*.daily_realized_loss.limit must be negative (a loss), got 100"),
        ('accounts:\n  "PA-*": {max_contracts: {}}\n', 2, 12,
         "accounts.PA-*.max_contracts.limit is required"),
        ('accounts:\n  "PA-*": {nope: {}}\n', 2, 12, "unknown rule 'nope' in accounts.PA-*"),
        # YAML problems
        ("rules: {a: [1, 2}\n", 1, 17, "invalid YAML: expected ',' or ']'"),
        ("rules:\n  max_contracts: {limit: 1}\n   bad\n", 3, 4, "invalid YAML"),
        ("rules:\n  max_contracts: {limit: 1, limit: 2}\n", 2, 29,
         "duplicate key 'limit' in rules.max_contracts (first on line 2)"),
        ("a: 1\n---\nb: 2\n", 2, 1, "invalid YAML: expected a single document in the stream"),
        ("rules: {}\x07\n", 1, 10, "invalid YAML: character U+0007 is not allowed"),
        ("[1, 2]\n", 1, 1, "the rules file must be a mapping"),
        ("rules: !!python/object/apply:os.system [echo hi]\n", 1, 8, "unsupported YAML"),
    ],
)
def test_error_positions(text: str, line: int, col: int, message: str) -> None:
    got_line, got_col, got_message = one(text)
    assert (got_line, got_col) == (line, col), got_message
    assert got_message.startswith(message), got_message
    assert "pydantic" not in got_message and "https://" not in got_message


def test_every_error_is_reported_in_file_order() -> None:
    text = (
        "timezone: Nowhere/City\n"             # 1
        'daily_reset: "17:60"\n'               # 2
        "colour: blue\n"                       # 3
        "rules:\n"                             # 4
        "  daily_realized_loss:\n"             # 5
        "    limit: 500\n"                     # 6
        "    action: [flatten, explode]\n"     # 7
        "    lockout: 5 mins\n"                # 8
        "  max_contracts: {}\n"                # 9
        "  no_such_rule: {}\n"                 # 10
    )
    found = issues(text)
    assert [(i.line, i.col) for i in found] == [
        (1, 11), (2, 14), (3, 1), (6, 12), (7, 23), (8, 14), (9, 3), (10, 3)]
    assert all(i.path == "r.yaml" for i in found)


def test_issue_and_error_formatting() -> None:
    issue = ConfigIssue("a.yaml", 3, 7, "boom")
    assert str(issue) == "a.yaml:3:7: boom"
    err = RulesError([issue, ConfigIssue("a.yaml", 4, 1, "bang")])
    assert str(err) == "a.yaml:3:7: boom\na.yaml:4:1: bang"


def test_check_rules_errors_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("rules:\n  daily_realized_loss: {limit: 500}\n  max_contracts: {}\n")
    out, err = io.StringIO(), io.StringIO()
    assert check_rules_main(str(path), out, err) == 2
    assert out.getvalue() == ""
    assert err.getvalue().splitlines() == [
        f"{path}:2:32: rules.daily_realized_loss.limit must be negative (a loss), got 500",
        f"{path}:3:3: rules.max_contracts.limit is required",
    ]


def test_missing_file_is_a_rules_error(tmp_path: Path) -> None:
    path = str(tmp_path / "none.yaml")
    err = io.StringIO()
    assert check_rules_main(path, io.StringIO(), err) == 2
    assert err.getvalue() == f"{path}:1:1: file not found\n"


# --------------------------------------------------------------------------- YAML details


def test_yaml_12_scalars() -> None:
    config = load_rules_text(
        "daily_reset: 16:30\n"                      # not sexagesimal 990
        "session: {holidays: [2026-07-03]}\n"       # an unquoted date is fine
        "instruments:\n  NO: {tick_size: 1, tick_value: 1e1}\n"   # NO is not false
        "rules:\n  symbol_blocks: {symbols: [on, 'X*']}\n"
    )
    assert config.daily_reset == time(16, 30)
    assert config.session.holidays == frozenset({date(2026, 7, 3)})
    assert config.point_value("NO") == 10.0
    assert config.rules["symbol_blocks"].symbols == ("on", "X*")  # type: ignore[attr-defined]


def test_anchors_and_merge_keys() -> None:
    config = load_rules_text(
        "rules:\n"
        "  daily_realized_loss: &drl {limit: -500, warn_at: 0.8}\n"
        "accounts:\n"
        '  "PA-*":\n'
        "    daily_realized_loss: {<<: *drl, limit: -900}\n"
    )
    p = config.rules_for("PA-1")["daily_realized_loss"]
    assert p.limit == -900 and p.warn_at == 0.8  # type: ignore[attr-defined]


def test_empty_blocks_are_empty_mappings() -> None:
    config = load_rules_text("rules:\n  auth_loss_guard:\n  session_block_outside: {}\n")
    assert set(config.rules_for("A")) == {"auth_loss_guard", "session_block_outside"}
    assert str(config.rules["session_block_outside"].lockout) == "until_session_start"


# --------------------------------------------------------------------------- overrides


OVERRIDES = """
rules:
  daily_realized_loss: {limit: -500, warn_at: 0.8}
  max_contracts: {limit: 5, enabled: false}
  auth_loss_guard: {}
accounts:
  "*": {daily_realized_loss: {limit: -400}}
  "PA-*": {daily_realized_loss: {limit: -1000}}
  "PA-12*": {daily_realized_loss: {limit: -1200}, max_contracts: {enabled: true}}
  "PA-1?3": {daily_realized_loss: {limit: -1300}}
  "EVAL-?": {max_order_size: {max_qty: 2}, auth_loss_guard: {enabled: false}}
"""


def test_most_literal_pattern_wins() -> None:
    config = load_rules_text(OVERRIDES)

    def limit(account: str) -> float:
        return config.rules_for(account)["daily_realized_loss"].limit  # type: ignore[attr-defined]

    assert limit("X") == -400            # only "*"
    assert limit("PA-9") == -1000        # "PA-*" beats "*"
    assert limit("PA-129") == -1200      # "PA-12*" (5 literal) beats "PA-*"
    assert limit("PA-123") == -1200      # tie 5-5 with "PA-1?3": the first written wins
    assert limit("PA-153") == -1300
    assert config.override_for("PA-153") == "PA-1?3"
    # merged parameter by parameter: warn_at comes from the global block
    assert config.rules_for("PA-9")["daily_realized_loss"].warn_at == 0.8


def test_override_enables_and_disables() -> None:
    config = load_rules_text(OVERRIDES)
    assert "max_contracts" in config.rules  # kept as written, although disabled
    assert "max_contracts" not in config.rules_for("PA-9")
    assert config.rules_for("PA-129")["max_contracts"].limit == 5  # type: ignore[attr-defined]
    # EVAL-? gets a rule the global block lacks and loses one; its own winner only
    eval_rules = config.rules_for("EVAL-1")
    assert eval_rules["max_order_size"].max_qty == 2  # type: ignore[attr-defined]
    assert "auth_loss_guard" not in eval_rules
    assert eval_rules["daily_realized_loss"].limit == -500  # type: ignore[attr-defined]
    assert "max_order_size" not in config.rules_for("X")
    assert config.enabled_rule_ids() == {
        "daily_realized_loss", "max_contracts", "auth_loss_guard", "max_order_size"}


def test_rules_for_is_memoised_and_ordered() -> None:
    config = load_rules_text(OVERRIDES)
    first = config.rules_for("PA-129")
    assert config.rules_for("PA-129") is first
    catalog = list(RULE_PARAMS)
    assert list(first) == sorted(first, key=catalog.index)


def test_config_is_frozen() -> None:
    config = load_rules_text(OVERRIDES)
    with pytest.raises(AttributeError):
        config.timezone = "UTC"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.rules["daily_realized_loss"].limit = 1  # type: ignore[misc]


def test_resolve_rules_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_rules_path("x.yaml") == Path("x.yaml")
    assert resolve_rules_path(None) == default_rules_path()
    (tmp_path / "rules.yaml").write_text("rules: {}\n")
    assert resolve_rules_path(None) == Path("rules.yaml")


def test_point_value_contract_months() -> None:
    config = load_rules_text("instruments:\n  MNQ: {tick_size: 0.25, tick_value: 0.5}\n")
    assert config.point_value("MNQ") == 2.0
    assert config.point_value("MNQH6") == 2.0
    assert config.point_value("MNQZ25") == 2.0
    assert config.point_value("ES") is None


# --------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("text", "kind", "seconds", "back"),
    [
        ("none", "none", None, "none"),
        (None, "none", None, "none"),
        ("90s", "duration", 90.0, "90s"),
        ("15m", "duration", 900.0, "15m"),
        ("2h", "duration", 7200.0, "2h"),
        ("1d", "duration", 86400.0, "1d"),
        ("1h30m", "duration", 5400.0, "90m"),
        ("until_reset", "until_reset", None, "until_reset"),
        ("until_session_start", "until_session_start", None, "until_session_start"),
        ("permanent", "permanent", None, "permanent"),
    ],
)
def test_lockout_parse(text: str | None, kind: str, seconds: float | None, back: str) -> None:
    lockout = Lockout.parse(text)
    assert (lockout.kind, lockout.seconds, str(lockout)) == (kind, seconds, back)
    assert Lockout.parse(str(lockout)) == lockout


@pytest.mark.parametrize("bad", ["", "0s", "10", "5 minutes", "forever", "-1h", 60, True, [1]])
def test_lockout_parse_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        Lockout.parse(bad)


def test_parse_duration() -> None:
    assert parse_duration("1.5h") == 5400.0
    with pytest.raises(ValueError):
        parse_duration(900)


def test_catalog_defaults() -> None:
    assert len(RULE_PARAMS) == 20
    expected = {
        "max_contracts": (("reduce_position",), "none"),
        "daily_realized_loss": (("flatten",), "until_reset"),
        "trailing_drawdown": (("flatten",), "permanent"),
        "consecutive_losses": (("flatten",), "1h"),
        "session_block_outside": (("flatten",), "until_session_start"),
        "max_total_exposure": (("alert",), "none"),
        "max_position_loss": (("close_position",), "none"),
        "max_order_size": (("cancel_order",), "none"),
    }
    for rid, (action, lockout) in expected.items():
        cls = RULE_PARAMS[rid]
        assert action == cls.DEFAULT_ACTION and lockout == cls.DEFAULT_LOCKOUT
    p = DailyRealizedLossParams(limit=-1)  # type: ignore[call-arg]
    assert p.action == ("flatten",) and p.lockout == Lockout("until_reset")
    assert p.enabled and p.lockout_state == "halted" and p.warn_at is None
    assert p.model_fields_set == {"limit"}  # defaults do not count as written
    written = DailyRealizedLossParams.model_validate({"limit": -1, "action": "alert"})
    assert written.action == ("alert",) and "action" in written.model_fields_set


def test_params_helpers() -> None:
    tiers = CooldownAfterLossParams.model_validate(
        {"tiers": [{"loss": -100, "lockout": "15m"}, {"loss": -300, "lockout": "1h"}]})
    assert tiers.tier_for(-50) is None
    assert tiers.tier_for(-100).lockout == Lockout("duration", 900.0)  # type: ignore[union-attr]
    assert tiers.tier_for(-1000).lockout == Lockout("duration", 3600.0)  # type: ignore[union-attr]

    blocks = SymbolBlocksParams.model_validate({"symbols": ["btc*"]})
    assert blocks.blocks("BTCUSD") and not blocks.blocks("ES")
    assert blocks.actions_for(is_order=True) == ("cancel_order",)
    assert blocks.actions_for(is_order=False) == ("close_position",)
    custom = SymbolBlocksParams.model_validate({"symbols": "X", "action": "flatten"})
    assert custom.actions_for(is_order=True) == ("flatten",)

    per = MaxContractsPerInstrumentParams.model_validate({"limits": {"MNQ": 2}})
    assert (per.limit_for("MNQ"), per.limit_for("ES")) == (2, None)
    per = MaxContractsPerInstrumentParams.model_validate({"limits": {}, "unknown_symbol": "block"})
    assert per.limit_for("ES") == 0
    zero = MaxContractsPerInstrumentParams.model_validate({"default_limit": 0})
    assert zero.limit_for("ES") == 0

    total = DailyTotalLossParams.model_validate({"limit": -1000, "limit_pct": 0.01})
    assert total.effective_limit(50_000) == -500       # the tighter one
    assert total.effective_limit(None) == -1000        # start balance not known yet

    freq = TradeFrequencyLimitParams.model_validate({"per_hour": 3, "cooldown": {"per_hour": "2h"}})
    assert freq.cooldown.per_hour == Lockout("duration", 7200.0)
    assert freq.cooldown.per_minute == Lockout("duration", 60.0)
    assert freq.cooldown.per_session == Lockout("until_reset")


def test_action_list_deduplicated() -> None:
    p = DailyRealizedLossParams.model_validate(
        {"limit": -1, "action": ["alert", "flatten", "alert"]})
    assert p.action == ("alert", "flatten")


@pytest.mark.parametrize("breaker", ["\x85", "\u2028", "\u2029"])
def test_positions_count_lines_as_an_editor_does(breaker: str) -> None:
    """YAML also breaks lines at NEL, LS and PS; an editor does not, so positions must not."""
    text = f"smart_risk:\n  model: 'a{breaker}{breaker}b'\ntimezone: Nowhere/Land\n"
    with pytest.raises(RulesError) as info:
        load_rules_text(text, "e.yaml")
    assert str(info.value).startswith("e.yaml:3:11: unknown time zone"), str(info.value)


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_positions_with_any_line_ending(newline: str) -> None:
    text = newline.join(["rules:", "  daily_realized_loss: {limit: -5}", "timezone: Nowhere/Land",
                         ""])
    with pytest.raises(RulesError) as info:
        load_rules_text(text, "n.yaml")
    assert str(info.value).startswith("n.yaml:3:11: unknown time zone"), str(info.value)
