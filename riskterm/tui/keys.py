"""Every key of the dashboard (CONTRACT §6) in one table: the bindings, the command palette and
the help screen are all built from it, so they cannot disagree. Each binding has an id, so
`AppSettings.keymap` can move it to another key."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class KeyAction:
    id: str
    key: str
    action: str
    description: str  # short, for the footer
    tooltip: str  # a sentence, for the palette and the help screen
    show: bool = True
    key_display: str | None = None
    priority: bool = False

    def binding(self) -> Binding:
        return Binding(self.key, self.action, self.description, show=self.show,
                       key_display=self.key_display, priority=self.priority,
                       tooltip=self.tooltip, id=self.id)


APP_KEYS: tuple[KeyAction, ...] = (
    KeyAction("dashboard", "d", "show('dashboard')", "Dashboard",
              "Show the dashboard: accounts, positions, live violations, P&L"),
    KeyAction("violations", "v", "show('violations')", "Violations",
              "Show the full violation history, filterable by account, rule and kind"),
    KeyAction("jobs", "j", "show('jobs')", "Jobs", "Show the Smart Risk Manager job queue"),
    KeyAction("rules", "r", "show('rules')", "Rules",
              "Show the rules with their parameters and their state per account"),
    KeyAction("enqueue", "e", "enqueue", "Review",
              "Enqueue a Smart Risk Manager review of the selected account"),
    KeyAction("flatten", "f", "flatten", "Flatten",
              "Flatten the selected account: cancel its orders, close its positions (asks first)"),
    KeyAction("unlock", "u", "unlock", "Unlock",
              "Lift the lockouts of the selected account (asks first)"),
    KeyAction("pause", "p", "toggle_pause", "Pause",
              "Pause or resume the live updates of the screen (rules keep being enforced)"),
    KeyAction("reload_rules", "ctrl+r", "reload_rules", "Reload rules",
              "Reload rules.yaml; an invalid file keeps the old rules and says why"),
    KeyAction("help", "question_mark", "help", "Keys", "Show the keys", key_display="?"),
    KeyAction("notifications", "n", "notifications", "Alerts",
              "Show the notification history: halts, lockouts and failed enforcements",
              show=False),
    KeyAction("filter", "slash", "filter", "Filter",
              "Filter the focused table as you type (words, or column:word); escape clears",
              show=False, key_display="/"),
    KeyAction("sort", "s", "sort", "Sort",
              "Sort the focused table by its next column (or click a column's header)",
              show=False),
    KeyAction("sort_reverse", "S", "sort(True)", "Reverse sort",
              "Reverse the sort order of the focused table", show=False),
    KeyAction("account", "A", "account", "Account",
              "Open the selected account: positions, orders, rule states, floor, P&L chart "
              "(enter on an account row does the same)", show=False),
    KeyAction("back", "escape", "back", "Back", "Go back to the previous screen", show=False),
    KeyAction("quit", "q", "quit", "Quit",
              "Quit: stop the source, commit everything and close the database"),
)

JOBS_KEYS: tuple[KeyAction, ...] = (
    KeyAction("open_job", "enter", "open_job", "Detail",
              "Open the selected job: graph state, actions log, timeline", key_display="⏎"),
    KeyAction("cancel_job", "c", "cancel_job", "Cancel",
              "Cancel the selected queued or running job"),
    KeyAction("retry_job", "R", "retry_job", "Retry",
              "Retry the selected failed, cancelled, timed-out or interrupted job"),
)

DETAIL_KEYS: tuple[KeyAction, ...] = (
    KeyAction("approve_job", "a", "approve_job", "Approve",
              "Approve the recommended actions of this finished job"),
    KeyAction("cancel_job", "c", "cancel_job", "Cancel", "Cancel this job (queued or running)"),
    KeyAction("retry_job", "R", "retry_job", "Retry",
              "Retry this failed, cancelled, timed-out or interrupted job"),
)

VIOLATIONS_KEYS: tuple[KeyAction, ...] = (
    KeyAction("clear_filters", "x", "clear_filters", "Clear filters",
              "Show every violation again (clear the account, rule and kind filters)"),
)


def bindings(keys: tuple[KeyAction, ...]) -> list[Binding]:
    return [k.binding() for k in keys]
