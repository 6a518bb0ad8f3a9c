"""JsonTree: a JSON value as a collapsible tree that builds its nodes only when they are opened.

Opening a node adds at most PAGE children (and a "… more" node that loads the next page when
selected), so a state with a hundred thousand entries opens as fast as a small one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from riskterm.safetext import escape_json_controls
from riskterm.tui import formatting as fmt

PAGE = 200


@dataclass
class JsonRef:
    value: Any = field(repr=False)
    key: str | int | None = None
    loaded: int = 0  # children added so far


@dataclass
class MoreRef:
    parent: TreeNode[Any] = field(repr=False)
    used: bool = False


def _size_label(value: Any) -> str:
    if isinstance(value, dict):
        return f"{{…}} {len(value):,} key{'s' if len(value) != 1 else ''}"
    return f"[…] {len(value):,} item{'s' if len(value) != 1 else ''}"


def scalar_text(value: Any) -> Text:
    if isinstance(value, str):
        shown = value if len(value) <= 200 else value[:199] + "…"
        # JSON escapes C0; DEL, C1 and bidi controls get JSON escapes too (\u009b)
        return Text(escape_json_controls(json.dumps(shown, ensure_ascii=False)), style="green")
    if isinstance(value, bool) or value is None:
        return Text(json.dumps(value), style="magenta italic")
    if isinstance(value, int | float):
        return Text(json.dumps(value), style="cyan")
    return Text(fmt.safe(repr(value)), style="red")


def node_label(key: str | int | None, value: Any) -> Text:
    text = Text()
    if key is not None:
        text.append(fmt.safe(key) if isinstance(key, str) else f"[{key}]", style="bold")
        text.append(": ")
    if isinstance(value, dict | list):
        text.append(_size_label(value), style="dim")
    else:
        text.append_text(scalar_text(value))
    return text


class JsonTree(Tree[Any]):
    def __init__(self, label: str = "graph_state", *, id: str | None = None) -> None:
        super().__init__(label, id=id)
        self.label_text = label
        self.show_root = True
        self.guide_depth = 3

    def set_value(self, value: Any) -> None:
        """Show `value`; the nodes the user had opened stay open where they still exist."""
        opened = self.expanded_paths()
        self.clear()
        root = self.root
        root.data = JsonRef(value)
        root.set_label(node_label(self.label_text, value))
        root.allow_expand = isinstance(value, dict | list)
        self.expand_paths(opened or [()])

    # -- lazy children -------------------------------------------------------------------------

    def populate(self, node: TreeNode[Any]) -> None:
        ref = node.data
        if not isinstance(ref, JsonRef) or not isinstance(ref.value, dict | list):
            return
        if ref.loaded == 0 and ref.value:
            self._add_page(node, ref)

    def _add_page(self, node: TreeNode[Any], ref: JsonRef) -> None:
        value = ref.value
        start, stop = ref.loaded, min(len(value), ref.loaded + PAGE)
        items = (islice(value.items(), start, stop) if isinstance(value, dict)
                 else enumerate(value[start:stop], start))
        for key, child in items:
            if isinstance(child, dict | list) and child:
                node.add(node_label(key, child), data=JsonRef(child, key), allow_expand=True)
            else:
                node.add_leaf(node_label(key, child), data=JsonRef(child, key))
        ref.loaded = stop
        if stop < len(value):
            more = len(value) - stop
            node.add_leaf(Text(f"… {more:,} more (select to load {min(more, PAGE)})",
                               style="italic dim"), data=MoreRef(node))

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Any]) -> None:
        self.populate(event.node)

    def on_tree_node_selected(self, event: Tree.NodeSelected[Any]) -> None:
        node = event.node
        if isinstance(node.data, MoreRef) and not node.data.used:
            node.data.used = True
            parent = node.data.parent
            node.remove()
            if isinstance(parent.data, JsonRef):
                self._add_page(parent, parent.data)

    # -- keeping the user's place across updates ---------------------------------------------

    def expanded_paths(self) -> list[tuple[str | int, ...]]:
        paths: list[tuple[str | int, ...]] = []

        def walk(node: TreeNode[Any], path: tuple[str | int, ...]) -> None:
            if not node.is_expanded:
                return
            paths.append(path)
            for child in node.children:
                ref = child.data
                if isinstance(ref, JsonRef) and ref.key is not None:
                    walk(child, (*path, ref.key))

        walk(self.root, ())
        return paths

    def expand_paths(self, paths: list[tuple[str | int, ...]]) -> None:
        for path in sorted(paths, key=len):
            node: TreeNode[Any] | None = self.root
            for key in path:
                assert node is not None
                self.populate(node)
                node = next((c for c in node.children
                             if isinstance(c.data, JsonRef) and c.data.key == key), None)
                if node is None:
                    break
            if node is not None and node.allow_expand:
                self.populate(node)
                node.expand()

    def find(self, *path: str | int) -> TreeNode[Any] | None:
        """The node at a path of keys, if it has been built (for tests)."""
        node: TreeNode[Any] | None = self.root
        for key in path:
            if node is None:
                return None
            node = next((c for c in node.children
                         if isinstance(c.data, JsonRef) and c.data.key == key), None)
        return node
