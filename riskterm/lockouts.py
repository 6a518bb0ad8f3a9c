"""Lockouts: an account locked by a rule until a time (or for good), kept as rows so a restart
cannot lift them. Expiry is data: the engine re-arms a timer for each active row on start-up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Lockout:
    id: int
    account: str
    rule: str
    state: str  # halted / reducing
    kind: str  # duration / until_reset / until_session_start / permanent
    until: float | None  # None: permanent
    created: float
    active: bool = True

    @property
    def unlock_reason(self) -> str:
        return {"until_reset": "daily_reset", "until_session_start": "session_start"}.get(
            self.kind, "expired"
        )


class LockoutBook:
    """The active lockouts by account, and the trading state they imply."""

    def __init__(self) -> None:
        self.by_account: dict[str, list[Lockout]] = {}
        self.next_id = 1
        self._rules_text: dict[str, str] = {}  # account -> "rule, rule" (see rules_text)

    def add(self, lockout: Lockout) -> None:
        self._rules_text.pop(lockout.account, None)
        self.by_account.setdefault(lockout.account, []).append(lockout)
        self.next_id = max(self.next_id, lockout.id + 1)

    def remove(self, lockout: Lockout) -> None:
        lockout.active = False
        self._rules_text.pop(lockout.account, None)
        items = self.by_account.get(lockout.account)
        if items and lockout in items:
            items.remove(lockout)
            if not items:
                del self.by_account[lockout.account]

    def active(self, account: str, rule: str | None = None) -> list[Lockout]:
        items = self.by_account.get(account, [])
        return [lk for lk in items if rule is None or lk.rule == rule]

    def rules_text(self, account: str) -> str:
        """The rules that lock the account, sorted and comma-separated (every order or fill of
        a locked account names them: kept until its lockouts change)."""
        text = self._rules_text.get(account)
        if text is None:
            rules = {lk.rule for lk in self.by_account.get(account, ())}
            text = self._rules_text[account] = ", ".join(sorted(rules))
        return text

    def state(self, account: str) -> str:
        items = self.by_account.get(account)
        if not items:
            return "active"
        return "halted" if any(lk.state == "halted" for lk in items) else "reducing"

    def all(self) -> list[Lockout]:
        return [lk for items in self.by_account.values() for lk in items]
