"""The `/` filter line and the sort keys of a table (s / S / a header click).

`/` opens a one-line input above the status bar for the focused table. The table is filtered as
you type: at once after a pause, and a burst of fast typing is debounced into one pass over the
rows when it pauses (DEBOUNCE_S), never one pass per key. enter keeps the filter and goes back
to the table, escape clears it and closes the line. The filtering itself is table_query.py,
on the table's row model.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input

from riskterm.tui.live_table import LiveTable
from riskterm.tui.table_query import TableQuery

DEBOUNCE_S = 0.08  # typing pause before the rows are filtered


def query_of(table: LiveTable) -> TableQuery:
    """The table's query, created on first use (its columns follow the table's)."""
    query = table.query
    if query is None:
        query = table.query = TableQuery(table._all_columns, table.row_fields())
        query.source = {key: raw for key in table.row_keys
                        if (raw := table.raw(key)) is not None}
    # every column, shown or dropped in a narrow table
    query.columns = list(table._all_columns)
    query.fields = table.row_fields()
    return query


def requery(table: LiveTable) -> None:
    """Show the table's last rows again through its (changed) query, cursor kept on its row."""
    query = query_of(table)
    table.sync(query.source)


def target_table(screen: Screen[Any]) -> LiveTable | None:
    """The table `/` and `s` act on: the focused one, else the first shown on the screen."""
    focused = screen.focused
    bar = focused if isinstance(focused, FilterBar) else None
    if bar is not None:
        return bar.table
    if isinstance(focused, LiveTable):
        return focused
    for table in screen.query(LiveTable):
        if table.display and table.region.area:
            return table
    return None


def cycle_sort(table: LiveTable, *, reverse: bool = False) -> str:
    """s: the next sort column; S: the other direction. Returns what the table now shows."""
    query = query_of(table)
    if reverse:
        if query.sort_column is None:
            query.cycle_sort()
        query.reverse = not query.reverse
    else:
        query.cycle_sort()
    requery(table)
    return query.describe() or "unsorted"


def sort_by(table: LiveTable, column: int) -> None:
    query = query_of(table)
    if column < len(query.sortable(next(iter(query.source.values()), None))):
        query.sort_by(column)
        requery(table)


def open_filter(screen: Screen[Any]) -> FilterBar | None:
    """/: the filter line of the target table (opened, or focused if open)."""
    table = target_table(screen)
    if table is None:
        return None
    for bar in screen.query(FilterBar):
        if bar.table is table:
            bar.focus()
            return bar
        bar.close(clear=False)
    bar = FilterBar(table)
    status = screen.query("#status-bar")
    if status:
        screen.mount(bar, before=status.first())
    else:
        screen.mount(bar)
    bar.focus()
    return bar


class FilterBar(Input):
    DEFAULT_CSS = """
    FilterBar { height: 1; border: none; padding: 0 1; background: $boost; }
    FilterBar:focus { border: none; background: $accent 20%; }
    """
    BINDINGS: ClassVar[list[Any]] = [
        Binding("escape", "clear_close", "Clear filter", show=False),
        Binding("down", "to_table", "Table", show=False),
    ]

    def __init__(self, table: LiveTable) -> None:
        query = query_of(table)
        label = (table.border_title or "table").split("·")[0].strip()
        super().__init__(value=query.text, placeholder=f"filter {label}: words, or column:word",
                         classes="filter-bar")
        self.table = table
        self._timer: Timer | None = None
        self.applied = 0  # filter passes run (for tests and the bench)
        self._applied_at = 0.0

    def on_input_changed(self, event: Input.Changed) -> None:
        # the first key after a pause filters at once; keys that follow within DEBOUNCE_S
        # (a burst of typing) are folded into one pass when the burst pauses
        event.stop()
        if self._timer is not None:
            self._timer.stop()
            self._timer = self.set_timer(DEBOUNCE_S, self.apply_now)
        elif time.monotonic() - self._applied_at >= DEBOUNCE_S:
            self.apply_now()
        else:
            self._timer = self.set_timer(DEBOUNCE_S, self.apply_now)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.apply_now()
        self.table.focus()

    def apply_now(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        query = query_of(self.table)
        unknown = query.set_text(self.value)
        requery(self.table)
        self.applied += 1
        self._applied_at = time.monotonic()
        if unknown:
            self.notify(f"No column named {', '.join(unknown)}: matched as plain text.",
                        severity="warning", timeout=4)

    def action_to_table(self) -> None:
        self.apply_now()
        self.table.focus()

    def action_clear_close(self) -> None:
        self.close(clear=True)

    def close(self, *, clear: bool) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if clear:
            query_of(self.table).set_text("")
            requery(self.table)
        table = self.table
        self.remove()
        if table.is_attached:
            table.focus()
