"""A DataTable kept in step with a dict of rows by key: stale rows removed, changed cells updated
in place, new rows added. Never a clear() and rebuild, so the cursor stays where the user put it
and a flush repaints only what changed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rich.console import RenderableType
from textual.widgets import DataTable


class KeyedTable(DataTable[RenderableType]):
    #: (column key, label, width) — fixed widths: measuring cells per update is costly
    COLUMNS: ClassVar[Sequence[tuple[str, str, int]]] = ()

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self._raw: dict[str, tuple[Any, ...]] = {}
        self._cells: dict[str, list[RenderableType]] = {}
        self._keys: list[str] = []

    def on_mount(self) -> None:
        for key, label, width in self.COLUMNS:
            self.add_column(label, width=width, key=key)
        self._keys = [key for key, _, _ in self.COLUMNS]

    def ensure_columns(self, columns: Sequence[tuple[str, str, int]]) -> None:
        """Add the columns not there yet (a table whose columns follow the data: accounts)."""
        for key, label, width in columns:
            if key not in self._keys:
                self.add_column(label, width=width, key=key)
                self._keys.append(key)

    # -- what subclasses provide -------------------------------------------------------------

    def render_row(self, raw: tuple[Any, ...]) -> Sequence[RenderableType]:
        """The cells of a row from its plain values."""
        return [str(v) for v in raw]

    # -- keyed sync --------------------------------------------------------------------------

    @property
    def row_keys(self) -> list[str]:
        return list(self._raw)

    def raw(self, key: str) -> tuple[Any, ...] | None:
        return self._raw.get(key)

    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return row_key.value

    def sync(self, rows: Mapping[str, tuple[Any, ...]]) -> int:
        """Bring the table to `rows`; returns the number of cells touched."""
        current = self._raw
        touched = 0
        for key in [k for k in current if k not in rows]:
            self.remove_row(key)
            del current[key]
            del self._cells[key]
            touched += 1
        keys = self._keys
        for key, raw in rows.items():
            if current.get(key) == raw:
                continue
            cells = list(self.render_row(raw))
            old = self._cells.get(key)
            if old is None:
                self.add_row(*cells, key=key)
                touched += len(cells)
            else:
                for i, cell in enumerate(cells):
                    if i >= len(old) or cell != old[i]:
                        self.update_cell(key, keys[i], cell)
                        touched += 1
            current[key] = raw
            self._cells[key] = cells
        return touched
