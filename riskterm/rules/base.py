"""The rule framework: each rule is a small class that declares the event kinds it reacts to.

The engine dispatches an event only to the rules registered for its kind, and only for accounts
where the rule is enabled. A rule reads the book and calls back into the engine:

- `engine.evaluate(...)` for a condition on a running value (edge-triggered per
  (rule, account, symbol), re-armed when it clears, with `warn_at` warnings), or
- `engine.violate(...)` for rules about a single order or fill (one violation each).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from riskterm.account import AccountState
    from riskterm.engine import Engine


class Rule:
    id: ClassVar[str]
    #: event types this rule reacts to; "quote" rules are called once per account holding the symbol
    events: ClassVar[tuple[str, ...]]

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> float | None:
        """Evaluate the rule for this event.

        Quote rules may return their slack: how many dollars the account's (or any one
        position's) P&L can move, in either direction, before this rule's outcome could change
        (a breach, a warning, a re-arm, a new high-water mark). The engine then skips the
        account's quote rules until the marks have moved that much. None means "check me on
        every quote".
        """
        raise NotImplementedError

    def on_new_day(self, acct: AccountState, params: Any) -> None:
        """Called at the daily reset for each account where the rule is enabled."""
