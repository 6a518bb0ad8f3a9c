"""rules.yaml: load, validate (every problem with its line and column) and query.

Decisions (where the contract leaves room):
- YAML is read with a SafeLoader subclass that only composes nodes, resolving plain scalars as in
  YAML 1.2: ``17:00`` is text (not the sexagesimal 1020), ``NO``/``on`` are text (only
  true/false are booleans), ``2026-12-25`` is text, ``1e3`` is a number. Mapping keys are always
  the text as written. Merge keys (``<<: *anchor``) work. Duplicate keys are errors.
- Types are strict: ``limit: "-500"`` is an error (a number is expected), an integer is fine where
  a number is expected, ``3.0`` is not a whole number.
- A missing or unreadable file raises RulesError with a single issue at line 1, column 1; so
  does a path that is not a regular file (a FIFO, a device: reading one could block a reload
  for ever or never end) and a file larger than MAX_RULES_BYTES.
- An empty block (``auth_loss_guard:``) is the same as ``{}``. An empty file (or one with only
  comments) is an error: it would run with no rule at all, and a file caught half-written by a
  reload looks just like it. ``{}`` says "no rules" on purpose.
- Every duration and number is bounded (riskterm.rules.params: MAX_DURATION, MAX_MONEY, ...),
  so the engine never computes an instant or a value it cannot represent.
- A YAML alias bomb is refused by counting the values reached again through aliases, apart from
  the values written out: a merely large document is fine up to MAX_VALUES values.
- ``accounts:`` overrides: for an account, the ONE matching pattern with the most literal
  (non-wildcard) characters wins; ties go to the pattern written first; its blocks are merged
  over the global blocks one parameter at a time (a mapping-valued parameter such as ``limits`` or
  ``cooldown`` is replaced as a whole). Every override is validated at load time as merged with
  the global block, so ``rules_for`` never fails.
- ``rules_for`` returns rules in catalog order (contract section 5), not file order.
- ``point_value`` also finds a contract-month symbol by its root (``MNQH6``, ``ESZ25`` -> MNQ, ES).
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, time
from fnmatch import fnmatchcase
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, TextIO, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from riskterm import symbols
from riskterm.alerts.config import AlertTarget, AlertTargetSpec, UrlProblem, check_target
from riskterm.calendar import TradingCalendar
from riskterm.rules.params import (
    MAX_DURATION,
    MAX_DURATION_DAYS,
    MAX_MONEY,
    MONEY_BOUND,
    RULE_PARAMS,
    RuleParams,
    parse_duration,
)

TOP_KEYS = ("timezone", "daily_reset", "max_clock_jump", "session", "instruments", "accounts",
            "rules", "smart_risk", "alerts")
DEFAULT_CLOCK_JUMP = 366 * 86400.0  # max_clock_jump: a replay event further ahead is rejected
MAX_RULES_BYTES = 1 << 20  # a rules file is read only up to this size (the default is 6 KB)
MAX_VALUES = 1_000_000  # YAML values written out in one rules text
MAX_ALIAS_VALUES = 200_000  # values reached again through aliases (*name) and merges
DEFAULT_TIMEZONE = "America/Chicago"
DEFAULT_RESET = time(17, 0)
# Actions a Smart Risk Manager job may take (smart_risk.allow).
SMART_ACTIONS = (
    "close_position",
    "reduce_position",
    "set_stop_loss",
    "set_take_profit",
    "cancel_orders",
    "cancel_order",
    "flatten",
)
_DEFAULT_ALLOW = SMART_ACTIONS[:5]


# --------------------------------------------------------------------------- issues


class ConfigIssue(NamedTuple):
    path: str
    line: int  # 1-based
    col: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


class RulesError(Exception):
    def __init__(self, issues: list[ConfigIssue]) -> None:
        super().__init__("\n".join(map(str, issues)))
        self.issues = issues


# --------------------------------------------------------------------------- value parsers

_HHMM = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DAY_NAMES = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_hhmm(v: object) -> time:
    """A 24-hour wall time "HH:MM" (or "HH:MM:SS")."""
    if isinstance(v, time):
        return v
    m = _HHMM.fullmatch(v.strip()) if isinstance(v, str) else None
    if m:
        h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
        if h < 24 and mi < 60 and s < 60:
            return time(h, mi, s)
    raise ValueError('must be a time "HH:MM" (24-hour, e.g. "17:00")')


def _parse_day(v: object) -> int:
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 6:
        return v
    if isinstance(v, str):
        word = v.strip().lower()
        if word in DAY_NAMES:
            return DAY_NAMES[word]
        if word in _FULL_DAYS:
            return _FULL_DAYS.index(word)
    raise ValueError("must be a day name: mon, tue, wed, thu, fri, sat or sun")


def _parse_date(v: object) -> date:
    if isinstance(v, date):
        return v
    if isinstance(v, str) and _DATE.fullmatch(v.strip()):
        try:
            return date.fromisoformat(v.strip())
        except ValueError:
            pass
    raise ValueError('must be a date "YYYY-MM-DD" that exists')


def _parse_every(v: object) -> float | None:
    return None if v is None else parse_duration(v)


def _check(pred: Callable[[Any], bool], message: str) -> AfterValidator:
    def check(v: Any) -> Any:
        if not pred(v):
            raise ValueError(message)
        return v

    return AfterValidator(check)


_MODEL = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
_Positive = Annotated[StrictFloat, _check(lambda v: v > 0, "must be greater than 0")]
_AtLeastOne = Annotated[StrictInt, _check(lambda v: v >= 1, "must be at least 1")]
_SecondsBound = _check(lambda v: v <= MAX_DURATION,
                       f"must be at most {MAX_DURATION:.0f} seconds ({MAX_DURATION_DAYS} days)")
_Seconds = Annotated[StrictFloat, _check(lambda v: v > 0, "must be greater than 0"), _SecondsBound]
_TickSize = Annotated[StrictFloat, _check(lambda v: v > 0, "must be greater than 0"),
                      _check(lambda v: 1e-9 <= v <= 1e9,
                             "must be between 1e-9 and 1e9 (a tick in price units)")]
_TickValue = Annotated[StrictFloat, _check(lambda v: v > 0, "must be greater than 0"),
                       _check(lambda v: v <= MAX_MONEY, f"must be at most {MONEY_BOUND}")]
_Time = Annotated[time, BeforeValidator(parse_hhmm)]


# --------------------------------------------------------------------------- models


class Instrument(BaseModel):
    model_config = _MODEL
    tick_size: _TickSize
    tick_value: _TickValue
    negative_prices: StrictBool = False  # quotes below zero are real (spreads, crude oil)

    @model_validator(mode="after")
    def _sane(self) -> Instrument:
        if not self.point_value <= MAX_MONEY:
            raise ValueError(f"has a point value (tick_value / tick_size) of "
                             f"{self.point_value:g}, over {MONEY_BOUND} per point")
        return self

    @property
    def point_value(self) -> float:
        return self.tick_value / self.tick_size


class SessionConfig(BaseModel):
    """The trading session (see riskterm.calendar for overnight sessions and DST)."""

    model_config = _MODEL
    start: _Time = time(8, 30)
    end: _Time = time(15, 0)
    days: frozenset[Annotated[int, BeforeValidator(_parse_day)]] = frozenset(range(5))
    holidays: frozenset[Annotated[date, BeforeValidator(_parse_date)]] = frozenset()

    @model_validator(mode="after")
    def _sane(self) -> SessionConfig:
        if self.start == self.end:
            raise ValueError("start and end must differ (start later than end spans midnight)")
        if not self.days:
            raise ValueError("days needs at least one day")
        return self


class SmartRiskConfig(BaseModel):
    model_config = _MODEL
    planner: Literal["heuristic", "openai"] = "heuristic"
    base_url: Annotated[
        StrictStr,
        _check(lambda v: v.startswith(("http://", "https://")), "must start with http:// or https://"),
    ] = "http://localhost:11434/v1"
    model: Annotated[StrictStr, _check(bool, "must not be empty")] = "llama3.1"
    api_key_env: Annotated[
        StrictStr,
        _check(lambda v: re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v) is not None,
               "must be the name of an environment variable, such as OPENAI_API_KEY"),
    ] = "OPENAI_API_KEY"
    execute: StrictBool = False
    allow: tuple[
        Annotated[StrictStr, _check(lambda v: v in SMART_ACTIONS,
                                    "must be one of " + ", ".join(SMART_ACTIONS))], ...
    ] = _DEFAULT_ALLOW
    workers: Annotated[_AtLeastOne, _check(lambda v: v <= 64, "must be at most 64")] = 2
    timeout_seconds: _Seconds = 300.0
    max_iterations: Annotated[_AtLeastOne,
                              _check(lambda v: v <= 10_000, "must be at most 10,000")] = 10
    retry_interrupted: StrictBool = True
    step_delay_seconds: Annotated[StrictFloat, _check(lambda v: v >= 0, "must be 0 or more"),
                                  _SecondsBound] = 0.5
    every: Annotated[float | None, BeforeValidator(_parse_every)] = None  # seconds
    retention_days: Annotated[_Positive, _check(lambda v: v <= MAX_DURATION_DAYS,
                                                f"must be at most {MAX_DURATION_DAYS}")] = 30.0


# --------------------------------------------------------------------------- the loaded file

def _literal_chars(pattern: str) -> int:
    """Characters of an fnmatch pattern outside ``*``, ``?`` and ``[...]``."""
    n = i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in "*?":
            i += 1
            continue
        if c == "[":
            j = i + 1
            j += j < len(pattern) and pattern[j] == "!"
            j += j < len(pattern) and pattern[j] == "]"
            j = pattern.find("]", j)
            if j != -1:
                i = j + 1
                continue
        n += 1
        i += 1
    return n


@dataclass(frozen=True, eq=False)
class RulesConfig:
    path: str
    timezone: str
    tz: ZoneInfo
    daily_reset: time
    session: SessionConfig
    instruments: dict[str, Instrument]
    rules: dict[str, RuleParams]  # global blocks as written, disabled ones included
    accounts: dict[str, dict[str, dict[str, Any]]]  # pattern -> rule id -> params as written
    smart_risk: SmartRiskConfig
    overrides: dict[str, dict[str, RuleParams]] = field(repr=False)  # pattern -> merged params
    max_clock_jump: float = DEFAULT_CLOCK_JUMP  # seconds (the header key of the same name)
    alerts: tuple[AlertTarget, ...] = ()  # the alerts: block (riskterm.alerts)
    calendar: TradingCalendar = field(init=False, repr=False)
    _memo: dict[str, dict[str, RuleParams]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        calendar = TradingCalendar(self.tz, self.daily_reset, self.session)
        object.__setattr__(self, "calendar", calendar)

    def override_for(self, account: str) -> str | None:
        """The winning ``accounts:`` pattern for an account, or None."""
        best: str | None = None
        for pattern in self.accounts:
            if fnmatchcase(account, pattern) and (
                best is None or _literal_chars(pattern) > _literal_chars(best)
            ):
                best = pattern
        return best

    def rules_for(self, account: str) -> dict[str, RuleParams]:
        """Effective enabled rules of an account, in catalog order. Do not mutate the result."""
        found = self._memo.get(account)
        if found is None:
            effective = dict(self.rules)
            pattern = self.override_for(account)
            if pattern is not None:
                effective.update(self.overrides[pattern])
            found = {rid: effective[rid] for rid in RULE_PARAMS
                     if rid in effective and effective[rid].enabled}
            self._memo[account] = found
        return found

    def instrument(self, symbol: str) -> Instrument | None:
        """The ``instruments`` entry of a symbol, else of its root (riskterm.symbols)."""
        return symbols.lookup(self.instruments, symbol)

    def point_value(self, symbol: str) -> float | None:
        inst = self.instrument(symbol)
        return None if inst is None else inst.point_value

    def enabled_rule_ids(self) -> set[str]:
        """Rules enabled for at least one account (an over-estimate when ``*`` disables one)."""
        ids = {rid for rid, p in self.rules.items() if p.enabled}
        for merged in self.overrides.values():
            ids |= {rid for rid, p in merged.items() if p.enabled}
        return ids


# --------------------------------------------------------------------------- YAML reading

_T = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT = (_T + t for t in ("str", "null", "bool", "int", "float"))
_MAP, _SEQ, _MERGE = _T + "map", _T + "seq", _T + "merge"


_MAX_NESTING = 100  # the composer recurses per level: deeper YAML would be a RecursionError


class _Loader(yaml.SafeLoader):
    """SafeLoader that resolves plain scalars as YAML 1.2's core schema does."""

    yaml_implicit_resolvers: dict[Any, Any] = {}

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self._depth >= _MAX_NESTING:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {_MAX_NESTING} levels deep",
                self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


for _tag, _regexp, _first in (
    (_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (_FLOAT, r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
             r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", list("-+0123456789.")),
    (_MERGE, r"^<<$", ["<"]),
):
    _Loader.add_implicit_resolver(_tag, re.compile(_regexp), _first)

Path_ = tuple[str | int, ...]


def _display(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _items(node: MappingNode, depth: int = 0,
           expanded: set[int] | None = None) -> list[tuple[str | None, Node, Node]]:
    """(key text, key node, value node) with ``<<`` merges resolved; explicit keys first.

    A mapping merged a second time (``<<: [*a, *a]``, or through two others) could only add
    keys already seen, so it is expanded once: chains of such merges cannot blow up.
    """
    expanded = {id(node)} if expanded is None else expanded
    explicit: list[tuple[str | None, Node, Node]] = []
    merged: list[tuple[str | None, Node, Node]] = []
    for k, v in node.value:
        if k.tag == _MERGE and depth < 20:
            for src in v.value if isinstance(v, SequenceNode) else [v]:
                if isinstance(src, MappingNode) and id(src) not in expanded:
                    expanded.add(id(src))
                    merged.extend(_items(src, depth + 1, expanded))
        else:
            explicit.append((k.value if isinstance(k, ScalarNode) else None, k, v))
    seen = {t for t, _, _ in explicit}
    for item in merged:
        if item[0] not in seen:
            seen.add(item[0])
            explicit.append(item)
    return explicit


def _scalar(node: ScalarNode) -> Any:
    tag, v = node.tag, node.value
    if tag == _STR:
        return v
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return {"true": True, "false": False}[v.lower()]
    if tag == _INT:
        return int(v, 0) if v[:2].lower() in ("0x", "0o") else int(v)
    if tag == _FLOAT:
        return float(v.lower().replace(".inf", "inf").replace(".nan", "nan"))
    raise KeyError(tag)


def _tag(node: Node) -> str:
    return node.tag.replace(_T, "!!", 1)


def _fmt_value(node: Node | None, value: Any) -> str:
    if isinstance(node, ScalarNode):
        return f"'{node.value}'" if node.tag == _STR else (node.value or "null")
    if isinstance(value, dict) or isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(value, list | tuple) or isinstance(node, SequenceNode):
        return "a list"
    return repr(value)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (found := _model_in(arg)) is not None:
            return found
    return None


def _fields_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] | None = cls
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return []
        model = _model_in(model.model_fields[part].annotation)
    return list(model.model_fields) if model else []


def _suggest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (expected one of: {', '.join(choices)})" if choices else ""


_TYPE_PHRASES = {
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be text",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "set_type": "must be a list",
    "frozen_set_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "too_short": "must not be empty",
}
_BOUNDS = {"greater_than": ("gt", "greater than"), "greater_than_equal": ("ge", "at least"),
           "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}


class _Checker:
    """Turns the composed YAML into a RulesConfig, collecting every issue on the way."""

    def __init__(self, path: str, root: Node | None, text: str) -> None:
        self.path = path
        self.root = root
        self.text = text
        self.issues: list[ConfigIssue] = []
        self._seen: set[ConfigIssue] = set()
        # an alias bomb is many values reached again through aliases, a large document many
        # values written out: each has its own budget and its own message
        self._values = MAX_VALUES
        self._again = MAX_ALIAS_VALUES
        self._visited: set[int] = set()  # ids of the nodes converted once
        self._inside: set[int] = set()  # ids of the collections being converted (recursion)
        self._over_budget = False
        self._too_deep: set[int] = set()  # ids of nodes reported as nested too deeply

    # ----------------------------------------------------------------- positions

    def issue(self, line: int, col: int, message: str) -> None:
        item = ConfigIssue(self.path, line, col, message)
        if item not in self._seen:
            self._seen.add(item)
            self.issues.append(item)

    def issue_at(self, mark: Any, message: str) -> None:
        if mark is None:
            self.issue(1, 1, message)
        else:
            self.issue(*_position(self.text, mark), message)

    def find(self, path: Path_) -> tuple[Node | None, Any, bool]:
        """(deepest node found, mark of its key, whether the whole path was found).

        The key mark is the position of the key naming that node (or of a list element), so for
        a missing key it is the position of its parent block's key.
        """
        node, key_mark = self.root, None
        for part in path:
            if isinstance(node, MappingNode) and isinstance(part, str):
                hit = [(k, v) for t, k, v in _items(node) if t == part]
                if not hit:
                    return node, key_mark, False
                key_mark, node = hit[-1][0].start_mark, hit[-1][1]
            elif isinstance(node, SequenceNode) and isinstance(part, int) and (
                    0 <= part < len(node.value)):
                node = node.value[part]
                key_mark = node.start_mark
            else:
                return node, key_mark, False
        return node, key_mark, True

    def at_value(self, path: Path_, message: str) -> None:
        node, key_mark, _ = self.find(path)
        self.issue_at(node.start_mark if node is not None else key_mark, message)

    def at_key(self, path: Path_, message: str) -> None:
        self.issue_at(self.find(path)[1], message)

    # ----------------------------------------------------------------- YAML nodes -> Python

    def to_py(self, node: Node | None, path: Path_ = (), depth: int = 0) -> Any:
        if node is None or self._over_budget:
            return None
        nid = id(node)
        if nid in self._inside:  # one issue, then stop: nothing after it can be judged
            self._over_budget = True
            self.issue_at(node.start_mark, f"{_display(path) or 'the file'} contains itself "
                          "through an alias (a recursive alias)")
            return None
        if nid in self._visited:  # reached again through an alias or a merge
            self._again -= 1
            if self._again < 0:  # one issue, then stop at once: a bomb has billions more
                self._over_budget = True
                self.issue_at(node.start_mark, "aliases (*name) expand the file to more than "
                              f"{MAX_ALIAS_VALUES:,} repeated values (an alias bomb?)")
                return None
        else:
            self._visited.add(nid)
            self._values -= 1
            if self._values < 0:
                self._over_budget = True
                self.issue_at(node.start_mark, f"the file holds more than {MAX_VALUES:,} "
                              "values, more than a rules file needs")
                return None
        if depth > 50:
            if nid not in self._too_deep:  # once per node, not once per alias path to it
                self._too_deep.add(nid)
                self.issue_at(node.start_mark, f"{_display(path) or 'the file'} is nested "
                              "more than 50 levels deep")
            return None
        if isinstance(node, ScalarNode):
            try:
                return _scalar(node)
            except (KeyError, ValueError):
                self.issue_at(node.start_mark, f"unsupported YAML value or tag {_tag(node)}")
                return None
        if isinstance(node, SequenceNode) and node.tag == _SEQ:
            self._inside.add(nid)
            items = [self.to_py(v, (*path, i), depth + 1) for i, v in enumerate(node.value)]
            self._inside.discard(nid)
            return items
        if isinstance(node, MappingNode) and node.tag == _MAP:
            self._inside.add(nid)
            try:
                return self._mapping_to_py(node, path, depth)
            finally:
                self._inside.discard(nid)
        self.issue_at(node.start_mark, f"unsupported YAML tag {_tag(node)}")
        return None

    def _mapping_to_py(self, node: MappingNode, path: Path_, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for text, knode, vnode in _items(node):
            if text is None:
                self.issue_at(knode.start_mark, "a key must be plain text")
                continue
            if text in first_line:
                self.issue_at(knode.start_mark, f"duplicate key '{text}' in "
                              f"{_display(path) or 'the file'} (first on line "
                              f"{first_line[text]})")
            first_line.setdefault(text, _position(self.text, knode.start_mark)[0])
            out[text] = self.to_py(vnode, (*path, text), depth + 1)
        return out

    # ----------------------------------------------------------------- pydantic -> issues

    def model(
        self,
        cls: type[BaseModel],
        data: Any,
        path: Path_,
        where: Callable[[tuple[Any, ...]], Path_] | None = None,
    ) -> Any:
        """Validate ``data`` (a block at ``path``) with ``cls``; None (and issues) if invalid."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            node, _, _ = self.find(path)
            self.at_value(path, f"{_display(path)} must be a mapping of settings, "
                          f"got {_fmt_value(node, data)}")
            return None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                self._pydantic_issue(cls, err, where or (lambda loc: (*path, *loc)))
            return None

    def _pydantic_issue(
        self, cls: type[BaseModel], err: Any, where: Callable[[tuple[Any, ...]], Path_]
    ) -> None:
        loc: tuple[Any, ...] = tuple(err["loc"])
        kind: str = err["type"]
        ypath = where(loc)
        node, key_mark, _ = self.find(ypath)
        name = _display(ypath)
        if kind == "missing":
            self.issue_at(key_mark, f"{name} is required")
            return
        if kind == "extra_forbidden":
            word = "parameter" if ypath[0] in ("rules", "accounts") else "key"
            fields = [f for f in _fields_at(cls, loc[:-1]) if not f.startswith("_")]
            self.issue_at(key_mark, f"unknown {word} '{ypath[-1]}' in {_display(ypath[:-1])}"
                          + _suggest(str(ypath[-1]), fields))
            return
        ctx = err.get("ctx") or {}
        if kind in ("value_error", "assertion_error"):
            phrase = str(ctx.get("error", err["msg"]))
        elif kind == "literal_error":
            phrase = f"must be {ctx.get('expected', 'one of the allowed values')}"
        elif kind in _BOUNDS:
            key, words = _BOUNDS[kind]
            phrase = f"must be {words} {ctx.get(key)}"
        else:
            phrase = _TYPE_PHRASES.get(kind) or err["msg"][:1].lower() + err["msg"][1:]
        if not loc:  # a rule about the whole block: report it at the block's key
            self.issue_at(key_mark, f"{name} {phrase}")
            return
        mark = node.start_mark if node is not None else key_mark
        if kind in ("value_error", "assertion_error") and not isinstance(node, ScalarNode):
            self.issue_at(mark, f"{name} {phrase}")  # "tiers needs at least one tier"
            return
        self.issue_at(mark, f"{name} {phrase}, got {_fmt_value(node, err.get('input'))}")

    # ----------------------------------------------------------------- the file

    def check(self) -> RulesConfig | None:
        data = self.to_py(self.root)
        if self._over_budget:  # the values were cut short: checking them would only mislead
            return None
        if data is None:  # nothing but comments (or a lone null): no rule would run
            self.issue(1, 1, "the rules file is empty: it sets no rule at all (write "
                       "`rules: {}` to run without rules on purpose)")
            return None
        if not isinstance(data, dict):
            self.issue(1, 1, "the rules file must be a mapping (timezone:, rules:, ...)")
            return None
        for key in data:
            if key not in TOP_KEYS:
                self.at_key((key,), f"unknown key '{key}'" + _suggest(key, TOP_KEYS))

        tz_name, tz = self._timezone(data.get("timezone", DEFAULT_TIMEZONE))
        reset = DEFAULT_RESET
        if "daily_reset" in data:
            try:
                reset = parse_hhmm(data["daily_reset"])
            except ValueError as exc:
                node = self.find(("daily_reset",))[0]
                self.at_value(("daily_reset",),
                              f"daily_reset {exc}, got {_fmt_value(node, data['daily_reset'])}")
        jump = DEFAULT_CLOCK_JUMP
        if "max_clock_jump" in data:
            try:
                jump = parse_duration(data["max_clock_jump"])
            except ValueError as exc:
                node = self.find(("max_clock_jump",))[0]
                self.at_value(("max_clock_jump",), f"max_clock_jump {exc}, got "
                              f"{_fmt_value(node, data['max_clock_jump'])}")
        session = self.model(SessionConfig, data.get("session"), ("session",))
        instruments = {
            sym: inst
            for sym, raw in self._mapping(data, "instruments", "symbols to tick_size/tick_value")
            if (inst := self.model(Instrument, raw, ("instruments", sym))) is not None
        }
        rules_raw = dict(self._mapping(data, "rules", "rule ids to parameters"))
        rules: dict[str, RuleParams] = {}
        for rid, raw in rules_raw.items():
            if self._known_rule(("rules", rid)) and (
                    p := self.model(RULE_PARAMS[rid], raw, ("rules", rid))) is not None:
                rules[rid] = p
        accounts, overrides = self._accounts(data, rules_raw)
        smart = self.model(SmartRiskConfig, data.get("smart_risk"), ("smart_risk",))
        alerts = self._alerts(data.get("alerts"))

        if self.issues or tz is None or session is None or smart is None:
            return None
        return RulesConfig(self.path, tz_name, tz, reset, session, instruments, rules,
                           accounts, smart, overrides, max_clock_jump=jump, alerts=alerts)

    def _timezone(self, name: Any) -> tuple[str, ZoneInfo | None]:
        node = self.find(("timezone",))[0]
        if not isinstance(name, str) or not name:
            self.at_value(("timezone",), "timezone must be a time zone name such as "
                          f"America/Chicago, got {_fmt_value(node, name)}")
            return "", None
        try:
            return name, ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            close = difflib.get_close_matches(name, sorted(available_timezones()), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "use a name such as America/Chicago"
            self.at_value(("timezone",), f"unknown time zone '{name}' ({hint})")
            return name, None

    def _mapping(self, data: dict[str, Any], key: str, what: str) -> list[tuple[str, Any]]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, dict):
            node = self.find((key,))[0]
            self.at_value((key,), f"{key} must be a mapping of {what}, got "
                          f"{_fmt_value(node, value)}")
            return []
        return list(value.items())

    def _alerts(self, value: Any) -> tuple[AlertTarget, ...]:
        """The alerts: block: a list of targets, each URL checked with apprise."""
        if value is None:
            return ()
        if not isinstance(value, list):
            node = self.find(("alerts",))[0]
            self.at_value(("alerts",), "alerts must be a list of targets (- url: ...), got "
                          f"{_fmt_value(node, value)}")
            return ()
        out: list[AlertTarget] = []
        for i, raw in enumerate(value):
            spec = self.model(AlertTargetSpec, raw, ("alerts", i))
            if spec is None:
                continue
            try:
                out.append(check_target(spec))
            except UrlProblem as exc:
                self._at_in_value(("alerts", i, "url"), exc.needle, f"alerts[{i}].url: {exc}")
        return tuple(out)

    def _at_in_value(self, path: Path_, needle: str | None, message: str) -> None:
        """An issue at ``needle`` inside a one-line scalar (a ${VAR} in a URL), else at it."""
        node = self.find(path)[0]
        if needle and isinstance(node, ScalarNode) and node.start_mark.line == \
                node.end_mark.line:
            k = self.text.find(needle, node.start_mark.index, node.end_mark.index)
            if k >= 0:
                self.issue_at(k, message)
                return
        self.at_value(path, message)

    def _known_rule(self, path: Path_) -> bool:
        rid = str(path[-1])
        if rid in RULE_PARAMS:
            return True
        self.at_key(path, f"unknown rule '{rid}' in {_display(path[:-1])}"
                    + _suggest(rid, list(RULE_PARAMS)))
        return False

    def _accounts(
        self, data: dict[str, Any], rules_raw: dict[str, Any]
    ) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, RuleParams]]]:
        accounts: dict[str, dict[str, dict[str, Any]]] = {}
        overrides: dict[str, dict[str, RuleParams]] = {}
        for pattern, blocks in self._mapping(data, "accounts", "account patterns to rules"):
            base: Path_ = ("accounts", pattern)
            if not pattern:
                self.at_key(base, "an account pattern must not be empty")
            if blocks is None:
                blocks = {}
            if not isinstance(blocks, dict):
                node = self.find(base)[0]
                self.at_value(base, f"{_display(base)} must be a mapping of rule ids to "
                              f"parameters, got {_fmt_value(node, blocks)}")
                continue
            accounts[pattern] = {}
            overrides[pattern] = {}
            for rid, block in blocks.items():
                if not self._known_rule((*base, rid)):
                    continue
                block = {} if block is None else block
                glob = rules_raw.get(rid)
                glob = glob if isinstance(glob, dict) else {}
                if not isinstance(block, dict):
                    self.model(RULE_PARAMS[rid], block, (*base, rid))
                    continue
                accounts[pattern][rid] = block

                def where(loc: tuple[Any, ...], rid: str = rid, block: dict[str, Any] = block,
                          glob: dict[str, Any] = glob, base: Path_ = base) -> Path_:
                    if loc and loc[0] not in block and loc[0] in glob:
                        return ("rules", rid, *loc)
                    return (*base, rid, *loc)

                merged = self.model(RULE_PARAMS[rid], {**glob, **block}, (*base, rid), where)
                if merged is not None:
                    overrides[pattern][rid] = merged
        return accounts, overrides


# --------------------------------------------------------------------------- entry points


def _position(text: str, at: Any) -> tuple[int, int]:
    """1-based (line, column) of a YAML mark or a character index, counting lines as an
    editor does (after \n, \r\n or \r): YAML also breaks lines at U+0085, U+2028 and U+2029,
    and its marks count those.
    """
    index = at if isinstance(at, int) else at.index
    head = text[:index]
    line = head.count("\n") + head.count("\r") - head.count("\r\n") + 1
    start = max(head.rfind("\n"), head.rfind("\r")) + 1
    if start == 0 and head.startswith("\ufeff"):
        start = 1  # a byte-order mark takes no column
    return line, index - start + 1


def load_rules_text(text: str, path: str = "<rules>") -> RulesConfig:
    """Parse and validate rules.yaml text. Raises RulesError listing every problem."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context and what.startswith("but "):  # "expected a single document ..., but"
            what = f"{exc.context}, {what}"
        line, col = _position(text, mark) if mark else (1, 1)
        raise RulesError([ConfigIssue(path, line, col, f"invalid YAML: {what}")]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line, col = _position(text, exc.position)
        char = exc.character  # an int (code point) for text input
        what = f"character U+{char:04X} is not allowed" if isinstance(char, int) else str(exc)
        raise RulesError([ConfigIssue(path, line, col, f"invalid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise RulesError([ConfigIssue(path, 1, 1, f"invalid YAML: {exc}")]) from None
    checker = _Checker(path, root, text)
    config = checker.check()
    if config is None:
        issues = sorted(checker.issues, key=lambda i: (i.line, i.col)) or [
            ConfigIssue(path, 1, 1, "invalid rules file")]
        raise RulesError(issues)
    return config


def load_rules_for_command(path: str | Path) -> RulesConfig | str:
    """A command's rules file: the config, or the text to print on stderr before exit 2 (each
    error as PATH:LINE:COL: message, an unreadable file and one nested too deeply included)."""
    try:
        return load_rules(path)
    except RulesError as exc:
        return str(exc)
    except RecursionError:  # the YAML parser recurses per nesting level
        return f"{path}:1:1: invalid YAML: nested too deeply"


def load_rules(path: str | Path) -> RulesConfig:
    """Load a rules file. A missing or unreadable file, one that is not a regular file or one
    larger than MAX_RULES_BYTES is a RulesError at line 1, column 1."""
    name = str(path)
    try:
        data = _read_regular(path)
        text = data.decode("utf-8-sig")
    except FileNotFoundError:
        raise RulesError([ConfigIssue(name, 1, 1, "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise RulesError([ConfigIssue(name, 1, 1, f"not UTF-8 text ({exc.reason})")]) from None
    except _NotRules as exc:
        raise RulesError([ConfigIssue(name, 1, 1, str(exc))]) from None
    except OSError as exc:
        raise RulesError([ConfigIssue(name, 1, 1, f"cannot read: {exc.strerror or exc}")]) from None
    return load_rules_text(text, name)


class _NotRules(OSError):
    """The path is not something to read rules from (the message says why)."""


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _read_regular(path: str | Path) -> bytes:
    """The bytes of a regular file of at most MAX_RULES_BYTES, else _NotRules.

    Opened without blocking (a FIFO with no writer would block the open itself, and with it a
    SIGHUP reload and the SIGTERM after it) and judged by fstat on the open descriptor, so a
    file swapped in between cannot slip past; read no further than the bound, so a file that
    grows (or /dev/zero behind a symlink) cannot exhaust memory.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((what for test, what in _KINDS if test(mode)), "not a regular file")
            raise _NotRules(f"is {kind}, not a regular file: rules are read only from a "
                            "regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_RULES_BYTES:
            chunk = os.read(fd, MAX_RULES_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_RULES_BYTES:
            raise _NotRules(f"the file is larger than {MAX_RULES_BYTES >> 20} MiB, more than "
                            "a rules file needs")
        return b"".join(chunks)
    finally:
        os.close(fd)


def default_rules_path() -> Path:
    return Path(str(files("riskterm") / "default_rules.yaml"))


def resolve_rules_path(arg: str | None) -> Path:
    """``--rules`` if given, else ./rules.yaml if present, else the packaged default."""
    if arg:
        return Path(arg)
    local = Path("rules.yaml")
    return local if local.is_file() else default_rules_path()


def check_rules_main(path: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """``riskterm check-rules PATH``: 0 when valid, 2 with one ``PATH:LINE:COL: message`` each."""
    try:
        config = load_rules(path)
    except RulesError as exc:
        for issue in exc.issues:
            print(issue, file=err)
        return 2
    n = len(config.enabled_rule_ids())
    print(f"{path}: OK, {n} rule{'' if n == 1 else 's'} enabled", file=out)
    return 0
