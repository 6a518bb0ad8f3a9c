"""Which committed records a target wants, and the messages they become (one per record, or one
summary of many when the rate limit is reached)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from riskterm.alerts.config import ALERT_FAILED, AlertTargetSpec
from riskterm.jobs.model import COMPLETED, FINAL
from riskterm.recording import AccountFilter
from riskterm.rules.params import format_duration

MAX_BODY = 1500  # characters of a message body (chat services cut long ones anyway)
Batch = list[tuple[dict[str, Any], str]]

# the record kind behind each choice of `kinds:`
_KIND_OF = {"violation_lockout": "violation", "enforcement_failed": "enforcement",
            "job_finished": "job"}
_NOUNS = {"violation": ("violation", "violations"), "warning": ("warning", "warnings"),
          "enforcement": ("enforcement", "enforcements"), "lockout": ("lockout", "lockouts"),
          "unlock": ("unlock", "unlocks"), "job": ("job update", "job updates"),
          "rejected": ("rejected line", "rejected lines")}


@dataclass(frozen=True)
class Alert:
    kind: str  # the record kind
    account: str | None
    rule: str | None
    ts: str
    title: str
    body: str
    level: str  # apprise's notify type: info, success, warning or failure


def _clip(text: str) -> str:
    return text if len(text) <= MAX_BODY else text[:MAX_BODY - 1] + "…"


# A record a target wants, and the lockout told with it (a violation's): made into an Alert only
# when it is sent on its own, so that a storm costs a tuple per record, not a message.
Item = tuple[dict[str, Any], dict[str, Any] | None]


class Selector:
    """A target's choice of records (kinds, rules, accounts), applied to committed batches."""

    def __init__(self, spec: AlertTargetSpec) -> None:
        self.kinds = frozenset(spec.kinds)
        self.record_kinds = frozenset(_KIND_OF.get(k, k) for k in spec.kinds)
        self.rules = frozenset(spec.rules) if spec.rules is not None else None
        # the --accounts matcher: one compiled pattern, its answers cached per account name
        self.accounts: Callable[[str], bool] | None = (
            None if spec.accounts is None
            else AccountFilter(tuple(spec.accounts)) if spec.accounts else (lambda _: False))

    def _wanted(self, rec: dict[str, Any]) -> bool:
        if self.rules is not None and rec.get("rule") not in self.rules and "rule" in rec:
            return False
        if self.accounts is not None:
            account = rec.get("account")
            if account is None or not self.accounts(account):
                return False
        return True

    def select(self, batch: Batch) -> list[Item]:
        kinds, record_kinds = self.kinds, self.record_kinds
        picked = [i for i, (rec, _) in enumerate(batch) if rec["kind"] in record_kinds]
        if not picked:
            return []
        # the lockouts of the batch by (account, rule, ts): few, where violations can be many
        locks = {(r.get("account"), r.get("rule"), r["ts"])
                 for r, _ in batch if r["kind"] == "lockout"} \
            if "violation" in record_kinds else set()
        filtered = self.rules is not None or self.accounts is not None
        every_violation, every_enforcement = "violation" in kinds, "enforcement" in kinds
        with_lockout, every_job = "violation_lockout" in kinds, "job" in kinds
        lockouts = "lockout" in kinds
        out: list[Item] = []
        told: set[int] = set()  # indexes of lockouts already told with their violation
        for i in picked:
            rec = batch[i][0]
            if told and i in told:
                continue
            if filtered and not self._wanted(rec):
                continue
            kind = rec["kind"]
            if kind == "violation":
                j = None  # the lockout it came with, told in the violation's message
                if locks and (rec.get("account"), rec.get("rule"), rec["ts"]) in locks:
                    j = _its_lockout(batch, i)
                if every_violation or (j is not None and with_lockout):
                    if j is not None and lockouts:
                        told.add(j)
                    out.append((rec, batch[j][0] if j is not None else None))
            elif kind == "enforcement":
                if every_enforcement or rec.get("status") == "failed":
                    out.append((rec, None))
            elif kind == "job":
                if every_job or rec.get("status") in FINAL:
                    out.append((rec, None))
            elif kind != "warning" or rec.get("rule") != ALERT_FAILED:  # never alerted: no loop
                out.append((rec, None))
        return out


def build(item: Item) -> Alert:
    rec, lockout = item
    kind = rec["kind"]
    if kind == "violation":
        return violation(rec, lockout)
    return _BUILDERS[kind](rec)


def _its_lockout(batch: Batch, i: int) -> int | None:
    """The index of the lockout the violation at i came with: the engine writes a violation,
    its enforcements, then its lockout, with one timestamp, in one commit."""
    v = batch[i][0]
    key = (v.get("account"), v.get("rule"), v["ts"])
    for j in range(i + 1, len(batch)):
        rec = batch[j][0]
        if (rec.get("account"), rec.get("rule"), rec["ts"]) != key:
            return None
        if rec["kind"] == "lockout":
            return j
        if rec["kind"] != "enforcement":
            return None
    return None


def _until(rec: dict[str, Any]) -> str:
    until = rec.get("until")
    return f"until {until}" if until else "until unlocked by hand (riskterm unlock)"


def violation(rec: dict[str, Any], lockout: dict[str, Any] | None) -> Alert:
    account, rule = rec.get("account"), rec.get("rule")
    actions = ", ".join(rec.get("action") or []) or "none"
    lines = [str(rec.get("message", "")),
             f"rule {rule}, value {rec.get('value')}, limit {rec.get('limit')}; "
             f"actions: {actions}"]
    title = f"riskterm: {account} broke {rule}"
    if lockout is not None:
        title = f"riskterm: {account} locked out ({rule})"
        lines.append(f"{account} is {lockout.get('state')} {_until(lockout)}")
    lines.append(f"at {rec.get('ts')}")
    return Alert("violation", account, rule, str(rec.get("ts")), title, _clip("\n".join(lines)),
                 "failure")


def lockout(rec: dict[str, Any]) -> Alert:
    account, rule = rec.get("account"), rec.get("rule")
    body = f"{account} is {rec.get('state')} by {rule} {_until(rec)}\nat {rec.get('ts')}"
    return Alert("lockout", account, rule, str(rec.get("ts")),
                 f"riskterm: {account} locked out ({rule})", _clip(body), "failure")


def unlock(rec: dict[str, Any]) -> Alert:
    account, rule = rec.get("account"), rec.get("rule")
    body = f"the {rule} lockout of {account} is lifted ({rec.get('reason')})\nat {rec.get('ts')}"
    return Alert("unlock", account, rule, str(rec.get("ts")), f"riskterm: {account} unlocked",
                 _clip(body), "success")


def enforcement(rec: dict[str, Any]) -> Alert:
    account, rule, status = rec.get("account"), rec.get("rule"), rec.get("status")
    what = f"{rec.get('action')} on {account}" + (f" {rec['symbol']}" if rec.get("symbol") else "")
    body = f"{what} ({rule}): {status}\n{rec.get('detail', '')}\nat {rec.get('ts')}"
    return Alert("enforcement", account, rule, str(rec.get("ts")),
                 f"riskterm: {rec.get('action')} {status} on {account}", _clip(body),
                 "failure" if status == "failed" else "info")


def warning(rec: dict[str, Any]) -> Alert:
    account, rule = rec.get("account"), rec.get("rule")
    body = f"{rec.get('message', '')}\nrule {rule}, at {rec.get('ts')}"
    return Alert("warning", account, rule, str(rec.get("ts")),
                 f"riskterm: warning for {account} ({rule})", _clip(body), "warning")


def job(rec: dict[str, Any]) -> Alert:
    account, status = rec.get("account"), rec.get("status")
    lines = [f"{rec.get('job_kind')} job {rec.get('job_id')} for {account}: {status} "
             f"(attempt {rec.get('attempt')})"]
    if "duration_s" in rec:
        lines.append(f"took {rec.get('duration_s')} s, {rec.get('actions_taken')} action(s) "
                     "taken")
    if rec.get("error"):
        lines.append(f"error: {rec['error']}")
    lines.append(f"at {rec.get('ts')}")
    level = ("success" if status == COMPLETED else "failure" if status in FINAL else "info")
    return Alert("job", account, None, str(rec.get("ts")),
                 f"riskterm: Smart Risk Manager job {status} for {account}",
                 _clip("\n".join(lines)), level)


def rejected(rec: dict[str, Any]) -> Alert:
    body = f"line {rec.get('line')}: {rec.get('error')}\nat {rec.get('ts')}"
    return Alert("rejected", None, None, str(rec.get("ts")), "riskterm: an input line was "
                 "rejected", _clip(body), "warning")


_BUILDERS = {"lockout": lockout, "unlock": unlock, "warning": warning, "rejected": rejected,
             "enforcement": enforcement, "job": job}


class Tally:
    """What a summary stands for: counted, never kept one by one (a storm stays small)."""

    def __init__(self) -> None:
        self.n = 0
        self.by_kind: Counter[str] = Counter()
        self.by_rule: Counter[str] = Counter()
        self.accounts: Counter[str] = Counter()
        self.first: Item | None = None
        self.last: Item | None = None
        self.skipped = 0  # records the queue had no room for

    def add_many(self, items: list[Item]) -> None:
        if not items:
            return
        self.n += len(items)
        self.by_kind.update(rec["kind"] for rec, _ in items)
        self.by_rule.update(rule for rec, _ in items if (rule := rec.get("rule")))
        self.accounts.update(acct for rec, _ in items if (acct := rec.get("account")))
        if self.first is None:
            self.first = items[0]
        self.last = items[-1]

    def merge(self, later: Tally) -> None:
        """Add what another tally counted after this one's items."""
        self.n += later.n
        self.by_kind.update(later.by_kind)
        self.by_rule.update(later.by_rule)
        self.accounts.update(later.accounts)
        self.skipped += later.skipped
        self.first = self.first or later.first
        self.last = later.last or self.last

    def single_account(self) -> str | None:
        return next(iter(self.accounts)) if len(self.accounts) == 1 else None


def summary(tally: Tally, spec: AlertTargetSpec) -> Alert:
    limit = spec.rate_limit
    parts = [f"{n} {_NOUNS[k][n != 1]}" for k, n in tally.by_kind.most_common()]
    lines = [f"{tally.n} alert{'s' if tally.n != 1 else ''} held back by the rate limit "
             f"({limit.messages} per {format_duration(limit.per)}): " + ", ".join(parts)
             ] if tally.n else []
    if tally.by_rule:
        lines.append("rules: " + ", ".join(f"{r} ({n})" for r, n in tally.by_rule.most_common(8))
                     + (" and more" if len(tally.by_rule) > 8 else ""))
    if tally.accounts:
        names = [a for a, _ in tally.accounts.most_common(10)]
        more = len(tally.accounts) - len(names)
        lines.append("accounts: " + ", ".join(names) + (f" and {more} more" if more else ""))
    if tally.skipped:
        lines.append(f"{tally.skipped} record(s) were not examined: the alert queue was full")
    if tally.first is not None and tally.last is not None:
        first, last = build(tally.first), build(tally.last)
        lines.append(f"first: {first.title.removeprefix('riskterm: ')} at {first.ts}")
        if tally.n > 1:
            lines.append(f"last: {last.title.removeprefix('riskterm: ')} at {last.ts}")
    level = "failure" if any(k in tally.by_kind for k in ("violation", "lockout")) else "warning"
    return Alert("summary", tally.single_account(), None,
                 str(tally.last[0].get("ts")) if tally.last else "",
                 f"riskterm: {tally.n} alerts (rate limit)" if tally.n
                 else "riskterm: alerts may be missing (queue full)",
                 _clip("\n".join(lines)), level)
