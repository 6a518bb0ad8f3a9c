"""Rules (r): each rule with its parameters and its state per account. ctrl+r reloads the rules
file; an invalid file keeps the old rules and its errors are shown here."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from riskterm.tui import formatting as fmt
from riskterm.tui.detail_pane import DetailPane
from riskterm.tui.live_table import LiveTable
from riskterm.tui.rules_table import RulesTable, params_text
from riskterm.tui.screens.base import Frame, LiveScreen
from riskterm.tui.view import rule_states


class RulesScreen(LiveScreen):
    def __init__(self) -> None:
        super().__init__(name="rules")
        self._shown_error: str | bool | None = False

    def compose_body(self) -> ComposeResult:
        yield Static("", id="rules-error")
        table = RulesTable(id="rules-table")
        table.border_title = "Rules · state per account"
        yield table
        yield DetailPane(id="rules-detail")

    @property
    def table(self) -> RulesTable:
        return self.query_one("#rules-table", RulesTable)

    def rule_ids(self) -> list[str]:
        config = self.rt.config
        ids = list(config.rules)
        for merged in config.overrides.values():
            ids += [rid for rid in merged if rid not in ids]
        return ids

    def refresh_live(self, frame: Frame) -> None:
        self._show_error()
        config = self.rt.config
        accounts = sorted(frame.engine.accounts)
        table = self.table
        table.set_accounts(accounts)
        rules = self.rule_ids()
        states = rule_states(frame.engine, rules, accounts)
        rows = {}
        for rid in rules:
            params = config.rules.get(rid)
            disabled = params is not None and not params.enabled
            if params is None:  # enabled only by an account override
                pattern, params = next((p, m[rid]) for p, m in config.overrides.items()
                                       if rid in m)
                text = f"only {pattern}: " + params_text(params)
            else:
                text = params_text(params)
            rows[rid] = (rid, text, disabled, *states[rid])
        table.sync(rows)
        self._show_detail()

    def _show_error(self) -> None:
        error = self.rt.rules_error
        if error == self._shown_error:
            return
        self._shown_error = error
        panel = self.query_one("#rules-error", Static)
        panel.set_class(error is not None, "-error")
        if error is None:
            panel.update(Text(f"Rules from {Path(self.rt.config.path).name} · ctrl+r reloads it",
                              style="dim"))
        else:
            text = Text("The rules file has errors; the old rules stay in force:\n",
                        style="bold")
            text.append(fmt.safe(error, newlines=True))  # it quotes the file
            panel.update(text)

    def on_live_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        rid = self.table.selected_key()
        detail = self.query_one("#rules-detail", DetailPane)
        if rid is None:
            detail.update("")
            return
        config = self.rt.config
        text = Text(fmt.safe(rid), style="bold")
        params = config.rules.get(rid)
        text.append("\n")
        text.append(fmt.safe(params_text(params, 400)) if params is not None else "not in rules:",
                    style="" if params is not None else "dim")
        for pattern, merged in config.overrides.items():
            if rid in merged:
                text.append(f"\naccounts {fmt.safe(pattern)}: ", style="bold cyan")
                text.append(fmt.safe(params_text(merged[rid], 400)))
        detail.update(text)
