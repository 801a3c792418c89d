"""One-line bar: the four screens (the current one highlighted), the model and the session.

Replaces Textual's Header: it costs one line at 80×24, has no clock (snapshots stay
deterministic) and tells an operator over SSH where they are and which digit goes where.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from backend import fit

SCREENS = (
    ("graph", "1 Graph"),
    ("devices", "2 Devices"),
    ("profile", "3 Profile"),
    ("partitions", "4 Partitions"),
)


class TitleBar(Widget):
    COMPONENT_CLASSES: ClassVar = {
        "title-bar--active",
        "title-bar--tab",
        "title-bar--info",
    }
    DEFAULT_CSS = """
    TitleBar { height: 1; background: $panel; color: $foreground; }
    TitleBar > .title-bar--active { background: $primary; color: $text; text-style: bold; }
    TitleBar > .title-bar--tab { color: $text-muted; }
    TitleBar > .title-bar--info { color: $text-muted; }
    """

    current: reactive[str] = reactive("graph")
    info: reactive[str] = reactive("")

    def __init__(self, current: str, info: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.set_reactive(TitleBar.current, current)
        self.set_reactive(TitleBar.info, info)

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        active = self.get_component_rich_style("title-bar--active")
        tab = self.get_component_rich_style("title-bar--tab")
        for name, label in SCREENS:
            text.append(f" {label} ", style=active if name == self.current else tab)
        used = text.cell_len
        room = self.size.width - used - 1
        if room > 3 and self.info:
            info = fit.start(self.info, room)
            text.append(" " * (room - fit.cells(info) + 1))
            text.append(info, style=self.get_component_rich_style("title-bar--info"))
        return text
