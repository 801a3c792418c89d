"""`?` or F1: every key of the screen below, what it does, and the keys of every screen.

Built from the bindings themselves (the footer shows only those that fit), so the help
never disagrees with what a key does. Keys that do nothing right now say when they do.
"""

from __future__ import annotations

import ast
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

GLOBAL = [
    ("1 2 3 4", "switch screen: Graph, Devices, Profile, Partitions"),
    ("ctrl+p", "command palette: every action by name"),
    ("ctrl+s", "save the session under another name"),
    ("? or F1", "this help"),
    ("Esc", "leave an input for the table; close a dialog"),
    ("q", "quit (everything is already saved)"),
]


def screen_keys(screen: Screen) -> list[tuple[str, str, bool]]:
    """(key, what it does, available now) for each of the screen's own bindings."""
    out = []
    for binding in type(screen).BINDINGS:
        if not isinstance(binding, Binding) or not binding.description:
            continue
        keys = binding.key_display or ", ".join(
            screen.app.get_key_display(Binding(k, "")) for k in binding.key.split(",")
        )
        action, _, params = binding.action.partition("(")
        args = ast.literal_eval(f"({params[:-1]},)") if params else ()
        available = screen.check_action(action, args) is not False
        out.append((keys, binding.tooltip or binding.description, available))
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar = [
        Binding("escape,question_mark,f1,q", "close", "Close", id="help.close"),
    ]

    def __init__(self, title: str, keys: list[tuple[str, str, bool]]) -> None:
        super().__init__()
        self.title_text = title
        self.keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="help-box"):
            yield Label(f"Keys — {self.title_text}", classes="dialog-title")
            with VerticalScroll(id="help-body"):
                yield Static(self._text())
            yield Label("Esc, ? or F1 closes · ↑/↓ scroll", classes="dialog-hint")

    def _text(self) -> Table:
        """Two columns: the key, and what it does (wrapped under itself)."""
        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", style="bold", no_wrap=True)
        table.add_column(ratio=1)
        for key, what, available in self.keys:
            if available:
                table.add_row(key, what)
            else:
                table.add_row(key, Text(f"{what} (not now)", style="dim"))
        table.add_row("", "")
        table.add_row("", Text("On every screen", style="bold"))
        for key, what in GLOBAL:
            table.add_row(key, what)
        return table

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)
